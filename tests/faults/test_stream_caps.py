"""SSE_MAX_STREAMS_PER_USER across hosts: on Redis the cap counts an account's streams in every
worker and host, so one more anywhere ends the oldest wherever it is (issue 10, item 6)."""

from __future__ import annotations

import re

import pytest

from ..support import RawStream, Seeder

pytestmark = pytest.mark.services


def test_the_eleventh_stream_on_another_host_ends_the_first(gunicorn):
    host_a = gunicorn("host-a", workers=1)
    host_b = gunicorn("host-b", workers=1)
    seeder = Seeder(host_a)
    streams: list[RawStream] = []
    try:
        user_id = seeder.user("ada@example.com", days_ago=8)
        other_id = seeder.user("bob@example.com", days_ago=8)
        cookie = seeder.cookie(user_id)
        streams.append(RawStream(host_a.port, cookie).connected())
        # Another account's streams do not count against this one.
        bystander = RawStream(host_a.port, seeder.cookie(other_id)).connected()
        streams.append(bystander)
        for _ in range(9):
            streams.append(RawStream(host_b.port, cookie).connected())
        assert not streams[0].closed
        # The tenth on host B is the account's eleventh: the first, on host A, ends.
        streams.append(RawStream(host_b.port, cookie).connected())
        first = streams[0].ended()
        assert re.search(r"event: weighin:replaced\nretry: \d+\n", first.text), first.text
        # The others, and the other account's stream, still get news.
        seeder.scan()
        for stream in streams[1:]:
            stream.wait_for(lambda s: 'data-reminder-state="open"' in s.text, "banner")
        assert not any(stream.closed for stream in streams[1:])
    finally:
        for stream in streams:
            stream.close()
        seeder.close()
