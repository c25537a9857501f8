"""Work that starts when the app starts serving (never at import, never in tests unless asked)."""

from __future__ import annotations

import gc

from flask import Flask

# Collections of the middle generation before a full collection is considered (Python's is 10).
FULL_COLLECTION_AFTER = 100


def freeze_startup_heap() -> None:
    """Take what the process's start made (the imported modules, the app, its extensions), about
    100,000 objects that live as long as the process, out of the garbage collector's sight.

    Python's full collection walks every tracked object: 62 ms for a started worker's heap here,
    a pause of every request and stream in the process, which put a full collection's length on
    the dashboard's p99 (docs/BENCHMARKS.md, "Pages"). Frozen objects are never collected or
    walked again; what requests make is collected as before. Call once, just before serving.

    Full collections are also considered ten times less often (after FULL_COLLECTION_AFTER
    middle-generation collections, not Python's 10): what they walk then is every open stream's objects, 0.3-0.9 s a
    worker with 10,000 streams, nine times while they connected and twice in one burst of
    banners (issue 16). Cyclic garbage mostly dies young and is still collected by the young
    generations as before; what reaches the old one waits longer for its collection.
    """
    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_COLLECTION_AFTER)


def start_background_work(app: Flask) -> None:
    """Start this process's reminder scanner and mail sender, unless their intervals are 0."""
    from .mail.sender import start_sender
    from .reminders.scanner import start_scanner

    start_scanner(app)
    start_sender(app)
