"""A real SMTP server for the tests (aiosmtpd), run as a subprocess: each message it accepts
becomes one file in a folder, written before the server answers 250.

    python webapp/testing/smtp_sink.py --port 2525 --folder /tmp/mail [--auth user:password] [--die-after N]

--die-after N makes it crash (exit at once, nothing saved, no reply) while receiving the message
after the N-th: a mail server that dies in the middle of a queue.
"""

from __future__ import annotations

import argparse
import itertools
import os
import signal
import threading
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult


class SaveToFolder:
    def __init__(self, folder: Path, die_after: int = 0):
        self.folder = folder
        self.die_after = die_after
        self.counter = itertools.count(len(list(folder.glob("*.eml"))) + 1)

    async def handle_DATA(self, server, session, envelope):
        number = next(self.counter)
        if self.die_after and number > self.die_after:
            os._exit(3)
        body = envelope.original_content or envelope.content
        header = f"X-Envelope-To: {', '.join(envelope.rcpt_tos)}\r\nX-Envelope-From: {envelope.mail_from}\r\n"
        partial = self.folder / f"{number:06d}-{os.getpid()}.partial"
        partial.write_bytes(header.encode() + body)
        os.replace(partial, partial.with_suffix(".eml"))
        return "250 Message accepted for delivery"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--folder", type=Path, required=True)
    parser.add_argument("--auth", default="")
    parser.add_argument("--die-after", type=int, default=0)
    args = parser.parse_args()
    args.folder.mkdir(parents=True, exist_ok=True)
    options: dict = {}
    if args.auth:
        user, password = args.auth.split(":", 1)

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = auth_data.login.decode() == user and auth_data.password.decode() == password
            # handled=False: aiosmtpd answers 535 itself (True would leave the client waiting).
            return AuthResult(success=ok, handled=False)

        options = {"authenticator": authenticator, "auth_required": True, "auth_require_tls": False}
    controller = Controller(
        SaveToFolder(args.folder, args.die_after), hostname="127.0.0.1", port=args.port, **options
    )
    controller.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    controller.stop()


if __name__ == "__main__":
    main()
