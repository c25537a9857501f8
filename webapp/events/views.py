"""GET /events: one user's live stream of reminder-area snapshots.

The path of an event: a change commits its outbox row, the broker wakes this process's
subscription, and the stream renders the user's whole reminder area and writes it with the
newest outbox id of the user's channels. Snapshots are idempotent, so a repeat or a late event
does no harm. See docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Callable, Generator

from flask import Blueprint, Flask, Response, current_app, render_template, request
from flask_babel import get_locale
from flask_login import current_user

from ..connections import WriteGuard
from ..extensions import current_broker
from ..models import ADMINS_CHANNEL, login_channel, stream_channels, user_channel
from . import sse
from .area import (
    AreaLinks,
    over_capacity,
    read_area,
    reads_only,
    rendered_once,
    subscribe_and_read,
    transport_links,
)
from .broker import REPLACED, Broker, Subscription
from .logins import ADMIN_REMOVED, SIGNED_OUT, login_verdict, transport_lifetime

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
# "Your own data changed" (a weight or goal logged in another tab, say): the dashboard's summary
# listens and fetches itself again with an ordinary GET. It carries the event id only, so the
# stream still holds nothing but the reminder area and ids of the user's own channels.
CHANGED_EVENT = "weighin:changed"
# What a standard EventSource waits before reconnecting (htmx's hx-sse has its own backoff).
RETRY_MS = 2000
# Sent to a stream ended because its account opened more than SSE_MAX_STREAMS_PER_USER. The
# retry in the same message is honoured by EventSource and by hx-sse (which reads retry only
# from a message with data or a name), so the tab comes back in about 30 s instead of at once
# ending another tab's stream, which would end another's... Each tab is live most of the time.
REPLACED_EVENT = "weighin:replaced"
REPLACED_RETRY_MS = (20000, 40000)
# The stream body is bytes (passed through to the server as it is): these two are always the same.
_FIRST_CHUNK = (sse.retry(RETRY_MS) + sse.comment("connected")).encode()
_HEARTBEAT = sse.comment().encode()


def _closing_events(reason: str | None) -> str:
    """The last words of a stream the broker asked to end."""
    if reason == REPLACED:
        return sse.event("", name=REPLACED_EVENT, retry_ms=random.randint(*REPLACED_RETRY_MS))
    # The worker is shutting down: come back soon, to whichever worker answers.
    return sse.retry(random.randint(250, 1500))


def _snapshot_events(html: str | None, event_id: int, *, admins: bool, changed: bool = False) -> str:
    """The events that bring a client up to date as of outbox id event_id."""
    chunk = sse.event(html, event_id=event_id) if html is not None else ""
    if changed:
        chunk += sse.event(str(event_id), name=CHANGED_EVENT, event_id=event_id)
    if admins:
        chunk += sse.event(str(event_id), name=ADMINS_EVENT, event_id=event_id)
    return chunk


_SIGNED_OUT = "weighin_signed_out_events"


def _signed_out_events() -> str:
    """The signed-out notice and the named event that closes hx-sse for good (needs a request).

    Every stream keeps it for the end of its login, so it is rendered once per language and
    script root (issue 16: a render at each connect, and its copy in each stream's memory).
    """
    return rendered_once(
        _SIGNED_OUT,
        (str(get_locale()), request.script_root),
        lambda: (
            sse.retry(24 * 3600 * 1000)
            + sse.event(render_template("reminders/_signed_out.html"))
            + sse.event("", name=SIGNED_OUT_EVENT)
        ),
    )


def _signed_out_response() -> Response:
    """No stream for a request without a session, in the form that stops each client retrying."""
    if request.headers.get("HX-Request") != "true":
        # The EventSource standard's "stop reconnecting" answer; htmx's first connect ignores it too.
        return Response(status=204, headers={"Cache-Control": "no-store", "Vary": "Cookie, HX-Request"})
    # hx-sse reconnects carry HX-Request and would treat 204 (no body) as a failed stream and
    # retry forever; a tiny stream that swaps in a notice and fires hx-sse:close ends it for good.
    return Response(
        _signed_out_events(),
        mimetype="text/event-stream",
        headers={**STREAM_HEADERS, "Cache-Control": "no-store", "Vary": "Cookie, HX-Request"},
    )


def _generate(
    subscription: Subscription,
    newest: int,
    html: str | None,
    *,
    user_id: int,
    is_admin: bool,
    channels: tuple[str, ...],
    last_seen: int | None,
    heartbeat: float,
    lifetime: float,
    links: AreaLinks,
    login_id: str | None,
    signed_out: bytes,
    app: Flask,
    broker: Broker,
    guard: WriteGuard,
) -> Generator[bytes, None, None]:
    """The body of one /events stream. A generator function of its own, not a closure in the view:
    the 16 cells of a closure were a quarter of the objects each idle stream gives the garbage
    collector to walk, and 0.9 KiB of its memory (issue 16).

    The server iterates it directly, so it arms the write guard itself: before each chunk it
    yields, and off again when the server comes back for the next (the write is done)."""
    own_channel, logins = user_channel(user_id), login_channel(user_id)
    arm, disarm = guard.arm, guard.disarm  # arm() ends the previous chunk's timer first
    try:
        arm()
        yield _FIRST_CHUNK
        sent = last_seen
        # A client already at the newest id keeps its area: re-sending it would make screen
        # readers announce the banner again after every reconnect.
        if sent != newest:
            # A reconnect (a tab shown again after hx-sse paused it while hidden) may have
            # missed changes; a first connect comes with a page that was just rendered.
            arm()  # the first chunk is written by now; its timer starts over for this one
            yield _snapshot_events(html, newest, admins=is_admin, changed=sent is not None).encode()
            sent = newest
        html = None  # an idle stream keeps no rendered area
        written = time.monotonic()
        deadline = written + lifetime
        while True:
            disarm()  # back here, the server has written the last chunk
            now = time.monotonic()
            if now >= deadline:
                return  # bounded lifetime: the client reconnects, maybe to another worker
            if now >= written + heartbeat:
                # SSE_HEARTBEAT seconds without a write: a comment keeps proxies from closing.
                arm()
                yield _HEARTBEAT
                written = time.monotonic()
                continue
            # Whatever is queued comes at once: one snapshot covers it all. The process's
            # alarms wake the stream for its next heartbeat or its end (events/alarms.py).
            batch = subscription.next_batch_by(min(written + heartbeat, deadline))
            if not batch:
                continue
            if subscription.closing:
                arm()
                yield _closing_events(subscription.close_reason).encode()
                return
            if subscription.overflowed:
                log.info("dropping a slow /events client of user %s", user_id)
                return  # too slow to drain: it resumes with Last-Event-ID
            news = {channel for channel, _ in batch}
            # The id is the wake-up's: every wake-up names an outbox id published after its
            # commit, and ids follow commit order (events/outbox.py), so everything below it
            # is visible to the render that follows. No max(id) query per wake-up (issue 16).
            newest = max(event_id for _, event_id in batch)
            html, verdict = None, None
            check_login, render = logins in news, own_channel in news and newest > sent
            if check_login:
                # An app context for the login check, not the request's: the stream keeps no
                # request context (its environ, session and loaded User) alive between events,
                # and holds no connection while it idles. Was the login ended, or the admin flag
                # removed? (A login change wakes here, whatever its id: the first snapshot may
                # already carry it.) Only then: a reminder or a weight costs no login check.
                with app.app_context():
                    verdict = login_verdict(login_id, user_id, channels)
            if verdict is None and render:
                # Read with every other stream woken at this moment (AreaReader): a burst to
                # thousands shares its queries, and the batches push the app context, not each
                # stream (issue 16).
                html = read_area(user_id, links, app)
            if verdict == SIGNED_OUT:
                arm()
                yield signed_out
                return
            if verdict == ADMIN_REMOVED:
                # Come back at once: the reconnect follows the user's own channel only.
                arm()
                yield sse.retry(random.randint(250, 1500)).encode()
                return
            if newest <= sent or (html is None and ADMINS_CHANNEL not in news):
                # A late or repeated wake-up, or a login check that let the stream be:
                # nothing the client has not seen.
                continue
            arm()
            yield _snapshot_events(
                html, newest, admins=ADMINS_CHANNEL in news, changed=html is not None
            ).encode()
            sent, written = newest, time.monotonic()
    except Exception:
        # Headers are gone, so no error page: end the stream and let the client resume.
        log.exception("the /events stream of user %s failed", user_id)
    finally:
        # The server still writes the end of the response; EventStream.close() disarms.
        arm()
        broker.unsubscribe(subscription)


@bp.get("/events")
def stream():
    """The logged-in user's stream: their reminder area (and, for admins, the admins' channel)."""
    reads_only()
    if not current_user.is_authenticated:
        return _signed_out_response()
    if (busy := over_capacity()) is not None:
        return busy

    config = current_app.config
    user_id = current_user.id
    is_admin = bool(current_user.is_admin)
    channels = stream_channels(user_id, admin=is_admin)
    last_seen = sse.parse_last_event_id(request.headers.get("Last-Event-ID"))
    heartbeat = config["SSE_HEARTBEAT"]
    lifetime = transport_lifetime()
    broker = current_broker()
    # The links are the same for every snapshot, so they are built once; no CSRF token in them
    # (events/area.py: the page's <body hx-headers> gives htmx the token for Dismiss).
    links = transport_links()
    # The login this stream belongs to, checked again whenever the user's login channel has news
    # (events/logins.py); the notice it ends with is rendered now, while there is a request.
    login_id = current_user.get_id()
    signed_out = _signed_out_events().encode()
    # The proxy is typed as the Flask app it stands for, which hides its own accessor.
    app = current_app._get_current_object()  # type: ignore[attr-defined]

    # The first snapshot is read here, on the connection that loaded current_user, which is
    # released before the stream idles: one checkout per connect (a reconnect storm queues on them).
    subscription, newest, html = subscribe_and_read(user_id, channels, area=True, links=links)

    # A client that leaves before the first chunk never runs the generator's finally: close()
    # unsubscribes too. Passed through as it is (bytes already), with no werkzeug iterators between
    # the server's write loop and the generator: two frames fewer on every stream's saved stack
    # and on each heartbeat's way (issue 16). Nor one of ours: the generator arms the server's
    # write guard itself (connections.py).
    guard = WriteGuard()
    body = EventStream(
        _generate(
            subscription,
            newest,
            html,
            user_id=user_id,
            is_admin=is_admin,
            channels=channels,
            last_seen=last_seen,
            heartbeat=heartbeat,
            lifetime=lifetime,
            links=links,
            login_id=login_id,
            signed_out=signed_out,
            app=app,
            broker=broker,
            guard=guard,
        ),
        functools.partial(broker.unsubscribe, subscription),
        guard,
    )
    return Response(body, mimetype="text/event-stream", headers=STREAM_HEADERS, direct_passthrough=True)


class EventStream:
    """A stream's body as the server iterates it: the generator itself, a close() that also runs
    on_close (a body closed before its first chunk never runs the generator's finally), and the
    write guard the generator arms, for the server's middleware to attach (connections.py)."""

    __slots__ = ("_chunks", "_on_close", "write_guard")

    def __init__(
        self, chunks: Generator[bytes, None, None], on_close: Callable[[], None], write_guard: WriteGuard
    ):
        self._chunks = chunks
        self._on_close = on_close
        self.write_guard = write_guard

    def __iter__(self) -> Generator[bytes, None, None]:
        return self._chunks

    def close(self) -> None:
        try:
            self._chunks.close()
        finally:
            self.write_guard.disarm()
            self._on_close()
