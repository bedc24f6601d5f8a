"""Scaling: how push, read and propagation figures grow with document size and with the number of documents.

    .venv/bin/python bench/scaling.py            # sizes 1 KB, 100 KB, 1 MB; 10, 1,000, 10,000 documents
    .venv/bin/python bench/scaling.py --quick    # fewer samples; 10 and 1,000 documents
    .venv/bin/python bench/scaling.py --json     # machine-readable result

Document size: user-service documents of about 1 KB, 100 KB and 1 MB (the repository's document
plus `[bench_N]` sections), each schema-validated, pushed to one server (one environment per
size). Per size: the median time of a push (sequential, each a new version), of a long-poll
watcher getting the new version from the moment a push is sent, of a plain GET, `tsk.loads` of the source in
this process, and GET requests/s from wrk at 64 connections.

Number of documents: one server filled with 10, then 1,000, then 10,000 documents of ~2 KB (one
service each, no schema) by 8 concurrent writers. At each count: the fill rate, the median push
and GET times on random documents, GET requests/s from wrk, the server's memory (VmRSS) and
database size, and how long the server takes to restart with that many documents.

Watchers are measured by bench/propagation.py (N = 100, 1,000, 10,000); bench/run.py puts
its figures in the same scaling note. Every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from _common import Server, ensure_wrk, load_average, summary, user_service_document, wrk

from config_service import tsk

SIZES = {"1 KB": 1_000, "100 KB": 100_000, "1 MB": 1_000_000}
ENVIRONMENT_OF_SIZE = {"1 KB": "development", "100 KB": "staging", "1 MB": "production"}
FILL_WRITERS = 8
FILL_TIME_LIMIT = 180.0  # seconds for the largest fill; ~20 s at 500 pushes/s
WAIT = 30  # long-poll wait; a round never comes near it


def timed(call: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    result = call()
    return (time.perf_counter() - started) * 1000, result


def by_size(server: Server, samples: int, wrk_runs: int) -> list[dict[str, Any]]:
    rows = []
    with httpx.Client(timeout=60, headers=server.auth) as client:
        for label, size in SIZES.items():
            environment = ENVIRONMENT_OF_SIZE[label]
            url = f"{server.url}/v1/configs/user-service/{environment}"
            base = user_service_document(size)
            parse_ms = []
            push_ms: list[float] = []
            propagate_ms: list[float] = []
            after_ack_ms: list[float] = []
            get_ms: list[float] = []
            for sample in range(samples + 1):  # the first push creates the document; not counted
                source = f"{base}\nbench_sequence: {sample}\n"
                parse_ms.append(timed(lambda s=source: tsk.loads(s))[0])
                elapsed, response = timed(lambda u=url, s=source: push(client, u, s))
                if sample == 0:
                    continue
                push_ms.append(elapsed)
                get_ms.append(timed(lambda u=url: client.get(u).raise_for_status())[0])
                # A second push with a watcher parked: from the push sent to the watcher having it.
                watcher = Watcher(url, server.auth, client.get(url).headers["etag"])
                sent = time.monotonic()
                push(client, url, f"{source}bench_watched: true\n")
                acknowledged = time.monotonic()
                arrived = watcher.finished(timeout=WAIT)
                propagate_ms.append((arrived - sent) * 1000)
                after_ack_ms.append((arrived - acknowledged) * 1000)
            body_bytes = len(client.get(url).content)
            rates = [
                wrk(url, connections=64, threads=2, duration=1, headers=server.auth)["rate"]
                for _ in range(wrk_runs)
            ]
            rows.append({
                "benchmark": "scaling",
                "axis": "document size",
                "label": label,
                "source_bytes": len(base.encode()),
                "body_bytes": body_bytes,
                "samples": samples,
                "push_ms": summary(push_ms),
                "propagation_ms": summary(propagate_ms),
                "propagation_after_ack_ms": summary(after_ack_ms),
                "get_ms": summary(get_ms),
                "parse_ms": summary(parse_ms[1:]),
                "get_per_s": summary(rates),
            })
    return rows


def push(client: httpx.Client, url: str, source: str) -> httpx.Response:
    response = client.put(url, content=source.encode(), headers={"Content-Type": "text/x-tsk"})
    if response.status_code != 201:
        raise SystemExit(f"push refused: {response.status_code} {response.text[:300]}")
    return response


class Watcher:
    """One long poll on `url` in a thread, parked before the push; `finished()` says when it had the answer."""

    def __init__(self, url: str, auth: dict[str, str], etag: str) -> None:
        self._done = threading.Event()
        self._moment = 0.0
        self._error: str | None = None
        self._thread = threading.Thread(target=self._run, args=(url, auth, etag), daemon=True)
        self._thread.start()
        time.sleep(0.1)  # long enough for the request to be parked on the server

    def _run(self, url: str, auth: dict[str, str], etag: str) -> None:
        try:
            response = httpx.get(
                url, params={"wait": WAIT}, headers={**auth, "If-None-Match": etag}, timeout=WAIT + 10
            )
            self._moment = time.monotonic()
            if response.status_code != 200:
                self._error = f"long poll answered {response.status_code}"
        except httpx.HTTPError as error:
            self._error = repr(error)
        finally:
            self._done.set()

    def finished(self, timeout: float) -> float:
        if not self._done.wait(timeout) or self._error:
            raise SystemExit(f"the watcher did not get the new version: {self._error or 'timed out'}")
        return self._moment


async def fill(server: Server, start: int, stop: int, source: str, deadline: float) -> float:
    """Create documents svc-<start>..svc-<stop-1> with 8 concurrent writers; returns pushes/s."""
    numbers = iter(range(start, stop))
    limits = httpx.Limits(max_connections=FILL_WRITERS, max_keepalive_connections=FILL_WRITERS)

    async def writer(client: httpx.AsyncClient) -> None:
        for number in numbers:
            if time.monotonic() > deadline:
                raise SystemExit(f"filling the store took over {FILL_TIME_LIMIT:g} s; stopped at {number}")
            response = await client.put(
                f"{server.url}/v1/configs/svc-{number:05d}/production",
                content=source.encode(),
                headers={"Content-Type": "text/x-tsk"},
            )
            if response.status_code != 201:
                raise SystemExit(f"push of svc-{number:05d} refused: {response.status_code} {response.text}")

    started = time.monotonic()
    async with httpx.AsyncClient(headers=server.auth, timeout=60, limits=limits) as client:
        await asyncio.gather(*(writer(client) for _ in range(FILL_WRITERS)))
    return (stop - start) / (time.monotonic() - started)


def by_count(work: Path, counts: list[int], samples: int, wrk_runs: int) -> list[dict[str, Any]]:
    rows = []
    source = user_service_document(2048)
    server = Server(work / "count")
    server.start()
    try:
        deadline = time.monotonic() + FILL_TIME_LIMIT
        have = 0
        for count in counts:
            fill_rate = asyncio.run(fill(server, have, count, source, deadline))
            have = count
            randomness = random.Random(count)
            with httpx.Client(timeout=30, headers=server.auth) as client:
                push_ms, get_ms = [], []
                for sample in range(samples):
                    url = f"{server.url}/v1/configs/svc-{randomness.randrange(count):05d}/production"
                    elapsed, response = timed(
                        lambda u=url, s=sample: client.put(
                            u, content=f"{source}\nbench_sequence: {s}\n".encode(),
                            headers={"Content-Type": "text/x-tsk"},
                        )
                    )
                    if response.status_code != 201:
                        raise SystemExit(f"push refused: {response.status_code} {response.text}")
                    push_ms.append(elapsed)
                    get_ms.append(timed(lambda u=url: client.get(u).raise_for_status())[0])
            one = f"{server.url}/v1/configs/svc-{count // 2:05d}/production"
            rates = [
                wrk(one, connections=64, threads=2, duration=1, headers=server.auth)["rate"]
                for _ in range(wrk_runs)
            ]
            rss = server.rss_kib()
            database = sum(path.stat().st_size for path in server.data.glob("config.db*"))
            server.stop()
            restart_s = server.start()
            # The first GET after a restart may build what the server keeps per document.
            first_get_ms = timed(lambda u=one: httpx.get(u, headers=server.auth, timeout=30).raise_for_status())[0]
            rows.append({
                "benchmark": "scaling",
                "axis": "documents",
                "label": f"{count:,}",
                "documents": count,
                "samples": samples,
                "fill_pushes_per_s": fill_rate,
                "push_ms": summary(push_ms),
                "get_ms": summary(get_ms),
                "get_per_s": summary(rates),
                "rss_kib": rss,
                "database_bytes": database,
                "restart_s": restart_s,
                "first_get_after_restart_ms": first_get_ms,
            })
    finally:
        server.stop()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples; 10 and 1,000 documents")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
    samples = 3 if args.quick else 15
    # Pushes and GETs of 2 KB documents take a few milliseconds: more samples, less noise.
    count_samples = 10 if args.quick else 100
    wrk_runs = 1 if args.quick else 3
    counts = [10, 1_000] if args.quick else [10, 1_000, 10_000]
    ensure_wrk()
    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="tskcfg-scaling-") as directory:
        work = Path(directory)
        with Server(work / "size") as server:
            rows = by_size(server, samples, wrk_runs)
        rows += by_count(work, counts, count_samples, wrk_runs)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"By document size (median of {samples} [min..max], ms; GET/s from wrk at 64 connections)")
    print(f"{'size':<8} {'bytes':>10} {'push':>8} {'watcher':>8} {'GET':>7} {'tsk.loads':>9} {'GET/s':>8}")
    for row in rows:
        if row["axis"] != "document size":
            continue
        print(
            f"{row['label']:<8} {row['source_bytes']:>10,} {row['push_ms']['median']:>8.1f}"
            f" {row['propagation_ms']['median']:>8.1f} {row['get_ms']['median']:>7.2f}"
            f" {row['parse_ms']['median']:>9.1f} {row['get_per_s']['median']:>8,.0f}"
        )
    print(f"\nBy number of documents (~{len(user_service_document(2048)):,} bytes each)")
    print(
        f"{'documents':>9} {'fill/s':>7} {'push ms':>8} {'GET ms':>7} {'GET/s':>8} {'RSS MiB':>8}"
        f" {'DB MiB':>7} {'restart s':>9}"
    )
    for row in rows:
        if row["axis"] != "documents":
            continue
        print(
            f"{row['label']:>9} {row['fill_pushes_per_s']:>7,.0f} {row['push_ms']['median']:>8.2f}"
            f" {row['get_ms']['median']:>7.2f} {row['get_per_s']['median']:>8,.0f}"
            f" {row['rss_kib'] / 1024:>8.1f} {row['database_bytes'] / 2**20:>7.1f} {row['restart_s']:>9.2f}"
        )
    print(f"\nLoad average {load_before[0]:.2f} -> {load_average()[0]:.2f}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
