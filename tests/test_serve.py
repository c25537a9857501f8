"""What a server process does just before it serves (webapp/serve.py)."""

from __future__ import annotations

from .support import run_in_app_process

_FREEZE = """
import gc
import wsgi
from webapp.serve import freeze_startup_heap

walked_before = len(gc.get_objects())
freeze_startup_heap()
print(walked_before, gc.get_freeze_count(), len(gc.get_objects()))
print(*gc.get_threshold())
"""


def test_serving_takes_the_startup_heap_out_of_every_full_collection(tmp_path):
    # A full collection walks what gc.get_objects() lists: after the freeze, the loaded app's
    # modules and objects are no longer among them, so no collection pauses the process for them.
    counts, thresholds = run_in_app_process(_FREEZE, tmp_path).strip().splitlines()
    walked_before, frozen, walked_after = map(int, counts.split())
    assert walked_before > 50_000  # the app really was loaded
    assert frozen >= 0.9 * walked_before
    assert walked_after < 0.05 * walked_before
    # Full collections (of every open stream's objects) are considered ten times less often.
    assert tuple(map(int, thresholds.split())) == (700, 10, 100)
