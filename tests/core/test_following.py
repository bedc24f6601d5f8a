"""Two server processes on one store: what one commits reaches the other, in sequence order.

Two `Core`s with `workers=2` share one real SQLite file, as two workers of `tskcfg serve
--workers 2` do; each follows the store's sequence (config_service/core/following.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from config_service.core.access import Principal
from config_service.core.following import CATCH_UP_WHOLE, Follower
from config_service.core.rendered import Rendered, RenderedVersions, render
from config_service.core.wiring import Core
from config_service.settings import Settings
from config_service.store import NewVersion, SqliteStore, VersionRecord

ADMIN = Principal(None, "tests", "admin", ("*",), ("*",))


class CountingStore(SqliteStore):
    """The SQLite store, counting the whole versions it is asked for, and its catch-up reads."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.versions_read = 0
        self.pages_read = 0

    def versions_after(self, sequence: int, limit: int) -> list[VersionRecord]:
        self.pages_read += 1
        return super().versions_after(sequence, limit)

    def changes_after(self, sequence: int, limit: int, whole: int = 0) -> tuple[int, list[VersionRecord]]:
        self.pages_read += 1
        return super().changes_after(sequence, limit, whole)

    def get_version(self, service: str, environment: str, version: int) -> VersionRecord | None:
        self.versions_read += 1
        return super().get_version(service, environment, version)


class Worker:
    def __init__(self, core: Core, store: CountingStore) -> None:
        self.core = core
        self.store = store
        self.seen: list[VersionRecord] = []
        self.lock = threading.Lock()
        core.add_change_listener(self._seen)

    def _seen(self, record: VersionRecord, rendered: Rendered | None) -> None:
        with self.lock:
            self.seen.append(record)

    def sequences(self) -> list[int]:
        with self.lock:
            return [record.sequence for record in self.seen]


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[tuple[Worker, Worker]]:
    settings = Settings(data_dir=tmp_path / "data", sync=False, workers=2, open_services=True)
    made = []
    for _ in range(2):
        store = CountingStore(settings.database_path)
        worker = Worker(Core(settings, store), store)
        worker.core.start()
        made.append(worker)
    try:
        yield made[0], made[1]
    finally:
        for worker in made:
            worker.core.stop()


def eventually(check: Callable[[], bool], within: float = 2.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {within} s")
        time.sleep(0.01)


def push(worker: Worker, number: int, service: str = "orders") -> Rendered:
    rendered, created = worker.core.documents.push(
        ADMIN, service, "development", f"value: {number}\n"
    )
    assert created
    return rendered


def test_a_version_pushed_through_one_worker_reaches_the_other(
    workers: tuple[Worker, Worker],
) -> None:
    first, second = workers
    pushed = push(first, 1)
    eventually(lambda: second.sequences() == [pushed.record.sequence])
    held = second.core.versions.cached("orders", "development")
    assert held is not None and held.version == 1
    assert held.json_body == pushed.json_body
    # Its own commit reached the pusher's listeners too, once.
    eventually(lambda: first.sequences() == [pushed.record.sequence])


def test_concurrent_pushes_through_both_reach_both_in_one_gapless_order(
    workers: tuple[Worker, Worker],
) -> None:
    def pushes(worker: Worker, service: str) -> None:
        for number in range(25):
            push(worker, number, service)

    threads = [
        threading.Thread(target=pushes, args=(worker, service))
        for worker, service in zip(workers, ("orders", "billing"), strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    expected = list(range(1, 51))
    for worker in workers:
        eventually(lambda worker=worker: worker.sequences() == expected, within=5)  # type: ignore[misc]
    for worker in workers:
        versions = {("orders", 25), ("billing", 25)}
        held = {
            (service, rendered.version)
            for service in ("orders", "billing")
            if (rendered := worker.core.versions.cached(service, "development")) is not None
        }
        assert held == versions


def test_each_change_is_one_read_on_the_other_worker_and_none_on_its_own(
    workers: tuple[Worker, Worker],
) -> None:
    first, second = workers
    for number in range(10):
        push(first, number)
        eventually(lambda number=number: len(second.sequences()) == number + 1)  # type: ignore[misc]
    # Each catch-up read its change whole: no read of the version after it.
    assert second.store.versions_read == 0
    assert 10 <= second.store.pages_read <= 10 + 2  # (a poll may find nothing new)
    assert first.store.versions_read == 0


def test_a_long_catch_up_reads_the_first_versions_whole_and_the_rest_one_by_one(tmp_path: Path) -> None:
    store = CountingStore(tmp_path / "config.db")
    store.open()
    versions = RenderedVersions(store)
    handed: list[tuple[int, Rendered | None]] = []
    follower = Follower(
        store, versions, lambda record, rendered: handed.append((record.sequence, rendered)),
        lambda: None, interval=3600,
    )
    services = [f"service-{number}" for number in range(CATCH_UP_WHOLE + 3)]
    try:
        for service in services:
            source, config = f'value: "{service}"\n', f'{{"value": "{service}"}}'
            new = NewVersion(service, "development", source, config, "h-" + service, "tests", None, "")
            store.write(lambda transaction, new=new: transaction.append_version(new, None, None))
        # Not started: the catch-up below is its only read.
        assert follower.catch_up() == len(services)
        assert store.pages_read == 1
        assert store.versions_read == 3  # the three past the whole ones, one read each
        assert [sequence for sequence, _ in handed] == list(range(1, len(services) + 1))
        for (_, rendered), service in zip(handed, services, strict=True):
            assert rendered is not None and rendered.record.service == service
            assert rendered is versions.cached(service, "development")
            assert rendered.data == {"value": service}  # the document itself, not only metadata
            assert rendered.source_body == f'value: "{service}"\n'.encode()
    finally:
        store.close()


def test_a_token_created_and_revoked_on_one_worker_is_known_on_the_other(
    workers: tuple[Worker, Worker],
) -> None:
    first, second = workers
    record, secret = first.core.tokens.create(ADMIN, "ci", "reader", ["*"], ["*"])
    started = time.monotonic()
    eventually(lambda: second.core.tokens.authenticate(secret) is not None, within=1.0)
    principal = second.core.tokens.authenticate(secret)
    assert principal is not None and principal.name == "ci"
    revoked: list[str] = []
    second.core.tokens.add_revocation_listener(revoked.append)
    first.core.tokens.revoke(ADMIN, record.id)
    eventually(lambda: revoked == [record.id], within=1.0)
    assert not second.core.tokens.is_live(principal)
    assert second.core.tokens.authenticate(secret) is None
    assert time.monotonic() - started < 2.0


def test_a_schema_put_on_one_worker_is_used_by_the_other(workers: tuple[Worker, Worker]) -> None:
    first, second = workers
    schema = {"type": "object", "properties": {"value": {"type": "integer", "maximum": 10}}}
    first.core.schemas.put(ADMIN, "orders", schema)
    eventually(lambda: "orders" in second.core.schemas.current.schemas, within=1.0)
    with pytest.raises(Exception, match="schema") as refused:
        push(second, 11)
    assert getattr(refused.value, "code", None) == "schema_violation"


def test_a_version_a_reader_taught_first_is_still_handed_on_in_its_place(
    workers: tuple[Worker, Worker],
) -> None:
    first, second = workers
    one = push(first, 1)
    two = push(first, 2)
    # A request on the second worker named version 2 before the follower got there.
    read = second.core.read_through("orders", "development")
    assert read is not None and read.version == 2
    eventually(lambda: second.sequences() == [one.record.sequence, two.record.sequence])
    assert [record.version for record in second.seen] == [1, 2]


def test_catch_up_reads_what_was_committed_while_a_worker_was_not_looking(
    tmp_path: Path,
) -> None:
    settings = Settings(data_dir=tmp_path / "data", sync=False, workers=2, open_services=True)
    first_store = CountingStore(settings.database_path)
    first = Worker(Core(settings, first_store), first_store)
    first.core.start()
    try:
        push(first, 1)
        second_store = CountingStore(settings.database_path)
        second = Worker(Core(settings, second_store), second_store)
        second.core.start()
        try:
            assert second.core.follower is not None
            # Started after version 1: it follows from there; the store has the rest.
            assert second.core.follower.last_sequence == 1
            second.core.follower.stop()  # no longer looking
            push(first, 2)
            push(first, 3)
            assert second.sequences() == []
            second.core.catch_up()
            assert second.sequences() == [2, 3]
            assert second.core.follower.last_sequence == 3
        finally:
            second.core.stop()
    finally:
        first.core.stop()


def test_one_process_on_sqlite_does_not_follow(tmp_path: Path) -> None:
    core = Core(Settings(data_dir=tmp_path / "data", sync=False))
    assert core.follower is None


def _cohort_reading(core: Core, version: int) -> bytes:
    """A cohort whose instances read `version`'s side of the rollout now running on `core`'s
    document orders/development (the candidate's side when `version` is the candidate)."""
    for number in range(1000):
        cohort = f"instance-{number}".encode()
        answer = core.versions.cached_for("orders", "development", cohort)
        if answer is not None and answer.version == version:
            return cohort
    raise AssertionError(f"no cohort reads version {version}")


def test_a_rollout_changed_on_one_worker_changes_what_the_other_answers(
    workers: tuple[Worker, Worker],
) -> None:
    from config_service.core.rollouts import RolloutChange, RolloutPlan

    first, second = workers
    heard: list[RolloutChange] = []
    second.core.rollouts.add_listener(heard.append)
    push(first, 1)
    eventually(lambda: second.core.versions.cached("orders", "development") is not None)
    started = first.core.rollouts.start(
        ADMIN, "orders", "development", RolloutPlan(source="value: 2\n", steps=(30, 100), bake_seconds=60)
    )
    # The candidate is not current on the other worker: only its cohort reads it.
    eventually(lambda: second.core.versions.rollout("orders", "development") is not None, within=1.0)
    held = second.core.versions.cached("orders", "development")
    assert held is not None and held.version == 1
    candidate_cohort = _cohort_reading(second.core, 2)
    stable_cohort = _cohort_reading(second.core, 1)
    assert [(change.rollout.state, change.moved) for change in heard] == [("running", (0, 30, False))]
    assert heard[0].rollout.id == started["id"]

    first.core.rollouts.pause(ADMIN, "orders", "development")
    eventually(lambda: len(heard) == 2, within=1.0)
    assert (heard[1].rollout.state, heard[1].moved) == ("paused", None)

    first.core.rollouts.abort(ADMIN, "orders", "development")
    eventually(lambda: second.core.versions.rollout("orders", "development") is None, within=1.0)
    answer = second.core.versions.cached_for("orders", "development", candidate_cohort)
    assert answer is not None and answer.version == 1  # back on the stable version
    assert [(change.rollout.state, change.moved) for change in heard[2:]] == [("aborted", (0, 30, False))]
    # Events in one order on both: each change's sequence once, increasing.
    assert [change.rollout.sequence for change in heard] == sorted({c.rollout.sequence for c in heard})

    # A second rollout completed on the first makes its candidate current on the other.
    first.core.rollouts.start(
        ADMIN, "orders", "development", RolloutPlan(source="value: 3\n", steps=(50, 100), bake_seconds=60)
    )
    eventually(lambda: second.core.versions.rollout("orders", "development") is not None, within=1.0)
    first.core.rollouts.complete(ADMIN, "orders", "development")
    eventually(lambda: second.core.versions.rollout("orders", "development") is None, within=1.0)
    for cohort in (candidate_cohort, stable_cohort, None):
        answer = second.core.versions.cached_for("orders", "development", cohort)
        assert answer is not None and answer.version == 3, cohort  # the second candidate
    assert (heard[-1].rollout.state, heard[-1].moved) == ("completed", (50, 100, True))
    # The version events the other worker handed on: the pushes only, not the candidates.
    assert [record.version for record in second.seen] == [1]


def test_own_commits_that_come_next_are_handed_on_without_reading_the_store(tmp_path: Path) -> None:
    store = CountingStore(tmp_path / "config.db")
    store.open()
    versions = RenderedVersions(store)
    handed: list[tuple[int, Rendered | None]] = []
    # Never polls: only `committed` and pokes make it act.
    follower = Follower(
        store, versions, lambda record, rendered: handed.append((record.sequence, rendered)),
        lambda: None, interval=3600,
    )

    def commit(source: str) -> VersionRecord:
        new = NewVersion("orders", "development", source, "{}", "h-" + source, "tests", None, "")
        record, created = store.write(lambda transaction: transaction.append_version(new, None, None))
        assert created
        return record

    follower.start(0)
    try:
        first = commit("a")
        kept = versions.remember(render(first))
        follower.committed([first])
        assert handed == [(first.sequence, kept)]
        assert follower.last_sequence == first.sequence
        assert (store.pages_read, store.versions_read) == (0, 0)
        # Told again (a catch-up got there first): nothing is handed on twice.
        follower.committed([first])
        assert len(handed) == 1
        # A commit it was not told of (another process's) comes between: it catches up, so
        # both go out in sequence order.
        unheard = commit("b")
        mine = commit("c")
        held = versions.remember(render(mine))
        follower.committed([mine])
        eventually(lambda: [sequence for sequence, _ in handed] == [1, 2, 3])
        assert store.pages_read >= 1
        # The one between is older than the one held: only its event goes out.
        assert handed[1:] == [(unheard.sequence, None), (mine.sequence, held)]
    finally:
        follower.stop()
        store.close()
