"""The Server-Sent Events wire format (text/event-stream), nothing else."""

from __future__ import annotations


def comment(text: str = "") -> str:
    """A comment line: ignored by clients, keeps proxies and idle connections alive."""
    return f": {text}\n\n" if text else ":\n\n"


def retry(milliseconds: int) -> str:
    return f"retry: {int(milliseconds)}\n\n"


def event(
    data: str, *, event_id: int | None = None, name: str | None = None, retry_ms: int | None = None
) -> str:
    """One event; multi-line data becomes several data: lines, as the format requires."""
    lines = []
    if name:
        lines.append(f"event: {name}")
    if event_id is not None:
        lines.append(f"id: {int(event_id)}")
    if retry_ms is not None:
        lines.append(f"retry: {int(retry_ms)}")
    for line in data.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        lines.append(f"data: {line}")
    return "\n".join(lines) + "\n\n"


def parse_last_event_id(raw: str | None) -> int | None:
    """The Last-Event-ID header as a non-negative outbox id, or None for anything else."""
    if raw is None:
        return None
    raw = raw.strip()
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        return None
    return int(raw)
