"""The replay of a resumed event stream without HTTP: versions and rollout changes in sequence
order, each once, whatever the page size, and what version goes with each rollout's event."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from config_service.core.access import file_principal
from config_service.core.replay import Replayed, ReplayedRollout
from config_service.core.rollouts import RolloutPlan
from config_service.core.wiring import Core
from config_service.settings import Settings

PRINCIPAL = file_principal("file:test")
SLOW = 3600.0


@pytest.fixture
def core(tmp_path: Path) -> Iterator[Core]:
    settings = Settings(data_dir=tmp_path, sync=False, access_log=False, open_services=True)
    started = Core(settings)
    started.start()
    try:
        yield started
    finally:
        started.stop()


def replay_all(core: Core, after: int, limit: int) -> list[Replayed]:
    bound = core.replay.last_sequence()
    found: list[Replayed] = []
    pages = 0
    while after < bound:
        page = core.replay.page(after, bound, limit)
        assert page.end > after  # every page moves on
        found.extend(page.events)
        after = page.end
        pages += 1
        assert pages < 100
    return found


def describe(events: list[Replayed]) -> list[tuple[str, str, int | str]]:
    return [
        ("rollout", event.rollout.service, event.rollout.state)
        if isinstance(event, ReplayedRollout)
        else ("version", event.service, event.version)
        for event in events
    ]


def test_rollouts_are_replayed_among_versions_in_order_on_every_page_size(core: Core) -> None:
    core.documents.push(PRINCIPAL, "a", "production", "x = 1\n")
    core.documents.push(PRINCIPAL, "b", "production", "x = 1\n")
    plan = RolloutPlan(source="x = 2\n", steps=(50, 100), bake_seconds=SLOW)
    core.rollouts.start(PRINCIPAL, "a", "production", plan)
    core.documents.push(PRINCIPAL, "b", "production", "x = 2\n")
    core.rollouts.pause(PRINCIPAL, "a", "production")  # the same rollout again: replayed once
    core.rollouts.start(PRINCIPAL, "b", "production", RolloutPlan(source="x = 3\n", steps=(100,), bake_seconds=SLOW))
    core.rollouts.abort(PRINCIPAL, "b", "production")
    core.documents.push(PRINCIPAL, "c", "production", "x = 1\n")
    expected = [
        ("version", "a", 1),
        ("version", "b", 1),
        ("version", "b", 2),
        ("rollout", "a", "paused"),
        ("rollout", "b", "aborted"),
        ("version", "c", 1),
    ]
    for limit in (1, 2, 3, 500):
        events = replay_all(core, 0, limit)
        assert describe(events) == expected, limit
        sequences = [event.sequence for event in events]
        assert sequences == sorted(set(sequences))
    # From an id between them: only what came after, the paused rollout at its latest id.
    after_b1 = replay_all(core, 0, 500)[1].sequence
    assert describe(replay_all(core, after_b1, 2)) == expected[2:]


def test_a_replayed_rollout_carries_what_its_cohort_reads_now(core: Core) -> None:
    core.documents.push(PRINCIPAL, "a", "production", "x = 1\n")
    core.rollouts.start(PRINCIPAL, "a", "production", RolloutPlan(source="x = 2\n", steps=(30, 100), bake_seconds=SLOW))
    (running,) = [e for e in replay_all(core, 0, 500) if isinstance(e, ReplayedRollout)]
    assert (running.version, running.moved, running.public["state"]) == (2, (0, 30, False), "running")
    core.rollouts.abort(PRINCIPAL, "a", "production")
    (aborted,) = [e for e in replay_all(core, 0, 500) if isinstance(e, ReplayedRollout)]
    assert (aborted.version, aborted.moved) == (1, (0, 30, False))  # the cohort reads 1 again
    assert aborted.hash == core.versions.version("a", "production", 1).record.hash  # type: ignore[union-attr]
    core.documents.push(PRINCIPAL, "d", "production", "x = 1\n")
    core.rollouts.start(PRINCIPAL, "d", "production", RolloutPlan(source="x = 2\n", steps=(100,), bake_seconds=SLOW))
    core.rollouts.complete(PRINCIPAL, "d", "production")
    completed = [e for e in replay_all(core, 0, 500) if isinstance(e, ReplayedRollout) and e.rollout.service == "d"]
    assert [(e.version, e.moved, e.public["state"]) for e in completed] == [(2, (0, 100, True), "completed")]
