"""Work that starts when the app starts serving (never at import, never in tests unless asked)."""

from __future__ import annotations

from flask import Flask


def start_background_work(app: Flask) -> None:
    """Start this process's reminder scanner, if REMINDER_SCAN_INTERVAL asks for one."""
    from .reminders.scanner import start_scanner

    start_scanner(app)
