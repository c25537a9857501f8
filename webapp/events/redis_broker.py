"""The Redis broker: fan-out of outbox ids between the workers and hosts of a scale-out deployment.

Publishing sends "channel:id" on one Redis pub/sub channel. Each process runs ONE listener
greenlet (started on its first stream, after gunicorn has forked) that hands what it hears to
this process's subscriptions; streams never hold a Redis connection of their own.

Redis is only the wake-up call. Whenever the listener (re)connects, every CATCH_UP_SECONDS while
it listens, and at every reconnect attempt (at most a second apart) while Redis is away, it reads
the outbox for ids it has not heard of and dispatches them, so an event whose publish was lost
(Redis down, a connection reset) still arrives.

Each process also keeps a short-lived key with its number of open streams, so the admin
overview can add up the streams of every live process.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Sequence
from typing import Any

import gevent
import redis
from redis.backoff import NoBackoff
from redis.exceptions import MaxConnectionsError
from redis.retry import Retry

from ..config import SSE_MAX_LIFETIME_DEFAULT
from .broker import REPLACED, Broker, Subscription
from .outbox import OutboxFollower

log = logging.getLogger(__name__)

# Every name starts with the deployment's REDIS_PREFIX (webapp/config.py), e.g. "weighin:prod:":
# pub/sub ignores Redis database numbers, so two deployments on one server must not share names.
DEFAULT_PREFIX = "weighin:"
EVENTS_CHANNEL = "events"
STREAMS_KEY = "streams:"
# A sorted set per user of their open subscriptions in every process ("<instance>/<token>",
# scored by Redis's clock when opened), for SSE_MAX_STREAMS_PER_USER.
USER_STREAMS_KEY = "user-streams:"
# Control messages share the events channel; "!" never starts a channel name, so older
# listeners (mid-deploy) read them as an event for a channel nobody follows.
CONTROL_PREFIX = "!"

# How long the listener waits on Redis before doing its periodic chores.
TICK_SECONDS = 1.0
# Every so often the listener reads the outbox for events whose publish went missing.
CATCH_UP_SECONDS = 5.0
# A process's stream count expires unless refreshed, so a killed process stops counting.
COUNT_REFRESH_SECONDS = 5.0
COUNT_TTL_SECONDS = 20
# This process's Redis connections: its listener holds one, and requests (a stream's per-user
# cap, a commit's publish) borrow one for a round trip. Past POOL_CONNECTIONS in use at once,
# redis-py refuses the next at once (MaxConnectionsError). That is a busy process, not a Redis
# outage: a deploy's reconnect storm reaches it, with thousands of connects queued for the CPU
# while each holds its connection until its turn comes (issue 16). Such a stream is counted in
# this process only and nothing is paused; a publish that finds no connection is caught up from
# the outbox by the other processes' listeners.
POOL_CONNECTIONS = 100
# While Redis is away the listener tries again at least every second (one refused connection a
# second per process costs nothing), so every listener is back within about a second of Redis;
# and each try also reads the outbox, so banners keep arriving within that second meanwhile.
RECONNECT_MIN_SECONDS = 0.2
RECONNECT_MAX_SECONDS = 1.0
# After a failed publish, skip publishing briefly: an outage costs each request nothing,
# and the listeners' outbox catch-up delivers what was skipped.
PUBLISH_PAUSE_SECONDS = 1.0
# How many recently dispatched ids to remember, so a catch-up does not dispatch them again.
SEEN_IDS = 20000
CATCH_UP_PAGE = 5000
FIRST_LOOK_BACK = 1000
# Events in one published message at most (a scan's batch of 2,001 channels is five messages of
# about 7 KB each).
PUBLISH_BATCH = 500


# Add a subscription to its user's set, refresh the set's expiry (every stream ends within
# SSE_MAX_LIFETIME, so a killed process's entries go too) and pop whatever is beyond the cap,
# oldest first, all in one step so two workers admitting at once cannot both keep 10.
_ADMIT_SCRIPT = """
local now = redis.call('TIME')
redis.call('ZADD', KEYS[1], tonumber(now[1]) + tonumber(now[2]) / 1000000, ARGV[1])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
local extra = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[2])
if extra <= 0 then return {} end
local victims = redis.call('ZRANGE', KEYS[1], 0, extra - 1)
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, extra - 1)
return victims
"""


def format_control(reason: str, token: str) -> str:
    return f"{CONTROL_PREFIX}close:{reason}:{token}"


def parse_control(data) -> tuple[str, str] | None:
    """(reason, token) from b"!close:replaced:ab12..."; None for anything else."""
    if isinstance(data, bytes):
        data = data.decode("utf-8", "replace")
    parts = str(data).split(":")
    if len(parts) != 3 or parts[0] != CONTROL_PREFIX + "close" or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]


def format_message(channel: str, event_id: int) -> str:
    return f"{channel}:{int(event_id)}"


def format_messages(events: Sequence[tuple[str, int]]) -> str:
    """One message for several events, "user:5:42 admins:43": a commit's channels in one publish
    (channel names hold no spaces)."""
    return " ".join(format_message(channel, event_id) for channel, event_id in events)


def parse_message(data) -> tuple[str, int] | None:
    """("user:5", 42) from b"user:5:42"; None for anything malformed."""
    if isinstance(data, bytes):
        data = data.decode("utf-8", "replace")
    channel, sep, raw_id = str(data).rpartition(":")
    if not sep or not channel or not raw_id.isdigit():
        return None
    return channel, int(raw_id)


def _described(events: Sequence[tuple[str, int]]) -> str:
    """A published message's events as its log lines name them: "event 42", "2 events up to 43"."""
    return f"event {events[0][1]}" if len(events) == 1 else f"{len(events)} events up to {events[-1][1]}"


def parse_messages(data) -> list[tuple[str, int]]:
    """Every well-formed event of a message of one or several; malformed parts are skipped."""
    if isinstance(data, bytes):
        data = data.decode("utf-8", "replace")
    return [event for part in str(data).split(" ") if (event := parse_message(part)) is not None]


class RedisBroker(Broker):
    """Broker for several processes: Redis pub/sub to wake them, the outbox to catch up."""

    def __init__(self, url: str, app=None, prefix: str = DEFAULT_PREFIX):
        super().__init__()
        self.url = url
        self.app = app
        self.events_channel = prefix + EVENTS_CHANNEL
        self.streams_key = prefix + STREAMS_KEY
        self.user_streams_key = prefix + USER_STREAMS_KEY
        self.instance = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._pid = os.getpid()
        self._client: redis.Redis | None = None
        self._admit_script: Any = None  # redis-py's Script, registered on first use
        self._listener: gevent.Greenlet | None = None
        self._publish_paused_until = 0.0
        self._publish_failing = False
        # What this process dispatched, heard through Redis or read from the outbox.
        self._follower = OutboxFollower(look_back=FIRST_LOOK_BACK, remember=SEEN_IDS, page=CATCH_UP_PAGE)
        self._count_written: tuple[int, float] | None = None
        self.connected = False

    # -- connections ----------------------------------------------------------------------
    def client(self) -> redis.Redis:
        """This process's Redis client (a small pool), made after fork and on first use."""
        if self._client is None or self._pid != os.getpid():
            self._pid = os.getpid()
            self.instance = f"{socket.gethostname()}:{self._pid}:{uuid.uuid4().hex[:8]}"
            # No client-side retries: a request must not wait on a Redis outage.
            self._client = redis.Redis.from_url(
                self.url,
                max_connections=POOL_CONNECTIONS,
                socket_connect_timeout=1.0,
                socket_timeout=2.0,
                socket_keepalive=True,
                health_check_interval=15,
                retry=Retry(NoBackoff(), 0),
                client_name="weighin",
            )
        return self._client

    # -- the interface --------------------------------------------------------------------
    def start(self) -> None:
        """Start this process's listener greenlet, once (and again after a fork)."""
        if self._listener is not None and not self._listener.dead and self._pid == os.getpid():
            return
        self.client()
        self._listener = gevent.spawn(self._listen_forever)

    def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.kill(block=True, timeout=2)
        try:
            if self._client is not None:
                self._client.delete(self.streams_key + self.instance)
                self._client.close()
        except redis.RedisError:
            pass
        self._client = None
        self.connected = False

    def publish(self, channel: str, event_id: int) -> None:
        self.publish_many([(channel, event_id)])

    def publish_many(self, events: Sequence[tuple[str, int]]) -> None:
        # One message for a commit's events (up to PUBLISH_BATCH of them): one round trip for
        # the request, and one message to read for each listener instead of one per channel.
        for start in range(0, len(events), PUBLISH_BATCH):
            self._publish(events[start : start + PUBLISH_BATCH])

    def _publish(self, chunk: Sequence[tuple[str, int]]) -> None:
        if time.monotonic() < self._publish_paused_until:
            return
        message = format_messages(chunk)
        try:
            try:
                self.client().publish(self.events_channel, message)
            except redis.ConnectionError as error:
                if self._publish_failing or isinstance(error, MaxConnectionsError):
                    raise  # a busy pool has no new connection to try either
                # A pooled connection that Redis closed when it restarted: the pool has dropped
                # it, so try once on a new one (refused at once if Redis is really down).
                self.client().publish(self.events_channel, message)
            self._publish_failing = False
        except MaxConnectionsError:
            # Busy, not down (POOL_CONNECTIONS): the listeners catch this one up from the outbox.
            log.info(
                "no Redis connection free for %s; listeners will catch up from the outbox", _described(chunk)
            )
        except (redis.RedisError, OSError) as error:
            self._publish_failing = True
            self._publish_paused_until = time.monotonic() + PUBLISH_PAUSE_SECONDS
            log.warning(
                "Redis publish of %s failed (%s); listeners will catch up from the outbox",
                _described(chunk),
                error,
            )
        except Exception:
            log.exception("Redis publish of %s failed", _described(chunk))

    # -- the per-user cap, across processes ---------------------------------------------------
    def _member(self, sub: Subscription) -> str:
        return f"{self.instance}/{sub.token}"

    def _redis_usable(self) -> bool:
        # During an outage (a publish just failed) requests must not wait on Redis.
        return time.monotonic() >= self._publish_paused_until

    def _redis_failed(self, what: str, error: Exception) -> None:
        if isinstance(error, MaxConnectionsError):
            return  # busy, not down (POOL_CONNECTIONS): this once, this process's count serves
        self._publish_paused_until = time.monotonic() + PUBLISH_PAUSE_SECONDS
        log.warning("Redis %s failed (%s); counting this process's streams only", what, error)

    def admit(self, sub: Subscription, per_user: int) -> None:
        """Keep the user at per_user subscriptions across every process: the oldest are ended."""
        if not self._redis_usable():
            super().admit(sub, per_user)
            return
        config = self.app.config if self.app is not None else {}
        lifetime = int(config.get("SSE_MAX_LIFETIME", SSE_MAX_LIFETIME_DEFAULT))
        try:
            client = self.client()
            if self._admit_script is None:
                self._admit_script = client.register_script(_ADMIT_SCRIPT)
            victims = self._admit_script(
                keys=[f"{self.user_streams_key}{sub.user_id}"],
                args=[self._member(sub), per_user, lifetime + 60],
                client=client,
            )
        except (redis.RedisError, OSError) as error:
            self._redis_failed("stream count", error)
            super().admit(sub, per_user)
            return
        for member in victims:
            token = (member.decode() if isinstance(member, bytes) else str(member)).rpartition("/")[2]
            if not self.close_token(token, REPLACED):
                self._publish_control(REPLACED, token)

    def forget(self, sub: Subscription) -> None:
        if sub.user_id is None or not self._redis_usable():
            return  # an entry left behind is the oldest, so the first to be ended, or expires
        try:
            self.client().zrem(f"{self.user_streams_key}{sub.user_id}", self._member(sub))
        except (redis.RedisError, OSError) as error:
            self._redis_failed("stream count", error)

    def _publish_control(self, reason: str, token: str) -> None:
        try:
            self.client().publish(self.events_channel, format_control(reason, token))
        except (redis.RedisError, OSError) as error:
            self._redis_failed("control message", error)

    def _handle_control(self, data) -> bool:
        """Act on a control message; False when the message is not one."""
        control = parse_control(data)
        if control is None:
            return False
        reason, token = control
        self.close_token(token, reason)
        return True

    def stream_count(self) -> int:
        """Open streams in every live process, read from the processes' count keys."""
        local = self.local_stream_count()
        try:
            client = self.client()
            keys = list(client.scan_iter(match=self.streams_key + "*", count=500))
            others = [key for key in keys if key.decode() != self.streams_key + self.instance]
            total = (
                sum(int(value) for value in client.mget(others) if value and value.isdigit()) if others else 0
            )
            return total + local
        except (redis.RedisError, OSError, ValueError):
            return local

    # -- the listener ---------------------------------------------------------------------
    def _listen_forever(self) -> None:
        delay = RECONNECT_MIN_SECONDS
        while True:
            pubsub = None
            try:
                pubsub = self.client().pubsub()
                pubsub.subscribe(self.events_channel)
                self._await_subscribed(pubsub)
                # Subscribed first, then read the outbox: nothing falls between the two.
                # A database outage must not stop live delivery, hence quietly: the
                # horizon stays put and the next pass tries again.
                self._catch_up_quietly()
                if not self.connected:
                    log.info("broker listener %s subscribed to %s", self.instance, self.events_channel)
                self.connected = True
                delay = RECONNECT_MIN_SECONDS
                self._listen(pubsub)
            except gevent.GreenletExit:
                raise
            except Exception as error:
                if self.connected:
                    log.warning("broker listener lost Redis (%s); reconnecting", error)
                self.connected = False
            finally:
                if pubsub is not None:
                    try:
                        pubsub.close()
                    except Exception:
                        pass
            # While Redis is away, the outbox still delivers, a second late at most.
            self._catch_up_quietly()
            # Jitter below the delay, never above: no listener sleeps past RECONNECT_MAX_SECONDS.
            gevent.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, RECONNECT_MAX_SECONDS)

    @staticmethod
    def _await_subscribed(pubsub) -> None:
        """Wait for Redis to confirm the subscription: from then on no publish can miss us."""
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            message = pubsub.get_message(timeout=0.5)
            if message is not None and message.get("type") == "subscribe":
                return
        raise redis.TimeoutError("no subscribe confirmation from Redis within 5 s")

    def _listen(self, pubsub) -> None:
        next_catch_up = time.monotonic() + CATCH_UP_SECONDS
        while True:
            message = pubsub.get_message(timeout=TICK_SECONDS)
            if message is not None and message.get("type") == "message":
                data = message.get("data")
                if not self._handle_control(data):
                    for channel, event_id in parse_messages(data):
                        self._dispatch_once(channel, event_id)
            now = time.monotonic()
            if now >= next_catch_up:
                next_catch_up = now + CATCH_UP_SECONDS
                self._catch_up_quietly()
            self._write_count(now)

    def _dispatch_once(self, channel: str, event_id: int) -> None:
        if self._follower.first_time(channel, event_id):
            self.dispatch(channel, event_id)

    def _catch_up_quietly(self) -> None:
        try:
            self._catch_up()
        except Exception as error:
            log.warning("outbox catch-up failed (%s); trying again later", error)

    def _catch_up(self) -> None:
        """Dispatch outbox events this process has not heard of."""
        if self.app is None:
            return
        from ..extensions import db

        with self.app.app_context():
            try:
                for channel, event_id in self._follower.read_unseen():
                    self.dispatch(channel, event_id)
            finally:
                db.session.remove()

    def _write_count(self, now: float) -> None:
        """Keep this process's stream count in Redis, refreshed before it expires."""
        count = self.local_stream_count()
        written = self._count_written
        if written is not None and written[0] == count and now - written[1] < COUNT_REFRESH_SECONDS:
            return
        self.client().set(self.streams_key + self.instance, count, ex=COUNT_TTL_SECONDS)
        self._count_written = (count, now)
