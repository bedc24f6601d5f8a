"""Propagation across replicas: 1,000 long-poll watchers spread over 3 replicas on one PostgreSQL,
one push to one replica, against the same 1,000 watchers on 1 replica, side by side in one run.

    .venv/bin/python bench/replicas.py            # 1,000 watchers, 5 pushes per layout
    .venv/bin/python bench/replicas.py --quick    # 300 watchers, 3 pushes per layout
    .venv/bin/python bench/replicas.py --json     # machine-readable result

A PostgreSQL is started for the run in a temporary folder on 127.0.0.1 (fsync on), with two
empty databases. Four `tskcfg serve --store postgresql://...` processes run at once (access
log off, file sync off): three replicas sharing one database, and one alone on the other.
The watchers (this process, one event loop) hold `GET /v1/configs/{service}/{env}?wait=60`
with the current ETag: spread round-robin over the three replicas, or all on the single one.
Both layouts run all along (so each shares the machine with the other's idle servers), measured
one after the other; each push is sent to the first replica on a
blocking socket from another thread, and every watcher's latency is from the moment the push
was sent to the moment its whole answer (the new version) arrived. The other replicas learn
of the version through PostgreSQL's NOTIFY, read it once each and wake their watchers
(docs/replicas.md). Goal: p99 <= 50 ms with 3 replicas. Needs PostgreSQL installed (the
binaries the tests use); as root it runs as the `postgres` user.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import REPOSITORY, TSKCFG, free_port, load_average, percentile

SERVICE, ENVIRONMENT = "bench-replicas", "development"
PATH = f"/v1/configs/{SERVICE}/{ENVIRONMENT}"
GOAL_P99_MS = 50.0


class Replica:
    def __init__(self, work: Path, name: str, dsn: str) -> None:
        self.port = free_port()
        self.data = work / name
        empty = work / "empty"
        empty.mkdir(exist_ok=True)
        self.log = work / f"{name}.log"
        self.command = [
            str(TSKCFG), "serve", "--host", "127.0.0.1", "--port", str(self.port),
            "--data-dir", str(self.data), "--environments", str(empty), "--schemas", str(empty),
            "--no-sync", "--no-access-log", "--open-services", "--store", dsn,
        ]  # fmt: skip
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(self.command, stdout=subprocess.DEVNULL, stderr=log)

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"a replica exited: {self.log.read_text()[-2000:]}")
            try:
                status, _ = request(self.port, "GET", "/health")
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("a replica did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()


def request(
    port: int, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    """One blocking HTTP/1.1 request; (status, body)."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
    head, _, content = received.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), content


class Watcher:
    """One long poll at a time on its own connection; records when each new version arrived."""

    def __init__(self, port: int, token: str) -> None:
        self.port = port
        self.token = token
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.version = 0
        self.arrived: dict[int, float] = {}

    async def connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)

    def ask(self) -> None:
        assert self.writer is not None
        self.writer.write(
            f"GET {PATH}?wait=60 HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {self.token}\r\n"
            f'If-None-Match: "{self.version}"\r\n\r\n'.encode()
        )

    async def run(self, until: int) -> None:
        assert self.reader is not None
        while self.version < until:
            self.ask()
            head = await self.reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = re.search(rb"(?i)content-length: (\d+)", head)
            await self.reader.readexactly(int(length.group(1)) if length else 0)
            if status == 200:
                self.version = int(re.search(rb'(?i)etag: "(\d+)"', head).group(1))  # type: ignore[union-attr]
                self.arrived[self.version] = time.monotonic()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def parked(port: int) -> int:
    _, body = request(port, "GET", "/metrics")
    found = re.search(rb'^tskcfg_watchers\{kind="long_poll"\} (\S+)$', body, re.M)
    return int(float(found.group(1))) if found else 0


def document(number: int) -> bytes:
    return f"number: {number}\nfiller: \"{'x' * 1500}\"\n".encode()


async def measure(layout: str, replicas: list[Replica], token: str, watchers: int, pushes: int) -> dict[str, Any]:
    auth = {"Authorization": f"Bearer {token}", "Content-Type": "text/x-tsk"}
    status, body = await asyncio.to_thread(request, replicas[0].port, "PUT", PATH, document(0), auth)
    assert status in (200, 201), body
    first = json.loads(body)["version"]
    crowd = [Watcher(replicas[index % len(replicas)].port, token) for index in range(watchers)]
    for watcher in crowd:
        watcher.version = first
    await asyncio.gather(*(watcher.connect() for watcher in crowd))
    last = first + pushes
    tasks = [asyncio.create_task(watcher.run(last)) for watcher in crowd]
    p99s, p50s, worst = [], [], []
    try:
        for number in range(1, pushes + 1):
            deadline = time.monotonic() + 60
            while sum([await asyncio.to_thread(parked, replica.port) for replica in replicas]) < watchers:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{layout}: the watchers did not all park")
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.3)
            sent: list[float] = []

            def push(number: int = number, sent: list[float] = sent) -> int:
                sent.append(time.monotonic())
                status, body = request(replicas[0].port, "PUT", PATH, document(number), auth)
                assert status == 201, body
                return int(json.loads(body)["version"])

            version = await asyncio.to_thread(push)
            deadline = time.monotonic() + 60
            while not all(version in watcher.arrived for watcher in crowd):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{layout}: not every watcher had version {version}")
                await asyncio.sleep(0.01)
            latencies = sorted((watcher.arrived[version] - sent[0]) * 1000 for watcher in crowd)
            p50s.append(percentile(latencies, 0.5))
            p99s.append(percentile(latencies, 0.99))
            worst.append(latencies[-1])
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for watcher in crowd:
            watcher.close()
    return {
        "benchmark": "replicas",
        "layout": layout,
        "replicas": len(replicas),
        "watchers": watchers,
        "pushes": pushes,
        "p50_ms": statistics.median(p50s),
        "p99_ms": statistics.median(p99s),
        "p99_ms_min": min(p99s),
        "p99_ms_max": max(p99s),
        "max_ms": max(worst),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="300 watchers, 3 pushes per layout")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--watchers", type=int)
    parser.add_argument("--pushes", type=int)
    args = parser.parse_args(argv)
    watchers = args.watchers or (300 if args.quick else 1000)
    pushes = args.pushes or (3 if args.quick else 5)
    sys.path.insert(0, str(REPOSITORY))
    from tests.postgres import start_postgres  # the tests' harness: one way to run PostgreSQL

    load_before = load_average()
    postgres = start_postgres(fsync=True)
    work = Path(tempfile.mkdtemp(prefix="tskcfg-replicas-"))
    shared, alone = postgres.create_database("bench_shared"), postgres.create_database("bench_alone")
    three = [Replica(work, f"replica-{index}", shared) for index in range(3)]
    one = [Replica(work, "alone", alone)]
    try:
        # The first of each store starts alone (it makes the admin token and the tables).
        for group in (three, one):
            group[0].start()
            group[0].wait_ready()
        for replica in three[1:]:
            replica.start()
        for replica in three[1:]:
            replica.wait_ready()
        tokens = {
            "3 replicas": (three[0].data / "admin.token").read_text().strip(),
            "1 replica": (one[0].data / "admin.token").read_text().strip(),
        }
        results = [
            asyncio.run(measure(layout, group, tokens[layout], watchers, pushes))
            for layout, group in (("1 replica", one), ("3 replicas", three))
        ]
        for row in results:
            row["goal_p99_ms"] = GOAL_P99_MS if row["replicas"] == 3 else None
            row["load_before"] = load_before
    finally:
        for replica in three + one:
            replica.stop()
        postgres.remove()
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"{'layout':12} {'watchers':>9} {'p50 ms':>8} {'p99 ms':>8} {'p99 spread':>16} {'max ms':>8}")
    for row in results:
        print(
            f"{row['layout']:12} {row['watchers']:>9,} {row['p50_ms']:>8.1f} {row['p99_ms']:>8.1f} "
            f"{row['p99_ms_min']:>7.1f}..{row['p99_ms_max']:<7.1f} {row['max_ms']:>8.1f}"
        )
    print(f"goal: p99 <= {GOAL_P99_MS:g} ms from the push sent, with 3 replicas")
    return 0


if __name__ == "__main__":
    sys.exit(main())
