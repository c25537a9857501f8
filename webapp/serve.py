"""Work that starts when the app starts serving (never at import, never in tests unless asked)."""

from __future__ import annotations

import gc

from flask import Flask


def freeze_startup_heap() -> None:
    """Take what the process's start made (the imported modules, the app, its extensions), about
    100,000 objects that live as long as the process, out of the garbage collector's sight.

    Python's full collection walks every tracked object: 62 ms for a started worker's heap here,
    a pause of every request and stream in the process, which put a full collection's length on
    the dashboard's p99 (docs/BENCHMARKS.md, "Pages"). Frozen objects are never collected or
    walked again; what requests make is collected as before. Call once, just before serving.
    """
    gc.collect()
    gc.freeze()


def start_background_work(app: Flask) -> None:
    """Start this process's reminder scanner and mail sender, unless their intervals are 0."""
    from .mail.sender import start_sender
    from .reminders.scanner import start_scanner

    start_scanner(app)
    start_sender(app)
