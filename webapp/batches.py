"""Group calls: many greenlets' requests served by one greenlet's batches (issue 16).

A scan's burst wakes thousands of streams at once. Where each would run its own statement, a
`GroupCall` queues the request and waits; one greenlet serves every request queued so far in one
batch and hands each caller its own result. Requests that arrive while a batch runs go in the next
one, so every batch starts after the requests in it were made. Nothing waits for a timer: alone, a
request is served at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Generic, TypeVar

import gevent
from flask import Flask, current_app
from gevent.event import AsyncResult

Item = TypeVar("Item")
Result = TypeVar("Result")
G = TypeVar("G", bound="GroupCall")


class GroupCall(Generic[Item, Result]):
    """Serve `call(item)` from batches of at most `limit` items (None: every item queued).

    A subclass gives `run_batch`, which returns one result per item, in order; what it raises
    reaches every caller of that batch, and the next batch runs as usual.
    """

    limit: int | None = None
    name = "group call"

    def __init__(self, app: Flask) -> None:
        self._app = app
        self._queue: list[tuple[Item, AsyncResult]] = []
        self._runner: gevent.Greenlet | None = None

    @classmethod
    def of_current_app(cls: type[G]) -> G:
        """The current app's one instance of this class (needs an app context)."""
        # The proxy is typed as the Flask app it stands for, which hides its own accessor.
        return cls.of_app(current_app._get_current_object())  # type: ignore[attr-defined]

    @classmethod
    def of_app(cls: type[G], app: Flask) -> G:
        """The app's one instance of this class (no app context needed: a batch pushes its own)."""
        key = f"weighin_{cls.__name__}"
        found = app.extensions.get(key)
        if found is None:
            found = app.extensions[key] = cls(app)
        return found

    def run_batch(self, items: Sequence[Item]) -> Sequence[Result]:
        raise NotImplementedError

    def call(self, item: Item) -> Result:
        """The item's result, once its batch has run; raises what that batch raised."""
        done: AsyncResult = AsyncResult()
        self._queue.append((item, done))
        if self._runner is None:
            self._runner = gevent.spawn(self._run_all)
        return done.get()

    def _run_all(self) -> None:
        batch: list[tuple[Item, AsyncResult]] = []
        try:
            while self._queue:
                cut = len(self._queue) if self.limit is None else self.limit
                batch, self._queue = self._queue[:cut], self._queue[cut:]
                try:
                    results = self.run_batch([item for item, _ in batch])
                except Exception as error:
                    for _, done in batch:
                        done.set_exception(error)
                else:
                    for (_, done), result in zip(batch, results, strict=True):
                        done.set(result)
                batch = []
        finally:
            self._runner = None
            # Killed mid-batch (the worker is stopping): nobody may wait for a result not coming.
            for _, done in batch + self._queue:
                if not done.ready():
                    done.set_exception(RuntimeError(f"the {self.name} stopped"))
            self._queue = []
