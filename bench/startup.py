"""Start-up: `load_config()` in a fresh service process, from the server and from its fallbacks, against reading a local file.

    .venv/bin/python bench/startup.py            # 15 alternating runs per case
    .venv/bin/python bench/startup.py --quick    # 5 runs per case
    .venv/bin/python bench/startup.py --json     # machine-readable result

Each run is a new Python process (cold: nothing imported, nothing cached in memory) that
loads the production user-service config (about 1 KB, with @env references) and reports:
the time to import what it needs, the time of the call itself, and the config's source.
The bench also takes the whole process's time from spawn to exit. Cases:

- server: `load_config()` with the server up and an empty cache directory;
- last-known-good: the server's port refuses connections and the cache holds the last config;
- local file fallback: the server is down and there is no cache, only environments/;
- comparison, what a service without a config server does: `tomllib.load` of the same data
  as a TOML file, and `tsk.load` of the .tsk file (no client, no hash, no @env resolution).

Runs alternate between the cases so that load from elsewhere falls on all of them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from _common import REPOSITORY, Server, free_port, load_average, summary
from parse import to_toml

from config_service import tsk

SERVICE, ENVIRONMENT = "user-service", "production"

# The child takes its first time before importing anything else.
CLIENT_CHILD = """
import time
started = time.perf_counter()
import json, sys
from tskcfg import load_config
imported = time.perf_counter()
config = load_config(sys.argv[1], sys.argv[2], server=sys.argv[3], token=sys.argv[4],
                     cache_dir=sys.argv[5], environments_dir=sys.argv[6])
done = time.perf_counter()
assert config.get("database.pool_size") == 20, config
print(json.dumps({"import_ms": (imported - started) * 1000, "call_ms": (done - imported) * 1000,
                  "source": config.source, "version": config.version}))
"""

TOML_CHILD = """
import time
started = time.perf_counter()
import json, sys, tomllib
imported = time.perf_counter()
with open(sys.argv[1], "rb") as file:
    data = tomllib.load(file)
done = time.perf_counter()
assert data["database"]["pool_size"] == 20
print(json.dumps({"import_ms": (imported - started) * 1000, "call_ms": (done - imported) * 1000,
                  "source": "toml file", "version": None}))
"""

TSK_CHILD = """
import time
started = time.perf_counter()
import json, sys
from config_service import tsk
imported = time.perf_counter()
with open(sys.argv[1], "rb") as file:
    data = tsk.load(file)
done = time.perf_counter()
assert data["database"]["pool_size"] == 20
print(json.dumps({"import_ms": (imported - started) * 1000, "call_ms": (done - imported) * 1000,
                  "source": "tsk file", "version": None}))
"""


def run_child(*args: str, expect_source: str) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(REPOSITORY)}
    # No @env values from the bench's own environment: every case resolves the same defaults.
    for name in ("PORT", "DATABASE_URL"):
        env.pop(name, None)
    started = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, "-c", *args], capture_output=True, text=True, timeout=60, env=env
    )
    process_ms = (time.perf_counter() - started) * 1000
    if completed.returncode != 0:
        raise SystemExit(f"a start-up run failed:\n{completed.stderr}")
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    if result["source"] != expect_source:
        raise SystemExit(f"expected a config from {expect_source}, got one from {result['source']}")
    return {"import_ms": result["import_ms"], "call_ms": result["call_ms"], "process_ms": process_ms}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 runs per case")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--runs", type=int, help="runs per case (15, --quick 5)")
    args = parser.parse_args(argv)
    runs = args.runs or (5 if args.quick else 15)
    load_before = load_average()
    source_path = REPOSITORY / "environments" / ENVIRONMENT / f"{SERVICE}.tsk"
    source = source_path.read_text()
    with tempfile.TemporaryDirectory(prefix="tskcfg-startup-") as directory:
        work = Path(directory)
        environments = work / "local-environments"
        (environments / ENVIRONMENT).mkdir(parents=True)
        shutil.copy(source_path, environments / ENVIRONMENT / f"{SERVICE}.tsk")
        toml_path = work / "user-service.toml"
        toml_path.write_text(to_toml(tsk.validation_view(tsk.loads(source))))
        empty_environments = work / "no-environments"
        empty_environments.mkdir()
        lkg_cache = work / "lkg-cache"
        down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
        samples: dict[str, list[dict[str, float]]] = {}
        with Server(work / "server") as server:
            pushed = httpx.put(
                f"{server.url}/v1/configs/{SERVICE}/{ENVIRONMENT}",
                content=source.encode(),
                headers={**server.auth, "Content-Type": "text/x-tsk"},
            )
            if pushed.status_code != 201:
                raise SystemExit(f"push refused: {pushed.status_code} {pushed.text}")
            token = server.token
            # One load from the server fills the last-known-good cache the fallback case reads.
            run_child(CLIENT_CHILD, SERVICE, ENVIRONMENT, server.url, token, str(lkg_cache),
                      str(empty_environments), expect_source="server")
            for index in range(runs):
                client_args = (CLIENT_CHILD, SERVICE, ENVIRONMENT)
                cases: dict[str, tuple[tuple[str, ...], str]] = {
                    "server": ((*client_args, server.url, token, str(work / f"cold-cache-{index}"),
                                str(empty_environments)), "server"),
                    "last-known-good": ((*client_args, down, token, str(lkg_cache), str(empty_environments)),
                                        "cache"),
                    "local file fallback": ((*client_args, down, token, str(work / f"no-cache-{index}"),
                                            str(environments)), "file"),
                    "tomllib.load (no server)": ((TOML_CHILD, str(toml_path)), "toml file"),
                    "tsk.load (no server)": ((TSK_CHILD, str(source_path)), "tsk file"),
                }
                for name, (arguments, expected) in cases.items():
                    samples.setdefault(name, []).append(run_child(*arguments, expect_source=expected))
    baseline = statistics_of(samples["tomllib.load (no server)"])
    rows = []
    for name, values in samples.items():
        figures = statistics_of(values)
        rows.append({
            "benchmark": "startup",
            "case": name,
            "runs": runs,
            **figures,
            "process_ratio_to_tomllib": figures["process_ms"]["median"] / baseline["process_ms"]["median"],
            "document_bytes": len(source.encode()),
        })
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(
        f"Start-up of a fresh process loading the {len(source.encode()):,} byte production user-service"
        f" config; median of {runs} alternating runs [min..max], ms"
    )
    print(f"{'case':<26} {'import':>8} {'call':>8} {'[spread]':>15} {'process':>8} {'[spread]':>15} {'vs toml':>8}")
    for row in rows:
        call, process = row["call_ms"], row["process_ms"]
        call_spread = f"[{call['min']:.1f}..{call['max']:.1f}]"
        process_spread = f"[{process['min']:.0f}..{process['max']:.0f}]"
        print(
            f"{row['case']:<26} {row['import_ms']['median']:>8.1f} {call['median']:>8.1f} {call_spread:>15}"
            f" {process['median']:>8.0f} {process_spread:>15} {row['process_ratio_to_tomllib']:>7.2f}x"
        )
    print(
        "\nimport: importing what the case needs; call: load_config() or the file read;"
        " process: spawn to exit.\n"
        f"Load average {load_before[0]:.2f} -> {load_average()[0]:.2f}."
    )
    return 0


def statistics_of(values: list[dict[str, float]]) -> dict[str, dict[str, Any]]:
    return {key: summary([value[key] for value in values]) for key in ("import_ms", "call_ms", "process_ms")}


if __name__ == "__main__":
    sys.exit(main())
