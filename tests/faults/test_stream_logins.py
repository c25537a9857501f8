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


def test_a_new_session_version_ends_every_stream_of_the_user_on_every_host(gunicorn):
    from webapp.accounts.sessions import revoke_all
    from webapp.extensions import db
    from webapp.models import User

    host_a = gunicorn("host-a", workers=2, SSE_HEARTBEAT=60)
    host_b = gunicorn("host-b", workers=1, SSE_HEARTBEAT=60)
    seeder = Seeder(host_a)
    streams: list[RawStream] = []
    try:
        ada = seeder.user("ada@example.com")
        bob = seeder.user("bob@example.com", days_ago=8)
        # Three logins of Ada's (three browsers) on both hosts and both of host A's workers.
        streams = [RawStream(host.port, seeder.cookie(ada)).connected() for host in (host_a, host_a, host_b)]
        streams += [RawStream(host_a.port, seeder.cookie(ada)).connected() for _ in range(3)]
        bystander = RawStream(host_b.port, seeder.cookie(bob)).connected()

        # What log out everywhere, a password change or reset and account deletion do, from
        # another process (whose memory broker nobody hears: the outbox catch-up carries it).
        with seeder.app.app_context():
            revoke_all(db.session.get(User, ada))
            db.session.commit()
        for stream in streams:
            stream.ended()
            assert "event: weighin:signed-out" in stream.text
        assert not bystander.closed
        streams.append(bystander)
    finally:
        for stream in streams:
            stream.close()
        seeder.close()
