"""Hot reload latency: from a push's acknowledgement to the handler running in another process.

    .venv/bin/python bench/apply.py [--pushes 200] [--poll-pushes 40]
    .venv/bin/python bench/apply.py --quick     # 40 pushes per mode (10 in poll mode)
    .venv/bin/python bench/apply.py --json      # machine-readable result

Starts `tskcfg serve` on a free 127.0.0.1 port (its own process, a temporary data
directory), and one service process per watch mode running a `ConfigClient` with a
handler on the `bench` section. The bench pushes a new version, takes the time when the
server acknowledges it (201), and the service prints when its handler ran. Both read
CLOCK_MONOTONIC, which every process on the machine shares. Pushes are sequential: the
next one goes out after the handler reported the previous one (in poll mode, after a
random pause within the interval, so pushes land at every point of the poll cycle).
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
SERVICE = "bench-service"
ENVIRONMENT = "development"
GOAL_P99_MS = 100.0  # watch and SSE modes; poll mode is the comparison

SERVICE_PROCESS = """
import sys, time
from tskcfg import ConfigClient

server, token, mode, interval, cache = sys.argv[1:6]
client = ConfigClient("bench-service", "development", server=server, token=token, mode=mode,
                      poll_interval=float(interval), cache_dir=cache)

@client.on("bench")
def ran(new, old):
    print(new["counter"], time.monotonic(), flush=True)

client.start()
print("ready", flush=True)
sys.stdin.read()  # until the bench closes our stdin
client.stop()
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def document(counter: int) -> str:
    return f'name: "bench-service"\n\n[bench]\ncounter: {counter}\n\n[features]\nenabled: true\n'


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[index]


class Service:
    """The service process: a ConfigClient in one watch mode, printing when its handler ran."""

    def __init__(self, url: str, token: str, mode: str, interval: float, cache: Path) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.process = subprocess.Popen(
            [sys.executable, "-c", SERVICE_PROCESS, url, token, mode, str(interval), str(cache)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.strip())

    def next_line(self, timeout: float = 30.0) -> str:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise SystemExit(f"the service process said nothing for {timeout:g} s") from None

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def measure(
    http: httpx.Client,
    url: str,
    token: str,
    mode: str,
    interval: float,
    pushes: int,
    work: Path,
    start: int,
) -> list[float]:
    service = Service(url, token, mode, interval, work / f"cache-{mode}")
    try:
        while service.next_line() != "ready":
            pass
        latencies = []
        for counter in range(start, start + pushes):
            if mode == "poll":
                # Pushes land at random points of the poll cycle, not just after a poll.
                time.sleep(random.uniform(0, interval))
            response = http.put(
                f"{url}/v1/configs/{SERVICE}/{ENVIRONMENT}",
                content=document(counter).encode(),
                headers={"Content-Type": "text/x-tsk"},
            )
            acknowledged = time.monotonic()
            if response.status_code != 201:
                raise SystemExit(f"push refused: {response.status_code} {response.text}")
            while True:
                seen, _, moment = service.next_line().partition(" ")
                if seen == str(counter):
                    break
            latencies.append((float(moment) - acknowledged) * 1000)
        return latencies
    finally:
        service.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pushes", type=int, default=None, help="pushes per long-poll and SSE mode (200)")
    parser.add_argument(
        "--poll-pushes",
        type=int,
        default=None,
        help="pushes in poll mode (each waits for the interval; 40)",
    )
    parser.add_argument("--poll-interval", type=float, default=0.5)
    parser.add_argument("--quick", action="store_true", help="40 pushes per mode, 10 in poll mode")
    parser.add_argument("--json", action="store_true", help="print JSON")
    arguments = parser.parse_args()
    if arguments.pushes is None:
        arguments.pushes = 40 if arguments.quick else 200
    if arguments.poll_pushes is None:
        arguments.poll_pushes = 10 if arguments.quick else 40

    with tempfile.TemporaryDirectory() as directory:
        work = Path(directory)
        (work / "environments").mkdir()
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "tskcfg"),
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--data-dir",
                str(work / "data"),
                "--environments",
                str(work / "environments"),
                "--open-services",
                "--schemas",
                str(ROOT / "schemas"),
                "--no-sync",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("the server did not start")
                time.sleep(0.05)
            token = (work / "data" / "admin.token").read_text().strip()
            with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=10) as http:
                http.put(
                    f"{url}/v1/configs/{SERVICE}/{ENVIRONMENT}",
                    content=document(0).encode(),
                    headers={"Content-Type": "text/x-tsk"},
                )
                runs = [
                    ("watch (long poll)", "watch", 30.0, arguments.pushes),
                    ("sse", "sse", 30.0, arguments.pushes),
                    (
                        f"poll every {arguments.poll_interval:g} s",
                        "poll",
                        arguments.poll_interval,
                        arguments.poll_pushes,
                    ),
                ]
                results = []
                counter = 1
                for label, mode, interval, pushes in runs:
                    latencies = measure(http, url, token, mode, interval, pushes, work, counter)
                    counter += pushes
                    results.append((label, pushes, latencies))
        finally:
            server.terminate()
            server.wait(timeout=10)

    if arguments.json:
        rows = [
            {
                "benchmark": "apply",
                "mode": label,
                "pushes": pushes,
                "p50_ms": statistics.median(latencies),
                "p90_ms": percentile(latencies, 0.90),
                "p99_ms": percentile(latencies, 0.99),
                "max_ms": max(latencies),
                "min_ms": min(latencies),
                "goal_p99_ms": None if label.startswith("poll") else GOAL_P99_MS,
            }
            for label, pushes, latencies in results
        ]
        print(json.dumps(rows, indent=2))
        return
    print("Hot reload: push acknowledged -> handler ran in the service process (ms)")
    print(f"{'mode':<22}{'pushes':>8}{'p50':>10}{'p99':>10}{'max':>10}")
    for label, pushes, latencies in results:
        print(
            f"{label:<22}{pushes:>8}{statistics.median(latencies):>10.1f}"
            f"{percentile(latencies, 0.99):>10.1f}{max(latencies):>10.1f}"
        )


if __name__ == "__main__":
    main()
