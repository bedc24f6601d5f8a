"""Pushes per second on PostgreSQL against SQLite, 8 writers, side by side in one run.

    .venv/bin/python bench/stores.py             # 5 alternating rounds of 3 s per store
    .venv/bin/python bench/stores.py --quick     # 3 rounds of 1 s
    .venv/bin/python bench/stores.py --json      # machine-readable result

Two `tskcfg serve` processes run at once: one on its SQLite file (synchronous=FULL, the
default), one with `--store postgresql://...` on a PostgreSQL started for the run in a
temporary folder on 127.0.0.1 (fsync on, synchronous_commit on: a 201 is on disk, as with
SQLite). Each round drives both in turn with wrk: 8 connections, each sending its next push
(a ~2 KB schema-validated user-service document with a different source) as soon as the last
is answered. The figure is versions created per second, with the CPU time (user + system,
from /proc) the server process and PostgreSQL's processes spent per version created: those
hold when the machine is shared, where the rate does not. Needs PostgreSQL installed (the
same binaries the tests use: `pg_config --bindir` or /usr/lib/postgresql/*/bin); as root,
PostgreSQL runs as the `postgres` user.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx
from _common import (
    PUSH_SCRIPT,
    REPOSITORY,
    Server,
    cpu_seconds,
    ensure_wrk,
    load_average,
    lua_string,
    summary,
    user_service_document,
)
from writes import ENVIRONMENT, SERVICE, push_round

GOAL_PUSHES_PER_S = 500.0  # PostgreSQL, 8 writers
WRITERS = 8


def postgres_durability(dsn: str) -> str:
    """PostgreSQL's own word on what a commit waits for; refuses to measure without it."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as connection:
        settings = {
            name: str(connection.execute(f"SHOW {name}").fetchone()[0])  # type: ignore[index]
            for name in ("fsync", "synchronous_commit")
        }
    if settings != {"fsync": "on", "synchronous_commit": "on"}:
        raise SystemExit(f"PostgreSQL does not wait for the disk at commit: {settings}")
    return ", ".join(f"{name}={value}" for name, value in settings.items())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds of 1 s")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--rounds", type=int, help="alternating rounds per store (5, --quick 3)")
    parser.add_argument("--duration", type=float, help="seconds per run (3, --quick 1)")
    args = parser.parse_args(argv)
    rounds = args.rounds or (3 if args.quick else 5)
    duration = args.duration or (1.0 if args.quick else 3.0)
    ensure_wrk()
    sys.path.insert(0, str(REPOSITORY))
    from tests.postgres import start_postgres  # the tests' harness: one way to run PostgreSQL

    source = user_service_document(2048)
    load_before = load_average()
    postgres = start_postgres(fsync=True)
    try:
        dsn = postgres.create_database("tskcfg_bench")
        durability = postgres_durability(dsn)
        with tempfile.TemporaryDirectory(prefix="tskcfg-stores-") as directory:
            work = Path(directory)
            servers = {
                "SQLite": Server(work / "sqlite", access_log=False),
                "PostgreSQL": Server(work / "postgresql", access_log=False, extra=("--store", dsn)),
            }
            try:
                for server in servers.values():
                    server.start()
                scripts: dict[str, Path] = {}
                runs: dict[str, list[dict[str, float]]] = {name: [] for name in servers}
                with httpx.Client(timeout=30) as client:
                    for name, server in servers.items():
                        pushed = client.put(
                            f"{server.url}/v1/configs/{SERVICE}/{ENVIRONMENT}",
                            content=source.encode(),
                            headers={**server.auth, "Content-Type": "text/x-tsk"},
                        )
                        if pushed.status_code != 201:
                            raise SystemExit(f"the first push was refused: {pushed.status_code} {pushed.text}")
                        scripts[name] = work / f"push-{name}.lua"
                        scripts[name].write_text(f"base_document = {lua_string(source)}\n{PUSH_SCRIPT}")
                    postmaster = postgres.pid()
                    assert postmaster is not None
                    for _ in range(rounds):
                        for name, server in servers.items():
                            assert server.process is not None
                            server_cpu, database_cpu = cpu_seconds(server.process.pid), cpu_seconds(postmaster)
                            run = push_round(client, server, scripts[name], WRITERS, duration)
                            created = max(run["versions"], 1)
                            run["server_cpu_ms"] = (cpu_seconds(server.process.pid) - server_cpu) / created * 1e3
                            run["postgres_cpu_ms"] = (
                                (cpu_seconds(postmaster) - database_cpu) / created * 1e3
                                if name == "PostgreSQL" else 0.0
                            )
                            runs[name].append(run)
            finally:
                for server in servers.values():
                    server.stop()
    finally:
        postgres.remove()
    rows: list[dict[str, Any]] = []
    for name, results in runs.items():
        rates = summary([run["rate"] for run in results])
        goal = GOAL_PUSHES_PER_S if name == "PostgreSQL" else None
        rows.append({
            "benchmark": "stores",
            "store": name,
            "writers": WRITERS,
            "pushes_per_s": rates,
            "p50_ms": summary([run["p50"] for run in results])["median"],
            "p99_ms": summary([run["p99"] for run in results])["median"],
            "server_cpu_ms": summary([run["server_cpu_ms"] for run in results])["median"],
            "postgres_cpu_ms": summary([run["postgres_cpu_ms"] for run in results])["median"],
            "goal_pushes_per_s": goal,
            "goal_met": None if goal is None else rates["median"] >= goal,
            "document_bytes": len(source),
            "durability": "synchronous=FULL" if name == "SQLite" else durability,
            "rounds": rounds,
            "duration_s": duration,
        })
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(
        f"pushes/s with {WRITERS} writers, {len(source):,} byte document, schema-validated;"
        f" median of {rounds} alternating {duration:g} s runs [min..max]"
    )
    print(
        f"{'store':<11} {'pushes/s':>9} {'[spread]':>13} {'p50 ms':>7} {'p99 ms':>7}"
        f" {'server CPU':>11} {'PG CPU':>8} {'goal':>6}"
    )
    for row in rows:
        rates = row["pushes_per_s"]
        wanted = f">={row['goal_pushes_per_s']:.0f}" if row["goal_pushes_per_s"] else "-"
        mark = {None: "", True: " met", False: " MISSED"}[row["goal_met"]]
        spread = f"[{rates['min']:.0f}..{rates['max']:.0f}]"
        print(
            f"{row['store']:<11} {rates['median']:>9,.0f} {spread:>13} {row['p50_ms']:>7.2f}"
            f" {row['p99_ms']:>7.2f} {row['server_cpu_ms']:>8.2f} ms {row['postgres_cpu_ms']:>5.2f} ms"
            f" {wanted:>6}{mark}"
        )
    print(
        f"\nDurability: a 201 is on disk on both (SQLite synchronous=FULL; PostgreSQL, as read "
        f"from the server during the run: {durability})."
    )
    print(f"Load average {load_before[0]:.2f} -> {load_average()[0]:.2f} on {sys.platform}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
