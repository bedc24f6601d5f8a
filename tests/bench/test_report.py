"""The benchmark report generator (bench/run.py): curve shapes, goal verdicts and the rendered page.

These tests run no benchmark; they feed the generator results of the shape the benchmarks print.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(scope="module")
def run() -> Any:
    spec = importlib.util.spec_from_file_location("bench_run", BENCH / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_run"] = module
    spec.loader.exec_module(module)
    return module


def summary(values: list[float]) -> dict[str, Any]:
    ordered = sorted(values)
    return {"median": ordered[len(ordered) // 2], "min": ordered[0], "max": ordered[-1], "runs": values}


def record(name: str, result: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "name": name,
        "command": f".venv/bin/python bench/{name}.py",
        "load_before": [1.0, 1.0, 1.0],
        "load_after": [1.5, 1.0, 1.0],
        "seconds": 3.0,
        "result": result,
    }


def propagation_row(mode: str, watchers: int, p99: float, goal: float | None) -> dict[str, Any]:
    side = {
        "p50_ms": p99 / 2, "p99_ms": p99, "p99_ms_min": p99, "p99_ms_max": p99, "max_ms": p99,
        "push_ms": 1.0, "p99_after_ack_ms": p99 - 1, "kib_per_watcher": 15.0, "rounds": 3,
    }
    return {
        "benchmark": "propagation", "mode": mode, "watchers": watchers, "latency_from": "push sent",
        "ours": side, "floor": {**side, "p99_ms": p99 / 4, "kib_per_watcher": 1.0}, "p99_ratio": 4.0,
        "goal_p99_ms": goal, "goal_kib_per_watcher": 20.0,
        "p99_goal_met": None if goal is None else p99 <= goal, "memory_goal_met": True, "all_delivered": True,
    }


def results() -> dict[str, Any]:
    return {
        "started": "2026-01-01 00:00",
        "quick": True,
        "seconds": 90.0,
        "machine": {"cpus": 2, "cpu_model": "test", "python": "3.11", "system": "Linux", "commit": "abc"},
        "records": [
            record("parse", [{
                "document": "small service config", "tsk_bytes": 2000, "tsk_ms": 0.3, "tomllib_ms": 0.4,
                "ratio": 0.75, "ratio_min": 0.7, "ratio_max": 0.8, "goal": 1.0,
            }]),
            record("reads", [{
                "scenario": "GET 304", "body_bytes": 2000, "connections": 64, "duration_s": 1, "rounds": 3,
                "ours": {"rate": 10_000.0, "p50": 3.0, "p99": 9.0}, "nginx": {"rate": 50_000.0, "p50": 1.0, "p99": 3.0},
                "ours_rates": [9_000.0, 10_000.0, 11_000.0], "nginx_rates": [50_000.0] * 3,
                "ratio": 0.2, "ratio_min": 0.18, "ratio_max": 0.22, "goal": 0.3,
                "floor": {"rate": 60_000.0, "p50": 1.0, "p99": 2.0}, "floor_rates": [60_000.0] * 3,
                "cpu_us": 40.0, "nginx_cpu_us": 15.0, "floor_cpu_us": 5.0, "cpu_ratio": 8.0,
                "cpu_ratios": [7.5, 8.0, 8.5], "cpu_goal": 3.0,
            }, {
                "scenario": "GET 304, new head", "body_bytes": 2000, "connections": 64, "duration_s": 1,
                "rounds": 3, "ours": {"rate": 5_000.0, "p50": 3.0, "p99": 9.0},
                "nginx": {"rate": 50_000.0, "p50": 1.0, "p99": 3.0},
                "ours_rates": [5_000.0] * 3, "nginx_rates": [50_000.0] * 3,
                "ratio": 0.1, "ratio_min": 0.1, "ratio_max": 0.1, "goal": None,
                "floor": {"rate": 60_000.0, "p50": 1.0, "p99": 2.0}, "floor_rates": [60_000.0] * 3,
                "cpu_us": 60.0, "nginx_cpu_us": 15.0, "floor_cpu_us": 5.0, "cpu_ratio": 12.0,
                "cpu_ratios": [12.0] * 3, "cpu_goal": None,
            }]),
            record("writes", [{
                "writers": 8, "synchronous": "FULL", "default": True, "pushes_per_s": summary([600.0, 650.0, 700.0]),
                "p50_ms": 10.0, "p99_ms": 30.0, "floor_commits_per_s": summary([5000.0] * 3), "ratio_to_floor": 0.13,
                "goal_pushes_per_s": 500.0, "document_bytes": 2000, "rounds": 3, "duration_s": 1.0,
            }]),
            record("stores", [
                {"store": store, "writers": 8, "pushes_per_s": summary([rate] * 3), "p50_ms": 12.0,
                 "p99_ms": 40.0, "server_cpu_ms": 1.5, "postgres_cpu_ms": 0.5 if goal else 0.0, "goal_pushes_per_s": goal, "goal_met": None if goal is None else rate >= goal,
                 "document_bytes": 2000, "rounds": 3, "duration_s": 1.0}
                for store, rate, goal in (("SQLite", 650.0, None), ("PostgreSQL", 450.0, 500.0))
            ]),
            record("replicas", [
                {"benchmark": "replicas", "layout": layout, "replicas": count, "watchers": 1_000, "pushes": 5,
                 "p50_ms": p99 / 2, "p99_ms": p99, "p99_ms_min": p99 - 5, "p99_ms_max": p99 + 5, "max_ms": p99 + 9,
                 "goal_p99_ms": 50.0 if count == 3 else None}
                for layout, count, p99 in (("1 replica", 1, 40.0), ("3 replicas", 3, 70.0))
            ]),
            record("propagation", [
                propagation_row("long_poll", 100, 5.0, None),
                propagation_row("long_poll", 1_000, 50.0, 50.0),
                propagation_row("long_poll", 10_000, 600.0, 500.0),
            ]),
            {**record("apply", []), "result": None, "error": "exit status 1"},
            record("startup", [{
                "case": "server", "runs": 5, "import_ms": summary([150.0]), "call_ms": summary([30.0]),
                "process_ms": summary([250.0]), "process_ratio_to_tomllib": 7.0, "document_bytes": 1000,
            }]),
            record("scaling", [
                {"axis": "document size", "label": label, "source_bytes": size, "samples": 3,
                 "push_ms": summary([size / 1000]), "propagation_ms": summary([size / 900]),
                 "get_ms": summary([1.0]), "parse_ms": summary([size / 2000]), "get_per_s": summary([10_000.0])}
                for label, size in (("1 KB", 1_000), ("100 KB", 100_000), ("1 MB", 1_000_000))
            ] + [
                {"axis": "documents", "label": f"{count:,}", "documents": count, "samples": 3,
                 "fill_pushes_per_s": 500.0, "push_ms": summary([2.0]), "get_ms": summary([0.6]),
                 "get_per_s": summary([15_000.0]), "rss_kib": 50_000 + 10 * count, "database_bytes": 5000 * count,
                 "restart_s": 0.5, "first_get_after_restart_ms": 20.0}
                for count in (10, 1_000)
            ]),
            record("workers", [{
                "benchmark": "workers", "scenario": "GET 200", "connections": 64, "duration_s": 1.0, "rounds": 3,
                "one": {"rate": 40_000.0, "cpu_us": 15.0}, "two": {"rate": 60_000.0, "cpu_us": 16.5},
                "one_rates": [39_000.0, 40_000.0, 41_000.0], "two_rates": [58_000.0, 60_000.0, 61_000.0],
                "rate_ratio": 1.5, "cpu_ratio": 1.1, "errors": 0.0,
            }]),
            {**record("rollouts", []), "result": {
                "reads": {
                    "plain": {"rate": 20_000.0, "cpu_us": 15.0, "p99_ms": 4.0},
                    "rollout": {"rate": 19_000.0, "cpu_us": 15.5, "p99_ms": 4.2},
                    "slower_percent": 5.0,
                    "cpu_slower_percent": 3.3,
                },
                "propagation": {
                    "plain": {"last_ms": 40.0, "runs_ms": [40.0]}, "rollout": {"last_ms": 48.0, "runs_ms": [48.0]},
                    "watchers": 1000, "slower_percent": 20.0,
                },
                "goal_percent": 10.0,
                "met": False,
            }},
        ],
    }


@pytest.mark.parametrize(
    ("ys", "inverse", "expected"),
    [
        ([1.0, 100.0, 1000.0], False, "**linear**"),
        ([5.0, 5.2, 4.9], False, "**about constant**"),
        ([1.0, 10_000.0, 1_000_000.0], False, "**worse than linear**"),
        ([1.0, 10.0, 31.0], False, "**sub-linear**"),
        ([1000.0, 10.0, 1.0], True, "**linear**"),  # a rate falling as 1/x: time per request is linear
    ],
)
def test_shape_names_the_curve_from_its_last_step(run: Any, ys: list[float], inverse: bool, expected: str) -> None:
    assert run.shape([1.0, 100.0, 1000.0], ys, inverse=inverse).startswith(expected)


def test_shape_says_when_a_fixed_cost_hides_the_curve_lower_down(run: Any) -> None:
    text = run.shape([1_000.0, 100_000.0, 1_000_000.0], [3.0, 24.0, 240.0])
    assert text.startswith("**linear** at the top of the range (sub-linear lower down, where a fixed cost")


def test_shape_with_one_usable_point_says_so(run: Any) -> None:
    assert run.shape([1.0, 10.0], [5.0, 0.0]) == "not enough points"


def test_report_judges_each_goal_and_keeps_the_commands(run: Any) -> None:
    page = run.render(results())
    goals = page[page.index("## Goals"):page.index("## Parse")]
    assert "| parse, small service config | 0.75x tomllib's time | <= 1.0x | met |" in goals
    assert "| GET 304 | 0.20 of nginx's req/s | >= 0.30 | **missed** |" in goals
    assert "| GET 304, server CPU | 8.00x the floor's | <= 3x | **missed** |" in goals
    reads = page[page.index("## Reads"):page.index("## Pushes") if "## Pushes" in page else None]
    assert "| GET 304 | 40.0 | 15.0 | 5.0 | 8.00x [7.50..8.50] | <= 3x | **missed** |" in reads
    assert "| pushes, 8 writers (FULL) | 650/s | >= 500/s | met |" in goals
    assert "| pushes, 8 writers (PostgreSQL) | 450/s | >= 500/s | **missed** |" in goals
    stores = page[page.index("## Stores"):page.index("## Propagation")]
    assert "| SQLite | 8 | 650 [650..650] | 12.00 / 40.00 | 1.50 | - | - | - |" in stores
    assert "| PostgreSQL | 8 | 450 [450..450] | 12.00 / 40.00 | 1.50 | 0.50 | >= 500 | **missed** |" in stores
    assert "1,000 watchers | p99 50.0 ms from the push sent | <= 50 ms | met |" in goals
    assert "10,000 watchers | p99 600.0 ms from the push sent | <= 500 ms | **missed** |" in goals
    for name in ("parse", "reads", "writes", "stores", "propagation", "startup", "scaling"):
        assert f"Command: `.venv/bin/python bench/{name}.py`" in page
    assert "_The benchmark failed: exit status 1._" in page


def test_a_row_without_a_goal_is_shown_but_not_judged(run: Any) -> None:
    page = run.render(results())
    goals = page[page.index("## Goals"):page.index("## Parse")]
    assert "new head" not in goals
    reads = page[page.index("## Reads"):page.index("## Pushes") if "## Pushes" in page else None]
    assert "| GET 304, new head | 60.0 | 15.0 | 5.0 | 12.00x [12.00..12.00] | - | - |" in reads
    assert "| 0.10 [0.10..0.10] | 3.00 / 9.00 | 1.00 / 3.00 | - | - |" in reads


def test_report_keeps_the_written_analysis_of_every_section(run: Any) -> None:
    page = run.render(results())
    for name, title, _ in run.SECTIONS:
        assert f"## {title}" in page
        assert run.ANALYSIS[name].splitlines()[0] in page
    assert run.ANALYSIS["limits"].splitlines()[0] in page


def test_workers_section_sets_two_workers_beside_one(run: Any) -> None:
    page = run.render(results())
    section = page[page.index("## Workers"):page.index("## Scaling")]
    assert "| GET 200 | 40,000 [39,000..41,000] | 60,000 [58,000..61,000] | 1.50 | 15.0 | 16.5 | 1.10 |" in section
    assert "Command: `.venv/bin/python bench/workers.py`" in section


def test_scaling_note_states_the_shapes(run: Any) -> None:
    page = run.render(results())
    note = page[page.index("## Scaling"):page.index("## What limits")]
    assert "- push: **linear**" in note
    assert "- GET: **about constant**" in note
    assert "**linear** in the number of documents (10 to 1,000: 10.0 KiB per document added)" in note
    assert "- long poll, p99 (100: 5.0 ms, 1,000: 50.0 ms, 10,000: 600.0 ms): **linear**" in note


def test_saved_results_render_the_same_page(run: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    saved = tmp_path / "results.json"
    saved.write_text(json.dumps(results()))
    output = tmp_path / "benchmarks.md"
    status = run.main(["--from", str(saved), "--output", str(output)])
    assert status == 1  # one benchmark failed in these results, and the exit status says so
    assert output.read_text() == run.render(results())


def test_commands_shown_are_what_a_user_types(run: Any) -> None:
    reads = next(b for b in run.BENCHMARKS if b.name == "reads")
    assert reads.command(quick=False) == ".venv/bin/python bench/serve.py --no-pushes"
    assert "--json" in reads.arguments(quick=True)
    assert {b.name for b in run.BENCHMARKS} == {name for name, _, _ in run.SECTIONS} | {"scaling"}


def test_rollout_goals_are_judged_each_on_its_own(run: Any) -> None:
    summary = run.goal_summary({record["name"]: record for record in results()["records"]})
    assert "| with a rollout running, hot GET, server CPU per request | +3.3 % slower | <= 10 % | met |" in summary
    assert "| with a rollout running, propagation | +20.0 % slower | <= 10 % | **missed** |" in summary


def test_replicas_section_sets_three_replicas_beside_one_and_judges_the_goal(run: Any) -> None:
    page = run.render(results())
    section = page[page.index("## Replicas"):page.index("## Scaling")]
    assert "| 1 replica | 1,000 | 20.0 | 40.0 [35.0..45.0] | 49.0 | - | - |" in section
    assert "| 3 replicas | 1,000 | 35.0 | 70.0 [65.0..75.0] | 79.0 | <= 50 | **missed** |" in section
    assert "Command: `.venv/bin/python bench/replicas.py`" in section
    summary = run.goal_summary({record["name"]: record for record in results()["records"]})
    assert "| propagation over 3 replicas, 1,000 watchers | p99 70.0 ms from the push sent | <= 50 ms | **missed** |" in summary


def test_report_says_how_fast_the_machine_is_against_the_one_the_goals_were_set_on(run: Any) -> None:
    page = run.render(results())
    # The fixture's floor: 5 us of CPU per GET and 60,000 a second, against 4.7 us and 160,000.
    assert "In this run the floor spent 5.0 us and answered 60,000 a second" in page
    assert "at about 0.94 of that speed" in page
    assert page.index("## Goals") < page.index("In this run the floor spent") < page.index("## Parse")
    without_reads = results()
    without_reads["records"] = [record for record in without_reads["records"] if record["name"] != "reads"]
    assert "In this run the floor spent" not in run.render(without_reads)
