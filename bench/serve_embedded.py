"""The embedded server (`python wsgi.py`) plus a bench-only control port, for the stream harnesses.

The embedded default keeps its broker in memory, so only code inside the server process can
wake its streams. BENCH_CONTROL_PORT opens a line protocol on 127.0.0.1 for the harness:
  remind ID ID ...  -> "ok T0 REMINDER:USER ..."  (one transaction; T0 = time.time() just before commit)
  reset             -> "ok"                      (ends open reminders without announcing it)
Never part of the app: it exists only while a benchmark runs.
"""

from gevent import monkey

monkey.patch_all()

import os  # noqa: E402
import sys  # noqa: E402

from bench.common import end_open_reminders, open_reminders  # noqa: E402


def _serve_control(app, port: int) -> None:
    from gevent.server import StreamServer

    def handle(sock, address):
        rfile = sock.makefile("rb")
        for raw in rfile:
            words = raw.decode().split()
            if not words:
                continue
            with app.app_context():
                if words[0] == "remind":
                    t0, pairs = open_reminders(words[1:])
                    reply = f"ok {t0:.6f} " + " ".join(f"{r}:{u}" for r, u in pairs)
                elif words[0] == "reset":
                    end_open_reminders()
                    reply = "ok"
                else:
                    reply = "error unknown command"
            sock.sendall(reply.encode() + b"\n")

    StreamServer(("127.0.0.1", port), handle).start()


def main() -> None:
    sys.argv[0] = "wsgi.py"
    import wsgi

    control = os.environ.get("BENCH_CONTROL_PORT")
    if control:
        _serve_control(wsgi.app, int(control))
    wsgi.main()


if __name__ == "__main__":
    main()
