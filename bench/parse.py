"""Parse speed: `tsk.loads` against the standard library's `tomllib.loads` on the same data.

Both parsers read documents that mean exactly the same data (checked before timing): a
small service config (~2 KB) and a large one (~1 MB). Runs alternate between the two
parsers so machine noise hits both alike; the ratio of medians is the figure that holds.

    .venv/bin/python bench/parse.py            # full run
    .venv/bin/python bench/parse.py --quick    # fewer repetitions
    .venv/bin/python bench/parse.py --json     # machine-readable result
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import tomllib
from collections.abc import Callable
from typing import Any

from config_service import tsk

GOAL = 1.0  # TSK parsing no slower than tomllib


def service_section(index: int) -> dict[str, Any]:
    return {
        "url": f"postgresql://db-{index}.internal:5432/users_{index}",
        "pool_size": 20 + index % 7,
        "timeout": 5.5,
        "replicas": [f"replica-{index}-{n}.internal" for n in range(3)],
        "read_only": index % 2 == 0,
        "options": {"retries": 3, "backoff": 0.25, "mode": "strict"},
        "description": f'database of shard {index}, kept in "eu-west-1"',
    }


def small_document() -> dict[str, Any]:
    return {
        "name": "user-service",
        "version": "1.0.0",
        "port": 8001,
        "database": service_section(0),
        "cache": {"backend": "memory", "ttl": 300, "max_size": 10_000},
        "logging": {
            "level": "INFO",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s",
            "loggers": {"user_service.http": "WARNING", "sqlalchemy": "ERROR"},
        },
        "security": {
            "allowed_origins": ["https://app.example.com", "https://admin.example.com"],
            "token_ttl": 3600,
            "require_mtls": False,
        },
        "features": {f"flag_{n}": n % 3 == 0 for n in range(20)},
        "shards": {f"shard_{n}": service_section(n) for n in range(4)},
    }


def large_document(target_bytes: int = 1_000_000) -> dict[str, Any]:
    data: dict[str, Any] = {"name": "fleet", "version": "2.0.0"}
    index = 0
    empty = size = len(tsk.dumps(data))
    while size < target_bytes:
        # Add about 90% of the entries still missing (judged by their average size so far), then
        # measure again: a few dumps instead of one per entry, which took most of a quick run.
        per_entry = (size - empty) / index if index else 500.0
        for _ in range(max(1, int(0.9 * (target_bytes - size) / per_entry))):
            data[f"service_{index}"] = {
                "database": service_section(index),
                "limits": {"rps": 100 + index, "burst": 20, "ratios": [0.5, 0.25, 0.125]},
                "tags": ["blue", "green", f"zone-{index % 3}"],
            }
            index += 1
        size = len(tsk.dumps(data))
    return data


def to_toml(data: dict[str, Any]) -> str:
    """A minimal TOML writer for this benchmark's data (tables, strings, numbers, lists)."""
    lines: list[str] = []

    def key(name: str) -> str:
        return name if name.replace("_", "a").replace("-", "a").isalnum() else json.dumps(name)

    def value(item: Any) -> str:
        if isinstance(item, bool):
            return "true" if item else "false"
        if isinstance(item, int | float):
            return repr(item)
        if isinstance(item, str):
            return json.dumps(item, ensure_ascii=False)
        if isinstance(item, list):
            return "[" + ", ".join(value(x) for x in item) + "]"
        if isinstance(item, dict):
            return "{" + ", ".join(f"{key(k)} = {value(v)}" for k, v in item.items()) + "}"
        raise TypeError(type(item))

    def table(path: list[str], node: dict[str, Any]) -> None:
        if path:
            lines.append(f"[{'.'.join(key(p) for p in path)}]")
        for name, item in node.items():
            if not isinstance(item, dict):
                lines.append(f"{key(name)} = {value(item)}")
        for name, item in node.items():
            if isinstance(item, dict):
                table([*path, name], item)

    table([], data)
    return "\n".join(lines) + "\n"


def measure(parse: Callable[[str], Any], text: str, repeat: int) -> float:
    """Seconds for one parse: the best of a few inner loops, so one sample is not one hiccup."""
    number = max(1, int(0.05 / max(_once(parse, text), 1e-7)))
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            parse(text)
        best = min(best, (time.perf_counter() - start) / number)
    return best


def _once(parse: Callable[[str], Any], text: str) -> float:
    start = time.perf_counter()
    parse(text)
    return time.perf_counter() - start


def compare(name: str, data: dict[str, Any], rounds: int) -> dict[str, Any]:
    tsk_text, toml_text = tsk.dumps(data), to_toml(data)
    if tsk.loads(tsk_text) != data or tomllib.loads(toml_text) != data:
        raise SystemExit(f"{name}: the two documents do not mean the same data")
    tsk_times, toml_times = [], []
    for _ in range(rounds):
        tsk_times.append(measure(tsk.loads, tsk_text, 3))
        toml_times.append(measure(tomllib.loads, toml_text, 3))
    ratios = [a / b for a, b in zip(tsk_times, toml_times, strict=True)]
    return {
        "document": name,
        "tsk_bytes": len(tsk_text.encode()),
        "toml_bytes": len(toml_text.encode()),
        "tsk_ms": statistics.median(tsk_times) * 1000,
        "tomllib_ms": statistics.median(toml_times) * 1000,
        "ratio": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "goal": GOAL,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
    rounds = 3 if args.quick else 7
    results = [
        compare("small service config", small_document(), rounds),
        compare("large document", large_document(), rounds),
    ]
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(
        f"{'document':<22} {'size':>9} {'tsk.loads':>11} {'tomllib':>11} {'ratio':>7}"
        f" {'spread':>13} {'goal':>6}"
    )
    for row in results:
        print(
            f"{row['document']:<22} {row['tsk_bytes']:>9,} {row['tsk_ms']:>9.3f}ms"
            f" {row['tomllib_ms']:>9.3f}ms {row['ratio']:>6.2f}x"
            f" {row['ratio_min']:>6.2f}-{row['ratio_max']:<5.2f}"
            f" {'<=' + str(row['goal']):>6} {'met' if row['ratio'] <= row['goal'] else 'MISSED'}"
        )
    print(
        f"\nratio = tsk.loads time / tomllib.loads time, median of {rounds} alternating rounds"
        f" (python {sys.version.split()[0]})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
