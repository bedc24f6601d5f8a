"""Benchmark the config server's GET (200 and 304) against nginx and a bare protocol floor
serving the same bytes, in requests/s and in server CPU per request, and pushes/s.

Run: .venv/bin/python bench/serve.py [--duration 5] [--rounds 3] [--connections 64] [--writers 8]
     [--quick] (2 s runs) [--json] (machine-readable result) [--no-pushes] (reads only)

It starts `tskcfg serve` (one process, uvloop + httptools, access log on) on a temporary data
dir, nginx (one worker process, access log on) on a static file holding exactly the bytes our
GET answers, and the floor (`bench/floor_http.py`: uvloop + httptools answering the same head
and body from memory, checking only that an Authorization header is there), then drives all
three with wrk at the same concurrency, alternating between them for a few rounds and keeping
each side's median, so that load from elsewhere falls on all of them. Each server's CPU time
(user + system, from /proc) over each run, divided by the requests it answered, is its CPU per
request: the figure to hold against the floor's, since on a shared 2-core machine wrk competes
with the server and requests/s move with whatever else runs. Pushes
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
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from _common import PUSH_SCRIPT, cpu_seconds, free_port, wrk

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




# A poller sends the same bytes again and again, and the server answers such a repeat without
# parsing it again (config_service/http1/protocol.py). This row makes every request's bytes new
# (an X-Request-ID that counts up, as a client sending its own ids would), so each is parsed,
# checked and decided the whole way: the cost of a read the server has not seen on its connection.
NEW_HEAD = "GET 304, new head"
NEW_HEAD_SCRIPT = """
local n = 0
request = function()
  n = n + 1
  wrk.headers["X-Request-ID"] = "r" .. n
  return wrk.format()
end
"""
# Of nginx's requests/s at the same concurrency; None: shown without a goal.
GOALS: dict[str, float | None] = {"GET 200": 0.25, "GET 304": 0.3, NEW_HEAD: None}
# Server CPU per request, at most this many times the floor's (the hot path's goal).
CPU_GOAL = 3.0
FLOOR = Path(__file__).resolve().with_name("floor_http.py")


def raw_answer(port: int, request: bytes) -> bytes:
    """The exact bytes of one answer (head and body) to `request`, read off the socket."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
        connection.sendall(request)
        received = b""
        while b"\r\n\r\n" not in received:
            received += connection.recv(65536)
        head, _, body = received.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(body) < length:
            body += connection.recv(65536)
        return head + b"\r\n\r\n" + body


def measured(
    pid: int, url: str, headers: dict[str, str], script: Path | None, arguments: argparse.Namespace
) -> dict[str, float]:
    """One wrk run against the server `pid`, with that server's CPU microseconds per request."""
    before = cpu_seconds(pid)
    run = wrk(
        url, connections=arguments.connections, threads=2, duration=arguments.duration, headers=headers,
        script=script,
    )
    spent = cpu_seconds(pid) - before
    run["cpu_us"] = spent / run["requests"] * 1e6 if run["requests"] else 0.0
    return run


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
    nginx = floor = None
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

        path = "/v1/configs/user-service/production"
        ask = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        (work / "answer-200").write_bytes(raw_answer(port, (ask + "\r\n").encode()))
        (work / "answer-304").write_bytes(
            raw_answer(port, (ask + f"If-None-Match: {etag}\r\n\r\n").encode())
        )
        floor_port = free_port()
        floor = subprocess.Popen(
            [sys.executable, str(FLOOR), str(floor_port), str(work / "answer-200"),
             str(work / "answer-304"), etag],
        )
        floor_url = f"http://127.0.0.1:{floor_port}{path}"
        wait_until_up(floor_url)
        assert httpx.get(floor_url, headers=auth).content == body
        assert httpx.get(floor_url, headers={**auth, "If-None-Match": etag}).status_code == 304

        duration, connections, rounds = arguments.duration, arguments.connections, arguments.rounds
        print(
            f"body {len(body)} bytes, {connections} connections, wrk -t 2, {rounds} alternating "
            f"rounds of {duration} s per server (median shown)",
            flush=True,
            file=sys.stderr if arguments.json else sys.stdout,
        )
        new_head = work / "new-head.lua"
        new_head.write_text(NEW_HEAD_SCRIPT)
        scenarios = {
            "GET 200": ((url, auth, None), (nginx_url, {}, None), (floor_url, auth, None)),
            "GET 304": (
                (url, {**auth, "If-None-Match": etag}, None),
                (nginx_url, {"If-None-Match": nginx_etag}, None),
                (floor_url, {**auth, "If-None-Match": etag}, None),
            ),
            NEW_HEAD: (
                (url, {**auth, "If-None-Match": etag}, new_head),
                (nginx_url, {"If-None-Match": nginx_etag}, new_head),
                (floor_url, {**auth, "If-None-Match": etag}, new_head),
            ),
        }
        results = {}
        all_runs: dict[str, tuple[list[dict[str, float]], list[dict[str, float]], list[dict[str, float]]]] = {}
        for name, (ours_side, nginx_side, floor_side) in scenarios.items():
            # Alternate the servers so that load from elsewhere on the machine falls on all of them.
            ours_runs, nginx_runs, floor_runs = [], [], []
            for _ in range(rounds):
                ours_runs.append(measured(server.pid, *ours_side, arguments))
                nginx_runs.append(measured(nginx.pid, *nginx_side, arguments))
                floor_runs.append(measured(floor.pid, *floor_side, arguments))
            results[name] = (_median(ours_runs), _median(nginx_runs), _median(floor_runs))
            all_runs[name] = (ours_runs, nginx_runs, floor_runs)

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
        if floor is not None:
            floor.terminate()
            floor.wait(timeout=10)
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=15)
        shutil.rmtree(work, ignore_errors=True)


def _print_reads(results: dict[str, tuple[dict[str, float], dict[str, float], dict[str, float]]]) -> None:
    print()
    print(
        f"{'':10} {'tskcfg req/s':>13} {'nginx req/s':>12} {'floor req/s':>12} {'vs nginx':>9} "
        f"{'tskcfg CPU':>11} {'nginx CPU':>10} {'floor CPU':>10} {'vs floor':>9} {'tskcfg p50/p99 ms':>18}"
    )
    for name, (ours, theirs, floor) in results.items():
        print(
            f"{name:10} {ours['rate']:>13,.0f} {theirs['rate']:>12,.0f} {floor['rate']:>12,.0f} "
            f"{ours['rate'] / theirs['rate']:>9.2f} {ours['cpu_us']:>8.1f} us {theirs['cpu_us']:>7.1f} us "
            f"{floor['cpu_us']:>7.1f} us {_cpu_ratio(ours, floor):>8.2f}x "
            f"{ours['p50']:>8.2f}/{ours['p99']:<9.2f}"
        )
        errors = ours["errors"] + theirs["errors"] + floor["errors"]
        if errors:
            print(
                f"{'':10} non-2xx/3xx answers: tskcfg {ours['errors']:.0f}, nginx {theirs['errors']:.0f}, "
                f"floor {floor['errors']:.0f}"
            )
    print(f"goal: tskcfg's CPU per request at most {CPU_GOAL:g}x the floor's")


def _cpu_ratio(ours: dict[str, float], floor: dict[str, float]) -> float:
    return ours["cpu_us"] / floor["cpu_us"] if floor["cpu_us"] else float("inf")


def _json_result(
    results: dict[str, tuple[dict[str, float], dict[str, float], dict[str, float]]],
    all_runs: dict[str, tuple[list[dict[str, float]], list[dict[str, float]], list[dict[str, float]]]],
    body_bytes: int,
    arguments: argparse.Namespace,
) -> list[dict[str, object]]:
    """One dict per scenario: the median runs, every run's rate, and the per-round ratios."""
    rows: list[dict[str, object]] = []
    for name, (ours, theirs, floor) in results.items():
        ours_runs, nginx_runs, floor_runs = all_runs[name]
        # Runs alternate, so run i of each side saw about the same machine: their ratio is a pair.
        ratios = [a["rate"] / b["rate"] for a, b in zip(ours_runs, nginx_runs, strict=True)]
        cpu_ratios = [_cpu_ratio(a, b) for a, b in zip(ours_runs, floor_runs, strict=True)]
        rows.append({
            "benchmark": "serve",
            "scenario": name,
            "body_bytes": body_bytes,
            "connections": arguments.connections,
            "duration_s": arguments.duration,
            "rounds": arguments.rounds,
            "ours": ours,
            "nginx": theirs,
            "floor": floor,
            "ours_rates": [run["rate"] for run in ours_runs],
            "nginx_rates": [run["rate"] for run in nginx_runs],
            "floor_rates": [run["rate"] for run in floor_runs],
            "ratio": ours["rate"] / theirs["rate"],
            "ratio_min": min(ratios),
            "ratio_max": max(ratios),
            "goal": GOALS[name],
            # The CPU goal is the hot path's: for the reads a poller repeats.
            "cpu_goal": CPU_GOAL if GOALS[name] is not None else None,
            "cpu_us": ours["cpu_us"],
            "floor_cpu_us": floor["cpu_us"],
            "nginx_cpu_us": theirs["cpu_us"],
            "cpu_ratio": _cpu_ratio(ours, floor),
            "cpu_ratios": cpu_ratios,
        })
    return rows


if __name__ == "__main__":
    main()
