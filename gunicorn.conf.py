"""gunicorn settings for the scale-out run: `gunicorn -c gunicorn.conf.py wsgi:app`.

Every value can be overridden on the command line or with GUNICORN_CMD_ARGS; the bind address
and worker count also follow WEB_BIND and WEB_WORKERS. See docs/DEPLOY.md.
"""

import os
from pathlib import Path

# gevent: one greenlet per connection, so an idle SSE stream costs a socket and a little
# memory, not a thread. gunicorn's gevent worker patches the standard library itself.
worker_class = "gevent"
workers = int(os.environ.get("WEB_WORKERS", "") or (os.cpu_count() or 1) * 2)
bind = os.environ.get("WEB_BIND", "") or "127.0.0.1:8000"

# Each open page holds one /events stream; leave room for them besides ordinary requests.
# The process needs a file-descriptor limit above this (LimitNOFILE in the systemd unit).
worker_connections = 10000

# A stream is one long response: gunicorn's request `timeout` is only the worker heartbeat
# for the gevent worker, so streams are not cut by it.
timeout = 30
# On SIGTERM (stop, or HUP's replacement of old workers) streams end within a second with a
# retry hint; ordinary requests get this long to finish.
graceful_timeout = 10
# Slow and oversized clients (issue 10, item 6). With the gevent worker, `keepalive` is also
# how long a connection may take to send each request's line and headers, the first one
# included: a client idle or trickling for longer loses its socket (silently, as gunicorn does).
# The body is bounded by the app itself (REQUEST_TIMEOUT, webapp/connections.py: 408), and its
# size by MAX_CONTENT_LENGTH (413). The head's size is bounded here; these are gunicorn's
# defaults made explicit, except fewer header fields (browsers send about 20).
keepalive = 5
limit_request_line = 4094
limit_request_fields = 50
limit_request_field_size = 8190

# Never preload: the app, its database pool and the broker's Redis connections must be made
# in each worker after the fork, and the gevent worker must patch before the app imports.
preload_app = False

# gunicorn's control socket (for gunicornc) defaults to one path per user, which two instances
# on one host would fight over: opt in with a path of your own.
if os.environ.get("WEB_CONTROL_SOCKET", "").strip():
    control_socket = os.environ["WEB_CONTROL_SOCKET"].strip()
else:
    control_socket_disable = True

# Where each worker says it is ready (worker-<pid>), for scripts/rolling-restart, the reload of
# the systemd unit (docs/DEPLOY.md): /run/weighin there, from RuntimeDirectory=. Unset: no files.
READY_DIR = os.environ.get("WEB_READY_DIR", "").strip()

accesslog = os.environ.get("WEB_ACCESS_LOG") or None
errorlog = "-"
loglevel = os.environ.get("WEB_LOG_LEVEL", "info")
# Trust X-Forwarded-* only from the local reverse proxy (the app's PROXY_FIX does the rest).
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")


def _broker_of(worker):
    from webapp.extensions import current_broker

    app = getattr(worker, "wsgi", None)
    return current_broker(app) if app is not None else None


def _close_streams_on_exit(worker) -> None:
    """Wait for the worker to be told to stop, then end its streams so clients reconnect elsewhere."""
    import gevent

    while worker.alive:
        gevent.sleep(0.2)
    broker = _broker_of(worker)
    if broker is not None:
        worker.log.info("worker %s closing %d stream(s)", worker.pid, broker.local_stream_count())
        broker.close_streams()


def post_worker_init(worker) -> None:
    """Start this worker's background work: the reminder scanner and the shutdown watcher."""
    import gevent

    from webapp.serve import freeze_startup_heap, start_background_work

    # The app is loaded: its heap no longer pauses each full garbage collection (webapp/serve.py).
    freeze_startup_heap()
    # Every worker runs the scanner loop; the scan lock lets one scan at a time do the work.
    # REMINDER_SCAN_INTERVAL=0 turns it off for a cron-driven scan (docs/DEPLOY.md).
    start_background_work(worker.wsgi)
    # SIGTERM only clears worker.alive (no hook runs), so a greenlet watches for it.
    gevent.spawn(_close_streams_on_exit, worker)
    # The app is loaded and this worker accepts next: scripts/rolling-restart waits for this.
    if READY_DIR:
        try:
            Path(READY_DIR, f"worker-{worker.pid}").touch()
        except OSError:
            worker.log.exception("cannot write the readiness file in WEB_READY_DIR=%s", READY_DIR)


def worker_int(worker) -> None:
    """SIGINT/SIGQUIT: a quick stop; still tell the streams, it costs nothing."""
    broker = _broker_of(worker)
    if broker is not None:
        broker.close_streams()


def worker_exit(server, worker) -> None:
    """Release the broker's Redis connections and this worker's stream-count key."""
    if READY_DIR:
        Path(READY_DIR, f"worker-{worker.pid}").unlink(missing_ok=True)
    broker = _broker_of(worker)
    if broker is not None:
        try:
            broker.stop()
        except Exception:  # exiting anyway; nothing left to protect
            worker.log.exception("stopping the broker failed")
