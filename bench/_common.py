"""Shared pieces of the benchmarks written for the suite: a server in its own process, wrk, statistics.

Imported by bench/writes.py, bench/startup.py and bench/scaling.py (run as scripts, so
`bench/` is on sys.path). Servers listen on 127.0.0.1 only and are always stopped.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

REPOSITORY = Path(__file__).resolve().parents[1]
TSKCFG = Path(sys.executable).with_name("tskcfg")

# A launcher that runs `tskcfg` with the store's SQLite connections switched to
# synchronous=NORMAL. The server has no setting for it (FULL is fixed in
# config_service/store/sqlite.py); this exists only so the benchmark can show what FULL costs.
# It writes the setting each connection really has to stderr, which the benchmark checks.
NORMAL_LAUNCHER = """
import sys
from config_service import store

_connect = store.SqliteStore._connect

def connect_normal(self):
    connection = _connect(self)
    connection.execute("PRAGMA synchronous = NORMAL")
    level = connection.execute("PRAGMA synchronous").fetchone()[0]
    print(f"bench: sqlite synchronous={level}", file=sys.stderr, flush=True)
    return connection

store.SqliteStore._connect = connect_normal
from config_service.cli import main
sys.argv[0] = "tskcfg"
sys.exit(main())
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()


def summary(values: Sequence[float]) -> dict[str, Any]:
    """Median, min, max and the values themselves (the spread is min..max over repeated runs)."""
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "runs": list(values),
    }


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile (0 < fraction <= 1) of the values."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[index]


class Server:
    """`tskcfg serve` in its own process on a free 127.0.0.1 port, with its data in `work`."""

    def __init__(
        self,
        work: Path,
        *,
        synchronous: str = "FULL",
        access_log: bool = True,
        extra: Sequence[str] = (),
    ) -> None:
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError(synchronous)
        self.work = work
        self.synchronous = synchronous
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data = work / "data"
        environments = work / "environments"
        environments.mkdir(parents=True, exist_ok=True)
        launcher = (
            [str(TSKCFG)] if synchronous == "FULL" else [sys.executable, "-c", NORMAL_LAUNCHER]
        )
        self.command = [
            *launcher,
            "serve",
            "--host",
            "127.0.0.1",  # explicitly: TSKCFG_HOST in the environment must not widen it
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data),
            "--environments",
            str(environments),
            "--schemas",
            str(REPOSITORY / "schemas"),
            "--open-services",  # benchmarks push to services made up on the spot
            *([] if access_log else ["--no-access-log"]),
            *extra,
        ]
        self.log = work / f"server-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> float:
        """Start and wait for /health; returns the seconds it took."""
        started = time.monotonic()
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(self.command, stdout=subprocess.DEVNULL, stderr=log)
        deadline = started + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited at start: {self.log_tail()}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server did not come up in {timeout:g} s: {self.log_tail()}")
            time.sleep(0.02)
        elapsed = time.monotonic() - started
        if self.synchronous == "NORMAL" and "bench: sqlite synchronous=1" not in self.log.read_text():
            raise RuntimeError("the NORMAL launcher did not switch the store to synchronous=NORMAL")
        return elapsed

    @property
    def token(self) -> str:
        return (self.data / "admin.token").read_text().strip()

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def rss_kib(self) -> int:
        assert self.process is not None
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


# wrk's script for pushes: each request is the base document plus two lines that make it new.
PUSH_SCRIPT = r"""
local counter = 0
local threads = {}
function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end
function init(args)
  thread_id = id
end
request = function()
  counter = counter + 1
  local body = base_document .. "bench_writer: " .. thread_id .. "\nbench_sequence: " .. counter .. "\n"
  return wrk.format("PUT", nil, nil, body)
end
"""


def ensure_wrk() -> None:
    """Install wrk with apt-get when it is missing (benchmarks only; never in CI)."""
    if shutil.which("wrk") is not None:
        return
    print("installing wrk with apt-get ...", file=sys.stderr, flush=True)
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "wrk"],
        check=True,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )


def wrk(
    url: str,
    *,
    connections: int,
    threads: int,
    duration: float,
    headers: dict[str, str] | None = None,
    script: Path | None = None,
) -> dict[str, float]:
    """One wrk run: requests/s, p50 and p99 in ms, and the count of non-2xx/3xx answers."""
    command = [
        "wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration:g}s", "--latency",
        "--timeout", "10s",
    ]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    if script is not None:
        command += ["-s", str(script)]
    command.append(url)
    output = subprocess.run(
        command, capture_output=True, text=True, check=True, timeout=duration + 60
    ).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if rate is None:
        raise RuntimeError(f"unexpected wrk output:\n{output}")
    percentiles = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", output, re.MULTILINE))
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    requests = re.search(r"(\d+) requests in", output)
    return {
        "rate": float(rate.group(1)),
        "requests": float(requests.group(1)) if requests else 0.0,
        "p50": _milliseconds(percentiles.get("50", "0ms")),
        "p99": _milliseconds(percentiles.get("99", "0ms")),
        "errors": float(non_2xx.group(1)) if non_2xx else 0.0,
    }


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by process `pid` and its direct children (nginx's
    worker), from /proc: what a server spent, whatever else the machine was doing."""
    total = 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    pids = [pid]
    try:
        pids += [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        pass
    for each in pids:
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return total


def _milliseconds(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if not match:
        return 0.0
    value, unit = float(match.group(1)), match.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def lua_string(text: str) -> str:
    """`text` as a Lua string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def user_service_document(size: int) -> str:
    """A production user-service document of at least `size` bytes that passes its schema.

    It is the repository's document followed by `[bench_N]` sections of a dozen keys each,
    the shape of a large real config (many sections), not one flat list of keys.
    """
    base = (REPOSITORY / "environments" / "production" / "user-service.tsk").read_text().rstrip()
    parts = [base, "\n"]
    length = len(base) + 1
    index = 0
    while length < size:
        section = (
            f"\n[bench_{index}]\n"
            f'url: "postgresql://db-{index}.internal:5432/shard_{index}"\n'
            f"pool_size: {10 + index % 20}\n"
            "timeout: 5.5\n"
            f'replicas: ["replica-{index}-a.internal", "replica-{index}-b.internal"]\n'
            f"read_only: {'true' if index % 2 else 'false'}\n"
            f'description: "shard {index} of the user database"\n'
        )
        parts.append(section)
        length += len(section)
        index += 1
    return "".join(parts)
