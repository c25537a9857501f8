"""Text as it may reach the database: no control characters.

PostgreSQL refuses NUL in text (a 500 if it got that far), and no one types the other C0 or DEL
characters on purpose; a one-line field refuses tab and line breaks too. Forms use the WTForms
validator; views that read a parameter themselves use has_control_characters.
"""

from __future__ import annotations

import re

from wtforms.validators import ValidationError

# C0 controls and DEL; a multi-line field (a note) keeps tab, line feed and carriage return.
_ONE_LINE = re.compile(r"[\x00-\x1f\x7f]")
_MULTI_LINE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def has_control_characters(text: str | None, *, multi_line: bool = False) -> bool:
    """Whether the text holds a character no field of this app stores."""
    return bool(text) and bool((_MULTI_LINE if multi_line else _ONE_LINE).search(text or ""))


class NoControlCharacters:
    """A WTForms validator: refuse control characters with the given message."""

    def __init__(self, message: str, *, multi_line: bool = False):
        self.message = message
        self.multi_line = multi_line

    def __call__(self, form, field) -> None:
        if isinstance(field.data, str) and has_control_characters(field.data, multi_line=self.multi_line):
            raise ValidationError(self.message)
