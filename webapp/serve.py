"""Work that starts when the app starts serving (never at import, never in tests unless asked)."""

from __future__ import annotations

from flask import Flask


def start_background_work(app: Flask) -> None:
    """Start this process's reminder scanner and mail sender, unless their intervals are 0."""
    from .mail.sender import start_sender
    from .reminders.scanner import start_scanner

    start_scanner(app)
    start_sender(app)
