"""The store's rollout state, on both stores: a candidate version that is not current, the
rollout row with its compare-and-set, failures per instance, and sequences shared with versions."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from config_service.store import AuditEntry, NewRollout, NewVersion, Store
from tests.store.conftest import StoreMaker


def _version(source: str, kind: str = "push") -> NewVersion:
    return NewVersion("svc", "production", source, "{}", "hash-" + source, "tester", None, "", kind=kind)


def _start(store: Store) -> tuple[int, int]:
    """A document at version 1 and a rollout of version 2; (candidate sequence, rollout id)."""
    store.write(lambda transaction: transaction.append_version(_version("a = 1"), None, None))

    def start(transaction):  # type: ignore[no-untyped-def]
        candidate, created = transaction.append_version(_version("a = 2", "rollout"), None, None)
        assert created
        rollout = transaction.insert_rollout(
            NewRollout("svc", "production", candidate.version, 1, (10, 50, 100), 5.0, 0, "tester"),
            AuditEntry(actor="tester", action="rollout_start", service="svc", environment="production"),
        )
        return candidate.sequence, rollout.id

    result: tuple[int, int] = store.write(start)
    return result


def test_a_candidate_is_stored_but_the_current_pointer_stays(store: Store) -> None:
    _start(store)
    current = store.current_version("svc", "production")
    assert current is not None and current.version == 1
    candidate = store.get_version("svc", "production", 2)
    assert candidate is not None and candidate.kind == "rollout"
    document = store.document("svc", "production")
    assert document is not None and document.current_version == 1


def test_a_candidate_with_the_current_source_is_still_a_new_version(store: Store) -> None:
    store.write(lambda transaction: transaction.append_version(_version("a = 1"), None, None))
    record, created = store.write(
        lambda transaction: transaction.append_version(_version("a = 1", "rollout"), None, None)
    )
    assert created and record.version == 2


def test_a_rollout_takes_the_next_sequence_after_its_candidate(store: Store) -> None:
    candidate_sequence, rollout_id = _start(store)
    rollout = store.latest_rollout("svc", "production")
    assert rollout is not None and rollout.id == rollout_id
    assert rollout.sequence == candidate_sequence + 1
    assert store.last_sequence() == rollout.sequence
    assert (rollout.state, rollout.step, rollout.percent, rollout.steps) == ("running", 0, 10, (10, 50, 100))
    assert rollout.step_started_at == rollout.started_at and rollout.baked_seconds == 0.0
    # The next version goes on after it: one order for versions and rollout changes.
    record, _ = store.write(
        lambda transaction: transaction.append_version(_version("a = 3"), None, None)
    )
    assert record.sequence == rollout.sequence + 1
    audit = store.list_audit(10, None, action="rollout_start")
    assert [entry.version for entry in audit] == [2]


def test_update_is_compare_and_set_on_the_sequence(store: Store) -> None:
    _start(store)
    rollout = store.latest_rollout("svc", "production")
    assert rollout is not None
    paused = dataclasses.replace(rollout, state="paused", step_started_at=None, baked_seconds=1.5)
    updated = store.write(lambda transaction: transaction.update_rollout(paused, rollout.sequence, None))
    assert updated is not None
    assert (updated.state, updated.baked_seconds, updated.step_started_at) == ("paused", 1.5, None)
    assert updated.sequence == rollout.sequence + 1
    # A second writer that read the old row loses, and takes no sequence.
    stale = dataclasses.replace(rollout, step=1)
    assert store.write(lambda transaction: transaction.update_rollout(stale, rollout.sequence, None)) is None
    assert store.last_sequence() == updated.sequence
    assert [active.state for active in store.active_rollouts()] == ["paused"]
    with_active = store.write(lambda transaction: transaction.active_rollout("svc", "production"))
    assert with_active is not None and with_active.id == rollout.id


def test_finished_rollouts_are_not_active_and_stay_listed(store: Store) -> None:
    _start(store)
    rollout = store.latest_rollout("svc", "production")
    assert rollout is not None
    done = dataclasses.replace(rollout, state="completed", step=2)

    def complete(transaction):  # type: ignore[no-untyped-def]
        transaction.set_current_version("svc", "production", rollout.candidate_version)
        return transaction.update_rollout(done, rollout.sequence, None)

    store.write(complete)
    assert store.active_rollouts() == []
    current = store.current_version("svc", "production")
    assert current is not None and current.version == 2
    listed = store.rollouts_of_versions("svc", "production", [1, 2, 3])
    assert list(listed) == [2] and listed[2].state == "completed"


def test_failures_count_distinct_instances(store: Store) -> None:
    _, rollout_id = _start(store)
    counts = [
        store.write(lambda transaction, name=name: transaction.record_rollout_failure(rollout_id, name, "boom"))
        for name in ("a", "b", "a")
    ]
    assert counts == [1, 2, 2]
    assert store.rollout_failures(rollout_id) == ["a", "b"]
    assert store.rollout_failures(rollout_id + 1) == []


def test_rollouts_survive_reopening(stores: Callable[[], Store]) -> None:
    first = stores()
    _start(first)
    first.close()
    second = stores()
    (rollout,) = second.active_rollouts()
    assert rollout.candidate_version == 2 and rollout.state == "running"
    assert second.last_sequence() == rollout.sequence


def test_the_candidates_of_active_rollouts_are_listed_whole(store: Store) -> None:
    _start(store)
    (candidate,) = store.rollout_candidates()
    assert (candidate.version, candidate.kind, candidate.source) == (2, "rollout", "a = 2")
    inside = store.write(lambda transaction: transaction.rollout_candidates())
    assert [record.version for record in inside] == [2]
    rollout = store.latest_rollout("svc", "production")
    assert rollout is not None
    ended = dataclasses.replace(rollout, state="aborted")
    store.write(lambda transaction: transaction.update_rollout(ended, rollout.sequence, None))
    assert store.rollout_candidates() == []


def test_rollouts_after_a_sequence_are_listed_as_they_are_now_in_sequence_order(store: Store) -> None:
    _, rollout_id = _start(store)
    started = store.latest_rollout("svc", "production")
    assert started is not None
    assert [rollout.id for rollout in store.rollouts_after(started.sequence - 1, 10)] == [rollout_id]
    assert store.rollouts_after(started.sequence, 10) == []
    paused = dataclasses.replace(started, state="paused", step_started_at=None)
    store.write(lambda transaction: transaction.update_rollout(paused, started.sequence, None))
    # Its row as it is now (one entry per rollout, whatever changes it went through).
    [changed] = store.rollouts_after(0, 10)
    assert (changed.id, changed.state, changed.sequence) == (rollout_id, "paused", started.sequence + 1)
    assert store.rollouts_after(changed.sequence, 10) == []
    # A second document's rollout comes after it, and the limit holds.
    store.write(
        lambda transaction: transaction.append_version(
            dataclasses.replace(_version("b = 1"), environment="staging"), None, None
        )
    )

    def start_other(transaction):  # type: ignore[no-untyped-def]
        candidate, _ = transaction.append_version(
            dataclasses.replace(_version("b = 2", "rollout"), environment="staging"), None, None
        )
        return transaction.insert_rollout(
            NewRollout("svc", "staging", candidate.version, 1, (50, 100), 5.0, 0, "tester"), None
        )

    other = store.write(start_other)
    assert [rollout.id for rollout in store.rollouts_after(0, 10)] == [rollout_id, other.id]
    assert [rollout.id for rollout in store.rollouts_after(0, 1)] == [rollout_id]
    assert [rollout.id for rollout in store.rollouts_after(changed.sequence, 10)] == [other.id]


def test_an_operation_sees_a_rollout_started_earlier_in_its_own_batch(store: Store) -> None:
    import threading

    store.write(lambda transaction: transaction.append_version(_version("a = 1"), None, None))
    started, release = threading.Event(), threading.Event()

    def hold(transaction):  # type: ignore[no-untyped-def]
        started.set()
        assert release.wait(10)

    # While the writer holds one batch, two operations queue up: they commit together.
    holding = store.submit(hold)
    assert started.wait(10)

    def begin(transaction):  # type: ignore[no-untyped-def]
        assert transaction.active_rollout("svc", "production") is None
        candidate, _ = transaction.append_version(_version("a = 2", "rollout"), None, None)
        return transaction.insert_rollout(
            NewRollout("svc", "production", candidate.version, 1, (10, 100), 5.0, 0, "tester"), None
        )

    begun = store.submit(begin)
    seen = store.submit(lambda transaction: transaction.active_rollout("svc", "production"))
    release.set()
    holding.result(10)
    rollout = begun.result(10)
    assert seen.result(10) == rollout
    # A rollout ended earlier in a batch is no longer active for the operations after it.
    started.clear()
    release.clear()
    holding = store.submit(hold)
    assert started.wait(10)
    ended = store.submit(
        lambda transaction: transaction.update_rollout(
            dataclasses.replace(rollout, state="aborted", step_started_at=None), rollout.sequence, None
        )
    )
    after = store.submit(lambda transaction: transaction.active_rollout("svc", "production"))
    release.set()
    holding.result(10)
    assert ended.result(10) is not None
    assert after.result(10) is None


def test_a_rollout_started_by_another_replica_is_seen_by_the_next_write(stores: StoreMaker) -> None:
    first, second = stores(), stores()
    first.write(lambda transaction: transaction.append_version(_version("a = 1"), None, None))
    assert second.write(lambda transaction: transaction.active_rollout("svc", "production")) is None
    _, rollout_id = _start_candidate(first)
    seen = second.write(lambda transaction: transaction.active_rollout("svc", "production"))
    assert seen is not None and seen.id == rollout_id


def _start_candidate(store: Store) -> tuple[int, int]:
    def start(transaction):  # type: ignore[no-untyped-def]
        candidate, _ = transaction.append_version(_version("a = 2", "rollout"), None, None)
        rollout = transaction.insert_rollout(
            NewRollout("svc", "production", candidate.version, 1, (10, 100), 5.0, 0, "tester"), None
        )
        return candidate.sequence, rollout.id

    result: tuple[int, int] = store.write(start)
    return result
