"""Benchmark the config server's GET (200 and 304) against nginx serving the same bytes, and pushes/s.

Run: .venv/bin/python bench/serve.py [--duration 5] [--rounds 3] [--connections 64] [--writers 8]
     [--quick] (2 s runs) [--json] (machine-readable result) [--no-pushes] (reads only)

It starts `tskcfg serve` (one process, uvloop + httptools, access log on) on a temporary data
dir and nginx (one worker process, access log on) on a static file holding exactly the bytes our
GET answers, then drives both with wrk at the same concurrency, alternating between them for a
few rounds and keeping each side's median, so that load from elsewhere falls on both. Pushes
are 2 KB user-service documents validated against schemas/user-service.json (with its section
schemas) and committed durably (WAL, synchronous=FULL) before the 201, from 8 concurrent
writers, each push a different source. nginx and wrk are installed with apt-get when missing
(this script is not run in CI).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from _common import PUSH_SCRIPT, free_port, wrk

REPOSITORY = Path(__file__).resolve().parents[1]
TSKCFG = Path(sys.executable).with_name("tskcfg")


def ensure_tools() -> None:
    missing = [tool for tool in ("nginx", "wrk") if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists()]
    if not missing:
        return
    print(f"installing {', '.join(missing)} with apt-get ...", flush=True)
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
        check=True,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )


def nginx_binary() -> str:
    return shutil.which("nginx") or "/usr/sbin/nginx"


def document(size: int = 2048) -> str:
    """A user-service document of about `size` bytes that passes its schema."""
    base = (REPOSITORY / "environments" / "production" / "user-service.tsk").read_text()
    lines = [base.rstrip(), ""]
    flag = 0
    while len("\n".join(lines)) < size - 40:
        lines.append(f"flag_{flag:03d}: true")
        flag += 1
    return "\n".join(lines) + "\n"


def wait_until_up(url: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=0.5)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def _median(runs: list[dict[str, float]]) -> dict[str, float]:
    ordered = sorted(runs, key=lambda run: run["rate"])
    return ordered[len(ordered) // 2]




GOALS = {"GET 200": 0.25, "GET 304": 0.3}  # of nginx's requests/s at the same concurrency


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=None, help="seconds per measurement (5, --quick 2)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating runs per server")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--quick", action="store_true", help="2 s runs instead of 5 s")
    parser.add_argument("--json", action="store_true", help="print JSON (progress goes to stderr)")
    parser.add_argument("--no-pushes", action="store_true", help="measure reads only")
    arguments = parser.parse_args()
    if arguments.duration is None:
        arguments.duration = 2 if arguments.quick else 5
    ensure_tools()
    work = Path(tempfile.mkdtemp(prefix="tskcfg-bench-"))
    work.chmod(0o755)  # nginx's worker process may run as another user
    port, nginx_port = free_port(), free_port()
    (work / "environments").mkdir()
    server = subprocess.Popen(
        [str(TSKCFG), "serve", "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(work / "data"),
         "--environments", str(work / "environments"), "--schemas", str(REPOSITORY / "schemas")],
        stdout=subprocess.DEVNULL,
        stderr=(work / "server.log").open("wb"),
    )
    nginx = None
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_up(base + "/health")
        token = (work / "data" / "admin.token").read_text().strip()
        auth = {"Authorization": f"Bearer {token}"}
        source = document()
        pushed = httpx.put(base + "/v1/configs/user-service/production", content=source.encode(),
                           headers={**auth, "Content-Type": "text/x-tsk"})
        assert pushed.status_code == 201, pushed.text
        url = base + "/v1/configs/user-service/production"
        body = httpx.get(url, headers=auth).content
        etag = httpx.get(url, headers=auth).headers["etag"]

        static = work / "static"
        static.mkdir()
        (static / "config.json").write_bytes(body)
        static.chmod(0o755)
        (static / "config.json").chmod(0o644)
        (work / "nginx.conf").write_text(
            f"""
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log;
events {{ worker_connections 1024; }}
http {{
    access_log {work}/nginx-access.log;
    client_body_temp_path {work}/nginx-body;
    proxy_temp_path {work}/nginx-proxy;
    fastcgi_temp_path {work}/nginx-fastcgi;
    uwsgi_temp_path {work}/nginx-uwsgi;
    scgi_temp_path {work}/nginx-scgi;
    default_type application/json;
    server {{
        listen 127.0.0.1:{nginx_port};
        location / {{ root {static}; }}
    }}
}}
"""
        )
        nginx = subprocess.Popen([nginx_binary(), "-c", str(work / "nginx.conf"), "-g", "daemon off;"])
        nginx_url = f"http://127.0.0.1:{nginx_port}/config.json"
        wait_until_up(nginx_url)
        nginx_response = httpx.get(nginx_url)
        assert nginx_response.content == body, f"nginx must serve the same bytes: {nginx_response.status_code}"
        nginx_etag = nginx_response.headers["etag"]
        assert httpx.get(nginx_url, headers={"If-None-Match": nginx_etag}).status_code == 304
        assert httpx.get(url, headers={**auth, "If-None-Match": etag}).status_code == 304

        duration, connections, rounds = arguments.duration, arguments.connections, arguments.rounds
        print(
            f"body {len(body)} bytes, {connections} connections, wrk -t 2, {rounds} alternating "
            f"rounds of {duration} s per server (median shown)",
            flush=True,
            file=sys.stderr if arguments.json else sys.stdout,
        )
        scenarios = {
            "GET 200": ((url, auth), (nginx_url, {})),
            "GET 304": (
                (url, {**auth, "If-None-Match": etag}),
                (nginx_url, {"If-None-Match": nginx_etag}),
            ),
        }
        results = {}
        all_runs: dict[str, tuple[list[dict[str, float]], list[dict[str, float]]]] = {}
        for name, ((ours_url, ours_headers), (nginx_target, nginx_headers)) in scenarios.items():
            # Alternate the two servers so that load from elsewhere on the machine falls on both.
            ours_runs, nginx_runs = [], []
            for _ in range(rounds):
                ours_runs.append(wrk(ours_url, connections=connections, threads=2, duration=duration, headers=ours_headers))
                nginx_runs.append(wrk(nginx_target, connections=connections, threads=2, duration=duration, headers=nginx_headers))
            results[name] = (_median(ours_runs), _median(nginx_runs))
            all_runs[name] = (ours_runs, nginx_runs)

        rows = _json_result(results, all_runs, len(body), arguments)
        if arguments.no_pushes:
            if arguments.json:
                print(json.dumps(rows, indent=2))
            else:
                _print_reads(results)
            return
        script = work / "push.lua"
        escaped = source.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        script.write_text(f'base_document = "{escaped}"\n' + PUSH_SCRIPT)
        push_duration = duration * rounds
        before = httpx.get(url, headers=auth).json()["version"]
        started = time.monotonic()
        push_result = wrk(
            url,
            connections=arguments.writers,
            threads=2,
            duration=push_duration,
            headers={**auth, "Content-Type": "text/x-tsk"},
            script=script,
        )
        elapsed = time.monotonic() - started
        after = httpx.get(url, headers=auth).json()["version"]
        created = after - before
        if arguments.json:
            rows.append({
                "benchmark": "serve",
                "scenario": "pushes",
                "writers": arguments.writers,
                "versions": created,
                "seconds": elapsed,
                "pushes_per_s": created / elapsed,
                "wrk": push_result,
                "document_bytes": len(source),
            })
            print(json.dumps(rows, indent=2))
            return
        _print_reads(results)
        print()
        print(
            f"pushes: {created} versions created by {arguments.writers} writers in {elapsed:.1f} s = "
            f"{created / elapsed:,.0f} pushes/s (wrk: {push_result['rate']:,.0f} req/s, "
            f"p50 {push_result['p50']:.2f} ms, p99 {push_result['p99']:.2f} ms; "
            f"{len(source)} byte document, schema-validated, WAL synchronous=FULL)"
        )
    finally:
        if nginx is not None:
            nginx.send_signal(signal.SIGQUIT)
            nginx.wait(timeout=10)
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=15)
        shutil.rmtree(work, ignore_errors=True)


def _print_reads(results: dict[str, tuple[dict[str, float], dict[str, float]]]) -> None:
    print()
    print(f"{'':10} {'tskcfg req/s':>14} {'nginx req/s':>14} {'ratio':>7} {'tskcfg p50/p99 ms':>19} {'nginx p50/p99 ms':>18}")
    for name, (ours, theirs) in results.items():
        print(
            f"{name:10} {ours['rate']:>14,.0f} {theirs['rate']:>14,.0f} {ours['rate'] / theirs['rate']:>7.2f} "
            f"{ours['p50']:>9.2f}/{ours['p99']:<9.2f} {theirs['p50']:>8.2f}/{theirs['p99']:<9.2f}"
        )
        if ours["errors"] or theirs["errors"]:
            print(f"{'':10} non-2xx/3xx answers: tskcfg {ours['errors']:.0f}, nginx {theirs['errors']:.0f}")


def _json_result(
    results: dict[str, tuple[dict[str, float], dict[str, float]]],
    all_runs: dict[str, tuple[list[dict[str, float]], list[dict[str, float]]]],
    body_bytes: int,
    arguments: argparse.Namespace,
) -> list[dict[str, object]]:
    """One dict per scenario: the median runs, every run's rate, and the per-round ratios."""
    rows: list[dict[str, object]] = []
    for name, (ours, theirs) in results.items():
        ours_runs, nginx_runs = all_runs[name]
        # Runs alternate, so run i of each side saw about the same machine: their ratio is a pair.
        ratios = [a["rate"] / b["rate"] for a, b in zip(ours_runs, nginx_runs, strict=True)]
        rows.append({
            "benchmark": "serve",
            "scenario": name,
            "body_bytes": body_bytes,
            "connections": arguments.connections,
            "duration_s": arguments.duration,
            "rounds": arguments.rounds,
            "ours": ours,
            "nginx": theirs,
            "ours_rates": [run["rate"] for run in ours_runs],
            "nginx_rates": [run["rate"] for run in nginx_runs],
            "ratio": ours["rate"] / theirs["rate"],
            "ratio_min": min(ratios),
            "ratio_max": max(ratios),
            "goal": GOALS[name],
        })
    return rows


if __name__ == "__main__":
    main()
