"""The broker: a wake-up call "channel X has news up to id N", never the truth (the outbox is).

One interface, two implementations: MemoryBroker for the embedded default (one process) and
RedisBroker (webapp.events.redis_broker) for several workers and hosts. Each process has one
broker; each open stream holds a Subscription with a bounded queue that the broker fills.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable

from gevent.queue import Full, Queue

log = logging.getLogger(__name__)


class Subscription:
    """One stream's view of the broker: the channels it follows and a bounded queue of news."""

    def __init__(self, channels: Iterable[str], maxsize: int):
        self.channels = frozenset(channels)
        self.queue: Queue = Queue(maxsize=maxsize)
        self.overflowed = False

    def deliver(self, channel: str, event_id: int) -> None:
        """Queue news without blocking; a full queue marks the subscriber too slow to keep."""
        if self.overflowed:
            return
        try:
            self.queue.put_nowait((channel, event_id))
        except Full:
            self.overflowed = True


class Broker:
    """Fan-out of outbox ids to the local subscriptions of this process."""

    def __init__(self) -> None:
        self._subscribers: dict[str, set[Subscription]] = defaultdict(set)
        self._count = 0

    # -- local fan-out, shared by every implementation --------------------------------------
    def subscribe(self, channels: Iterable[str], maxsize: int) -> Subscription:
        sub = Subscription(channels, maxsize)
        for channel in sub.channels:
            self._subscribers[channel].add(sub)
        self._count += 1
        self.start()
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
    """The embedded default: publishing is handing to this process's own subscribers."""

    def publish(self, channel: str, event_id: int) -> None:
        self.dispatch(channel, event_id)


def make_broker(url: str, app=None) -> Broker:
    """The broker implementation that a BROKER_URL names."""
    if url.startswith("memory:"):
        return MemoryBroker()
    from .redis_broker import RedisBroker

    return RedisBroker(url, app)
