"""CSV cells that a spreadsheet shows as text (CSV injection), for every export and the import."""

from __future__ import annotations

# A cell starting with one of these would be run as a formula by Excel, LibreOffice or Sheets.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value) -> str:
    """A CSV cell that a spreadsheet shows as text: a leading = + - @ tab or CR gets a quote."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text
