"""The reminder area: what a client is shown, rendered one way for the page, dismiss and every transport.

`render_area` is the only code that renders `templates/reminders/_area.html`; `read_state` and
`subscribe_and_read` are how each transport (the stream, polling, long polling, the WebSocket)
reads the area and the newest outbox id of its channels.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from flask import Flask, Response, current_app, g, url_for
from flask import session as cookie_session
from flask_babel import force_locale, gettext
from flask_login import current_user
from flask_wtf.csrf import generate_csrf
from markupsafe import Markup

from ..batches import GroupCall
from ..extensions import current_broker, db
from ..formatting import date_locale_of
from ..i18n import banner_language
from ..models import OutboxEvent, Reminder, User
from ..timeutil import get_zone
from ..web import format_local_date
from .broker import Subscription
from .outbox import latest_event_id

# Built once: constructing a select costs about as much as running it on SQLite. A Core select
# of a few columns of the tables themselves (not the mapped classes' attributes, which send it
# through the ORM's compile and result steps): no ORM objects or identity map for a snapshot that
# every page, event, connect and burst pays.
_REMINDERS = Reminder.__table__.c
_USERS = User.__table__.c
_BANNER_COLUMNS = (
    _REMINDERS.id,
    _REMINDERS.shown_at,
    _USERS.last_weight_at,
    _USERS.created_at,
    _USERS.timezone,
    _USERS.locale,
)
_OPEN_BANNER = (
    sa.select(*_BANNER_COLUMNS)
    .join_from(Reminder.__table__, User.__table__, _USERS.id == _REMINDERS.user_id)
    .where(_REMINDERS.open_for_user_id == sa.bindparam("user_id"))
    .limit(1)
)


def _open_banner(user_id: int) -> sa.Row | None:
    """The few columns the banner shows for the user's open reminder (None if none is open)."""
    return db.session.execute(_OPEN_BANNER, {"user_id": user_id}).first()


# A connect's (or a poll's) two reads in one round trip: the newest outbox id of its channels and
# the open banner's columns, the banner's NULL when none is open (issue 16: a third of a connect
# was these two statements, each with its own round trip and its own share of the ORM's work).
_BANNER = _OPEN_BANNER.subquery("banner")
_NEWEST_AND_BANNER = sa.select(
    sa.select(sa.func.max(OutboxEvent.__table__.c.id))
    .where(OutboxEvent.__table__.c.channel.in_(sa.bindparam("channels", expanding=True)))
    .scalar_subquery(),
    *_BANNER.c,
).select_from(sa.select(sa.literal(1).label("one")).subquery("one").outerjoin(_BANNER, sa.true()))


def _newest_and_banner(user_id: int, channels: tuple[str, ...]) -> tuple[int, tuple[object, ...] | None]:
    """The newest outbox id of the channels (0 if none) and the open banner's row (or None)."""
    row = db.session.execute(_NEWEST_AND_BANNER, {"user_id": user_id, "channels": list(channels)}).one()
    newest, banner = row[0] or 0, tuple(row[1:])
    return newest, (banner if banner[0] is not None else None)


# The same columns for many users at once, each row led by the user it is for (AreaReader's batches).
_OPEN_BANNERS = (
    sa.select(_REMINDERS.open_for_user_id, *_BANNER_COLUMNS)
    .join_from(Reminder.__table__, User.__table__, _USERS.id == _REMINDERS.user_id)
    .where(_REMINDERS.open_for_user_id.in_(sa.bindparam("user_ids", expanding=True)))
)


@dataclass(frozen=True, slots=True)
class AreaLinks:
    """What the banner takes from the request, captured once: a stream renders without one."""

    log_url: str
    dismiss_url: str
    csrf_token: str | None

    @classmethod
    def from_request(cls, *, with_csrf_token: bool = True) -> AreaLinks:
        """The links, and the CSRF token for a page load or the dismiss answer. Transports ask for
        none: what they send may reach a reader on another origin (a WebSocket has no same-origin
        rule), and on a page htmx already sends the token from <body hx-headers> with Dismiss."""
        return cls(
            log_url=url_for("tracking.dashboard", _anchor="weight"),
            dismiss_url=url_for("reminders.dismiss_banner"),
            csrf_token=generate_csrf() if with_csrf_token else None,
        )


def transport_links() -> AreaLinks:
    """The banner's links for the stream, polling, long polling and the WebSocket: no CSRF token."""
    return AreaLinks.from_request(with_csrf_token=False)


_EMPTY_AREA = "weighin_empty_area"


def _area_template():
    # The environment caches the compiled template; rendering it directly skips the context
    # processors (current_user, reminder_area...), which the banner does not use.
    return current_app.jinja_env.get_template("reminders/_area.html")


Kept = TypeVar("Kept")


def rendered_once(name: str, key: Hashable, render: Callable[[], Kept], most: int = 32) -> Kept:
    """render()'s result, kept on the app under name and key: markup that is the same for everyone
    with that key (a language, say) is rendered once per app. Not kept while templates
    auto-reload, so a developer editing one sees the change; at most `most` keys a name, then
    that name's store starts afresh (keys such as dates move on)."""
    # The proxy is typed as the Flask app it stands for, which hides its own accessor.
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    kept: dict[Hashable, Kept] = app.extensions.setdefault(name, {})
    found = kept.get(key)
    if found is None:
        found = render()
        if not app.jinja_env.auto_reload:
            if len(kept) >= most:
                kept.clear()
            kept[key] = found
    return found


def empty_area() -> str:
    """The area with no reminder: the same markup for every user, so rendered once per app."""
    return rendered_once(_EMPTY_AREA, None, lambda: _area_template().render(banner=None))


def render_area(user_id: int, links: AreaLinks | None = None) -> str:
    """The user's whole reminder area, the same for the page, dismiss and every transport.

    Rendering an open reminder's banner for the first time records that a page showed it. Needs an app context and, without links, a request context to take them from.
    """
    # Read before the select, whose autoflush would hide them: changes this request has not
    # committed. Recording "shown" commits, and must never commit those.
    session = db.session
    pending = bool(session.new or session.dirty or session.deleted)
    html, unshown = _render_area(user_id, links)
    # The banner is going onto a page: no email for this reminder (once; then shown_at is set).
    # With changes of the request's own pending, the next render records it instead.
    if unshown is not None and not pending:
        # Imported here: the reminders package imports this module for its views.
        from ..reminders.escalation import record_shown, shown_recorder

        if g.get("weighin_reads_only"):
            # This session autocommits each statement (reads_only): the showing's writes must
            # be one transaction, so the recorder commits them on its own connection.
            shown_recorder().record(unshown)
        else:
            record_shown(unshown)
    return html


def _render_area(user_id: int, links: AreaLinks | None) -> tuple[str, int | None]:
    """The area, and its reminder's id if no page has shown that reminder yet (else None)."""
    return _render_banner(_open_banner(user_id), links)


def _render_banner(row, links: AreaLinks | None) -> tuple[str, int | None]:
    """The area for one row of _OPEN_BANNER's columns (None: no open reminder), and its reminder's
    id if no page has shown it yet."""
    if row is None:
        return empty_area(), None
    reminder_id, shown_at, last_weight_at, created_at, timezone, locale = row
    links = links or AreaLinks.from_request()
    # A stream renders long after its request was read: the banner speaks the stored language.
    language = banner_language(locale)
    since = _local_date(last_weight_at or created_at, timezone, language)
    if links.csrf_token is None:
        # A transport's banner (no token): the markup around the id is kept per language, date
        # and links, so a burst to thousands renders a handful of templates (issue 16).
        html = str(reminder_id).join(_banner_parts(language, since, links))
    else:
        html = _banner_markup(language, since, links, reminder_id)
    return html, reminder_id if shown_at is None else None


def _banner_markup(language: str, since: str, links: AreaLinks, reminder_id: int | str) -> str:
    with force_locale(language):
        return _area_template().render(
            banner={
                "id": reminder_id,
                "since": since,
                "log_url": links.log_url,
                "dismiss_url": links.dismiss_url,
                "csrf_token": links.csrf_token,
            }
        )


# Stands for the reminder's id in a kept banner: letters only, so escaping leaves it as it is,
# and no date or link of the banner's can contain it.
_ID_MARK = "WEIGHINREMINDERIDMARK"
_BANNER_PARTS = "weighin_banner_parts"
_BANNER_PARTS_KEPT = 1024


def _banner_parts(language: str, since: str, links: AreaLinks) -> list[str]:
    """The banner's markup for these inputs, split where its id goes: the same for every user with
    that language, date and links, so rendered once (rendered_once, at most _BANNER_PARTS_KEPT)."""
    return rendered_once(
        _BANNER_PARTS,
        (language, since, links),
        lambda: _banner_markup(language, since, links, _ID_MARK).split(_ID_MARK),
        most=_BANNER_PARTS_KEPT,
    )


def reminder_area() -> Markup:
    """The layout's area for whoever is viewing the page (the empty area when logged out)."""
    if not current_user.is_authenticated:
        return Markup(empty_area())
    return Markup(render_area(current_user.id))


def _local_date(value: datetime, timezone: str, language: str) -> str:
    """The banner's date in the user's stored zone and language, without a loaded User (the page's
    filter reads current_user); tests/test_events.py checks both give the same text."""
    return format_local_date(value, get_zone(timezone), date_locale_of(language))


def _without_transaction() -> None:
    """Run the session's next statements in autocommit, unless it is already in a transaction:
    reads only, each statement its own snapshot as under READ COMMITTED anyway, so no BEGIN
    before them and no ROLLBACK when the connection goes back to the pool (issue 16)."""
    if not db.session().in_transaction():
        db.session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})


def reads_only() -> None:
    """This request only reads the database in its own session (a transport's: the stream,
    polling, long polling, the WebSocket; a page such as the dashboard), so its statements, the
    user's load first, run without a transaction: no BEGIN before them and no ROLLBACK after,
    two round trips fewer. Call before anything reads current_user.

    The one write such a request may cause, a banner's first showing, goes through the shown
    recorder and its own connection and transaction (render_area), never this session."""
    if "_user_id" in cookie_session:
        _without_transaction()
        g.weighin_reads_only = True


def read_only_view(view: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a GET view that only reads (outside @login_required, which loads the user):
    reads_only() before anything else runs."""

    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        reads_only()
        return view(*args, **kwargs)

    return wrapped


def read_state(
    user_id: int, channels: tuple[str, ...], *, area: bool, links: AreaLinks | None = None
) -> tuple[int, str | None]:
    """The newest outbox id of the channels and (if asked) the rendered area, in one short session.

    Every transport (the stream, polling, long polling, the WebSocket) reads through here; with
    no channels it only renders the area (the id is then 0).
    """
    html, unshown = None, None
    try:
        # A long poll's answer after its wait: two round trips of three.
        _without_transaction()
        if area and channels:
            newest, banner = _newest_and_banner(user_id, channels)
            html, unshown = _render_banner(banner, links)
        else:
            newest = latest_event_id(channels) if channels else 0
            if area:
                html, unshown = _render_area(user_id, links)
    finally:
        # Hand the connection back to the pool now: an idle stream must not hold one.
        db.session.remove()
    if unshown is not None:
        # The first showing is committed before the banner goes out, batched with the other
        # transports' (one commit for a wake-up's worth of streams); nothing of this session's
        # is committed, since the recorder has its own.
        from ..reminders.escalation import shown_recorder

        shown_recorder().record(unshown)
    return newest, html


def read_area(user_id: int, links: AreaLinks, app: Flask | None = None) -> str:
    """A woken transport's area, read with the other wake-ups of the moment (AreaReader); the
    first showing of its banner is committed before this returns, as for read_state. Needs the
    app, or an app context, and no session of the caller's open (the reader has its own). Given
    the app, the caller needs no context of its own: the batches push theirs."""
    from ..reminders.escalation import ShownRecorder

    if app is None:
        app = current_app._get_current_object()  # type: ignore[attr-defined]
    html, unshown = AreaReader.of_app(app).read(user_id, links)
    if unshown is not None:
        ShownRecorder.of_app(app).record(unshown)
    return html


class AreaReader(GroupCall[tuple[int, AreaLinks], tuple[str, int | None]]):
    """Group read of the transports' wake-ups (issue 16): one per process.

    A scan's burst wakes thousands of streams at once; each used to open a session, check out a
    connection and run its own query. Here a woken stream queues its user and waits; one batch
    reads the open reminders of every user queued so far in one query (at most `limit`), renders
    each area, and hands each stream its own. Being a GroupCall, every read starts after the
    wake-up that asked for it, so what the outbox id of that wake-up promises is visible.
    """

    limit = 500
    name = "area reader"

    def read(self, user_id: int, links: AreaLinks) -> tuple[str, int | None]:
        """The user's area and its unshown reminder's id (or None); raises what its batch raised."""
        return self.call((user_id, links))

    def run_batch(self, items: Sequence[tuple[int, AreaLinks]]) -> list[tuple[str, int | None]]:
        with self._app.app_context():
            try:
                # Reads only, one statement: no transaction (see read_state).
                db.session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
                user_ids = sorted({user_id for user_id, _ in items})
                rows = {row[0]: row[1:] for row in db.session.execute(_OPEN_BANNERS, {"user_ids": user_ids})}
                rendered: dict[tuple[int, AreaLinks], tuple[str, int | None]] = {}
                for key in items:
                    if key not in rendered:
                        rendered[key] = _render_banner(rows.get(key[0]), key[1])
                return [rendered[key] for key in items]
            finally:
                db.session.remove()


def over_capacity() -> Response | None:
    """503 with Retry-After when this process already holds SSE_MAX_STREAMS_PER_PROCESS
    subscriptions (streams, long polls, WebSockets); None while there is room.

    Plain text, rendered from nothing: under that load a page with the layout would cost a
    database query per refusal.
    """
    if current_broker().local_stream_count() < current_app.config["SSE_MAX_STREAMS_PER_PROCESS"]:
        return None
    # Spread the retries so the refused do not all come back in the same second.
    return Response(
        gettext("The server is busy. Try again in a few seconds.") + "\n",
        status=503,
        mimetype="text/plain",
        headers={"Retry-After": str(random.randint(2, 10)), "Cache-Control": "no-store"},
    )


def subscribe_and_read(
    user_id: int, channels: tuple[str, ...], *, area: bool, links: AreaLinks | None = None
) -> tuple[Subscription, int, str | None]:
    """Subscribe to the channels, then read their newest id (and the area if asked).

    In that order, so nothing committed in between is missed; the session is released before
    returning, and the subscription is dropped again if the read fails. It counts towards the
    user's SSE_MAX_STREAMS_PER_USER: one more asks the user's oldest to end.
    """
    broker = current_broker()
    config = current_app.config
    subscription = broker.subscribe(
        channels, config["SSE_QUEUE_SIZE"], user_id=user_id, per_user=config["SSE_MAX_STREAMS_PER_USER"]
    )
    try:
        newest, html = read_state(user_id, channels, area=area, links=links)
    except BaseException:
        broker.unsubscribe(subscription)
        raise
    return subscription, newest, html
