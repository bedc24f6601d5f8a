"""Propagation: how fast one push reaches N idle watchers (long poll and SSE), and server memory per idle watcher.

For N = 100, 1,000 and 10,000 watchers on one document, in each watch mode, it:

1. starts `tskcfg serve` (one process, uvloop + httptools, defaults otherwise: access log on, to a
   file) on a free 127.0.0.1 port with a temporary data dir, pushes version 1 and then a few
   more with nobody watching (the "idle push" time), and lets ten watchers come and go so that
   nothing loaded on first use counts as memory per watcher;
2. opens N connections that each hold `GET /v1/configs/{service}/{env}?wait=120` with
   `If-None-Match: "<version>"` (long poll) or `GET /v1/events?service=&environment=` (SSE);
3. waits until the server's `tskcfg_watchers` gauge counts all N (and every stream has sent its
   `retry:` line), waits a second more, and takes the growth of the server's VmRSS over N as the
   memory per idle watcher;
4. pushes a new version from a separate thread on a blocking socket (so the moment its response
   arrives is not delayed behind the watchers the event loop is busy reading) and records, for
   every watcher, when it had the new version: status, headers and whole body for a long poll;
   the complete `event: version` frame for SSE. Once every watcher has it, the long-poll
   watchers ask again with the new ETag, and when all are parked again the next round pushes.

Latency is counted from the moment the push is sent, so it includes the push's own work
(parse, validate, durable commit; "idle push" shows that alone, with nobody watching). That is
stricter than "after the push is acknowledged", which is also shown: a server that writes
every watcher's answer before the push's own answer would make that figure zero or negative,
and it is then not a measure of anything. The goals are checked against the stricter figure.
Figures are medians over the pushes of a run, with the spread of the p99 across them.

The same watchers, pushes and measurements then run against a floor: a bare asyncio server
(uvloop, one process, this file with `--floor-server`) that parks the same requests and, when it
receives a PUT, writes one prebuilt answer of about the same size to every parked connection at
once. It does no routing, auth, ASGI or logging, so it is the cost of sockets and an event loop on
this machine; the ratio ours / floor is the figure that holds on a noisy machine.

The load generator (this process, one event loop), the server and the floor share the machine's
cores, so every time includes the generator reading N answers.

    .venv/bin/python bench/propagation.py            # N = 100, 1,000, 10,000; 5 pushes each
    .venv/bin/python bench/propagation.py --quick    # N = 100, 1,000; 3 pushes each
    .venv/bin/python bench/propagation.py --json     # machine-readable result (a list of dicts)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import math
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

REPOSITORY = Path(__file__).resolve().parents[1]
TSKCFG = Path(sys.executable).with_name("tskcfg")
SERVICE = "user-service"
ENVIRONMENT = "production"
LONG_POLL_WAIT = 120  # the largest wait the server allows; a round never comes near it
GOALS_P99_MS = {1_000: 50.0, 10_000: 500.0}
GOAL_KIB_PER_WATCHER = 20.0
CONNECT_CONCURRENCY = 200  # connects in flight at once, well under any listen backlog
CONNECT_TIMEOUT = 10.0
DELIVERY_TIMEOUT = 20.0  # a round ends here even if some watcher lacks the push ("got" says so)
REQUEST_TIMEOUT = 10.0
IDLE_PUSHES = 3  # pushes before any watcher connects, to time a push by itself
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


class BenchError(Exception):
    """A scenario could not be measured (server down, watchers refused, a bound hit)."""


# -- helpers ----------------------------------------------------------------------------------


def raise_fd_limit() -> int:
    """Raise this process's soft limit of open files to the hard limit; returns the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def prepare_child() -> None:
    """In a server process before exec: the file limit, and SIGTERM when the benchmark dies.

    The signal on the parent's death (Linux prctl) means a benchmark killed halfway leaves no
    server behind holding thousands of sockets.
    """
    raise_fd_limit()
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def rss_kib(pid: int) -> int:
    """Resident memory of a process in KiB, from /proc/<pid>/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise BenchError(f"no VmRSS for process {pid}")


def percentile(ordered: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    index = max(0, math.ceil(fraction * len(ordered)) - 1)
    return ordered[min(index, len(ordered) - 1)]


def document(variant: int) -> bytes:
    """The shipped production user-service document, with a value that differs per variant."""
    source = (REPOSITORY / "environments" / "production" / "user-service.tsk").read_text()
    changed = source.replace("pool_size: 20", f"pool_size: {100 + variant}", 1)
    if changed == source:
        raise BenchError("environments/production/user-service.tsk no longer has 'pool_size: 20'")
    return changed.encode()


def parse_head(head: bytes) -> tuple[int, dict[bytes, bytes]]:
    """Status and lower-cased headers of an HTTP/1.1 response head (without the blank line)."""
    lines = head.split(b"\r\n")
    status = int(lines[0][9:12])
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    return status, headers


async def http_request(
    port: int, method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b""
) -> tuple[int, bytes]:
    """One request on its own connection (`Connection: close`); status and body."""

    async def exchange() -> tuple[int, bytes]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
            lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
            if body or method in ("PUT", "POST"):
                lines.append(f"Content-Length: {len(body)}")
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
            response = await reader.read()
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        head, _, content = response.partition(b"\r\n\r\n")
        status, response_headers = parse_head(head)
        if response_headers.get(b"transfer-encoding") == b"chunked":
            content = dechunk(content)
        return status, content

    return await asyncio.wait_for(exchange(), REQUEST_TIMEOUT)


def dechunk(content: bytes) -> bytes:
    out = bytearray()
    while content:
        size_line, _, rest = content.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += rest[:size]
        content = rest[size + 2 :]
    return bytes(out)


def push_blocking(
    port: int, path: str, headers: dict[str, str], body: bytes
) -> tuple[float, float, int]:
    """PUT on a blocking socket: (time sent, time its whole response arrived, status)."""
    with socket.create_connection(("127.0.0.1", port), timeout=REQUEST_TIMEOUT) as connection:
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        lines = [f"PUT {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", f"Content-Length: {len(body)}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        request = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
        received = b""
        sent = time.perf_counter()
        connection.sendall(request)
        while True:
            chunk = connection.recv(65536)
            if not chunk:
                raise BenchError("the push's connection closed before its response was complete")
            received += chunk
            end = received.find(b"\r\n\r\n")
            if end < 0:
                continue
            status, response_headers = parse_head(received[:end])
            length = int(response_headers.get(b"content-length", b"0"))
            if len(received) >= end + 4 + length:
                return sent, time.perf_counter(), status


# -- the watchers (load generator) ------------------------------------------------------------


@dataclass
class Tally:
    """Shared by all watchers of a scenario: who had which version, and when everyone had it."""

    size: int
    expected: int = 0
    counts: dict[int, int] = field(default_factory=dict)
    everyone: asyncio.Event = field(default_factory=asyncio.Event)
    streams_open: int = 0
    failures: list[str] = field(default_factory=list)

    def arrived(self, version: int) -> None:
        count = self.counts.get(version, 0) + 1
        self.counts[version] = count
        if version == self.expected and count >= self.size:
            self.everyone.set()

    def expect(self, version: int) -> None:
        self.expected = version
        self.everyone.clear()
        if self.counts.get(version, 0) >= self.size:
            self.everyone.set()


class Watcher(asyncio.Protocol):
    """One watching connection with a minimal HTTP/1.1 reader; notes when each version arrived.

    The arrival time is taken first thing in `data_received`, when the bytes reach this loop.
    """

    def __init__(
        self, tally: Tally, request: Callable[[int], bytes], sse: bool, known: int
    ) -> None:
        self.tally = tally
        self.request = request
        self.sse = sse
        self.known = known
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.head: tuple[int, dict[bytes, bytes]] | None = None
        self.stream = bytearray()  # the decoded SSE text not yet split into frames
        self.arrivals: dict[int, float] = {}
        self.failure: str | None = None
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, but have its methods.
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self.request(self.known))

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True

    def fail(self, reason: str) -> None:
        if self.failure is None:
            self.failure = reason
            self.tally.failures.append(reason)
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        self.buffer += data
        try:
            if self.sse:
                self._read_stream(now)
            else:
                self._read_responses(now)
        except (ValueError, IndexError) as error:
            self.fail(f"unreadable response: {error}")

    def _read_responses(self, now: float) -> None:
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            status, headers = parse_head(bytes(self.buffer[:end]))
            length = int(headers.get(b"content-length", b"0"))
            if len(self.buffer) < end + 4 + length:
                return
            del self.buffer[: end + 4 + length]
            if status == 200:
                version = int(headers[b"etag"].strip(b'"'))
                self.arrivals.setdefault(version, now)
                self.tally.arrived(version)
                self.known = version
                # Asking again waits for `ask_again`, after the round: during a fan-out every
                # watcher is idle, and the new requests do not compete with the answers.
            elif status == 304:  # the wait ran out; ask again at once
                self.ask_again()
            else:
                self.fail(f"long poll answered {status}")
                return

    def ask_again(self) -> None:
        """Send the next long poll with the version this watcher has now."""
        if self.transport is not None and self.failure is None:
            self.transport.write(self.request(self.known))

    def _read_stream(self, now: float) -> None:
        buffer = self.buffer
        if self.head is None:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            self.head = parse_head(bytes(buffer[:end]))
            del buffer[: end + 4]
            if self.head[0] != 200 or self.head[1].get(b"transfer-encoding") != b"chunked":
                self.fail(f"event stream answered {self.head[0]} {self.head[1]!r}")
                return
        while True:
            line_end = buffer.find(b"\r\n")
            if line_end < 0:
                break
            size = int(bytes(buffer[:line_end]).split(b";")[0], 16)
            if size == 0:
                self.fail("event stream ended")
                return
            if len(buffer) < line_end + 2 + size + 2:
                break
            self.stream += buffer[line_end + 2 : line_end + 2 + size]
            del buffer[: line_end + 4 + size]
        while True:
            end = self.stream.find(b"\n\n")
            if end < 0:
                return
            frame = bytes(self.stream[:end])
            del self.stream[: end + 2]
            if frame.startswith(b"retry:"):
                self.tally.streams_open += 1
            elif b"\nevent: version\n" in frame:
                data = frame[frame.index(b"\ndata: ") + 7 :].split(b"\n", 1)[0]
                version = int(json.loads(data)["version"])
                self.arrivals.setdefault(version, now)
                self.tally.arrived(version)


# -- the servers ------------------------------------------------------------------------------


class Target:
    """A server under test, started in its own process; subclasses say how to run and ask it."""

    name = ""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / f"{self.name}.log"
        self.token = ""

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> None:
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=prepare_child,
                cwd=self.workdir,
            )

    async def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise BenchError(
                    f"{self.name} exited with {self.process.returncode}: {self.log_tail()}"
                )
            with contextlib.suppress(OSError, asyncio.TimeoutError, ValueError):
                status, _ = await http_request(self.port, "GET", "/health")
                if status == 200:
                    return
            await asyncio.sleep(0.1)
        raise BenchError(
            f"{self.name} did not answer /health within {timeout:.0f} s: {self.log_tail()}"
        )

    def stop(self) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)

    def log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-2000:]
        return ""

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    async def parked(self, sse: bool) -> int:
        raise NotImplementedError

    def push_headers(self) -> dict[str, str]:
        return {**self.auth(), "Content-Type": "text/x-tsk", "X-Config-Message": "bench"}


class Ours(Target):
    """`tskcfg serve` with its defaults, on a temporary data dir, file sync off."""

    name = "tskcfg"

    def command(self) -> list[str]:
        empty = self.workdir / "empty"
        empty.mkdir(exist_ok=True)
        return [
            str(TSKCFG), "serve", "--host", "127.0.0.1", "--port", str(self.port),
            "--data-dir", str(self.workdir / "data"), "--environments", str(empty),
            "--schemas", str(empty), "--no-sync", "--open-services",
        ]  # fmt: skip

    async def wait_ready(self, timeout: float = 30.0) -> None:
        await super().wait_ready(timeout)
        self.token = (self.workdir / "data" / "admin.token").read_text().strip()

    async def parked(self, sse: bool) -> int:
        status, body = await http_request(self.port, "GET", "/metrics")
        if status != 200:
            raise BenchError(f"/metrics answered {status}")
        kind = "events" if sse else "long_poll"
        found = re.search(rf'^tskcfg_watchers\{{kind="{kind}"\}} (\S+)$', body.decode(), re.M)
        return int(float(found.group(1))) if found else 0


class Floor(Target):
    """The bare asyncio server of `serve_floor` below."""

    name = "floor"

    def command(self) -> list[str]:
        return [sys.executable, str(Path(__file__).resolve()), "--floor-server", str(self.port)]

    async def parked(self, sse: bool) -> int:
        status, body = await http_request(self.port, "GET", "/parked")
        if status != 200:
            raise BenchError(f"/parked answered {status}")
        return int(json.loads(body)["events" if sse else "long_poll"])


# -- one scenario -----------------------------------------------------------------------------


@dataclass
class Outcome:
    """What one target did with N watchers in one mode."""

    target: str
    mode: str
    watchers: int
    rounds: list[dict[str, float]]
    kib_per_watcher: float
    rss_before_kib: int
    rss_after_kib: int
    connect_seconds: float
    body_bytes: int
    idle_push_ms: float

    def summary(self) -> dict[str, Any]:
        def median(key: str) -> float:
            return statistics.median(row[key] for row in self.rounds)

        p99s = [row["p99_ms"] for row in self.rounds]
        return {
            "target": self.target,
            "p50_ms": median("p50_ms"),
            "p99_ms": median("p99_ms"),
            "max_ms": median("max_ms"),
            "p99_ms_min": min(p99s),
            "p99_ms_max": max(p99s),
            "push_ms": median("push_ms"),
            "idle_push_ms": self.idle_push_ms,
            "p50_after_ack_ms": median("p50_after_ack_ms"),
            "p99_after_ack_ms": median("p99_after_ack_ms"),
            "per_round": self.rounds,
            "delivered": int(min(row["delivered"] for row in self.rounds)),
            "rounds": len(self.rounds),
            "kib_per_watcher": self.kib_per_watcher,
            "rss_before_kib": self.rss_before_kib,
            "rss_after_kib": self.rss_after_kib,
            "connect_seconds": self.connect_seconds,
            "body_bytes": self.body_bytes,
        }


async def run_scenario(
    target: Target, mode: str, size: int, rounds: int, time_limit: float
) -> Outcome:
    """Start the target, park `size` watchers, push `rounds` times; always stop it and close sockets."""
    sse = mode == "sse"
    watchers: list[Watcher] = []
    target.start()
    try:
        async with asyncio.timeout(time_limit):
            return await _measure(target, sse, mode, size, rounds, watchers)
    except TimeoutError:
        raise BenchError(
            f"{target.name} {mode} N={size}: over the {time_limit:.0f} s limit"
        ) from None
    finally:
        for watcher in watchers:
            if watcher.transport is not None:
                watcher.transport.abort()  # no FIN handshake to wait for; the server sees a reset
        await asyncio.sleep(0.2)
        target.stop()


async def _measure(
    target: Target, sse: bool, mode: str, size: int, rounds: int, watchers: list[Watcher]
) -> Outcome:
    await target.wait_ready()
    path = f"/v1/configs/{SERVICE}/{ENVIRONMENT}"
    status, _ = await http_request(target.port, "PUT", path, target.push_headers(), document(0))
    if status not in (200, 201):
        raise BenchError(f"{target.name}: the first push answered {status}")
    host = f"Host: 127.0.0.1:{target.port}\r\n"
    auth = "".join(f"{name}: {value}\r\n" for name, value in target.auth().items())
    if sse:
        stream_request = (
            f"GET /v1/events?service={SERVICE}&environment={ENVIRONMENT} HTTP/1.1\r\n{host}{auth}"
            "Accept: text/event-stream\r\n\r\n"
        ).encode()

        def request(known: int) -> bytes:
            return stream_request
    else:
        prefix = (
            f"GET {path}?wait={LONG_POLL_WAIT} HTTP/1.1\r\n{host}{auth}If-None-Match: ".encode()
        )

        def request(known: int) -> bytes:
            return prefix + b'"%d"\r\n\r\n' % known

    tally = Tally(size)
    loop = asyncio.get_running_loop()

    # Pushes with nobody watching: what a push costs by itself (parse, validate, durable commit).
    idle_push_ms = []
    for number in range(1, IDLE_PUSHES + 1):
        sent, acked, status = await asyncio.to_thread(
            push_blocking, target.port, path, target.push_headers(), document(number)
        )
        if status != 201:
            raise BenchError(f"{target.name}: idle push {number} answered {status}")
        idle_push_ms.append((acked - sent) * 1000)
    known = 1 + IDLE_PUSHES

    # Warm up: a few watchers come and go first, so code paths and caches that load on first use
    # are not counted as memory per watcher.
    warm = Tally(10)
    warm_watchers: list[Watcher] = []
    for _ in range(10):
        _, protocol = await loop.create_connection(
            lambda: Watcher(warm, request, sse, known), "127.0.0.1", target.port
        )
        warm_watchers.append(protocol)
    await _wait_parked(target, sse, 10, [], 10.0)
    for watcher in warm_watchers:
        assert watcher.transport is not None
        watcher.transport.abort()
    await _wait_parked(target, sse, 0, [], 10.0)
    await asyncio.sleep(0.5)
    rss_before = rss_kib(target.pid)

    started = time.perf_counter()
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def connect() -> None:
        async with gate:
            watcher = Watcher(tally, request, sse, known)
            watchers.append(watcher)
            await asyncio.wait_for(
                loop.create_connection(lambda: watcher, "127.0.0.1", target.port), CONNECT_TIMEOUT
            )

    results = await asyncio.gather(*(connect() for _ in range(size)), return_exceptions=True)
    refused = [result for result in results if isinstance(result, BaseException)]
    if refused:
        raise BenchError(
            f"{target.name}: {len(refused)} of {size} connections failed: {refused[0]!r}"
        )
    await _wait_parked(target, sse, size, watchers, 60.0)
    if sse:
        await _until(lambda: tally.streams_open >= size, 10.0, "event streams opened")
    connect_seconds = time.perf_counter() - started
    await asyncio.sleep(1.0)  # let the server finish anything it does after parking
    rss_after = rss_kib(target.pid)

    measured: list[dict[str, float]] = []
    previous_interval = sys.getswitchinterval()
    body_bytes = 0
    for number in range(1, rounds + 1):
        version = known + number
        tally.expect(version)
        # The pusher thread must get the interpreter soon after its response arrives, or the
        # ack time would wait behind the loop thread reading watchers.
        sys.setswitchinterval(0.0002)
        try:
            sent, acked, status = await asyncio.to_thread(
                push_blocking, target.port, path, target.push_headers(), document(version)
            )
            if status != 201:
                raise BenchError(f"{target.name}: push {number} answered {status}")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(DELIVERY_TIMEOUT):
                    await tally.everyone.wait()
        finally:
            sys.setswitchinterval(previous_interval)
        latencies = sorted(
            (watcher.arrivals[version] - sent) * 1000
            for watcher in watchers
            if version in watcher.arrivals
        )
        if not latencies:
            raise BenchError(
                f"{target.name}: no watcher had version {version} within {DELIVERY_TIMEOUT} s"
            )
        push_ms = (acked - sent) * 1000
        measured.append(
            {
                "p50_ms": percentile(latencies, 0.50),
                "p99_ms": percentile(latencies, 0.99),
                "max_ms": latencies[-1],
                "push_ms": push_ms,
                "p50_after_ack_ms": percentile(latencies, 0.50) - push_ms,
                "p99_after_ack_ms": percentile(latencies, 0.99) - push_ms,
                "delivered": len(latencies),
            }
        )
        if number == 1 and not sse:
            status, body = await http_request(target.port, "GET", path, target.auth())
            body_bytes = len(body)
        if not sse:
            for watcher in watchers:
                watcher.ask_again()
            await _wait_parked(target, sse, size, watchers, 30.0)
        await asyncio.sleep(0.3)
    failures = [watcher.failure for watcher in watchers if watcher.failure]
    if failures:
        raise BenchError(f"{target.name}: {len(failures)} watchers failed, first: {failures[0]}")
    return Outcome(
        target=target.name,
        mode=mode,
        watchers=size,
        rounds=measured,
        kib_per_watcher=(rss_after - rss_before) / size,
        rss_before_kib=rss_before,
        rss_after_kib=rss_after,
        connect_seconds=connect_seconds,
        body_bytes=body_bytes,
        idle_push_ms=statistics.median(idle_push_ms),
    )


async def _wait_parked(
    target: Target, sse: bool, count: int, watchers: list[Watcher], timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    seen = -1
    while time.monotonic() < deadline:
        seen = await target.parked(sse)
        if seen == count:
            return
        failed = [watcher.failure for watcher in watchers if watcher.failure]
        lost = sum(1 for watcher in watchers if watcher.lost)
        if failed or lost:
            raise BenchError(
                f"{target.name}: {len(failed)} watchers failed and {lost} connections closed while "
                f"parking (first failure: {failed[0] if failed else 'none'})"
            )
        await asyncio.sleep(0.1)
    raise BenchError(f"{target.name}: {seen} of {count} watchers parked after {timeout:.0f} s")


async def _until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise BenchError(f"not all {what} within {timeout:.0f} s")
        await asyncio.sleep(0.05)


# -- the floor server -------------------------------------------------------------------------


class FloorState:
    """The floor's whole state: the current version and the parked connections."""

    def __init__(self) -> None:
        self.version = 0
        self.answer = b""
        self.long_polls: set[asyncio.Transport] = set()
        self.streams: set[asyncio.Transport] = set()


STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
    b"transfer-encoding: chunked\r\n\r\n"
)


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def plain_answer(status: str, body: bytes, extra: bytes = b"") -> bytes:
    return (
        b"HTTP/1.1 " + status.encode() + b"\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\n" % len(body) + extra + b"\r\n" + body
    )


class FloorConnection(asyncio.Protocol):
    """Parks GETs and answers all of them from one prebuilt answer when a PUT arrives."""

    def __init__(self, state: FloorState) -> None:
        self.state = state
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        assert self.transport is not None
        self.state.long_polls.discard(self.transport)
        self.state.streams.discard(self.transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end])
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(self.buffer) < end + 4 + length:
                return
            body = bytes(self.buffer[end + 4 : end + 4 + length])
            del self.buffer[: end + 4 + length]
            self.answer_request(head, body)

    def answer_request(self, head: bytes, body: bytes) -> None:
        state = self.state
        transport = self.transport
        assert transport is not None
        method, target = head.split(b" ", 2)[:2]
        if method == b"PUT":
            state.version += 1
            document = {"version": state.version, "config": body.decode()}
            state.answer = plain_answer(
                "200 OK", json.dumps(document).encode(), b'etag: "%d"\r\n' % state.version
            )
            # Acknowledge first, then fan out: the least any server must do after the ack.
            transport.write(plain_answer("201 Created", b'{"version": %d}' % state.version))
            if state.version > 1:
                event = {"service": SERVICE, "environment": ENVIRONMENT, "version": state.version}
                frame = b"id: %d\nevent: version\ndata: %s\n\n" % (
                    state.version,
                    json.dumps(event, separators=(",", ":")).encode(),
                )
                framed = chunk(frame)
                parked, state.long_polls = state.long_polls, set()
                for waiting in parked:
                    waiting.write(state.answer)
                for stream in state.streams:
                    stream.write(framed)
        elif target.startswith(b"/v1/events"):
            state.streams.add(transport)
            transport.write(STREAM_HEAD + chunk(b"retry: 2000\n\n"))
        elif target.startswith(b"/v1/configs/"):
            known = re.search(rb'if-none-match: "(\d+)"', head.lower())
            if known is not None and int(known.group(1)) == state.version:
                state.long_polls.add(transport)
            else:
                transport.write(state.answer)
        else:
            counts = {"long_poll": len(state.long_polls), "events": len(state.streams)}
            transport.write(plain_answer("200 OK", json.dumps(counts).encode()))
        if b"connection: close" in head.lower() and transport not in state.streams:
            if transport not in state.long_polls:
                transport.close()


def serve_floor(port: int) -> None:
    """Run the floor server on 127.0.0.1:`port` until terminated."""
    raise_fd_limit()
    use_uvloop()
    state = FloorState()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: FloorConnection(state), "127.0.0.1", port, backlog=2048
        )
        async with server:
            await server.serve_forever()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())


def use_uvloop() -> str:
    """Use uvloop (as `tskcfg serve` does) when it is installed; returns the loop's name."""
    try:
        import uvloop
    except ImportError:
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"


# -- the report -------------------------------------------------------------------------------


def combine(ours: Outcome, floor: Outcome) -> dict[str, Any]:
    mine, base = ours.summary(), floor.summary()
    goal = GOALS_P99_MS.get(ours.watchers)
    # A floor p99 under a millisecond is noise; a ratio to it would mean nothing.
    ratio = mine["p99_ms"] / base["p99_ms"] if base["p99_ms"] >= 1.0 else None
    return {
        "benchmark": "propagation",
        "mode": ours.mode,
        "watchers": ours.watchers,
        "latency_from": "push sent",
        "ours": mine,
        "floor": base,
        "p99_ratio": ratio,
        "goal_p99_ms": goal,
        "goal_kib_per_watcher": GOAL_KIB_PER_WATCHER,
        "p99_goal_met": None if goal is None else mine["p99_ms"] <= goal,
        "memory_goal_met": mine["kib_per_watcher"] <= GOAL_KIB_PER_WATCHER,
        "all_delivered": mine["delivered"] == ours.watchers and base["delivered"] == floor.watchers,
    }


def print_table(results: list[dict[str, Any]], rounds: int, loop_name: str) -> None:
    print(
        "Propagation: one push to N idle watchers of one document. The load generator"
        f" ({loop_name}), the server and the floor\nshare this machine's {os.cpu_count()} cores"
        " (and whatever else runs on it), so every time includes reading N answers.\n"
        "Latency: from the push being sent to the watcher having the new version, in ms, median over"
        f" {rounds} pushes\n([p99 spread]). push: the push's round trip in those rounds; idle: with no"
        " watchers; ack p99: p99 after the push's answer\narrived. floor: a bare asyncio server"
        " answering the same parked requests. KiB/w: server VmRSS growth per idle watcher.\n"
    )
    print(
        f"{'':16} | {'ours':^38} | {'push':>5} {'idle':>5} {'ack':>6} | {'floor':^20}"
        f" | {'p99':>5} {'p99':>5} | {'KiB/w':>5} {'KiB/w':>5}"
    )
    print(
        f"{'mode':<9} {'N':>6} | {'p50':>6} {'p99':>6} {'[spread]':>11} {'max':>6} {'got':>6}"
        f" | {'':>5} {'push':>5} {'p99':>6} | {'p50':>6} {'p99':>6} {'max':>6}"
        f" | {'ratio':>5} {'goal':>5} | {'ours':>5} {'floor':>5}"
    )
    for row in results:
        mine, base = row["ours"], row["floor"]
        goal = f"{row['goal_p99_ms']:.0f}" if row["goal_p99_ms"] else "-"
        mark = "" if row["p99_goal_met"] in (None, True) else "!"
        spread = f"[{mine['p99_ms_min']:.0f}..{mine['p99_ms_max']:.0f}]"
        ratio = f"{row['p99_ratio']:.1f}x" if row["p99_ratio"] is not None else "-"
        memory = f"{mine['kib_per_watcher']:.1f}" + ("" if row["memory_goal_met"] else "!")
        print(
            f"{row['mode']:<9} {row['watchers']:>6,} | {mine['p50_ms']:>6.1f} {mine['p99_ms']:>6.1f}"
            f" {spread:>11} {mine['max_ms']:>6.1f} {mine['delivered']:>6,}"
            f" | {mine['push_ms']:>5.1f} {mine['idle_push_ms']:>5.1f}"
            f" {mine['p99_after_ack_ms']:>6.1f}"
            f" | {base['p50_ms']:>6.1f} {base['p99_ms']:>6.1f} {base['max_ms']:>6.1f}"
            f" | {ratio:>5} {goal + mark:>5} | {memory:>5} {base['kib_per_watcher']:>5.1f}"
        )
    missed = [row for row in results if row["p99_goal_met"] is False or not row["memory_goal_met"]]
    undelivered = [row for row in results if not row["all_delivered"]]
    print(
        "\nGoals: p99 <= 50 ms at 1,000 and <= 500 ms at 10,000 watchers (counted from the push"
        f" being sent); <= {GOAL_KIB_PER_WATCHER:.0f} KiB per idle\nwatcher. ! = missed."
        f" Rows missing a goal: {len(missed)}. Rows where a watcher missed a push: {len(undelivered)}."
    )


@contextlib.contextmanager
def workspace() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="tskcfg-propagation-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


async def run_all(
    sizes: list[int], modes: list[str], rounds: int, progress: bool
) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    for size in sizes:
        for mode in modes:
            time_limit = 60.0 + size / 100  # 10,000 watchers: 160 s for start, parking and pushes
            outcomes: dict[str, Outcome] = {}
            for kind in (Ours, Floor):
                with workspace() as workdir:
                    target = kind(workdir)
                    if progress:
                        print(f"  {target.name} {mode} N={size:,} ...", file=sys.stderr, flush=True)
                    outcomes[kind.name] = await run_scenario(target, mode, size, rounds, time_limit)
            results.append(combine(outcomes["tskcfg"], outcomes["floor"]))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="N = 100 and 1,000 only, 3 pushes each"
    )
    parser.add_argument("--json", action="store_true", help="print a JSON list of result dicts")
    parser.add_argument("--watchers", type=int, nargs="+", help="N values (default 100 1000 10000)")
    parser.add_argument(
        "--modes", nargs="+", choices=["long_poll", "sse"], default=["long_poll", "sse"]
    )
    parser.add_argument("--rounds", type=int, help="pushes per scenario (default 5, --quick 3)")
    parser.add_argument("--floor-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.floor_server is not None:
        serve_floor(args.floor_server)
        return 0
    sizes = args.watchers or ([100, 1_000] if args.quick else [100, 1_000, 10_000])
    rounds = args.rounds or (3 if args.quick else 5)
    limit = raise_fd_limit()
    # Each watcher is one descriptor here and one in the server; leave room for everything else.
    too_many = [size for size in sizes if size + 200 > limit]
    if too_many:
        print(
            f"the open-file limit is {limit}; N={too_many} needs more (raise the hard limit)",
            file=sys.stderr,
        )
        return 2
    if not TSKCFG.exists():
        print(f"{TSKCFG} is missing: run `make install` first", file=sys.stderr)
        return 2
    loop_name = use_uvloop()
    # A terminated benchmark unwinds like Ctrl-C, so every scenario's `finally` stops its server.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        results = asyncio.run(run_all(sizes, args.modes, rounds, progress=not args.json))
    except BenchError as error:
        print(f"propagation benchmark failed: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("propagation benchmark interrupted; its servers were stopped", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print_table(results, rounds, loop_name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
