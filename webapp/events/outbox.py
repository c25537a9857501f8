"""The outbox: each change writes a row in its own transaction; after commit the broker hears of it."""

from __future__ import annotations

import logging
from collections import OrderedDict
from datetime import timedelta
from typing import cast

import psycopg
import sqlalchemy as sa
from sqlalchemy.orm import Session

from ..extensions import current_broker, db
from ..models import ADMINS_CHANNEL, OutboxEvent, user_channel
from ..timeutil import UTCDateTime, utcnow

log = logging.getLogger(__name__)

_PENDING = "weighin_outbox_pending"
_ANNOUNCED = "weighin_outbox_announced"
_SAVEPOINT_MARKS = "weighin_outbox_savepoints"
# The PostgreSQL advisory lock (transaction-level) under which outbox rows are inserted at commit.
COMMIT_ORDER_LOCK_KEY = int.from_bytes(b"outbox", "big")


def announce(channel: str, kind: str) -> None:
    """Announce news on a channel in the current transaction: written and published when it commits.

    The outbox row itself is inserted at commit (see `_write_announcements`), so its id is taken
    in commit order and a client's id is proof of what it has seen.
    """
    # Begin the transaction now, so that a rollback before any other write forgets this too.
    db.session.connection()
    announce_in(db.session(), channel, kind)


def announce_in(session: Session, channel: str, kind: str) -> None:
    """announce() for a given session inside its open transaction (for session event hooks)."""
    session.info.setdefault(_ANNOUNCED, []).append((channel, kind, utcnow()))


def announce_to_user(user_id: int, kind: str) -> None:
    """Announce a change that only the user's own pages show (their entries), on their channel alone."""
    announce(user_channel(user_id), kind)


def announce_to_user_and_admins(user_id: int, kind: str) -> None:
    """Announce a change to one user on their own channel, then on the admins'."""
    announce(user_channel(user_id), kind)
    announce(ADMINS_CHANNEL, kind)


def latest_event_id(channels) -> int:
    """The newest outbox id on any of the channels, 0 if there is none."""
    return (
        db.session.scalar(
            db.select(sa.func.max(OutboxEvent.id)).where(OutboxEvent.channel.in_(list(channels)))
        )
        or 0
    )


def latest_event_id_anywhere() -> int:
    """The newest outbox id on any channel, 0 for an empty outbox: where a listener starts reading."""
    return db.session.scalar(db.select(sa.func.max(OutboxEvent.id))) or 0


def events_after(after_id: int, limit: int = 10000) -> list[tuple[str, int]]:
    """(channel, id) of outbox rows newer than after_id, oldest first: what a broker catches up on."""
    rows = db.session.execute(
        db.select(OutboxEvent.channel, OutboxEvent.id)
        .where(OutboxEvent.id > after_id)
        .order_by(OutboxEvent.id)
        .limit(limit)
    )
    return [(channel, event_id) for channel, event_id in rows]


class OutboxFollower:
    """A broker listener's memory of the outbox: which ids it dispatched, where to read next.

    Reading trails by one pass (each read starts at the previous read's top, not its own), since
    an id below the newest may belong to a transaction that was still committing: PostgreSQL hands
    out ids before commit. Ids already dispatched, read or heard through the broker, are skipped.
    """

    def __init__(self, look_back: int, remember: int, page: int = 5000):
        self.look_back = look_back
        self.remember = remember
        self.page = page
        # Keyed by (channel, id): a stray or forged message on the wire ("user:9:56") must not
        # make the outbox row 56 of another channel count as dispatched.
        self._seen: OrderedDict[tuple[str, int], None] = OrderedDict()
        self._horizon: int | None = None
        self._previous_top = 0

    def first_time(self, channel: str, event_id: int) -> bool:
        """Remember an outbox row (channel and id) as dispatched; False when it already was."""
        key = (channel, event_id)
        if key in self._seen:
            return False
        self._seen[key] = None
        if len(self._seen) > self.remember:
            self._seen.popitem(last=False)
        return True

    def read_unseen(self) -> list[tuple[str, int]]:
        """(channel, id) of outbox rows not dispatched yet, oldest first; needs an app context."""
        if self._horizon is None:
            # A fresh listener looks back a little: a stream that subscribed just before the
            # listener started must still get what was committed in between.
            self._horizon = self._previous_top = max(0, latest_event_id_anywhere() - self.look_back)
        top = self._horizon
        fresh: list[tuple[str, int]] = []
        while True:
            rows = events_after(top, limit=self.page)
            fresh.extend(
                (channel, event_id) for channel, event_id in rows if self.first_time(channel, event_id)
            )
            if rows:
                top = rows[-1][1]
            if len(rows) < self.page:
                break
        self._horizon, self._previous_top = self._previous_top, max(top, self._previous_top)
        return fresh


def prune(older_than_days: int, now=None) -> int:
    """Delete outbox rows older than the retention period, keeping each channel's newest row."""
    cutoff = (now or utcnow()) - timedelta(days=older_than_days)
    newest = db.select(sa.func.max(OutboxEvent.id)).group_by(OutboxEvent.channel)
    # A DELETE's result is a CursorResult (it has rowcount); Session.execute is annotated for SELECTs.
    result = cast(
        sa.CursorResult,
        db.session.execute(
            sa.delete(OutboxEvent).where(OutboxEvent.created_at < cutoff, OutboxEvent.id.not_in(newest))
        ),
    )
    db.session.commit()
    return result.rowcount or 0


@sa.event.listens_for(Session, "before_commit")
def _write_announcements(session):
    """Insert the transaction's outbox rows last, under one lock held until the commit ends.

    PostgreSQL hands out sequence values at insert, not at commit, so two transactions could
    commit in the opposite order of their ids, and a stream or a reconnect that trusts "the
    newest id I sent" would keep a stale banner. Inserting under a transaction-level lock makes
    ids commit-ordered: the next transaction gets its id only once this one is visible. The rest
    of the transaction is flushed first, so the lock is held only for the inserts and the commit
    itself (never while waiting for a row lock, which could deadlock): on PostgreSQL the lock and
    the inserts are one statement (`_INSERT_UNDER_LOCK`). SQLite has one writer,
    whose write lock already lasts from the first insert to the commit.
    """
    if session.in_nested_transaction():
        return  # a SAVEPOINT is released; the outer transaction decides
    announced = session.info.pop(_ANNOUNCED, None)
    session.info.pop(_SAVEPOINT_MARKS, None)
    if not announced:
        return
    session.flush()
    if session.get_bind().dialect.name != "postgresql":
        session.add_all(
            OutboxEvent(channel=channel, kind=kind, created_at=created_at)
            for channel, kind, created_at in announced
        )
        session.flush()
        return
    raw = session.connection().connection.driver_connection
    created = [UTCDateTime().process_bind_param(when, None) for _, _, when in announced]
    params = {
        "key": COMMIT_ORDER_LOCK_KEY,
        "channels": [channel for channel, _, _ in announced],
        "kinds": [kind for _, kind, _ in announced],
        "created": created,
    }
    # Only a session that began its connection's transaction may end it (one bound to a
    # Connection with a transaction of its own, as a test's outer transaction, must not).
    commit_now = isinstance(session.get_bind(), sa.Engine)
    # The COMMIT goes out in the same Query message as the statement (client-side binding allows
    # several statements in one), and PostgreSQL runs it as soon as the statement ends: the lock
    # is held for the server's own work only, never across a round trip of the worker's nor its
    # wait for a CPU. (A pipeline would not do: psycopg sends each statement as it is queued.)
    # This is the last before_commit hook (the login hook puts itself first) after the final
    # flush, and SQLAlchemy's COMMIT that follows finds the transaction ended, which psycopg
    # answers without sending anything.
    statement = _INSERT_UNDER_LOCK + ("; COMMIT" if commit_now else "")
    try:
        with psycopg.ClientCursor(raw) as cursor:
            cursor.execute(statement, params)
            rows = cursor.fetchall()
    except psycopg.Error as error:
        raise sa.exc.DBAPIError.instance(statement, params, error, psycopg.Error) from error
    session.info.setdefault(_PENDING, []).extend((channel, event_id) for channel, event_id in rows)


# The lock and the outbox rows in one statement, the last of the transaction: the rows come from
# l's one row, so every id is drawn after the lock is granted, and the lock lasts to the end of the
# commit. Three arrays, whatever the number of rows (a scan's batch of 2,001 rows is one short
# statement). Sent on the driver's connection, beneath SQLAlchemy, so the COMMIT can go with it.
_INSERT_UNDER_LOCK = (
    "WITH l AS (SELECT pg_advisory_xact_lock(%(key)s)) "
    "INSERT INTO outbox (channel, kind, created_at) "
    "SELECT v.channel, v.kind, v.created_at FROM l, "
    "unnest(%(channels)s::varchar[], %(kinds)s::varchar[], %(created)s::timestamp[]) "
    "AS v(channel, kind, created_at) "
    "RETURNING channel, id"
)


@sa.event.listens_for(Session, "after_transaction_create")
def _mark_savepoint(session, transaction):
    if transaction.nested:
        marks = session.info.setdefault(_SAVEPOINT_MARKS, {})
        marks[id(transaction)] = len(session.info.get(_ANNOUNCED, ()))


@sa.event.listens_for(Session, "after_flush")
def _collect_new_events(session, flush_context):
    pending = session.info.setdefault(_PENDING, [])
    for obj in session.new:
        if isinstance(obj, OutboxEvent):
            pending.append((obj.channel, obj.id))


@sa.event.listens_for(Session, "after_commit")
def _publish_committed_events(session):
    if session.in_nested_transaction():
        # SQLAlchemy also fires after_commit when a SAVEPOINT is released (as open_reminder's
        # begin_nested does); the outer transaction is not committed yet, so nothing is visible
        # to other processes: keep the events for the real commit.
        return
    pending = session.info.pop(_PENDING, None)
    if not pending:
        return
    broker = current_broker()
    # One wake-up per channel per commit: a stream renders a full snapshot anyway, so a scan
    # that opens 500 reminders in one batch wakes the admins' streams once, not 500 times
    # (which would also overflow their bounded queues and drop them as "slow").
    newest: dict[str, int] = {}
    for channel, event_id in pending:
        newest[channel] = max(event_id, newest.get(channel, 0))
    try:
        broker.publish_many(list(newest.items()))
    except Exception:  # the outbox has them; a broker outage must not fail the request
        log.exception("publishing outbox events %s failed", newest)


@sa.event.listens_for(Session, "after_soft_rollback")
def _drop_rolled_back_events(session, previous_transaction):
    # A rolled-back savepoint or transaction never happened; its news must not be announced.
    if previous_transaction.nested:
        mark = session.info.get(_SAVEPOINT_MARKS, {}).pop(id(previous_transaction), None)
        if mark is not None and _ANNOUNCED in session.info:
            del session.info[_ANNOUNCED][mark:]
        return
    session.info.pop(_PENDING, None)
    session.info.pop(_ANNOUNCED, None)
    session.info.pop(_SAVEPOINT_MARKS, None)
