"""Fallback transports for the reminder area, beside the SSE stream in views.py.

- `GET /events/area?after=ID`: plain polling. The current snapshot, or 204 when nothing is newer.
- `GET /events/wait?after=ID`: long polling, for networks that break streaming. The request is
  held until the user's channel has news after ID (then the snapshot) or LONGPOLL_TIMEOUT
  seconds pass (then 204); the client asks again with the id it got.
- `GET /events/ws`: a WebSocket (flask-sock over simple-websocket) that pushes the same
  snapshots as JSON text frames `{"id": N, "html": "..."}`; `?after=ID` resumes like Last-Event-ID.

Every answer carries the outbox id in `X-Event-Id` (or in the frame), the same id the stream
writes as `id:`. They share `subscribe_and_read` and `read_state` (events/area.py) with the stream, so an
event takes the same path whichever way it reaches the browser. SSE stays the transport the layout uses;
docs/BENCHMARKS.md measures why.
"""

from __future__ import annotations

import json
import random
import time
from urllib.parse import urlsplit

from flask import Blueprint, Flask, Response, current_app, request
from flask_babel import gettext as _
from flask_login import current_user
from flask_sock import Sock

from ..extensions import current_broker
from ..models import login_channel, stream_channels, user_channel
from . import sse
from .area import over_capacity, read_area, read_state, reads_only, subscribe_and_read, transport_links
from .broker import REPLACED
from .logins import login_seconds_left, login_verdict, transport_lifetime

bp = Blueprint("events_fallback", __name__)
sock = Sock()

LONGPOLL_TIMEOUT = 25.0
NO_STORE = {"Cache-Control": "no-store", "Vary": "Cookie"}
# Seconds a long poll or WebSocket ended by the per-user cap is told to wait before coming back
# (as the stream's replaced event does), and one ended by a worker shutting down.
REPLACED_RETRY_AFTER = (20, 40)
SHUTDOWN_RETRY_AFTER = 1


def init_app(app: Flask) -> None:
    """Defaults for the fallback transports; SOCK_SERVER_OPTIONS pings idle sockets like SSE heartbeats."""
    app.config.setdefault("LONGPOLL_TIMEOUT", LONGPOLL_TIMEOUT)
    app.config.setdefault("SOCK_SERVER_OPTIONS", {"ping_interval": app.config.get("SSE_HEARTBEAT", 15)})


@bp.before_request
def _require_login():
    # Runs before the WebSocket handshake too, so an anonymous socket is refused with a plain 401.
    if request.endpoint == "events_fallback.websocket" and _foreign_origin():
        return Response(
            _("This WebSocket answers only the pages of this site.") + "\n",
            status=403,
            mimetype="text/plain",
            headers=NO_STORE,
        )
    reads_only()
    if not current_user.is_authenticated:
        return _log_in_first()
    if request.endpoint in {"events_fallback.wait", "events_fallback.websocket"}:
        return over_capacity()  # before the WebSocket handshake, so it is a plain 503 too
    return None


def _foreign_origin() -> bool:
    """Whether a WebSocket handshake comes from a page of another origin. A WebSocket has no
    same-origin rule, so without this any site could read the user's banner over their cookies.
    Browsers always send Origin with a handshake; a client without one is not a browser page."""
    origin = request.headers.get("Origin")
    if origin is None:
        return False
    public = urlsplit(current_app.config["PUBLIC_URL"])
    own = {request.host_url.rstrip("/").lower(), f"{public.scheme}://{public.netloc}".lower()}
    return origin.rstrip("/").lower() not in own


def _log_in_first() -> Response:
    return Response(
        _("Log in to receive reminders.") + "\n", status=401, mimetype="text/plain", headers=NO_STORE
    )


def _retry_after(reason: str | None) -> int:
    return random.randint(*REPLACED_RETRY_AFTER) if reason == REPLACED else SHUTDOWN_RETRY_AFTER


def _after_param() -> int | None:
    """The client's last outbox id from ?after=, validated like Last-Event-ID (None if absent or bad)."""
    return sse.parse_last_event_id(request.args.get("after"))


def _snapshot_response(user_id: int, event_id: int, html: str | None = None) -> Response:
    """The area as a fragment, tagged with its outbox id (rendered now unless already read)."""
    if html is None:
        _, html = read_state(user_id, (), area=True, links=transport_links())
    return Response(html, mimetype="text/html", headers={**NO_STORE, "X-Event-Id": str(event_id)})


def _nothing_new(after: int | None, retry_after: int | None = None) -> Response:
    headers = {**NO_STORE, "X-Event-Id": str(after if after is not None else 0)}
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    return Response(status=204, headers=headers)


def _is_current(after: int | None, newest: int) -> bool:
    # An id from the future (another database, a typo) is as unknown as no id at all.
    return after is not None and after == newest


@bp.get("/events/area")
def area():
    """Polling: the reminder area now, or 204 if the client's `after` is already the newest id."""
    user_id = current_user.id
    after = _after_param()
    newest, _ = read_state(user_id, stream_channels(user_id), area=False)
    if _is_current(after, newest):
        return _nothing_new(newest)
    return _snapshot_response(user_id, newest)


@bp.get("/events/wait")
def wait():
    """Long polling: the snapshot as soon as the user's channel has news after `after`, else 204."""
    user_id = current_user.id
    after = _after_param()
    broker = current_broker()
    timeout = min(float(current_app.config["LONGPOLL_TIMEOUT"]), login_seconds_left(current_user))
    login_id = current_user.get_id()

    subscription, newest, _ = subscribe_and_read(user_id, stream_channels(user_id), area=False)
    try:
        if not _is_current(after, newest):
            return _snapshot_response(user_id, newest)
        # From here on the client's `after` is `newest`.
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            # Whatever is queued comes at once, and one fresh snapshot covers it all.
            batch = subscription.next_batch(timeout=remaining)
            if not batch:
                break
            if subscription.closing:
                # Ended by the broker (the user's cap, a worker stopping): say when to ask again.
                return _nothing_new(after, _retry_after(subscription.close_reason))
            news = {channel for channel, _ in batch}
            # Only news on the login channel can mean the login was ended (events/logins.py).
            if login_channel(user_id) in news and login_verdict(login_id, user_id, ()) is not None:
                return _log_in_first()
            event_id = max(event_id for _, event_id in batch)
            if subscription.overflowed or event_id > newest:
                return _snapshot_response(user_id, event_id)
        return _nothing_new(newest)
    finally:
        broker.unsubscribe(subscription)


@sock.route("/events/ws", bp=bp)
def websocket(ws):
    """A WebSocket carrying the same snapshots as the stream, one JSON text frame each."""
    config = current_app.config
    user_id = current_user.id
    sent = _after_param()
    broker = current_broker()
    heartbeat = config["SSE_HEARTBEAT"]
    deadline = time.monotonic() + transport_lifetime()
    login_id = current_user.get_id()

    links = transport_links()

    def push(event_id: int, html: str | None = None) -> None:
        if html is None:
            html = read_area(user_id, links)
        ws.send(json.dumps({"id": event_id, "html": html}))

    subscription, newest, _ = subscribe_and_read(user_id, stream_channels(user_id), area=False)
    try:
        if not _is_current(sent, newest):
            push(newest)
            sent = newest
        while ws.connected and (remaining := deadline - time.monotonic()) > 0:
            batch = subscription.next_batch(timeout=min(heartbeat, remaining))
            if not batch:
                continue  # simple-websocket pings on its own; this only notices a closed socket
            if subscription.closing:
                if subscription.close_reason == REPLACED:
                    ws.close(reason=1008, message="too many connections for this account; reconnect later")
                else:
                    ws.close(reason=1012, message="server restarting; reconnect with ?after=")
                return
            if subscription.overflowed:
                ws.close(reason=1013, message="too slow; reconnect with ?after=")
                return
            news = {channel for channel, _ in batch}
            if login_channel(user_id) in news:
                if login_verdict(login_id, user_id, ()) is not None:
                    ws.close(reason=1008, message="signed out; log in again")
                    return
                if user_channel(user_id) not in news:
                    continue  # the login stands and nothing else changed
            event_id = max(event_id for _, event_id in batch)
            if sent is not None and event_id <= sent:
                continue
            push(event_id)
            sent = event_id
        if ws.connected:
            # Bounded lifetime, as for the stream: the client reconnects, maybe to another worker.
            ws.close(reason=1001, message="lifetime over; reconnect with ?after=")
    finally:
        broker.unsubscribe(subscription)
