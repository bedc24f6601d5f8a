"""Rollouts: what a running rollout costs the two hot paths, against the same without one.

1. Hot GET: wrk (2 threads, 50 connections) reads one document whose every read names an
   instance (`X-Instance-ID`), first with no rollout, then with a rollout running on it (steps
   50/100, a bake that does not end), alternating the two `--rounds` times. Figures: requests/s
   and the server's CPU per request, medians over the rounds.
2. Propagation at N watchers (default 1,000): N long polls, each its own instance, park on
   the document; a change is sent and the time until the last watcher has its new version is
   taken. Without a rollout the change is a plain push; with one it is a rollout that starts at
   100 % (every named instance moves to the candidate), then an abort moves them back before
   the next round. Both changes wake every watcher with one rendered answer; the rollout's also
   looks up each waiter's bucket. Medians over `--rounds` changes of each kind.

Goal: with a rollout running, no more than 10 % slower: the hot GET's server CPU per request
(the figure that holds on a shared, noisy machine, where requests/s mostly measures what the
other processes leave; both are shown), and the time to the last watcher.

    .venv/bin/python bench/rollouts.py                 # 1,000 watchers, 5 rounds
    .venv/bin/python bench/rollouts.py --quick         # 200 watchers, 2 rounds, short reads
    .venv/bin/python bench/rollouts.py --json          # machine-readable result
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Server, cpu_seconds, ensure_wrk, user_service_document, wrk  # noqa: E402

SERVICE = "user-service"
ENVIRONMENT = "production"
PATH = f"/v1/configs/{SERVICE}/{ENVIRONMENT}"
GOAL_PERCENT = 10.0


def push(client: httpx.Client, source: str) -> int:
    response = client.put(PATH, content=source.encode(), headers={"Content-Type": "text/x-tsk"})
    response.raise_for_status()
    return int(response.json()["version"])


def start_rollout(client: httpx.Client, source: str, steps: list[int]) -> int:
    response = client.post(
        PATH + "/rollouts", json={"source": source, "steps": steps, "bake_seconds": 86400}
    )
    response.raise_for_status()
    return int(response.json()["candidate"]["version"])


def abort(client: httpx.Client) -> None:
    client.post(PATH + "/rollout/abort").raise_for_status()


def reads(server: Server, client: httpx.Client, base: str, rounds: int, duration: float) -> dict[str, Any]:
    """Requests/s and CPU per request of the hot GET, without and with a rollout, alternating."""
    assert server.process is not None
    headers = {**server.auth, "X-Instance-ID": "bench-instance-1"}
    figures: dict[str, list[dict[str, float]]] = {"plain": [], "rollout": []}
    wrk(server.url + PATH, connections=50, threads=2, duration=1, headers=headers)  # warm up
    for number in range(rounds):
        for kind in ("plain", "rollout"):
            if kind == "rollout":
                start_rollout(client, base + f"round_{number}: {number}\n", [50, 100])
            before = cpu_seconds(server.process.pid)
            result = wrk(server.url + PATH, connections=50, threads=2, duration=duration, headers=headers)
            spent = cpu_seconds(server.process.pid) - before
            if result["errors"]:
                raise RuntimeError(f"{result['errors']:g} reads failed ({kind})")
            result["cpu_us"] = spent / max(result["requests"], 1) * 1e6
            figures[kind].append(result)
            if kind == "rollout":
                abort(client)
    summary = {
        kind: {
            "rate": statistics.median(item["rate"] for item in runs),
            "cpu_us": statistics.median(item["cpu_us"] for item in runs),
            "p99_ms": statistics.median(item["p99"] for item in runs),
        }
        for kind, runs in figures.items()
    }
    summary["slower_percent"] = (1 - summary["rollout"]["rate"] / summary["plain"]["rate"]) * 100
    summary["cpu_slower_percent"] = (summary["rollout"]["cpu_us"] / summary["plain"]["cpu_us"] - 1) * 100
    return summary


class Watcher:
    """One instance's long poll on a raw connection, asking again as soon as it is answered."""

    def __init__(self, server: Server, name: str, known: int) -> None:
        self.server = server
        self.name = name
        self.known = known
        self.arrived: dict[int, float] = {}
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    def request(self) -> bytes:
        return (
            f"GET {PATH}?wait=120 HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {self.server.token}\r\n"
            f'X-Instance-ID: {self.name}\r\nIf-None-Match: "{self.known}"\r\n\r\n'
        ).encode()

    async def run(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.server.port)
        self.writer.write(self.request())
        while True:
            head = await self.reader.readuntil(b"\r\n\r\n")
            length = 0
            version = self.known
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.lower() == b"content-length":
                    length = int(value)
                elif name.lower() == b"etag":
                    version = int(value.strip().strip(b'"'))
            if length:
                await self.reader.readexactly(length)
            if version != self.known:
                self.arrived[version] = time.perf_counter()
                self.known = version
            self.writer.write(self.request())


async def parked(server: Server, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            text = (await client.get(server.url + "/metrics")).text
            for line in text.splitlines():
                if line.startswith('tskcfg_watchers{kind="long_poll"}') and float(line.split()[-1]) >= count:
                    return
            await asyncio.sleep(0.05)
    raise RuntimeError(f"fewer than {count} long polls parked after {timeout:g} s")


async def propagation(server: Server, client: httpx.Client, base: str, watchers: int, rounds: int) -> dict[str, Any]:
    """Seconds from sending a change to the last of `watchers` having it: a push, and a
    rollout that moves them all."""
    current = int(client.get(PATH).json()["version"])
    polls = [Watcher(server, f"instance-{number}", current) for number in range(watchers)]
    tasks = [asyncio.create_task(poll.run()) for poll in polls]
    timings: dict[str, list[float]] = {"plain": [], "rollout": []}
    try:
        await parked(server, watchers)
        for number in range(rounds):
            for kind in ("plain", "rollout"):
                source = base + f"propagation_{kind}_{number}: {number}\n"
                started = time.perf_counter()
                if kind == "plain":
                    expected = await asyncio.to_thread(push, client, source)
                else:
                    expected = await asyncio.to_thread(start_rollout, client, source, [100])
                deadline = time.monotonic() + 60
                while not all(expected in poll.arrived for poll in polls):
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"not every watcher had version {expected} ({kind})")
                    await asyncio.sleep(0.005)
                timings[kind].append(max(poll.arrived[expected] for poll in polls) - started)
                if kind == "rollout":
                    await asyncio.to_thread(abort, client)
                    stable = expected - 1
                    while not all(poll.known == stable for poll in polls):
                        await asyncio.sleep(0.01)
                await parked(server, watchers)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for poll in polls:
            if poll.writer is not None:
                poll.writer.close()
    summary: dict[str, Any] = {
        kind: {"last_ms": statistics.median(values) * 1000, "runs_ms": [value * 1000 for value in values]}
        for kind, values in timings.items()
    }
    summary["watchers"] = watchers
    summary["slower_percent"] = (summary["rollout"]["last_ms"] / summary["plain"]["last_ms"] - 1) * 100
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--watchers", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of each wrk run")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true")
    arguments = parser.parse_args()
    if arguments.quick:
        arguments.watchers, arguments.rounds, arguments.duration = 200, 2, 1.0
    ensure_wrk()
    base = user_service_document(2048)
    with tempfile.TemporaryDirectory() as work, Server(Path(work), access_log=False) as server:
        with httpx.Client(base_url=server.url, headers=server.auth, timeout=30) as client:
            push(client, base)
            read_figures = reads(server, client, base, arguments.rounds, arguments.duration)
            propagation_figures = asyncio.run(
                propagation(server, client, base, arguments.watchers, arguments.rounds)
            )
    result = {
        "reads": read_figures,
        "propagation": propagation_figures,
        "goal_percent": GOAL_PERCENT,
        "met": read_figures["cpu_slower_percent"] <= GOAL_PERCENT
        and propagation_figures["slower_percent"] <= GOAL_PERCENT,
    }
    if arguments.json:
        print(json.dumps(result))
        return
    plain, rollout = read_figures["plain"], read_figures["rollout"]
    print(f"hot GET          without: {plain['rate']:.0f} req/s, {plain['cpu_us']:.1f} us CPU/req")
    print(f"                 with:    {rollout['rate']:.0f} req/s, {rollout['cpu_us']:.1f} us CPU/req"
          f"  ({read_figures['slower_percent']:+.1f} % fewer req/s,"
          f" {read_figures['cpu_slower_percent']:+.1f} % CPU per request)")
    print(f"propagation x{arguments.watchers}  push:    {propagation_figures['plain']['last_ms']:.1f} ms to the last watcher")
    print(f"                 rollout: {propagation_figures['rollout']['last_ms']:.1f} ms"
          f"  ({propagation_figures['slower_percent']:+.1f} % slower)")
    print(f"goal: at most {GOAL_PERCENT:g} % slower: {'met' if result['met'] else 'NOT met'}")


if __name__ == "__main__":
    main()
