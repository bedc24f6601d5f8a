"""Write throughput: pushes per second with 1 and 8 writers, SQLite synchronous FULL (the default) and NORMAL.

    .venv/bin/python bench/writes.py             # 5 alternating rounds of 3 s per case
    .venv/bin/python bench/writes.py --quick     # 3 rounds of 1 s
    .venv/bin/python bench/writes.py --json      # machine-readable result

Every push is a PUT of a ~2 KB user-service document with a different source (so each one
creates a version), parsed, validated against schemas/user-service.json and its section
schemas, committed and audited before its 201. The figure is versions actually created per
second (read from the document's version number before and after each run), driven by wrk
with 1 or 8 connections, each sending its next push as soon as the last is answered.

Two servers run side by side: the real `tskcfg serve` (synchronous=FULL: the WAL is fsynced
at every commit, so an answered push survives power loss as well as kill -9) and the same
server started through a launcher that switches its SQLite connections to synchronous=NORMAL
(answered pushes survive kill -9 but may be lost on power loss; the server has no setting
for this, the launcher exists only to show what FULL costs). Rounds alternate between them.

The comparison is the floor under any durable write on this disk: one thread committing
~2 KB rows to a bare SQLite file (WAL, same synchronous level), one transaction per row. The
server can beat it with 8 writers because it commits every waiting push in one transaction.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from _common import (
    PUSH_SCRIPT,
    Server,
    ensure_wrk,
    load_average,
    lua_string,
    summary,
    user_service_document,
    wrk,
)

SERVICE, ENVIRONMENT = "user-service", "production"
GOAL_PUSHES_PER_S = 500.0  # with 8 writers, at the default (FULL)
FLOOR_MAX_COMMITS = 200_000  # bound on the floor's loop besides its duration



def version(client: httpx.Client, server: Server) -> int:
    response = client.get(f"{server.url}/v1/configs/{SERVICE}/{ENVIRONMENT}", headers=server.auth)
    response.raise_for_status()
    return int(response.json()["version"])


def push_round(
    client: httpx.Client, server: Server, script: Path, writers: int, duration: float
) -> dict[str, float]:
    before = version(client, server)
    started = time.monotonic()
    result = wrk(
        f"{server.url}/v1/configs/{SERVICE}/{ENVIRONMENT}",
        connections=writers,
        threads=min(writers, 2),
        duration=duration,
        headers={**server.auth, "Content-Type": "text/x-tsk"},
        script=script,
    )
    elapsed = time.monotonic() - started
    created = version(client, server) - before
    if result["errors"]:
        raise SystemExit(f"{result['errors']:.0f} pushes were refused: {server.log_tail()}")
    return {"rate": created / elapsed, "p50": result["p50"], "p99": result["p99"], "versions": created}


def floor_round(path: Path, synchronous: str, body: bytes, duration: float) -> float:
    """Commits per second of one thread writing one ~2 KB row per transaction to a bare SQLite file."""
    connection = sqlite3.connect(str(path), isolation_level=None)
    try:
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute(f"PRAGMA synchronous = {synchronous}")
        connection.execute("CREATE TABLE IF NOT EXISTS rows (id INTEGER PRIMARY KEY, body BLOB)")
        count = 0
        started = time.monotonic()
        deadline = started + duration
        while count < FLOOR_MAX_COMMITS and time.monotonic() < deadline:
            connection.execute("BEGIN")
            connection.execute("INSERT INTO rows (body) VALUES (?)", (body + str(count).encode(),))
            connection.execute("COMMIT")
            count += 1
        return count / (time.monotonic() - started)
    finally:
        connection.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds of 1 s")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--rounds", type=int, help="alternating rounds per case (5, --quick 3)")
    parser.add_argument("--duration", type=float, help="seconds per run (3, --quick 1)")
    args = parser.parse_args(argv)
    rounds = args.rounds or (3 if args.quick else 5)
    duration = args.duration or (1.0 if args.quick else 3.0)
    ensure_wrk()
    source = user_service_document(2048)
    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="tskcfg-writes-") as directory:
        work = Path(directory)
        servers = {level: Server(work / level.lower(), synchronous=level) for level in ("FULL", "NORMAL")}
        try:
            for server in servers.values():
                server.start()
            scripts: dict[str, Path] = {}
            with httpx.Client(timeout=30) as client:
                for level, server in servers.items():
                    pushed = client.put(
                        f"{server.url}/v1/configs/{SERVICE}/{ENVIRONMENT}",
                        content=source.encode(),
                        headers={**server.auth, "Content-Type": "text/x-tsk"},
                    )
                    if pushed.status_code != 201:
                        raise SystemExit(f"the first push was refused: {pushed.status_code} {pushed.text}")
                    scripts[level] = work / f"push-{level}.lua"
                    scripts[level].write_text(f"base_document = {lua_string(source)}\n{PUSH_SCRIPT}")
                runs: dict[tuple[int, str], list[dict[str, float]]] = {}
                floors: dict[str, list[float]] = {"FULL": [], "NORMAL": []}
                for round_number in range(rounds):
                    for writers in (1, 8):
                        for level, server in servers.items():
                            runs.setdefault((writers, level), []).append(
                                push_round(client, server, scripts[level], writers, duration)
                            )
                    for level in floors:
                        floors[level].append(
                            floor_round(
                                work / f"floor-{level}-{round_number}.db", level, source.encode(),
                                0.3 if args.quick else duration,
                            )
                        )
        finally:
            for server in servers.values():
                server.stop()
    rows: list[dict[str, Any]] = []
    for (writers, level), results in sorted(runs.items()):
        rates = summary([run["rate"] for run in results])
        floor = summary(floors[level])
        rows.append({
            "benchmark": "writes",
            "writers": writers,
            "synchronous": level,
            "default": level == "FULL",
            "pushes_per_s": rates,
            "p50_ms": summary([run["p50"] for run in results])["median"],
            "p99_ms": summary([run["p99"] for run in results])["median"],
            "floor_commits_per_s": floor,
            "ratio_to_floor": rates["median"] / floor["median"],
            "goal_pushes_per_s": GOAL_PUSHES_PER_S if writers == 8 else None,
            "goal_met": None if writers != 8 else rates["median"] >= GOAL_PUSHES_PER_S,
            "document_bytes": len(source),
            "rounds": rounds,
            "duration_s": duration,
        })
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(
        f"pushes/s (versions created), {len(source):,} byte document, schema-validated;"
        f" median of {rounds} alternating {duration:g} s runs [min..max]"
    )
    print(
        f"{'writers':>7} {'synchronous':<12} {'pushes/s':>9} {'[spread]':>13} {'p50 ms':>7} {'p99 ms':>7}"
        f" {'floor/s':>8} {'ratio':>6} {'goal':>6}"
    )
    for row in rows:
        rates = row["pushes_per_s"]
        goal = f">={row['goal_pushes_per_s']:.0f}" if row["goal_pushes_per_s"] else "-"
        mark = {None: "", True: " met", False: " MISSED"}[row["goal_met"] if row["default"] else None]
        spread = f"[{rates['min']:.0f}..{rates['max']:.0f}]"
        print(
            f"{row['writers']:>7} {row['synchronous']:<12} {rates['median']:>9,.0f}"
            f" {spread:>13} {row['p50_ms']:>7.2f} {row['p99_ms']:>7.2f}"
            f" {row['floor_commits_per_s']['median']:>8,.0f} {row['ratio_to_floor']:>6.2f} {goal:>6}{mark}"
        )
    print(
        "\nfloor/s: one thread committing one ~2 KB row per transaction to a bare SQLite file"
        f" (WAL, same synchronous). Load average {load_before[0]:.2f} -> {load_average()[0]:.2f}"
        f" on {sys.platform}."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
