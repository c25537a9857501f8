"""The login and sign-up limits under real concurrency (issue 11).

Parallel requests go to a real server process (the embedded one on the memory storage, and one
counting in Redis), each on its own connection, released together by a barrier.
"""

from __future__ import annotations

import re
import secrets
import shutil
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import redis

from webapp.extensions import db
from webapp.models import User

from .support import ROOT, RedisServer, unavailable

PASSWORD = "correct horse"
WRONG = "wrong horse!"


def _token(page: str) -> str:
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page)
    assert match, "no CSRF token on the page"
    return match.group(1)


def _sign_up(url: str, email: str) -> None:
    with httpx.Client(base_url=url, timeout=60) as client:
        token = _token(client.get("/account/signup").text)
        response = client.post(
            "/account/signup", data={"csrf_token": token, "email": email, "password": PASSWORD}
        )
        assert response.status_code == 302, response.text


def _login_client(url: str) -> tuple[httpx.Client, str]:
    """A browser of its own: its cookie jar, its connection and the login form's token."""
    client = httpx.Client(base_url=url, timeout=120)
    return client, _token(client.get("/account/login").text)


def _post_login(client: httpx.Client, token: str, email: str, password: str) -> int:
    response = client.post("/account/login", data={"csrf_token": token, "email": email, "password": password})
    return response.status_code


def fourteen_wrong_then_the_right_one(url: str, email: str) -> tuple[list[int], int]:
    """14 wrong passwords in parallel; the right one as soon as any of them was refused (429),
    while the others may still be hashing, or after all of them when none was."""
    clients = [_login_client(url) for _ in range(15)]
    barrier = threading.Barrier(14)
    refused = threading.Event()

    def wrong(index: int) -> int:
        client, token = clients[index]
        barrier.wait()
        status = _post_login(client, token, email, WRONG)
        if status == 429:
            refused.set()
        return status

    try:
        with ThreadPoolExecutor(max_workers=15) as pool:
            futures = [pool.submit(wrong, i) for i in range(14)]
            while not refused.wait(0.05) and not all(f.done() for f in futures):
                pass
            client, token = clients[14]
            right = _post_login(client, token, email, PASSWORD)
            wrong_statuses = sorted(f.result() for f in futures)
    finally:
        for client, _ in clients:
            client.close()
    return wrong_statuses, right


def assert_the_limit_held(wrong: list[int], right: int) -> None:
    checked = [status for status in wrong if status == 422]
    # Five wrong passwords per account per 15 minutes are checked, however many arrive at once.
    assert len(checked) <= 5, f"{len(checked)} passwords were checked: {wrong}"
    assert set(wrong) <= {422, 429}, wrong
    assert right == 429, "the right password got in after 14 wrong ones"


def test_parallel_guesses_on_the_embedded_server_are_counted_before_the_password(make_server):
    server = make_server("limit-memory")
    _sign_up(server.url, "ada@example.com")
    wrong, right = fourteen_wrong_then_the_right_one(server.url, "ada@example.com")
    assert_the_limit_held(wrong, right)


@pytest.fixture
def private_redis(tmp_path):
    if shutil.which("redis-server") is None:
        unavailable("redis-server is not installed (apt-get install redis-server)")
    (tmp_path / "redis").mkdir()
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


def test_parallel_guesses_counted_in_redis_hold_too_and_keys_hide_the_address(make_server, private_redis):
    prefix = f"weighin:limit-{secrets.token_hex(4)}:"
    server = make_server("limit-redis", BROKER_URL=private_redis.url, REDIS_PREFIX=prefix)
    email = f"grace-{secrets.token_hex(3)}@example.com"
    _sign_up(server.url, email)
    wrong, right = fourteen_wrong_then_the_right_one(server.url, email)
    assert_the_limit_held(wrong, right)

    keys = [key.decode() for key in redis.Redis.from_url(private_redis.url).keys("*")]
    limit_keys = [key for key in keys if "failed-login" in key]
    assert limit_keys, f"no failed-login counters in Redis: {keys}"
    assert all(key.startswith(prefix) for key in limit_keys), limit_keys
    local_part = email.split("@")[0]
    assert not [key for key in keys if local_part in key or "example.com" in key], keys


def test_a_blocked_login_does_not_check_the_password(client, app):
    client.post("/account/signup", data={"email": "ada@example.com", "password": PASSWORD})
    client.post("/account/logout")
    for _ in range(5):
        client.post("/account/login", data={"email": "ada@example.com", "password": WRONG})
    response = client.post("/account/login", data={"email": "ada@example.com", "password": PASSWORD})
    assert response.status_code == 429
    assert "Too many failed attempts. Try again in 15 minutes." in response.text
    assert client.get("/dashboard").status_code == 302


def test_sign_ups_from_one_address_are_limited_and_the_refused_one_stores_nothing(app):
    client = app.test_client()
    for number in range(10):
        response = client.post(
            "/account/signup", data={"email": f"u{number}@example.com", "password": PASSWORD}
        )
        assert response.status_code == 302
        client.post("/account/logout")
    response = client.post("/account/signup", data={"email": "u10@example.com", "password": PASSWORD})
    assert response.status_code == 429
    assert "Too many sign-ups from your network. Try again in 60 minutes." in response.text
    # The "already exists" answer is slowed by the same limit.
    response = client.post("/account/signup", data={"email": "u1@example.com", "password": PASSWORD})
    assert response.status_code == 429 and "already exists" not in response.text
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count(User.id))) == 10
    # Another address may still sign up.
    response = client.post(
        "/account/signup",
        data={"email": "u11@example.com", "password": PASSWORD},
        environ_base={"REMOTE_ADDR": "192.0.2.7"},
    )
    assert response.status_code == 302


HASH_WHILE_TICKING = """
from gevent import monkey
monkey.patch_all()
import gevent
from webapp.passwords import hash_password

ticks = 0

def tick():
    global ticks
    while True:
        ticks += 1
        gevent.sleep(0.001)

gevent.spawn(tick)
gevent.sleep(0.01)
before = ticks
hash_password("correct horse battery staple")
print(ticks - before)
"""


def test_hashing_a_password_lets_other_greenlets_run():
    """Under gevent, the scrypt hash of a sign-up or login runs off the event loop: a greenlet
    that counts while the hash is computed gets to count."""
    result = subprocess.run(
        [sys.executable, "-c", HASH_WHILE_TICKING], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.strip()) > 0
