"""GroupCall (webapp/batches.py): what the area reader and the shown recorder share. Callers who
ask together are served by one batch, in order and each with its own result; a batch never takes
more than its limit; a worker stopping mid-batch leaves nobody waiting."""

from __future__ import annotations

from collections.abc import Sequence

import gevent
import pytest
from flask import Flask
from gevent.event import Event

from webapp.batches import GroupCall


class Doubler(GroupCall[int, int]):
    name = "doubler"

    def __init__(self, app: Flask) -> None:
        super().__init__(app)
        self.batches: list[list[int]] = []
        self.hold: Event | None = None

    def run_batch(self, items: Sequence[int]) -> list[int]:
        self.batches.append(list(items))
        if self.hold is not None:
            self.hold.wait()
        return [item * 2 for item in items]


def _ask(caller: Doubler, items) -> list[gevent.Greenlet]:
    return [gevent.spawn(caller.call, item) for item in items]


def test_callers_who_ask_together_share_one_batch_and_each_gets_its_own_result():
    caller = Doubler(Flask(__name__))
    calls = _ask(caller, range(7))
    gevent.joinall(calls, raise_error=True)
    assert caller.batches == [list(range(7))]
    assert [call.value for call in calls] == [0, 2, 4, 6, 8, 10, 12]
    # Alone, a call runs at once, in a batch of its own.
    assert caller.call(21) == 42
    assert caller.batches[-1] == [21]


def test_a_batch_takes_no_more_than_its_limit_and_later_callers_go_in_the_next():
    caller = Doubler(Flask(__name__))
    caller.limit = 3
    calls = _ask(caller, range(8))
    gevent.joinall(calls, raise_error=True)
    assert caller.batches == [[0, 1, 2], [3, 4, 5], [6, 7]]
    assert [call.value for call in calls] == [item * 2 for item in range(8)]


def test_a_runner_killed_mid_batch_fails_every_waiter_and_the_next_call_still_runs():
    caller = Doubler(Flask(__name__))
    caller.hold = Event()
    first = _ask(caller, range(3))
    gevent.sleep(0)  # the runner starts its batch and waits there
    later = _ask(caller, [10, 11])  # queued behind the batch in progress
    gevent.sleep(0)
    assert caller.batches == [[0, 1, 2]]
    runner = caller._runner
    assert runner is not None
    runner.kill()  # as when the worker stops
    gevent.joinall(first + later)
    for call in first + later:
        assert isinstance(call.exception, RuntimeError)
        assert "the doubler stopped" in str(call.exception)
    caller.hold = None
    assert caller.call(5) == 10


def test_of_current_app_gives_each_app_its_own_one_instance():
    first, second = Flask("first"), Flask("second")
    with first.app_context():
        mine = Doubler.of_current_app()
        assert Doubler.of_current_app() is mine
    with second.app_context():
        assert Doubler.of_current_app() is not mine


def test_run_batch_must_be_given():
    with pytest.raises(NotImplementedError):
        GroupCall(Flask(__name__)).call(1)
