"""GET /events: one user's live stream of reminder-area snapshots.

The path of an event: a change commits its outbox row, the broker wakes this process's
subscription, and the stream renders the user's whole reminder area and writes it with the
newest outbox id of the user's channels. Snapshots are idempotent, so a repeat or a late event
does no harm. See docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from flask import Blueprint, Response, current_app, render_template, request, url_for
from flask_login import current_user
from flask_wtf.csrf import generate_csrf
from gevent.queue import Empty

from ..extensions import db
from ..models import ADMINS_CHANNEL, Reminder, User, user_channel
from ..timeutil import get_zone
from ..web import format_local_date
from . import sse
from .broker import Subscription
from .outbox import latest_event_id

log = logging.getLogger(__name__)

bp = Blueprint("events", __name__)

STREAM_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
    "Vary": "Cookie",
}
# Sent to a request with no session: the area says so and the named event closes the stream
# (the layout's hx-sse:close), so htmx does not reconnect forever.
SIGNED_OUT_EVENT = "weighin:signed-out"
# Admins' pages listen for this named event (it bubbles from #reminder-area) and refresh.
ADMINS_EVENT = "weighin:admins"
# What a standard EventSource waits before reconnecting (htmx's hx-sse has its own backoff).
RETRY_MS = 2000


# Built once: constructing a select costs about as much as running it on SQLite. A Core select
# of four columns: no ORM objects, identity map or joinedload for a snapshot that every event,
# connect and burst pays.
_OPEN_BANNER = (
    sa.select(Reminder.id, User.last_weight_at, User.created_at, User.timezone)
    .join(User, User.id == Reminder.user_id)
    .where(Reminder.open_for_user_id == sa.bindparam("user_id"))
    .limit(1)
)


def _open_banner(user_id: int) -> sa.Row | None:
    """The few columns the banner shows for the user's open reminder (None if none is open)."""
    return db.session.execute(_OPEN_BANNER, {"user_id": user_id}).first()


@dataclass(frozen=True, slots=True)
class AreaLinks:
    """What the banner takes from the request, captured once: a stream renders without one."""

    log_url: str
    dismiss_url: str
    csrf_token: str

    @classmethod
    def from_request(cls) -> AreaLinks:
        return cls(
            log_url=url_for("tracking.dashboard", _anchor="quick-add"),
            dismiss_url=url_for("reminders.dismiss_banner"),
            csrf_token=generate_csrf(),
        )


_EMPTY_AREA = "weighin_empty_area"


def _area_template():
    # The environment caches the compiled template; rendering it directly skips the context
    # processors (current_user, current_reminder...), which the banner does not use.
    return current_app.jinja_env.get_template("reminders/_area.html")


def _empty_area() -> str:
    """The area with no reminder: the same markup for every user, so rendered once per app."""
    app = current_app._get_current_object()
    cached = app.extensions.get(_EMPTY_AREA)
    if cached is None:
        cached = _area_template().render(banner=None)
        if not app.jinja_env.auto_reload:  # a developer editing the template sees the change
            app.extensions[_EMPTY_AREA] = cached
    return cached


def render_area(user_id: int, links: AreaLinks | None = None) -> str:
    """The user's whole reminder area, exactly as the layout shows it on page load.

    Needs an app context and, without links, a request context to take them from.
    """
    row = _open_banner(user_id)
    if row is None:
        return _empty_area()
    reminder_id, last_weight_at, created_at, timezone = row
    links = links or AreaLinks.from_request()
    return _area_template().render(
        banner={
            "id": reminder_id,
            "since": _local_date(last_weight_at or created_at, timezone),
            "log_url": links.log_url,
            "dismiss_url": links.dismiss_url,
            "csrf_token": links.csrf_token,
        }
    )


def _local_date(value: datetime, timezone: str) -> str:
    """The banner's date in the user's stored zone, without a loaded User (the page's filter reads
    current_user); tests/test_events.py checks both give the same text."""
    return format_local_date(value, get_zone(timezone))


def read_state(
    user_id: int, channels: tuple[str, ...], *, area: bool, links: AreaLinks | None = None
) -> tuple[int, str | None]:
    """The newest outbox id of the channels and (if asked) the rendered area, in one short session.

    Every transport (the stream, polling, long polling, the WebSocket) reads through here; with
    no channels it only renders the area (the id is then 0).
    """
    try:
        newest = latest_event_id(channels) if channels else 0
        html = render_area(user_id, links) if area else None
    finally:
        # Hand the connection back to the pool now: an idle stream must not hold one.
        db.session.remove()
    return newest, html


def subscribe_and_read(
    user_id: int, channels: tuple[str, ...], *, area: bool, links: AreaLinks | None = None
) -> tuple[Subscription, int, str | None]:
    """Subscribe to the channels, then read their newest id (and the area if asked).

    In that order, so nothing committed in between is missed; the session is released before
    returning, and the subscription is dropped again if the read fails.
    """
    broker = current_app.extensions["weighin_broker"]
    subscription = broker.subscribe(channels, current_app.config["SSE_QUEUE_SIZE"])
    try:
        newest, html = read_state(user_id, channels, area=area, links=links)
    except BaseException:
        broker.unsubscribe(subscription)
        raise
    return subscription, newest, html


def _snapshot_events(html: str | None, event_id: int, *, admins: bool) -> str:
    """The events that bring a client up to date as of outbox id event_id."""
    chunk = sse.event(html, event_id=event_id) if html is not None else ""
    if admins:
        chunk += sse.event(str(event_id), name=ADMINS_EVENT, event_id=event_id)
    return chunk


def _signed_out_response() -> Response:
    """No stream for a request without a session, in the form that stops each client retrying."""
    if request.headers.get("HX-Request") != "true":
        # The EventSource standard's "stop reconnecting" answer; htmx's first connect ignores it too.
        return Response(status=204, headers={"Cache-Control": "no-store", "Vary": "Cookie, HX-Request"})
    # hx-sse reconnects carry HX-Request and would treat 204 (no body) as a failed stream and
    # retry forever; a tiny stream that swaps in a notice and fires hx-sse:close ends it for good.
    body = (
        sse.retry(24 * 3600 * 1000)
        + sse.event(render_template("reminders/_signed_out.html"))
        + sse.event("", name=SIGNED_OUT_EVENT)
    )
    return Response(
        body,
        mimetype="text/event-stream",
        headers={**STREAM_HEADERS, "Cache-Control": "no-store", "Vary": "Cookie, HX-Request"},
    )


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
    # Streamed forms carry a CSRF token; taking it now puts it in the session cookie sent with
    # the headers, since nothing written after them can change the session. The links are the
    # same for every snapshot, so they are built once too.
    links = AreaLinks.from_request()
    app = current_app._get_current_object()

    # The first snapshot is read here, on the connection that loaded current_user, which is
    # released before the stream idles: one checkout per connect (a reconnect storm queues on them).
    subscription, newest, html = subscribe_and_read(user_id, channels, area=True, links=links)

    def generate(newest: int, html: str | None):
        try:
            yield sse.retry(RETRY_MS) + sse.comment("connected")
            sent = last_seen
            # A client already at the newest id keeps its area: re-sending it would make screen
            # readers announce the banner again after every reconnect.
            if sent != newest:
                yield _snapshot_events(html, newest, admins=is_admin)
                sent = newest
            html = None  # an idle stream keeps no rendered area
            deadline = time.monotonic() + lifetime
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return  # bounded lifetime: the client reconnects, maybe to another worker
                try:
                    news = {subscription.queue.get(timeout=min(heartbeat, remaining))[0]}
                except Empty:
                    yield sse.comment()
                    continue
                if subscription.closing:
                    # The worker is shutting down: come back soon, to whichever worker answers.
                    yield sse.retry(random.randint(250, 1500))
                    return
                if subscription.overflowed:
                    log.info("dropping a slow /events client of user %s", user_id)
                    return  # too slow to drain: it resumes with Last-Event-ID
                # Coalesce whatever else is queued: one snapshot covers it all.
                while not subscription.queue.empty():
                    news.add(subscription.queue.get_nowait()[0])
                # The id comes from the outbox, not the wake-up, so it is always a committed one.
                # An app context for this read only: the stream keeps no request context (its
                # environ, session and loaded User) alive between events.
                with app.app_context():
                    newest, html = read_state(user_id, channels, area=own_channel in news, links=links)
                if sent is not None and newest <= sent:
                    continue  # a late or repeated wake-up: nothing the client has not seen
                yield _snapshot_events(html, newest, admins=ADMINS_CHANNEL in news)
                sent = newest
        except Exception:
            # Headers are gone, so no error page: end the stream and let the client resume.
            log.exception("the /events stream of user %s failed", user_id)
        finally:
            broker.unsubscribe(subscription)

    response = Response(generate(newest, html), mimetype="text/event-stream", headers=STREAM_HEADERS)
    # A client that leaves before the first chunk never runs the generator's finally.
    response.call_on_close(lambda: broker.unsubscribe(subscription))
    return response
