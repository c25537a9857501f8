"""GET /events: one user's live stream of reminder-area snapshots.

The path of an event: a change commits its outbox row, the broker wakes this process's
subscription, and the stream renders the user's whole reminder area and writes it with the
outbox id. Snapshots are idempotent, so a repeat or a late event does no harm.
"""

from __future__ import annotations

import random
import time

from flask import Blueprint, Response, current_app, render_template, request, stream_with_context
from flask_login import current_user
from gevent.queue import Empty

from ..extensions import db
from ..models import ADMINS_CHANNEL, Reminder, user_channel
from . import sse
from .outbox import latest_event_id

bp = Blueprint("events", __name__)

STREAM_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
    "Vary": "Cookie",
}
# Sent to a request with no session: the area says so and the named event closes the stream
# (the layout's hx-sse:close), so htmx does not reconnect forever.
SIGNED_OUT_EVENT = "weighin:signed-out"
ADMINS_EVENT = "weighin:admins"


def render_area(user_id: int) -> str:
    """The user's whole reminder area, as the layout shows it."""
    reminder = db.session.scalars(db.select(Reminder).where(Reminder.open_for_user_id == user_id)).first()
    return render_template("reminders/_area.html", reminder=reminder)


def _snapshot(user_id: int, event_id: int, *, area: bool, admins: bool) -> str:
    """The events that bring a client up to date as of outbox id event_id."""
    chunk = ""
    if area:
        try:
            chunk = sse.event(render_area(user_id), event_id=event_id)
        finally:
            db.session.remove()  # never hold a database connection while the stream idles
    if admins:
        # Admin pages listen for this named event and refresh their own parts.
        chunk += sse.event(str(event_id), name=ADMINS_EVENT, event_id=event_id)
    return chunk


def _signed_out_response() -> Response:
    if request.headers.get("HX-Request") != "true":
        # The EventSource standard's "stop reconnecting" answer.
        return Response(status=204, headers={"Cache-Control": "no-store"})
    body = sse.retry(24 * 3600 * 1000) + sse.event(
        render_template("reminders/_signed_out.html")
    ) + sse.event("", name=SIGNED_OUT_EVENT)
    return Response(body, mimetype="text/event-stream", headers={**STREAM_HEADERS, "Cache-Control": "no-store"})


@bp.get("/events")
def stream():
    """The logged-in user's stream: their reminder area (and, for admins, the admins' channel)."""
    if not current_user.is_authenticated:
        return _signed_out_response()

    config = current_app.config
    user_id = current_user.id
    is_admin = bool(current_user.is_admin)
    own_channel = user_channel(user_id)
    channels = (own_channel, ADMINS_CHANNEL) if is_admin else (own_channel,)
    last_seen = sse.parse_last_event_id(request.headers.get("Last-Event-ID"))
    heartbeat = config["SSE_HEARTBEAT"]
    lifetime = config["SSE_MAX_LIFETIME"] * random.uniform(0.8, 1.0)
    broker = current_app.extensions["weighin_broker"]

    # Subscribe before reading the newest id, so nothing committed in between is missed.
    subscription = broker.subscribe(channels, config["SSE_QUEUE_SIZE"])
    try:
        newest = latest_event_id(channels)
    except Exception:
        broker.unsubscribe(subscription)
        raise
    finally:
        db.session.remove()

    def generate():
        try:
            yield sse.retry(2000) + sse.comment("connected")
            sent = last_seen
            if sent is None or sent != newest:
                yield _snapshot(user_id, newest, area=True, admins=is_admin)
                sent = newest
            deadline = time.monotonic() + lifetime
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return  # bounded lifetime: the client reconnects, maybe to another worker
                try:
                    channel, event_id = subscription.queue.get(timeout=min(heartbeat, remaining))
                except Empty:
                    yield sse.comment()
                    continue
                if subscription.overflowed:
                    return  # too slow to drain: it resumes with Last-Event-ID
                # Coalesce whatever else is already queued: one snapshot covers it all.
                news = {channel: event_id}
                while not subscription.queue.empty():
                    channel, event_id = subscription.queue.get_nowait()
                    news[channel] = max(news.get(channel, 0), event_id)
                top = max(news.values())
                if sent is not None and top <= sent:
                    continue
                yield _snapshot(
                    user_id, top, area=own_channel in news, admins=ADMINS_CHANNEL in news
                )
                sent = top
        finally:
            broker.unsubscribe(subscription)

    return Response(
        stream_with_context(generate()), mimetype="text/event-stream", headers=STREAM_HEADERS
    )
