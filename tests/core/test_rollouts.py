"""The rollout rules without HTTP: the plan's bounds, the bake clock, and two processes' timers on
one store (a step is a compare-and-set: it happens once, and the loser catches up)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from config_service.core.access import file_principal
from config_service.core.refusals import Refused
from config_service.core.rollouts import RolloutPlan, bake_elapsed, check_plan
from config_service.core.wiring import Core
from config_service.settings import Settings
from config_service.store import RolloutRecord, SqliteStore


@pytest.mark.parametrize(
    ("steps", "bake", "failed", "words"),
    [
        ([10, 10, 100], 1, 0, "increase"),
        ([10, 90], 1, 0, "end at 100"),
        ([5] * 21, 1, 0, "1 to 20"),
        ([101], 1, 0, "from 1 to 100"),
        ([100], float("nan"), 0, "bake_seconds"),
        ([100], float("inf"), 0, "bake_seconds"),
        ([100], 1, 100_001, "max_failed"),
        (None, 1, 0, "list"),
    ],
)
def test_a_bad_plan_names_what_is_wrong(steps: object, bake: float, failed: int, words: str) -> None:
    with pytest.raises(Refused) as refused:
        check_plan(steps, bake, failed)
    assert refused.value.code == "bad_request" and words in refused.value.message


def test_a_good_plan_is_taken_as_numbers() -> None:
    assert check_plan([1, 100], 0, 0) == ((1, 100), 0.0, 0)
    assert check_plan((25, 50, 100), 0.25, 3) == ((25, 50, 100), 0.25, 3)


def _rollout(**changes: object) -> RolloutRecord:
    base = RolloutRecord(
        id=1, service="s", environment="production", candidate_version=2, stable_version=1,
        steps=(50, 100), step=0, bake_seconds=10.0, max_failed=0, state="running",
        started_at="2026-01-01T00:00:00.000Z", updated_at="2026-01-01T00:00:00.000Z",
        step_started_at="2026-01-01T00:00:00.000Z", baked_seconds=0.0, reason="", author="a", sequence=3,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_the_bake_clock_runs_only_while_running() -> None:
    later = "2026-01-01T00:00:04.500Z"
    assert bake_elapsed(_rollout(), later) == 4.5
    assert bake_elapsed(_rollout(baked_seconds=2.0), later) == 6.5
    assert bake_elapsed(_rollout(state="paused", step_started_at=None, baked_seconds=2.0), later) == 2.0
    assert bake_elapsed(_rollout(), "2025-12-31T23:59:59.000Z") == 0.0  # never negative


@pytest.fixture
def two_processes(tmp_path: Path) -> Iterator[tuple[Core, Core]]:
    """Two servers' cores on one store file, as workers of one server would be."""
    settings = Settings(data_dir=tmp_path, sync=False, access_log=False, open_services=True)
    first, second = Core(settings), Core(settings, SqliteStore(settings.database_path))
    first.start()
    second.start()
    try:
        yield first, second
    finally:
        second.stop()
        first.stop()


def test_a_step_happens_once_however_many_timers_see_it_due(two_processes: tuple[Core, Core]) -> None:
    first, second = two_processes
    principal = file_principal("file:test")
    first.documents.push(principal, "svc", "production", "a = 1\n")
    started = first.rollouts.start(
        principal, "svc", "production", RolloutPlan(source="a = 2\n", steps=(50, 100), bake_seconds=0.3)
    )
    second.rollouts.load()  # the other process learns of it (at its start, or from the store)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        done = first.rollouts.get("svc", "production")["state"] == "completed"
        if done and second.versions.rollout("svc", "production") is None:
            break
        time.sleep(0.05)
    actions = [entry.action for entry in first.store.list_audit(10, None, service="svc")]
    # One step and one completion, whichever timer won each; the loser caught up.
    assert actions[:3] == ["rollout_complete", "rollout_step", "rollout_start"], actions
    assert second.versions.rollout("svc", "production") is None
    assert started["id"] == first.rollouts.get("svc", "production")["id"]
    for core in (first, second):
        current = core.versions.cached_for("svc", "production", b"any-instance")
        assert current is not None and current.version == 2  # each process answers the candidate
