"""The benchmark suite: runs every benchmark in bench/ and writes docs/benchmarks.md from their results.

    .venv/bin/python bench/run.py --output docs/benchmarks.md           # `make bench`
    .venv/bin/python bench/run.py --quick --output bench/results/benchmarks-quick.md   # `make bench-quick`
    .venv/bin/python bench/run.py --only parse writes                   # some benchmarks
    .venv/bin/python bench/run.py --from bench/results/latest-full.json --output docs/benchmarks.md

Each benchmark runs in its own process, one after the other (never two at once: they would
measure each other), with `--json`, and its result is kept in bench/results/ (not committed)
with the load average before and after it. The report is generated: its tables come from the
results, its prose from the ANALYSIS text below, so a new run never loses the explanations.
Edit the prose here, not in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPOSITORY = Path(__file__).resolve().parents[1]
RESULTS = REPOSITORY / "bench" / "results"
PYTHON = ".venv/bin/python"
QUICK_BUDGET = 120  # seconds: `make bench-quick` must stay under two minutes


@dataclass(frozen=True)
class Benchmark:
    name: str
    script: str
    full: tuple[str, ...]
    quick: tuple[str, ...]
    timeout_full: float
    timeout_quick: float

    def arguments(self, quick: bool) -> list[str]:
        return [f"bench/{self.script}", *(self.quick if quick else self.full)]

    def command(self, quick: bool) -> str:
        """What a user types to get the same figures as a table."""
        shown = [part for part in self.arguments(quick) if part != "--json"]
        return " ".join([PYTHON, *shown])


BENCHMARKS = [
    Benchmark("parse", "parse.py", ("--json",), ("--json", "--quick"), 300, 30),
    Benchmark("reads", "serve.py", ("--json", "--no-pushes"),
              ("--json", "--no-pushes", "--quick", "--duration", "1"), 600, 40),
    Benchmark("writes", "writes.py", ("--json",), ("--json", "--quick"), 600, 40),
    Benchmark("stores", "stores.py", ("--json",), ("--json", "--quick"), 600, 60),
    Benchmark("propagation", "propagation.py", ("--json",), ("--json", "--quick"), 1500, 60),
    Benchmark("apply", "apply.py", ("--json",), ("--json", "--quick"), 600, 40),
    Benchmark("startup", "startup.py", ("--json",), ("--json", "--quick"), 300, 30),
    Benchmark("scaling", "scaling.py", ("--json",), ("--json", "--quick"), 900, 60),
    Benchmark("workers", "workers.py", ("--json",),
              ("--json", "--quick", "--rounds", "1", "--duration", "1"), 600, 40),
    Benchmark("rollouts", "rollouts.py", ("--json",), ("--json", "--quick"), 600, 60),
    Benchmark("replicas", "replicas.py", ("--json",), ("--json", "--quick"), 600, 60),
]


# -- running ---------------------------------------------------------------------------------


def run_benchmark(benchmark: Benchmark, quick: bool, log: Path) -> dict[str, Any]:
    print(f"== {benchmark.command(quick)}", file=sys.stderr, flush=True)
    load_before = os.getloadavg()
    started = time.monotonic()
    record: dict[str, Any] = {
        "name": benchmark.name,
        "command": benchmark.command(quick),
        "load_before": load_before,
    }
    timeout = benchmark.timeout_quick if quick else benchmark.timeout_full
    try:
        with log.open("a") as stderr:
            stderr.write(f"\n== {benchmark.command(quick)}\n")
            stderr.flush()
            completed = subprocess.run(
                [sys.executable, *benchmark.arguments(quick)],
                cwd=REPOSITORY,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                timeout=timeout,
            )
        if completed.returncode != 0:
            record["error"] = f"exit status {completed.returncode} (see {log.relative_to(REPOSITORY)})"
        else:
            record["result"] = json.loads(completed.stdout)
    except subprocess.TimeoutExpired:
        record["error"] = f"stopped after {timeout:g} s"
    except json.JSONDecodeError as error:
        record["error"] = f"its output was not JSON: {error}"
    record["seconds"] = time.monotonic() - started
    record["load_after"] = os.getloadavg()
    state = record.get("error", "done")
    print(f"   {state} in {record['seconds']:.1f} s (load {record['load_after'][0]:.2f})", file=sys.stderr, flush=True)
    return record


def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPOSITORY, capture_output=True, text=True
    ).stdout.strip()
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
        "commit": commit or "unknown",
    }


# -- formatting ------------------------------------------------------------------------------


def number(value: float | None, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}"


def spread(values: dict[str, Any], digits: int = 0) -> str:
    return f"{number(values['median'], digits)} [{number(values['min'], digits)}..{number(values['max'], digits)}]"


def verdict(met: bool | None) -> str:
    return {None: "-", True: "met", False: "**missed**"}[met]


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def shape_name(k: float) -> str:
    if k < -0.15:
        return "falls"
    if k < 0.15:
        return "about constant"
    if k < 0.85:
        return "sub-linear"
    if k < 1.15:
        return "linear"
    return "worse than linear"


def shape(xs: list[float], ys: list[float], inverse: bool = False) -> str:
    """The curve's shape as the exponent k of y ~ x^k between each pair of neighbouring points.

    The shape is named from the last step, where a fixed cost matters least; each step's k is
    given too. For a rate (`inverse`), the time per item is 1/rate, so the shape is judged on that.
    """
    pairs = [(x, 1 / y if inverse else y) for x, y in zip(xs, ys, strict=True) if x > 0 and y and y > 0]
    if len(pairs) < 2:
        return "not enough points"
    steps = [
        math.log(b[1] / a[1]) / math.log(b[0] / a[0]) for a, b in zip(pairs, pairs[1:], strict=False)
    ]
    (x0, y0), (x1, y1) = pairs[0], pairs[-1]
    text = f"**{shape_name(steps[-1])}**"
    if len(steps) > 1 and shape_name(steps[0]) != shape_name(steps[-1]):
        why = ", where a fixed cost dominates" if steps[0] < steps[-1] else ""
        text += f" at the top of the range ({shape_name(steps[0])} lower down{why})"
    each = ", ".join(f"{k:.2f}" for k in steps)
    return f"{text}: x{y1 / y0:,.3g} over x{x1 / x0:,.0f}; k per step {each}"


# -- the report ------------------------------------------------------------------------------

ANALYSIS = {
    "intro": """\
Every figure below comes from one run of `make bench` (or `make bench-quick`, a reduced run)
on the machine described under it. This file is generated by `bench/run.py`: the tables
from the benchmarks' results, the prose from the text kept in `bench/run.py` (edit it
there). Each benchmark compares us side by side, in the same run, with what a user would
use instead or with a floor (the same work without our server), because the machine is
shared and noisy: the ratio holds where the absolute figure does not. Medians are over
repeated runs, with the spread [min..max]. Each section names the exact command that
prints the same table on its own.""",
    "parse": """\
TSK documents mean the same data as the TOML file next to them (checked before timing);
runs alternate between the two parsers. `tsk.loads` is one pass over the text with an
integer position and one function per grammar rule (`config_service/tsk/_parser.py`);
precompiled regular expressions find the end of names, numbers and runs of plain string
characters, so no Python code runs per character of a string or a number.""",
    "reads": """\
`tskcfg serve` (one process, uvloop and httptools, access log on) and nginx
(`worker_processes 1`, access log on) serve the same response bytes on 127.0.0.1,
driven by the same wrk (2 threads, 64 connections) in alternating runs, so that load
from elsewhere falls on both. Our `GET` carries a bearer token that is checked on
every request. A third server, the floor (`bench/floor_http.py`), answers the same
bytes from memory with uvloop and httptools and nothing else: the least a Python server
on this event loop and parser can spend per request. Requests/s move with whatever
else runs on the machine; the server's CPU time per request, held against the floor's
in the same run, is the figure that holds.

Why it is fast enough: the response of each version is rendered once (body and
headers) and kept in memory; a plain `GET` of a current document, or a conditional one
with the current ETag, is answered from those bytes in the HTTP protocol itself
(`config_service/http1/protocol.py`, running the read path of `config_service/http/read.py`), with
no ASGI task, and so are long polls on a current document; every other request goes
through Starlette. A service polling its config sends the same bytes on its connection
each time (wrk does too): such a repeat is answered from what was decided for it last
time, without being parsed, checked and decided again, as long as its token's record and
the version it was answered from are the same objects as then (a push, a rollout step, a
retire or a revoked token makes the next repeat take the whole path). The token is still
looked up, and the request is still counted and logged, on every repeat. The row
"GET 304, new head" sends an `X-Request-ID` that counts up, so every request's bytes are
new and each takes the whole path (parse, token and scope check, read decision): it has
no goal of its own, and shows what a read costs the first time a connection sends it.
The access log is written in batches every 100 ms rather than through `logging` per
request. The ratios hold under load (nginx slows as much as we do).""",
    "writes": """\
Every push is parsed, validated against `schemas/user-service.json` and its section
schemas, committed and audited before its 201; the figure counts the versions actually
created. Writes go to one writer thread that commits every write waiting at that moment
in one transaction (group commit), so 8 writers share each fsync instead of queueing
for one each.

`synchronous` is a trade-off, so both are measured. The default, and the only setting
the server offers, is **FULL** (`config_service/store/sqlite.py`): the WAL is fsynced at each
commit, so an acknowledged push survives power loss as well as `kill -9`. NORMAL would
keep `kill -9` durability but could lose the last commits on power loss. The NORMAL
rows come from the same server started through a launcher in `bench/_common.py` that
switches its SQLite connections to NORMAL (and checks that it did); there is no
server option for it. On this machine's disk an fsync is cheap (the floor commits
thousands of times per second with FULL), so NORMAL gains only what the note under the
table says: a push is bound mostly by CPU (parse, validation, canonical JSON and hashing
under the GIL on one core), and the commit with its fsync is the smaller part (see "What
limits the figures"). The default stays FULL: the goal is met with it, and the gain would be paid
for with acknowledged pushes lost on power loss. On a disk with slow fsync, 1 writer
would be bound by it and the group commit is what keeps 8 writers fast.

The floor is one thread committing one ~2 KB row per transaction to a bare SQLite file
at the same `synchronous`: the rate any one-commit-per-write store gets on this disk.""",
    "stores": """\
The same pushes as above (8 writers), on two servers running at once: one on its SQLite
file, one with `--store postgresql://...` on a PostgreSQL the benchmark starts in a
temporary folder (fsync on, `synchronous_commit` on, so a 201 is on disk with either store).
The PostgreSQL store commits the same way as the SQLite one (one writer thread, every
write waiting at that moment in one transaction), but each transaction first takes the
store's advisory write lock, so that version numbers and the global sequence stay
race-free across replicas, and each statement is a round trip to another process.

Where a push's extra cost goes on PostgreSQL: the writer thread runs a batch in pipeline
mode, so `BEGIN`, the advisory lock and the read of the running rollouts travel with the
first push's statement, each push is one statement (the `If-Match` and identical-source
checks, the version with its global sequence, the document's current pointer, the service
and the audit entry) and one round trip, and the notifications and `COMMIT` are one more
per batch. The pushes of a batch run without savepoints; only when one raises is the batch
rolled back and run again with a savepoint each. The replica that commits hands its new
versions on without reading them back. Whether the service exists is read once per
service and remembered. The server's CPU per push is a little higher than on SQLite, and
PostgreSQL's own CPU per push (which includes the WAL flush of every commit) runs on the
same 2 cores as the server and the load generator, so on a busier machine the PostgreSQL
rate is the first to fall; the CPU columns, not the rates, are what carries over to a
machine where PostgreSQL has cores of its own.""",
    "propagation": """\
N idle watchers hold long polls (or SSE streams) on one document; one push must reach
all of them. The load generator, the server and the floor (a bare asyncio server that
parks the same requests and writes one prebuilt answer to each: the cost of the
sockets and the event loop alone) share the machine's cores, so every time includes
the generator reading N answers. Memory per idle watcher is the server's VmRSS growth
divided by N. `bench/propagation.py` describes the method in full.

The goal is judged from the moment the push is sent, which is stricter than from its
acknowledgement: with long polls the server writes the N answers before the push's own
201 goes out (the commit listener wakes the watchers first), so the "push" column grows
with N and the time after the acknowledgement is about zero or negative. With SSE the
push is answered sooner and the events follow it. What limits the time is under
"What limits the figures".""",
    "apply": """\
From a push's acknowledgement (the server's 201) to a `ConfigClient` handler running
in a separate service process, per watch mode. `tskcfg serve` runs in its own process;
the service process prints `time.monotonic()` (CLOCK_MONOTONIC, shared by every process
on the machine) from its handler. The time includes the long poll's answer, the schema
request, the hash check, `@env` resolution and the apply. Pushes are sequential. With
SSE the event only announces the version, so the client then fetches it: one more round
trip than a long poll, whose answer carries the document. Polling is the comparison: what a service gets by
re-reading the config every 0.5 s; its latency is the poll interval's, on average half
of it.""",
    "rollouts": """\
During a rollout a document answers two versions: `config_service/core/rendered.py` keeps
both rendered (each with its `X-Config-Rollout` header), and a read looks up its cohort's
answer in a dictionary kept with the rollout (the bucket's SHA-256 is computed once per
cohort). The hub keeps the candidate beside the current version; each parked long poll
remembers its bucket and the version it has, so a step walks the waiters once and wakes
exactly those whose answer moves, with the one shared rendered answer.""",
    "startup": """\
A fresh Python process per run (nothing imported, nothing cached in memory), loading
the production user-service config. "import" is importing what the case needs, "call"
is `load_config()` itself (or the file read), "process" is spawn to exit. With the
server down (nothing listens on its port, so the connection is refused at once),
`load_config()` falls back to the last-known-good cache, then to the local file.
There is no goal for start-up; the comparison is a service reading its config from a
local file with `tomllib` (or `tsk.load`), which has no server to ask, no hash to
check and no fallback.

Where the time goes (`python -X importtime -c "import tskcfg"` and cProfile of one
call): importing the client takes about 150 ms, mostly httpx (about 40 ms), jsonschema
with referencing (about 35 ms), asyncio (about 18 ms) and the built-in appliers (about
17 ms). Of the 20 to 40 ms of the call, about 26 ms is httpx building an SSL context
(`ssl.create_default_context`, loading the CA bundle) when the client opens its
transport, even for an `http://` server; the request, the hash check and `@env`
resolution take a few milliseconds. Both are paid once per process.""",
    "scaling": """\
Measured by `bench/scaling.py` (document size and number of documents) and
`bench/propagation.py` (watchers) in the same run. The shape is the exponent k in
figure ~ size^k between neighbouring points (for rates, on the time per request,
1/rate): about constant (|k| < 0.15), sub-linear, linear (k near 1) or worse than
linear; it is named from the last step, where fixed costs matter least.""",
    "scaling_size": """\
A push parses the TSK source, validates it, renders its canonical JSON and hashes it,
all linear in the document's size, so its time grows linearly from a few kilobytes on;
a 1 MB document takes a fifth of a second, most of it `tsk.loads` (shown beside it).
A watcher has the new version about when the pusher has its answer (both follow the
commit), so propagation follows the push time. A plain `GET` is served from bytes
rendered once per version, so its time is nearly constant until the transfer of the
body itself dominates (at 1 MB, each answer moves a megabyte through the loopback).""",
    "scaling_count": """\
Documents are independent rows keyed by service and environment, so push and `GET` times
do not depend on how many other documents exist. Start-up reads no documents
(`Core.start` opens the store and loads tokens and schemas), so the restart time
does not grow with their number; the first `GET` of a document after a restart reads and
renders it from SQLite once. From then on, and after every push, the server keeps the
rendered current version of each document in memory (`RenderedVersions` in `config_service/core/rendered.py`, without a
bound), so its memory grows linearly with the number of documents in use: the KiB per
document above, for documents of this size.""",
    "replicas": """\
1,000 idle long polls on one document, spread round-robin over three `tskcfg serve
--store postgresql://...` replicas sharing one PostgreSQL (fsync on), against the same
1,000 on one replica alone on its own database; all four servers run all along, and the
layouts are measured one after the other. Each push goes to the first replica; the time is
from the push sent to each watcher having the new version. The other replicas hear of it
through `NOTIFY` and read the store twice each (one query for the store's last sequence
and the versions after the last one seen, then the new version whole), render it once
and wake their watchers; the replica that committed the push reads nothing back
(docs/replicas.md). On this 2-core machine the three replicas, PostgreSQL and the load
generator (one event loop reading all 1,000 answers) compete for the cores at the moment
of the push: the three replicas each wake a third of the watchers at the same time, so the
spread of the 3-replica figure is mostly the machine's; the 1-replica row is the same work
in one process.""",
    "workers": """\
`tskcfg serve` with one process against `tskcfg serve --workers 2` (a supervisor and two
workers sharing one listening socket; docs/replicas.md), both with the access log off,
serving the same 2 KB document, driven by the same wrk (2 threads, 64 connections) in
alternating runs. Server CPU per request counts the supervisor and both workers. On this
2-core machine wrk needs about one core itself, so a second worker mostly competes with
wrk for the other: the gain in requests/s is what is left once the load generator has its
share, and would be larger with the load coming from other machines. Each worker does the
same work per request (following the store costs a `PRAGMA data_version` every 20 ms per
worker, a few microseconds); three busy processes (two workers and wrk) on two cores
switch more and share the caches, so the CPU per request of two workers moves between
about 0.8x and 1.2x one process's from run to run.""",
    "limits": """\
Profiles of the server (py-spy, sampling the `tskcfg serve` process while a benchmark
drives it) name what each figure is bound by:

- **Pushes** (8 writers, 10 s): the commit (`SqliteStore._commit`, the `COMMIT` with
  its fsync, in the writer thread) is about a fifth of the samples; on the event loop's
  thread, `tsk.loads` about 14%, schema validation (`jsonschema`, through
  `SchemaSet.document_errors`) about 12%, JSON encoding about 4%, and the rest is
  Starlette and uvicorn handling the request. The parse and validation hold the GIL, so
  pushes use about one core; on a machine where other work takes the cores the push
  rate is the first figure to fall.
- **Propagation**: `tskcfg serve` parks a long poll on its connection in the HTTP
  protocol (`config_service/http1/protocol.py`), with no ASGI task, and the change hub's
  publish writes every parked answer in one pass; a live event stream is handed to the
  protocol the same way after its replay. Timed inside the server (2026-11-26, 1,000
  long polls, load average about 0.5), the pass took 23 to 28 ms, of which the write
  system calls alone (one per watcher: head and the shared body go out together) took
  9 to 18 ms, about what the floor's whole pass takes; the rest is building each
  answer's head (its own `x-request-id`) and uvicorn's keep-alive timer per connection.
  Counting and logging the answers (4 to 7 ms per 1,000) runs on the next turn of the
  event loop, after the answers are on their way. Before this (every answer through
  uvicorn's `RequestResponseCycle.send`, two writes, and the ASGI middleware stack),
  the same run took about 50 ms at 1,000 watchers and 460 ms at 10,000.
- **Reads**: both answers are written by the HTTP protocol from the rendered bytes, with
  no request cycle and no ASGI task. A repeated request (the same bytes on its connection)
  is not parsed at all: what is left above the floor is the token and version checks, the
  request id, the metrics and the access-log record. A request whose bytes are new is
  parsed by httptools through uvicorn's callbacks, and its token, scope, `If-None-Match`
  and instance headers are read and checked: in a profile of the in-process protocol
  (2026-12-02), about 3 us for a repeat against about 10 us for a new head, of which the
  parser callbacks take about 2 us and the request's checks about 2 us.
- **Start-up**: imports and the SSL context, as above.""",
}


def section_parse(record: dict[str, Any]) -> str:
    rows = []
    for row in record["result"]:
        rows.append([
            row["document"], number(row["tsk_bytes"]), number(row["tsk_ms"], 3), number(row["tomllib_ms"], 3),
            f"{row['ratio']:.2f} [{row['ratio_min']:.2f}..{row['ratio_max']:.2f}]",
            f"<= {row['goal']:.1f}", verdict(row["ratio"] <= row["goal"]),
        ])
    return table(
        ["document", "bytes", "tsk.loads ms", "tomllib.loads ms", "ratio (time)", "goal", ""], rows
    )


def _goal_cells(goal: float | None, sign: str, form: str, met: bool) -> list[str]:
    """The goal and verdict cells of a row, or dashes for a row shown without a goal."""
    if goal is None:
        return ["-", "-"]
    return [f"{sign} {form.format(goal)}", verdict(met)]


def section_reads(record: dict[str, Any]) -> str:
    rows = []
    for row in record["result"]:
        if row.get("scenario") == "pushes":
            continue
        ours, theirs = row["ours"], row["nginx"]
        ratio = row["ratio"]
        floor = row.get("floor")
        rows.append([
            row["scenario"],
            f"{number(ours['rate'])} [{number(min(row['ours_rates']))}..{number(max(row['ours_rates']))}]",
            f"{number(theirs['rate'])} [{number(min(row['nginx_rates']))}..{number(max(row['nginx_rates']))}]",
            number(floor["rate"]) if floor else "-",
            f"{ratio:.2f} [{row['ratio_min']:.2f}..{row['ratio_max']:.2f}]",
            f"{ours['p50']:.2f} / {ours['p99']:.2f}", f"{theirs['p50']:.2f} / {theirs['p99']:.2f}",
            *_goal_cells(row.get("goal"), ">=", "{:.2f}", ratio >= (row.get("goal") or 0)),
        ])
    first = record["result"][0]
    note = (
        f"\n\n{first['connections']} connections, {first['body_bytes']:,} byte body, "
        f"{first['rounds']} alternating runs of {first['duration_s']} s per server; the median run of each side."
        " The ratio's spread is over pairs of runs made one after the other."
    )
    cpu_rows = [
        [
            row["scenario"], f"{row['cpu_us']:.1f}", f"{row['nginx_cpu_us']:.1f}", f"{row['floor_cpu_us']:.1f}",
            f"{row['cpu_ratio']:.2f}x [{min(row['cpu_ratios']):.2f}..{max(row['cpu_ratios']):.2f}]",
            *_goal_cells(
                row.get("cpu_goal"), "<=", "{:g}x", row["cpu_ratio"] <= (row.get("cpu_goal") or 0)
            ),
        ]
        for row in record["result"]
        if "cpu_ratio" in row
    ]
    cpu = ""
    if cpu_rows:
        cpu = "\n\nServer CPU per request (user + system time of the server process over a run, divided by" \
            " the requests it answered), against the floor: `bench/floor_http.py`, uvloop and httptools" \
            " answering the same bytes from memory.\n\n" + table(
                ["request", "tskcfg us", "nginx us", "floor us", "tskcfg / floor", "goal", ""], cpu_rows
            )
    return table(
        ["request", "tskcfg req/s", "nginx req/s", "floor req/s", "ratio to nginx", "tskcfg p50 / p99 ms",
         "nginx p50 / p99 ms", "goal", ""],
        rows,
    ) + note + cpu


def section_writes(record: dict[str, Any]) -> str:
    rows = []
    for row in record["result"]:
        goal = row.get("goal_pushes_per_s")
        label = row["synchronous"] + (" (default)" if row.get("default") else "")
        rows.append([
            str(row["writers"]), label, spread(row["pushes_per_s"]),
            f"{row['p50_ms']:.2f} / {row['p99_ms']:.2f}", spread(row["floor_commits_per_s"]),
            f"{row['ratio_to_floor']:.2f}", f">= {goal:.0f}" if goal else "-",
            verdict(row["pushes_per_s"]["median"] >= goal) if goal else "-",
        ])
    first = record["result"][0]
    note = (
        f"\n\n{first['document_bytes']:,} byte document; {first['rounds']} alternating runs of"
        f" {first['duration_s']:g} s per case. The goal applies to 8 writers; it is judged on the default (FULL)."
    )
    rates = {(row["writers"], row["synchronous"]): row["pushes_per_s"]["median"] for row in record["result"]}
    gains = [
        f"{(rates[(writers, 'NORMAL')] / rates[(writers, 'FULL')] - 1) * 100:+.0f}% with {writers} writer{'s' * (writers > 1)}"
        for writers in sorted({writers for writers, _ in rates})
        if (writers, "NORMAL") in rates and (writers, "FULL") in rates
    ]
    if gains:
        note += f" NORMAL against FULL in this run: {', '.join(gains)}."
    return table(
        ["writers", "synchronous", "pushes/s", "p50 / p99 ms", "floor: bare SQLite commits/s", "ratio", "goal", ""],
        rows,
    ) + note


def section_stores(record: dict[str, Any]) -> str:
    rows = []
    for row in record["result"]:
        goal = row.get("goal_pushes_per_s")
        rows.append([
            row["store"], str(row["writers"]), spread(row["pushes_per_s"]),
            f"{row['p50_ms']:.2f} / {row['p99_ms']:.2f}", f"{row['server_cpu_ms']:.2f}",
            f"{row['postgres_cpu_ms']:.2f}" if row["store"] == "PostgreSQL" else "-",
            f">= {goal:.0f}" if goal else "-",
            verdict(row["pushes_per_s"]["median"] >= goal) if goal else "-",
        ])
    first = record["result"][0]
    note = (
        f"\n\n{first['document_bytes']:,} byte document; {first['rounds']} alternating runs of"
        f" {first['duration_s']:g} s per store, both servers running at once."
    )
    return table(
        ["store", "writers", "pushes/s", "p50 / p99 ms", "server CPU ms / push", "PostgreSQL CPU ms / push",
         "goal", ""],
        rows,
    ) + note


def section_propagation(record: dict[str, Any]) -> str:
    rows = []
    result = record["result"]
    for row in result:
        ours, floor = row["ours"], row["floor"]
        goal = row.get("goal_p99_ms")
        ratio = row.get("p99_ratio")
        rows.append([
            row["mode"].replace("_", " "), number(row["watchers"]),
            number(ours["p50_ms"], 1),
            f"{number(ours['p99_ms'], 1)} [{number(ours['p99_ms_min'], 1)}..{number(ours['p99_ms_max'], 1)}]",
            number(ours.get("p99_after_ack_ms"), 1), number(ours.get("push_ms"), 1),
            number(floor["p99_ms"], 1), f"{ratio:.1f}" if ratio is not None else "-",
            f"<= {goal:.0f}" if goal else "-", verdict(row.get("p99_goal_met")),
            f"{ours['kib_per_watcher']:.1f}", f"{floor['kib_per_watcher']:.1f}",
            f"<= {row['goal_kib_per_watcher']:.0f}", verdict(row.get("memory_goal_met")),
            "yes" if row.get("all_delivered") else "**no**",
        ])
    latency_from = result[0].get("latency_from", "push acknowledged") if result else ""
    rounds = result[0]["ours"].get("rounds") if result else None
    note = (
        f"\n\nTimes in ms, from the {latency_from} to each watcher having the new version; the median over"
        f" {rounds} pushes of each push's p50 and p99, [spread of the p99 over the pushes]."
        " After ack: p99 from the push's answer arriving instead (negative: the watchers had it first)."
        " Push: the push's own round trip with the N watchers parked."
        " Floor: the bare asyncio server. KiB/watcher: server VmRSS growth per idle watcher."
        " The goals are p99 <= 50 ms at 1,000 watchers and <= 500 ms at 10,000, and <= 20 KiB per idle watcher."
    )
    return table(
        ["mode", "watchers", "p50", "p99", "p99 after ack", "push", "floor p99", "ratio", "goal", "",
         "KiB/watcher", "floor KiB",
         "goal", "", "all got it"],
        rows,
    ) + note


def section_rollouts(record: dict[str, Any]) -> str:
    result = record["result"]
    reads, propagation = result["reads"], result["propagation"]
    goal = result["goal_percent"]
    rows = [
        ["hot GET, server CPU per request (us)", number(reads["plain"]["cpu_us"], 1),
         number(reads["rollout"]["cpu_us"], 1), f"{reads['cpu_slower_percent']:+.1f} %", f"<= {goal:g} %",
         verdict(reads["cpu_slower_percent"] <= goal)],
        ["hot GET, req/s (wrk, 50 connections)", number(reads["plain"]["rate"]), number(reads["rollout"]["rate"]),
         f"{reads['slower_percent']:+.1f} %", "-", "-"],
        [f"propagation to {propagation['watchers']:,} long polls, ms to the last",
         number(propagation["plain"]["last_ms"], 1), number(propagation["rollout"]["last_ms"], 1),
         f"{propagation['slower_percent']:+.1f} %", f"<= {goal:g} %", verdict(propagation["slower_percent"] <= goal)],
    ]
    return table(["figure", "without a rollout", "with a rollout", "slower by", "goal", ""], rows) + (
        "\n\nMedians over alternating rounds. The hot GET is judged by the server's CPU per request:"
        " on a shared machine its requests/s mostly measure what other processes leave. Propagation: a push reaching every watcher, against a"
        " rollout that starts at 100 % reaching every watcher (each watcher is its own instance)."
    )


def section_apply(record: dict[str, Any]) -> str:
    rows = []
    for row in record["result"]:
        goal = row.get("goal_p99_ms")
        rows.append([
            row["mode"], number(row["pushes"]), number(row["p50_ms"], 1), number(row["p90_ms"], 1),
            number(row["p99_ms"], 1), number(row["max_ms"], 1), f"<= {goal:.0f}" if goal else "comparison",
            verdict(row["p99_ms"] <= goal) if goal else "-",
        ])
    return table(["mode", "pushes", "p50 ms", "p90 ms", "p99 ms", "max ms", "goal (p99)", ""], rows) + (
        "\n\nWith fewer than 100 pushes (quick runs), the p99 is the maximum."
    )


def section_startup(record: dict[str, Any]) -> str:
    rows = []
    for row in record["result"]:
        rows.append([
            row["case"], number(row["import_ms"]["median"], 1), spread(row["call_ms"], 1),
            spread(row["process_ms"]), f"{row['process_ratio_to_tomllib']:.1f}",
        ])
    first = record["result"][0]
    return table(
        ["case", "import ms", "call ms", "process ms (spawn to exit)", "process vs tomllib"], rows
    ) + f"\n\n{first['runs']} alternating runs per case; a {first['document_bytes']:,} byte document."


def section_scaling(records: dict[str, dict[str, Any]]) -> str:
    parts = []
    scaling = records.get("scaling", {})
    rows = scaling.get("result") or []
    sizes = [row for row in rows if row["axis"] == "document size"]
    if sizes:
        parts.append("### Document size\n")
        parts.append(table(
            ["size", "source bytes", "push ms", "watcher has it ms (from push sent)", "GET ms", "tsk.loads ms",
             "GET req/s (wrk, 64 connections)"],
            [[row["label"], number(row["source_bytes"]), spread(row["push_ms"], 1),
              spread(row["propagation_ms"], 1), spread(row["get_ms"], 2), spread(row["parse_ms"], 1),
              spread(row["get_per_s"])] for row in sizes],
        ))
        xs = [float(row["source_bytes"]) for row in sizes]
        parts.append(
            f"\nShape from {sizes[0]['label']} to {sizes[-1]['label']} (median of {sizes[0]['samples']} each):\n\n"
            f"- push: {shape(xs, [row['push_ms']['median'] for row in sizes])}\n"
            f"- watcher has it: {shape(xs, [row['propagation_ms']['median'] for row in sizes])}\n"
            f"- GET: {shape(xs, [row['get_ms']['median'] for row in sizes])}\n"
            f"- GET req/s (judged on time per request): "
            f"{shape(xs, [row['get_per_s']['median'] for row in sizes], inverse=True)}\n"
            f"- tsk.loads: {shape(xs, [row['parse_ms']['median'] for row in sizes])}\n"
        )
        parts.append(ANALYSIS["scaling_size"])
    counts = [row for row in rows if row["axis"] == "documents"]
    if counts:
        parts.append("\n### Number of documents\n")
        parts.append(table(
            ["documents", "fill pushes/s (8 writers)", "push ms", "GET ms", "GET req/s (wrk)", "server RSS MiB",
             "database MiB", "restart s", "first GET after restart ms"],
            [[row["label"], number(row["fill_pushes_per_s"]), spread(row["push_ms"], 2), spread(row["get_ms"], 2),
              spread(row["get_per_s"]), number(row["rss_kib"] / 1024, 1), number(row["database_bytes"] / 2**20, 1),
              number(row["restart_s"], 2), number(row["first_get_after_restart_ms"], 1)] for row in counts],
        ))
        parts.append(
            "\nDocuments of about 2 KB, one service each without a schema, created by 8 concurrent"
            " writers in the benchmark's own Python process (httpx): the fill rate includes that"
            " client's cost and is not comparable with the writes table. Push and GET times are the"
            f" median of {counts[0]['samples']} sequential requests to random documents; GET req/s is"
            " wrk on one document."
        )
        xs = [float(row["documents"]) for row in counts]
        parts.append(
            f"\nShape from {counts[0]['label']} to {counts[-1]['label']} documents:\n\n"
            f"- push: {shape(xs, [row['push_ms']['median'] for row in counts])}\n"
            f"- GET: {shape(xs, [row['get_ms']['median'] for row in counts])}\n"
            f"- GET req/s (time per request): {shape(xs, [row['get_per_s']['median'] for row in counts], inverse=True)}\n"
            f"- server RSS above the process's own {number(counts[0]['rss_kib'] / 1024)} MiB:"
            f" {per_document(counts)}\n"
            f"- restart: {shape(xs, [row['restart_s'] for row in counts])}\n"
        )
        parts.append(ANALYSIS["scaling_count"])
    propagation = (records.get("propagation") or {}).get("result") or []
    if propagation:
        parts.append("\n### Watchers\n")
        lines = []
        for mode in sorted({row["mode"] for row in propagation}):
            mode_rows = sorted((row for row in propagation if row["mode"] == mode), key=lambda row: row["watchers"])
            xs = [float(row["watchers"]) for row in mode_rows]
            label = mode.replace("_", " ")
            points = ", ".join(
                f"{number(row['watchers'])}: {number(row['ours']['p99_ms'], 1)} ms" for row in mode_rows
            )
            lines.append(f"- {label}, p99 ({points}): {shape(xs, [row['ours']['p99_ms'] for row in mode_rows])}")
            lines.append(
                f"- {label}, floor p99: {shape(xs, [row['floor']['p99_ms'] for row in mode_rows])}"
            )
            memory = ", ".join(f"{row['ours']['kib_per_watcher']:.1f}" for row in mode_rows)
            lines.append(f"- {label}, KiB per idle watcher ({memory}): "
                         f"{shape(xs, [row['ours']['kib_per_watcher'] for row in mode_rows])}")
        parts.append(
            "From the propagation benchmark above. Delivering a push means writing one answer per watcher, so"
            " for large N the time to reach the last watcher grows in proportion to N, as the floor shows. Ours"
            " also carries a fixed part per push (the commit, the push's own request), which makes its curve"
            " look sub-linear over this range. Memory per idle watcher should be constant.\n\n"
            + "\n".join(lines)
        )
    return "\n".join(parts) if parts else "_No scaling figures in this run._"


def per_document(counts: list[dict[str, Any]]) -> str:
    """The shape of memory growth: KiB per document added, for each step of the document count."""
    pairs = list(zip(counts, counts[1:], strict=False))
    kib = [(b["rss_kib"] - a["rss_kib"]) / max(1, b["documents"] - a["documents"]) for a, b in pairs]
    if not kib:
        return "-"
    steps = "; ".join(
        f"{number(a['documents'])} to {number(b['documents'])}: {value:.1f} KiB per document added"
        for (a, b), value in zip(pairs, kib, strict=True)
    )
    steady = min(kib) > 0 and max(kib) / min(kib) < 1.5
    return f"**{'linear' if steady else 'not steady'}** in the number of documents ({steps})"


def section_replicas(record: dict[str, Any]) -> str:
    rows = []
    for row in record["result"]:
        goal = row.get("goal_p99_ms")
        rows.append([
            row["layout"], f"{row['watchers']:,}", f"{row['p50_ms']:.1f}",
            f"{row['p99_ms']:.1f} [{row['p99_ms_min']:.1f}..{row['p99_ms_max']:.1f}]", f"{row['max_ms']:.1f}",
            f"<= {goal:.0f}" if goal else "-", verdict(row["p99_ms"] <= goal) if goal else "-",
        ])
    first = record["result"][0]
    note = (
        f"\n\nTimes in ms from the push sent to each watcher having the new version; the median"
        f" over {first['pushes']} pushes of each push's p50 and p99, [spread of the p99]."
    )
    return table(["layout", "watchers", "p50", "p99", "max", "goal", ""], rows) + note


def section_workers(record: dict[str, Any]) -> str:
    rows = []
    for row in record["result"]:
        one, two = row["one"], row["two"]
        rows.append([
            row["scenario"],
            f"{number(one['rate'])} [{number(min(row['one_rates']))}..{number(max(row['one_rates']))}]",
            f"{number(two['rate'])} [{number(min(row['two_rates']))}..{number(max(row['two_rates']))}]",
            f"{row['rate_ratio']:.2f}",
            f"{one['cpu_us']:.1f}", f"{two['cpu_us']:.1f}", f"{row['cpu_ratio']:.2f}",
        ])
    first = record["result"][0]
    note = (
        f"\n\n{first['connections']} connections, {first['rounds']} alternating runs of "
        f"{first['duration_s']:g} s per server; the median run of each side."
    )
    return table(
        ["request", "1 worker req/s", "2 workers req/s", "2 / 1", "1 worker CPU us/req",
         "2 workers CPU us/req", "2 / 1"],
        rows,
    ) + note


SECTIONS = [
    ("parse", "Parse: `tsk.loads` against `tomllib.loads`", section_parse),
    ("reads", "Reads: `GET` 200 and 304 against nginx and a bare protocol floor", section_reads),
    ("writes", "Writes: pushes per second", section_writes),
    ("stores", "Stores: pushes per second on PostgreSQL and SQLite", section_stores),
    ("propagation", "Propagation: one push to N watchers", section_propagation),
    ("apply", "Hot reload: push to handler in another process", section_apply),
    ("startup", "Start-up: `load_config()` in a fresh process", section_startup),
    ("workers", "Workers: `--workers 2` against one process", section_workers),
    ("rollouts", "Rollouts: the hot paths with a rollout running", section_rollouts),
    ("replicas", "Replicas: one push to 1,000 watchers over 3 replicas on PostgreSQL", section_replicas),
]


# The machine the goals in absolute units (pushes per second, milliseconds) were set on: its
# bare protocol floor spent about this much CPU per GET and answered about this many per second.
GOALS_FLOOR_CPU_US = 4.7
GOALS_FLOOR_RPS = 160_000


def machine_calibration(records: dict[str, dict[str, Any]]) -> str:
    """How fast this run's machine is against the one the absolute goals were set on, from the
    floor of the reads benchmark (the same bare server on both): ratios carry over between
    machines, rates and milliseconds do not."""
    rows = ((records.get("reads") or {}).get("result")) or []
    plain = [row for scenario in ("GET 200", "GET 304") for row in rows if row.get("scenario") == scenario]
    floor = next((row for row in plain if row.get("floor_cpu_us")), None)
    if floor is None:
        return ""
    cpu_us, rate = floor["floor_cpu_us"], floor["floor"]["rate"]
    return (
        f"The goals in rates and milliseconds were set on a machine whose bare protocol floor "
        f"(`bench/floor_http.py`) spent about {GOALS_FLOOR_CPU_US:g} us of CPU per `GET` and answered about "
        f"{GOALS_FLOOR_RPS:,} a second. In this run the floor spent {cpu_us:.1f} us and answered "
        f"{rate:,.0f} a second: this machine does the same work at about {GOALS_FLOOR_CPU_US / cpu_us:.2f} of "
        "that speed. Its rates and times cannot be held against those goals without that factor; "
        "the goals given as ratios (to tomllib, nginx, the floor, or the same run without the "
        "feature) hold on any machine."
    )


def goal_summary(records: dict[str, dict[str, Any]]) -> str:
    """One line per goal: the figure, the goal, met or missed."""
    rows: list[list[str]] = []

    def result(name: str) -> list[dict[str, Any]]:
        return (records.get(name) or {}).get("result") or []

    for row in result("parse"):
        rows.append([f"parse, {row['document']}", f"{row['ratio']:.2f}x tomllib's time",
                     f"<= {row['goal']:.1f}x", verdict(row["ratio"] <= row["goal"])])
    for row in result("reads"):
        if row.get("goal") is not None:
            rows.append([row["scenario"], f"{row['ratio']:.2f} of nginx's req/s",
                         f">= {row['goal']:.2f}", verdict(row["ratio"] >= row["goal"])])
        if row.get("cpu_goal") is not None:
            rows.append([f"{row['scenario']}, server CPU", f"{row['cpu_ratio']:.2f}x the floor's",
                         f"<= {row['cpu_goal']:g}x", verdict(row["cpu_ratio"] <= row["cpu_goal"])])
    for row in result("writes"):
        if row.get("goal_pushes_per_s") and row.get("default"):
            rate = row["pushes_per_s"]["median"]
            rows.append([f"pushes, {row['writers']} writers ({row['synchronous']})", f"{rate:,.0f}/s",
                         f">= {row['goal_pushes_per_s']:.0f}/s", verdict(rate >= row["goal_pushes_per_s"])])
    for row in result("stores"):
        if row.get("goal_pushes_per_s"):
            rate = row["pushes_per_s"]["median"]
            rows.append([f"pushes, {row['writers']} writers ({row['store']})", f"{rate:,.0f}/s",
                         f">= {row['goal_pushes_per_s']:.0f}/s", verdict(rate >= row["goal_pushes_per_s"])])
    for row in result("propagation"):
        mode = row["mode"].replace("_", " ")
        if row.get("goal_p99_ms"):
            since = row.get("latency_from", "push acknowledged")
            rows.append([f"propagation, {mode}, {row['watchers']:,} watchers",
                         f"p99 {row['ours']['p99_ms']:,.1f} ms from the {since}",
                         f"<= {row['goal_p99_ms']:.0f} ms", verdict(row.get("p99_goal_met"))])
    memory = [row for row in result("propagation") if row["ours"].get("kib_per_watcher") is not None]
    if memory:
        worst = max(memory, key=lambda row: row["ours"]["kib_per_watcher"])
        rows.append([
            "memory per idle watcher (worst row)",
            f"{worst['ours']['kib_per_watcher']:.1f} KiB ({worst['mode'].replace('_', ' ')}, {worst['watchers']:,})",
            f"<= {worst['goal_kib_per_watcher']:.0f} KiB", verdict(worst.get("memory_goal_met")),
        ])
    rollouts = (records.get("rollouts") or {}).get("result")
    if rollouts:
        for key, figure, what in (
            ("reads", "cpu_slower_percent", "hot GET, server CPU per request"),
            ("propagation", "slower_percent", "propagation"),
        ):
            slower = rollouts[key][figure]
            rows.append([f"with a rollout running, {what}", f"{slower:+.1f} % slower",
                         f"<= {rollouts['goal_percent']:g} %", verdict(slower <= rollouts["goal_percent"])])
    for row in result("replicas"):
        if row.get("goal_p99_ms"):
            rows.append([f"propagation over {row['replicas']} replicas, {row['watchers']:,} watchers",
                         f"p99 {row['p99_ms']:.1f} ms from the push sent", f"<= {row['goal_p99_ms']:.0f} ms",
                         verdict(row["p99_ms"] <= row["goal_p99_ms"])])
    for row in result("apply"):
        if row.get("goal_p99_ms"):
            rows.append([f"hot reload, {row['mode']}", f"p99 {row['p99_ms']:.1f} ms", f"<= {row['goal_p99_ms']:.0f} ms",
                         verdict(row["p99_ms"] <= row["goal_p99_ms"])])
    return table(["figure", "measured", "goal", ""], rows) if rows else "_No goals measured in this run._"


def render(data: dict[str, Any]) -> str:
    records: dict[str, dict[str, Any]] = {record["name"]: record for record in data["records"]}
    info = data["machine"]
    quick = data["quick"]
    out = ["# Benchmarks\n", ANALYSIS["intro"], ""]
    load = ", ".join(
        f"{record['name']} {record['load_before'][0]:.2f}" for record in data["records"]
    )
    out.append(
        f"**This run:** `{'make bench-quick' if quick else 'make bench'}`"
        f" ({'reduced: fewer and shorter runs' if quick else 'full'}), {data['started']} UTC, commit {info['commit']},"
        f" {data['seconds']:.0f} s in all. Machine: {info['cpus']} cores ({info['cpu_model']}), {info['system']},"
        f" Python {info['python']}, shared with other work: 1-minute load average before each benchmark: {load}."
    )
    out += ["", "## Goals", "", goal_summary(records), ""]
    calibration = machine_calibration(records)
    if calibration:
        out += [calibration, ""]
    for name, title, render_section in SECTIONS:
        out += [f"## {title}", ""]
        record = records.get(name)
        if record is None:
            out += ["_Not run this time._", ""]
            continue
        if "error" in record:
            out += [f"_The benchmark failed: {record['error']}._", ""]
        else:
            out += [render_section(record), ""]
        out += [f"Command: `{record['command']}` ({record['seconds']:.0f} s in this run, load average "
                f"{record['load_before'][0]:.2f} before, {record['load_after'][0]:.2f} after).", ""]
        out += [ANALYSIS[name], ""]
    out += ["## Scaling", "", ANALYSIS["scaling"], "", section_scaling(records), ""]
    scaling = records.get("scaling")
    if scaling is not None:
        if "error" in scaling:
            out += [f"_The scaling benchmark failed: {scaling['error']}._", ""]
        out += [f"Command: `{scaling['command']}` ({scaling['seconds']:.0f} s in this run).", ""]
    out += ["## What limits the figures", "", ANALYSIS["limits"], ""]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the reduced suite (under 2 minutes)")
    parser.add_argument("--only", nargs="+", choices=[b.name for b in BENCHMARKS], help="run only these")
    parser.add_argument("--output", help="write the report here ('-' for stdout only)", default="-")
    parser.add_argument("--from", dest="source", help="render a saved results file instead of running")
    args = parser.parse_args(argv)
    if args.source:
        data = json.loads(Path(args.source).read_text())
    else:
        RESULTS.mkdir(parents=True, exist_ok=True)
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
        mode = "quick" if args.quick else "full"
        log = RESULTS / f"{stamp}-{mode}.log"
        started = time.monotonic()
        chosen = [b for b in BENCHMARKS if not args.only or b.name in args.only]
        data = {
            "started": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M"),
            "quick": args.quick,
            "machine": machine(),
            "records": [],
        }
        for benchmark in chosen:
            data["records"].append(run_benchmark(benchmark, args.quick, log))
            data["seconds"] = time.monotonic() - started
            # Saved after each benchmark, so a later failure keeps what was measured.
            for path in (RESULTS / f"{stamp}-{mode}.json", RESULTS / f"latest-{mode}.json"):
                path.write_text(json.dumps(data, indent=2))
        data["seconds"] = time.monotonic() - started
        if args.quick and not args.only and data["seconds"] > QUICK_BUDGET:
            print(f"the quick suite took {data['seconds']:.0f} s, over its {QUICK_BUDGET} s budget"
                  " (is the machine busy? see the load averages)", file=sys.stderr)
        print(f"results in {RESULTS.relative_to(REPOSITORY)}/{stamp}-{mode}.json;"
              f" {data['seconds']:.0f} s in all", file=sys.stderr)
    report = render(data)
    if args.output == "-":
        print(report)
    else:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(report)
        print(f"wrote {args.output}", file=sys.stderr)
        print("\n" + goal_summary({r["name"]: r for r in data["records"]}))
    failed = [record["name"] for record in data["records"] if "error" in record]
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
