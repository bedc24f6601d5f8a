"""Benchmark `tskcfg serve --workers 2` against one worker: reads per second and server CPU per
read, side by side in one run.

Run: .venv/bin/python bench/workers.py [--duration 5] [--rounds 3] [--connections 64]
     [--quick] (2 s runs) [--json] (machine-readable result)

Two servers start on temporary data dirs (127.0.0.1): one process, and `--workers 2` (a
supervisor and two workers on one port). Each holds the same 2 KB user-service document.
wrk (2 threads, the same connections) drives `GET` 200 and `GET` 304 against each in
alternating rounds, so load from elsewhere falls on both; the median round is shown. Server
CPU per request is the CPU time (user + system, from /proc) of the server process and its
workers over a run divided by the requests answered. On a 2-core machine wrk itself needs a
core, so two workers compete with it: the figure to read is the ratio in the same run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx
from _common import Server, cpu_seconds, ensure_wrk, user_service_document, wrk

DOCUMENT = "/v1/configs/user-service/production"


def measured(server: Server, headers: dict[str, str], arguments: argparse.Namespace) -> dict[str, float]:
    assert server.process is not None
    before = cpu_seconds(server.process.pid)
    run = wrk(
        server.url + DOCUMENT,
        connections=arguments.connections,
        threads=2,
        duration=arguments.duration,
        headers=headers,
    )
    spent = cpu_seconds(server.process.pid) - before
    run["cpu_us"] = spent / run["requests"] * 1e6 if run["requests"] else 0.0
    return run


def median(runs: list[dict[str, float]]) -> dict[str, float]:
    return sorted(runs, key=lambda run: run["rate"])[len(runs) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=None, help="seconds per run (5, --quick 2)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true")
    arguments = parser.parse_args()
    if arguments.duration is None:
        arguments.duration = 2 if arguments.quick else 5
    ensure_wrk()
    work = Path(tempfile.mkdtemp(prefix="tskcfg-bench-workers-"))
    servers = {
        "1 worker": Server(work / "one", access_log=False),
        "2 workers": Server(work / "two", access_log=False, extra=("--workers", "2")),
    }
    try:
        source = user_service_document(2048)
        etags = {}
        for server in servers.values():
            server.start()
            headers = {**server.auth, "Content-Type": "text/x-tsk"}
            pushed = httpx.put(server.url + DOCUMENT, content=source.encode(), headers=headers)
            assert pushed.status_code == 201, pushed.text
            etags[server.url] = pushed.headers.get("etag") or f'"{pushed.json()["version"]}"'
        runs: dict[str, dict[str, list[dict[str, float]]]] = {"GET 200": {}, "GET 304": {}}
        for _ in range(arguments.rounds):
            for scenario in runs:
                for name, server in servers.items():
                    headers = dict(server.auth)
                    if scenario == "GET 304":
                        headers["If-None-Match"] = etags[server.url]
                    runs[scenario].setdefault(name, []).append(measured(server, headers, arguments))
        rows: list[dict[str, Any]] = []
        for scenario, by_server in runs.items():
            one, two = median(by_server["1 worker"]), median(by_server["2 workers"])
            rows.append({
                "benchmark": "workers",
                "scenario": scenario,
                "connections": arguments.connections,
                "duration_s": arguments.duration,
                "rounds": arguments.rounds,
                "one": one,
                "two": two,
                "one_rates": [run["rate"] for run in by_server["1 worker"]],
                "two_rates": [run["rate"] for run in by_server["2 workers"]],
                "rate_ratio": two["rate"] / one["rate"] if one["rate"] else 0.0,
                "cpu_ratio": two["cpu_us"] / one["cpu_us"] if one["cpu_us"] else 0.0,
                "errors": one["errors"] + two["errors"],
            })
        if arguments.json:
            print(json.dumps(rows, indent=2))
            return
        print(f"{'':8} {'1 worker req/s':>15} {'2 workers req/s':>16} {'ratio':>6} "
              f"{'CPU/req 1':>10} {'CPU/req 2':>10} {'ratio':>6}")
        for row in rows:
            print(
                f"{row['scenario']:8} {row['one']['rate']:>15,.0f} {row['two']['rate']:>16,.0f} "
                f"{row['rate_ratio']:>6.2f} {row['one']['cpu_us']:>7.1f} us {row['two']['cpu_us']:>7.1f} us "
                f"{row['cpu_ratio']:>6.2f}"
            )
    finally:
        for server in servers.values():
            server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
