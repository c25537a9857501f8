"""Load clients in their own processes: raw asyncio sockets speaking SSE, polling, long polling or WebSocket.

A ClientPool forks P processes, each holding its share of the users (user id, signed cookie).
Each connection records when it got its first byte, and every banner it receives as
(user id, reminder id, time.time()), so the harness can check that each reminder arrived once,
at the right user, and how late. The parent talks to the processes over pipes ("report", "stop").
"""

from __future__ import annotations

import asyncio
import base64
import json
import multiprocessing
import os
import random
import re
import struct
import time
from dataclasses import dataclass, field

from bench.common import USER_AGENT, raise_nofile

BANNER = re.compile(rb'data-reminder-id=\\?"(\d+)')
EVENT_ID = re.compile(rb"X-Event-Id: (\d+)", re.IGNORECASE)
MODES = ("sse", "poll", "longpoll", "ws")


class StreamEnded(Exception):
    """The server closed a stream after its 200 and first bytes: a reconnect, not a failed request."""


@dataclass
class Stats:
    open: int = 0
    connected: int = 0  # connections that got their first byte (SSE/WS) or first answer
    failures: int = 0
    ended: int = 0  # streams the server ended after answering 200 (a deploy, a lifetime): not failures
    last_error: str = ""
    requests: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    connect_times: list = field(default_factory=list)
    events: list = field(default_factory=list)  # (user id, reminder id, time.time())
    first_connected_at: float = 0.0
    all_connected_at: float = 0.0
    mark: float = 0.0  # time.monotonic() of the pool's last "mark" (bench.versus --storm)


class Client:
    """One simulated browser tab for one user."""

    def __init__(
        self,
        host: str,
        port: int,
        user_id: int,
        cookie: str,
        stats: Stats,
        mode: str,
        interval: float,
        gate: asyncio.Semaphore,
        path: str = "/events",
    ):
        self.path = path.format(user=user_id)
        self.host, self.port = host, port
        self.user_id, self.cookie = user_id, cookie
        self.stats, self.mode, self.interval, self.gate = stats, mode, interval, gate
        self.after: int | None = None
        self.gated = False
        self.live_since: float | None = None  # when the stream now open answered (SSE), else None

    def _request(self, path: str, extra: str = "") -> bytes:
        return (
            f"GET {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nCookie: session={self.cookie}\r\n"
            f"User-Agent: {USER_AGENT}\r\nAccept: */*\r\n{extra}\r\n"
        ).encode()

    def _banners(self, data: bytes) -> None:
        now = time.time()
        for match in BANNER.finditer(data):
            self.stats.events.append((self.user_id, int(match.group(1)), now))

    async def _open(self):
        # A ramp: at most `gate` connections between connect and first answer, as browsers
        # arriving over time would be, rather than every client at the same instant.
        await self.gate.acquire()
        self.gated = True
        try:
            reader, writer = await asyncio.open_connection(self.host, self.port, limit=1 << 20)
        except BaseException:
            self._ungate()
            raise
        self.stats.open += 1
        return reader, writer

    def _ungate(self) -> None:
        if self.gated:
            self.gated = False
            self.gate.release()

    def _close(self, writer) -> None:
        self._ungate()
        self.stats.open -= 1
        writer.close()

    def _mark_connected(self, started: float) -> None:
        self._ungate()
        self.stats.connected += 1
        self.stats.connect_times.append(time.monotonic() - started)

    async def run(self) -> None:
        while True:
            try:
                await getattr(self, f"_run_{self.mode}")()
            except asyncio.CancelledError:
                raise
            except StreamEnded:  # the server ended a stream it had answered: come back, as a browser does
                self.stats.ended += 1
                await asyncio.sleep(1 + random.random())
            except Exception as error:  # count it, wait, try again as a browser would
                self.stats.failures += 1
                self.stats.last_error = f"{type(error).__name__}: {error}"
                await asyncio.sleep(1 + random.random())

    async def _run_sse(self) -> None:
        started = time.monotonic()
        reader, writer = await self._open()
        try:
            extra = f"Last-Event-ID: {self.after}\r\n" if self.after is not None else ""
            request = self._request(self.path, "Accept: text/event-stream\r\n" + extra)
            writer.write(request)
            self.stats.bytes_out += len(request)
            self.stats.requests += 1
            first, tail = True, b""
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    raise StreamEnded() if not first else ConnectionError("stream closed")
                self.stats.bytes_in += len(chunk)
                if first:
                    if b" 200 " not in chunk.split(b"\r\n", 1)[0]:
                        raise ConnectionError(chunk.split(b"\r\n", 1)[0].decode(errors="replace"))
                    self._mark_connected(started)
                    self.live_since = time.monotonic()
                    first = False
                # Only whole lines are read; a banner is on one data: line, so none is split or seen twice.
                data = tail + chunk
                cut = data.rfind(b"\n") + 1
                lines, tail = data[:cut], data[cut:]
                if lines:
                    self._banners(lines)
                    for event_id in re.findall(rb"(?:^|\n)id: (\d+)", lines):
                        self.after = int(event_id)
        finally:
            self.live_since = None
            self._close(writer)

    async def _read_response(self, reader) -> tuple[bytes, bytes]:
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        body = await reader.readexactly(length) if length else b""
        self.stats.bytes_in += len(head) + len(body)
        return head, body

    async def _run_poll(self, long: bool = False) -> None:
        path = "/events/wait" if long else "/events/area"
        if not long:
            await asyncio.sleep(random.uniform(0, self.interval))  # browsers do not poll in step
        started = time.monotonic()
        reader, writer = await self._open()
        counted = False
        try:
            while True:
                query = f"?after={self.after}" if self.after is not None else ""
                request = self._request(path + query)
                writer.write(request)
                self.stats.bytes_out += len(request)
                self.stats.requests += 1
                head, body = await self._read_response(reader)
                if not counted:
                    self._mark_connected(started)
                    counted = True
                match = EVENT_ID.search(head)
                if match:
                    self.after = int(match.group(1))
                if body:
                    self._banners(body)
                if b"connection: close" in head.lower():
                    return
                if not long:
                    await asyncio.sleep(self.interval)
        finally:
            self._close(writer)

    async def _run_longpoll(self) -> None:
        await self._run_poll(long=True)

    async def _run_ws(self) -> None:
        started = time.monotonic()
        reader, writer = await self._open()
        try:
            key = base64.b64encode(os.urandom(16)).decode()
            query = f"?after={self.after}" if self.after is not None else ""
            request = self._request(
                "/events/ws" + query,
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n",
            )
            writer.write(request)
            self.stats.bytes_out += len(request)
            self.stats.requests += 1
            head = await reader.readuntil(b"\r\n\r\n")
            self.stats.bytes_in += len(head)
            if b" 101 " not in head.split(b"\r\n", 1)[0]:
                raise ConnectionError(head.split(b"\r\n", 1)[0].decode(errors="replace"))
            self._mark_connected(started)
            while True:
                b1, b2 = await reader.readexactly(2)
                size = b2 & 0x7F
                extra = 0
                if size == 126:
                    (size,) = struct.unpack("!H", await reader.readexactly(2))
                    extra = 2
                elif size == 127:
                    (size,) = struct.unpack("!Q", await reader.readexactly(8))
                    extra = 8
                payload = await reader.readexactly(size)
                self.stats.bytes_in += 2 + extra + size
                opcode = b1 & 0x0F
                if opcode == 0x9:  # ping: answer with a masked pong, as a browser does
                    mask = os.urandom(4)
                    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
                    frame = bytes([0x8A, 0x80 | len(payload)]) + mask + masked
                    writer.write(frame)
                    self.stats.bytes_out += len(frame)
                elif opcode == 0x8:
                    raise ConnectionError("websocket closed by server")
                elif opcode == 0x1:
                    message = json.loads(payload)
                    self.after = message["id"]
                    self._banners(message["html"].encode())
        finally:
            self._close(writer)


async def _main(conn, host, port, users, mode, interval, ramp_concurrency, path):
    raise_nofile()
    stats = Stats()
    gate = asyncio.Semaphore(ramp_concurrency)
    clients = [Client(host, port, uid, cookie, stats, mode, interval, gate, path) for uid, cookie in users]
    tasks = [asyncio.create_task(client.run()) for client in clients]
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    commands: asyncio.Queue = asyncio.Queue()
    loop.add_reader(conn.fileno(), lambda: commands.put_nowait(conn.recv()))

    async def watch_connected():
        while stats.connected < len(users):
            await asyncio.sleep(0.01)
        stats.all_connected_at = time.time()

    watcher = asyncio.create_task(watch_connected())
    while not stop.is_set():
        command = await commands.get()
        if command == "mark":
            stats.mark = time.monotonic()
        report = {
            "open": stats.open,
            "connected": stats.connected,
            "failures": stats.failures,
            "ended": stats.ended,
            "last_error": stats.last_error,
            "requests": stats.requests,
            "bytes_in": stats.bytes_in,
            "bytes_out": stats.bytes_out,
            "connect_times": stats.connect_times,
            "events": stats.events,
            "all_connected_at": stats.all_connected_at,
            # Clients whose open stream answered after the last mark: back after a deploy.
            "back_since_mark": sum(
                1 for c in clients if c.live_since is not None and stats.mark and c.live_since > stats.mark
            ),
        }
        stats.events = []
        stats.connect_times = []
        if command == "stop":
            for task in tasks + [watcher]:
                task.cancel()
            await asyncio.gather(*tasks, watcher, return_exceptions=True)
            stop.set()
        conn.send(report)


def _process(conn, host, port, users, mode, interval, ramp_concurrency, path):
    asyncio.run(_main(conn, host, port, users, mode, interval, ramp_concurrency, path))


class ClientPool:
    """P client processes sharing `users` (list of (user id, cookie)); reports are merged."""

    def __init__(
        self,
        url: str,
        users,
        *,
        mode: str = "sse",
        processes: int = 2,
        interval: float = 5.0,
        ramp_concurrency: int = 200,
        path: str = "/events",
    ):
        """`path` is the SSE stream's path; `{user}` in it becomes each client's user id."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        host, port = url.split("//", 1)[1].rsplit(":", 1)
        context = multiprocessing.get_context("fork")
        self.pipes, self.procs = [], []
        self.size = len(users)
        self.started = time.time()
        for index in range(processes):
            share = users[index::processes]
            parent, child = context.Pipe()
            proc = context.Process(
                target=_process,
                args=(
                    child,
                    host,
                    int(port),
                    share,
                    mode,
                    interval,
                    max(1, ramp_concurrency // processes),
                    path,
                ),
                daemon=True,
            )
            proc.start()
            self.pipes.append(parent)
            self.procs.append(proc)

    def report(self, command: str = "report") -> dict:
        for pipe in self.pipes:
            pipe.send(command)
        merged = {
            "open": 0,
            "connected": 0,
            "failures": 0,
            "ended": 0,
            "back_since_mark": 0,
            "requests": 0,
            "bytes_in": 0,
            "bytes_out": 0,
            "connect_times": [],
            "events": [],
            "last_error": "",
            "all_connected_at": 0.0,
        }
        done = True
        for pipe in self.pipes:
            part = pipe.recv()
            for key in (
                "open",
                "connected",
                "failures",
                "ended",
                "back_since_mark",
                "requests",
                "bytes_in",
                "bytes_out",
            ):
                merged[key] += part[key]
            merged["connect_times"] += part["connect_times"]
            merged["events"] += part["events"]
            merged["last_error"] = part["last_error"] or merged["last_error"]
            done = done and part["all_connected_at"] > 0
            merged["all_connected_at"] = max(merged["all_connected_at"], part["all_connected_at"])
        if not done:
            merged["all_connected_at"] = 0.0
        return merged

    def wait_connected(self, timeout: float, progress=None) -> dict:
        """Poll until every client has connected (or timeout); returns the last merged report."""
        deadline = time.monotonic() + timeout
        collected: dict[str, list] = {"connect_times": [], "events": []}
        while True:
            report = self.report()
            collected["connect_times"] += report["connect_times"]
            collected["events"] += report["events"]
            if progress:
                progress(report)
            if report["connected"] >= self.size or time.monotonic() > deadline:
                report["connect_times"] = collected["connect_times"]
                report["events"] = collected["events"]
                return report
            time.sleep(0.5)

    def stop(self) -> dict:
        report = self.report("stop")
        for proc in self.procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
        return report
