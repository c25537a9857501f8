"""The broker: a wake-up call "channel X has news up to id N", never the truth (the outbox is).

One interface, two implementations: MemoryBroker for the embedded default (one process) and
RedisBroker (webapp.events.redis_broker) for several workers and hosts. The app factory picks
one (`webapp.make_broker`) and installs it; everything else reaches it through
`webapp.extensions.current_broker()`. Each process has one
broker; each open stream holds a Subscription with a bounded queue that the broker fills.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence

import gevent
from gevent.event import Event

from .alarms import ALARM, Alarms
from .outbox import OutboxFollower

log = logging.getLogger(__name__)


# Why a subscription is asked to end (Subscription.close_reason), so its transport can tell
# the client when to come back.
SHUTDOWN = "shutdown"  # the worker is stopping: reconnect soon, to a worker that stays
REPLACED = "replaced"  # the account opened more than SSE_MAX_STREAMS_PER_USER: back off


class Subscription:
    """One stream's view of the broker: the channels it follows and a bounded queue of news.

    `user_id` is whose it is (the per-user cap counts them); `token` names it across processes.
    """

    def __init__(self, channels: Iterable[str], maxsize: int, user_id: int | None = None):
        self.channels = frozenset(channels)
        # The news not yet taken, at most maxsize, and an Event set while any waits. Not a gevent
        # Queue: its three deques cost ~3.5 KiB a stream, a list and an Event ~0.25 (issue 16).
        self.news: list[tuple[str, int]] = []
        self.maxsize = maxsize
        self._waiting = Event()
        self.overflowed = False
        self.close_reason: str | None = None
        self.user_id = user_id
        self.token = uuid.uuid4().hex
        # The process's alarm clock (set by Broker.subscribe) and when this one asked to be woken.
        self.alarms: Alarms | None = None
        self.alarm_at: float | None = None
        self.alarm_slot: int | None = None  # the clock's slot it was last put in, until rung

    @property
    def closing(self) -> bool:
        return self.close_reason is not None

    def deliver(self, channel: str, event_id: int) -> None:
        """Queue news without blocking; a full queue marks the subscriber too slow to keep."""
        if self.overflowed:
            return
        if len(self.news) >= self.maxsize:
            self.overflowed = True
            return
        self.news.append((channel, event_id))
        self._waiting.set()

    def ring(self) -> None:
        """The alarm (events/alarms.py): wake the waiting stream, unless news already has."""
        if not self.news:
            self.news.append((ALARM, 0))
            self._waiting.set()

    def _take(self) -> list[tuple[str, int]]:
        batch, self.news = self.news, []
        self._waiting.clear()
        return batch

    def next_batch_by(self, wake_at: float) -> list[tuple[str, int]]:
        """Wait for news until time.monotonic() reaches wake_at (or a little after), then take
        whatever else is queued with it ([] if none came).

        The process's alarms wake the stream, not a timer of its own: an idle stream's heartbeat
        costs no Timeout and no exception (events/alarms.py).
        """
        assert self.alarms is not None, "subscribe through a broker"
        if not self.news:
            self.alarms.set(self, wake_at)
            try:
                self._waiting.wait()
            finally:
                self.alarms.cancel(self)
        return [item for item in self._take() if item[0] != ALARM]

    def next_batch(self, timeout: float) -> list[tuple[str, int]]:
        """Wait up to timeout for news, then take whatever else is queued with it ([] if none came)."""
        if not self.news:
            self._waiting.wait(timeout)
        return [item for item in self._take() if item[0] != ALARM]

    def close(self, reason: str = SHUTDOWN) -> None:
        """Ask the stream to end now, for the reason given (the first one counts); wakes it."""
        if self.close_reason is None:
            self.close_reason = reason
        self.deliver("", 0)


class Broker:
    """Fan-out of outbox ids to the local subscriptions of this process."""

    def __init__(self) -> None:
        self._subscribers: dict[str, set[Subscription]] = defaultdict(set)
        self._count = 0
        self.closing = False
        # Each user's local subscriptions, oldest first, and every one by token.
        self._by_user: dict[int, dict[str, Subscription]] = defaultdict(dict)
        self._by_token: dict[str, Subscription] = {}
        self.alarms = Alarms()

    # -- local fan-out, shared by every implementation --------------------------------------
    def subscribe(
        self, channels: Iterable[str], maxsize: int, *, user_id: int | None = None, per_user: int = 0
    ) -> Subscription:
        """A new subscription; with per_user, the user's oldest beyond that many are asked to end."""
        sub = Subscription(channels, maxsize, user_id)
        sub.alarms = self.alarms
        for channel in sub.channels:
            self._subscribers[channel].add(sub)
        self._count += 1
        self._by_token[sub.token] = sub
        if user_id is not None:
            self._by_user[user_id][sub.token] = sub
        self.start()
        if self.closing:
            sub.close()
        elif user_id is not None and per_user > 0:
            self.admit(sub, per_user)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        if self._by_token.pop(sub.token, None) is None:
            return
        Alarms.cancel(sub)
        for channel in sub.channels:
            subs = self._subscribers.get(channel)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._subscribers[channel]
        self._count -= 1
        if sub.user_id is not None:
            mine = self._by_user.get(sub.user_id)
            if mine is not None:
                mine.pop(sub.token, None)
                if not mine:
                    del self._by_user[sub.user_id]
            self.forget(sub)

    def admit(self, sub: Subscription, per_user: int) -> None:
        """Keep the user at per_user subscriptions: this process's oldest are asked to end.

        The Redis broker counts across every process instead.
        """
        if sub.user_id is None:
            return
        live = [other for other in self._by_user.get(sub.user_id, {}).values() if not other.closing]
        for victim in live[: max(0, len(live) - per_user)]:
            victim.close(REPLACED)

    def forget(self, sub: Subscription) -> None:
        """The subscription ended: drop it from any shared count (nothing to do in one process)."""

    def close_token(self, token: str, reason: str) -> bool:
        """Ask the local subscription with this token to end; False if it is not here."""
        sub = self._by_token.get(token)
        if sub is None:
            return False
        sub.close(reason)
        return True

    def dispatch(self, channel: str, event_id: int) -> None:
        """Hand news to every local subscription of the channel."""
        for sub in tuple(self._subscribers.get(channel, ())):
            sub.deliver(channel, event_id)

    def close_streams(self) -> None:
        """End every local stream promptly: the worker is shutting down (gunicorn.conf.py)."""
        self.closing = True
        for subs in tuple(self._subscribers.values()):
            for sub in tuple(subs):
                sub.close()

    def local_stream_count(self) -> int:
        return self._count

    # -- what each implementation decides -------------------------------------------------
    def start(self) -> None:
        """Start the process's listener, if the implementation has one (idempotent)."""

    def stop(self) -> None:
        """Stop the listener and release connections."""

    def publish(self, channel: str, event_id: int) -> None:
        """Tell every process that the channel has news up to event_id. Never raises."""
        raise NotImplementedError

    def publish_many(self, events: Sequence[tuple[str, int]]) -> None:
        """publish() for each (channel, event id), in one message where the broker can. Never raises."""
        for channel, event_id in events:
            self.publish(channel, event_id)

    def stream_count(self) -> int:
        """Open streams across every process that shares this broker."""
        return self.local_stream_count()


class MemoryBroker(Broker):
    """The embedded default: publishing is handing to this process's own subscribers.

    Other processes on the same database (`flask reminders scan` from cron or a test, `flask
    demo`) cannot reach this process's memory, so while any stream is open one listener
    greenlet also reads the outbox every OUTBOX_POLL_INTERVAL seconds (default 1) and
    dispatches the ids nobody published here. One cheap indexed query per process, never one
    per stream; it stops when the last stream closes.
    """

    POLL_INTERVAL = 1.0
    SEEN_IDS = 10000
    FIRST_LOOK_BACK = 100

    def __init__(self, app=None) -> None:
        super().__init__()
        self.app = app
        self._poller: gevent.Greenlet | None = None
        self._follower = OutboxFollower(look_back=self.FIRST_LOOK_BACK, remember=self.SEEN_IDS)

    def publish(self, channel: str, event_id: int) -> None:
        self._follower.first_time(channel, event_id)
        self.dispatch(channel, event_id)

    def start(self) -> None:
        if self.app is None or (self._poller is not None and not self._poller.dead):
            return
        self._poller = gevent.spawn(self._poll_outbox)

    def stop(self) -> None:
        poller, self._poller = self._poller, None
        if poller is not None:
            poller.kill(block=False)

    def _poll_outbox(self) -> None:
        from ..extensions import db

        interval = float(self.app.config.get("OUTBOX_POLL_INTERVAL", self.POLL_INTERVAL))
        while self.local_stream_count() > 0:
            try:
                with self.app.app_context():
                    try:
                        rows = self._follower.read_unseen()
                    finally:
                        db.session.remove()
                # One wake-up per channel per pass keeps a burst from overflowing stream queues.
                news: dict[str, int] = {}
                for channel, event_id in rows:
                    news[channel] = max(event_id, news.get(channel, 0))
                for channel, event_id in news.items():
                    self.dispatch(channel, event_id)
            except Exception:
                log.exception("reading the outbox for news failed; trying again")
            gevent.sleep(interval)
        self._poller = None
