"""Entry point: `python wsgi.py` serves the embedded default; gunicorn imports `app`."""

from gevent import monkey

monkey.patch_all()

import os  # noqa: E402
import sys  # noqa: E402

from webapp import ConfigError, create_app  # noqa: E402

# gunicorn halts (instead of respawning workers forever) when a worker exits with this code.
APP_LOAD_ERROR = 4

try:
    app = create_app()
except ConfigError as error:
    print(f"Weigh-in cannot start: {error}", file=sys.stderr)
    sys.exit(APP_LOAD_ERROR)


def _listen_address() -> tuple[str, int]:
    host = os.environ.get("HOST", "127.0.0.1").strip() or "127.0.0.1"
    raw_port = os.environ.get("PORT", "5000").strip() or "5000"
    if not (raw_port.isascii() and raw_port.isdigit() and len(raw_port) <= 5 and 0 < int(raw_port) < 65536):
        print(
            f"Weigh-in cannot start: PORT must be a number from 1 to 65535, got {raw_port!r}", file=sys.stderr
        )
        sys.exit(2)
    return host, int(raw_port)


def main() -> None:
    """Serve with gevent's WSGI server, one process, as the embedded default."""
    from webapp.connections import EmbeddedServer
    from webapp.serve import freeze_startup_heap, start_background_work

    host, port = _listen_address()
    server = EmbeddedServer((host, port), app, log=None, request_timeout=app.config["REQUEST_TIMEOUT"])
    try:
        server.init_socket()
    except OSError as error:
        print(f"Weigh-in cannot listen on {host}:{port}: {error.strerror}", file=sys.stderr)
        sys.exit(2)
    freeze_startup_heap()
    start_background_work(app)
    print(f"Weigh-in is running on http://{host}:{port}/  (Ctrl+C to stop)", flush=True)
    print(f"Mail goes to {app.config['MAIL_DESTINATION']} (set MAIL_URL to send it by SMTP)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
