"""The embedded default's mail backend (Flask-Mailman finds it as MAIL_BACKEND=webapp.mail.eml): each message one .eml file under instance/mail/."""

from __future__ import annotations

import os
import re
from pathlib import Path

from flask_mailman.backends.base import BaseEmailBackend

_UNSAFE = re.compile(r"[^A-Za-z0-9.@_-]")


class EmailBackend(BaseEmailBackend):
    """Writes each message to MAIL_FILE_PATH/<Message-ID>.eml, which any mail program opens.

    Named by Message-ID, so a message sent again after a crash replaces its own file: the file
    backend delivers exactly once by construction.
    """

    def __init__(self, *args, file_path: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.folder = Path(file_path or self.mailman.file_path)

    def send_messages(self, email_messages) -> int:
        self.folder.mkdir(parents=True, exist_ok=True)
        for message in email_messages:
            mime = message.message()
            name = _UNSAFE.sub("_", str(mime["Message-ID"]).strip("<>")) or "message"
            path = self.folder / f"{name}.eml"
            partial = path.with_suffix(".eml.partial")
            partial.write_bytes(mime.as_bytes())
            os.replace(partial, path)  # a reader never sees half a message
        return len(email_messages)
