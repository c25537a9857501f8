"""The broker: a wake-up call "channel X has news up to id N", never the truth (the outbox is).

One interface, two implementations: MemoryBroker for the embedded default (one process) and
RedisBroker (webapp.events.redis_broker) for several workers and hosts. The app factory picks
one (`webapp.make_broker`) and installs it; everything else reaches it through
`webapp.extensions.current_broker()`. Each process has one
broker; each open stream holds a Subscription with a bounded queue that the broker fills.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable

import gevent
from gevent.queue import Empty, Full, Queue

from .outbox import OutboxFollower

log = logging.getLogger(__name__)


class Subscription:
    """One stream's view of the broker: the channels it follows and a bounded queue of news."""

    def __init__(self, channels: Iterable[str], maxsize: int):
        self.channels = frozenset(channels)
        self.queue: Queue = Queue(maxsize=maxsize)
        self.overflowed = False
        self.closing = False

    def deliver(self, channel: str, event_id: int) -> None:
        """Queue news without blocking; a full queue marks the subscriber too slow to keep."""
        if self.overflowed:
            return
        try:
            self.queue.put_nowait((channel, event_id))
        except Full:
            self.overflowed = True

    def next_batch(self, timeout: float) -> list[tuple[str, int]]:
        """Wait up to timeout for news, then take whatever else is queued with it ([] if none came)."""
        try:
            batch = [self.queue.get(timeout=timeout)]
        except Empty:
            return []
        while not self.queue.empty():
            batch.append(self.queue.get_nowait())
        return batch

    def close(self) -> None:
        """Ask the stream to end now (the process is shutting down); wakes a waiting stream."""
        self.closing = True
        self.deliver("", 0)


class Broker:
    """Fan-out of outbox ids to the local subscriptions of this process."""

    def __init__(self) -> None:
        self._subscribers: dict[str, set[Subscription]] = defaultdict(set)
        self._count = 0
        self.closing = False

    # -- local fan-out, shared by every implementation --------------------------------------
    def subscribe(self, channels: Iterable[str], maxsize: int) -> Subscription:
        sub = Subscription(channels, maxsize)
        for channel in sub.channels:
            self._subscribers[channel].add(sub)
        self._count += 1
        self.start()
        if self.closing:
            sub.close()
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        removed = False
        for channel in sub.channels:
            subs = self._subscribers.get(channel)
            if subs is not None and sub in subs:
                removed = True
                subs.discard(sub)
                if not subs:
                    del self._subscribers[channel]
        if removed:
            self._count -= 1

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
