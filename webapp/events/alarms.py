"""The process's alarm clock for waiting streams: their heartbeats and their ends (issue 16).

An idle stream used to wait on its queue with a timeout: a gevent Timeout (a libev timer) made
and thrown away per heartbeat, its expiry thrown into the stream's greenlet as an exception, and
the queue's Empty raised on top. With 10,000 idle streams that was most of a worker's idle CPU.
Here one greenlet per process keeps every waiting stream in a slot of RESOLUTION seconds and,
when a slot comes due, wakes its streams by putting an alarm in their queues, the same way news
comes: one timer for the process, no exception, and streams woken by news never see theirs.

An alarm rings at most RESOLUTION seconds late and never early.
"""

from __future__ import annotations

import heapq
import math
import time
from typing import TYPE_CHECKING

import gevent
from gevent.event import Event

if TYPE_CHECKING:
    from .broker import Subscription

# The channel name of an alarm in a subscription's queue; no real channel is empty-prefixed "!".
ALARM = "!alarm"
RESOLUTION = 0.25


class Alarms:
    """Wake each subscription that asked, at (or up to RESOLUTION after) the time it asked for."""

    def __init__(self) -> None:
        # slot number (time.monotonic() / RESOLUTION, rounded up) -> the subscriptions due then.
        # A subscription that re-set or cancelled its alarm may still sit in an older slot: its
        # own alarm_at says whether it is due, so nothing is ever removed from a slot but by ringing.
        self._slots: dict[int, list[Subscription]] = {}
        self._order: list[int] = []  # the slots' numbers, a heap: the earliest first
        self._runner: gevent.Greenlet | None = None
        self._changed = Event()
        self._waiting_for: int | None = None

    def set(self, sub: Subscription, at: float) -> None:
        """Wake sub at time.monotonic() == at (replacing any alarm it had)."""
        sub.alarm_at = at
        slot = math.ceil(at / RESOLUTION)
        if sub.alarm_slot == slot:
            return  # already waits in that slot: a busy stream re-setting its alarm adds nothing
        sub.alarm_slot = slot
        due = self._slots.get(slot)
        if due is None:
            due = self._slots[slot] = []
            heapq.heappush(self._order, slot)
        due.append(sub)
        if self._runner is None:
            self._runner = gevent.spawn(self._run)
        elif self._waiting_for is not None and slot < self._waiting_for:
            self._changed.set()  # sooner than the runner means to wake

    @staticmethod
    def cancel(sub: Subscription) -> None:
        sub.alarm_at = None

    def _run(self) -> None:
        try:
            while self._order:
                first = self._order[0]
                delay = first * RESOLUTION - time.monotonic()
                if delay > 0:
                    self._waiting_for = first
                    self._changed.clear()
                    self._changed.wait(delay)
                    self._waiting_for = None
                    continue  # look again: the earliest slot may have changed meanwhile
                heapq.heappop(self._order)
                now = time.monotonic()
                for sub in self._slots.pop(first):
                    if sub.alarm_slot == first:
                        sub.alarm_slot = None
                    if sub.alarm_at is not None and sub.alarm_at <= now:
                        sub.alarm_at = None
                        sub.ring()
        finally:
            self._runner = None
            self._waiting_for = None
