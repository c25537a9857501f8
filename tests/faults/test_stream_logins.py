"""A login change ends streams on every worker and host (issue 10, item 5): the change commits an
outbox row on the user's channel, which Redis (or the outbox catch-up) carries to each process,
where the user's streams check their login again."""

from __future__ import annotations

import pytest

from ..support import RawStream, Seeder
from ..test_stream_logins import remove_admin

pytestmark = pytest.mark.services


def test_removing_admin_rights_on_one_host_ends_the_admins_stream_on_another(gunicorn):
    host_a = gunicorn("host-a", workers=1, SSE_HEARTBEAT=60)
    host_b = gunicorn("host-b", workers=1, SSE_HEARTBEAT=60)
    seeder, other = Seeder(host_a), Seeder(host_b)
    streams: list[RawStream] = []
    try:
        boss = seeder.user("boss@example.com", admin=True)
        ada = seeder.user("ada@example.com", admin=True)
        cookie = seeder.cookie(ada)
        streams = [RawStream(host.port, cookie).connected() for host in (host_a, host_b)]
        for stream in streams:
            stream.wait_for(lambda s: "event: weighin:admins" in s.text, "the admins' event")
        remove_admin(other, boss, ada)
        for stream in streams:
            stream.ended()
            assert "weighin:signed-out" not in stream.text
    finally:
        for stream in streams:
            stream.close()
        seeder.close()
        other.close()
