"""Both stores without HTTP (the `store` fixture is SQLite, then PostgreSQL): group commit,
savepoints per write, listeners in commit order, bounded instances."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from config_service.store import (
    MAX_INSTANCES_PER_DOCUMENT,
    AuditEntry,
    DocumentState,
    IfMatch,
    InstanceReport,
    NewVersion,
    PreconditionFailed,
    SqliteStore,
    Store,
    TokenRecord,
    TooManyInstances,
    Transaction,
    VersionRecord,
    retirement,
    utc_timestamp,
)

StoreMaker = Callable[[], Store]


def _new(service: str, source: str) -> NewVersion:
    return NewVersion(service, "staging", source, "{}", "hash-" + source, "tester", None, "")


def _append(
    store: Store, new: NewVersion, if_match: IfMatch, audit: AuditEntry | None
) -> tuple[VersionRecord, bool]:
    return store.write(lambda transaction: transaction.append_version(new, if_match, audit))


def _record(
    store: Store,
    report: InstanceReport,
    limit: int = MAX_INSTANCES_PER_DOCUMENT,
    forget_before: str | None = None,
) -> None:
    store.write(lambda transaction: transaction.record_instance(report, limit, forget_before))


def test_concurrent_writes_get_distinct_numbers_and_failures_stay_their_own(store: Store) -> None:
    committed: list[tuple[str, int]] = []
    store.add_commit_listener(lambda records: committed.extend((r.service, r.version) for r in records))
    results: dict[int, object] = {}

    def write(index: int) -> None:
        if index % 5 == 0:
            # Create-only on a document that exists: refused, without touching the others.
            operation = lambda transaction: transaction.append_version(  # noqa: E731
                _new("shared", f"refused {index}"), 0, None
            )
        else:
            operation = lambda transaction: transaction.append_version(  # noqa: E731
                _new("shared", f"source {index}"), None, AuditEntry(actor="tester", action="push")
            )
        try:
            results[index] = store.write(operation)
        except PreconditionFailed as failure:
            results[index] = failure

    _append(store, _new("shared", "first"), 0, None)
    threads = [threading.Thread(target=write, args=(index,)) for index in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    refused = [index for index, result in results.items() if isinstance(result, PreconditionFailed)]
    assert sorted(refused) == list(range(0, 40, 5))
    versions = sorted(result[0].version for result in results.values() if isinstance(result, tuple))
    assert versions == list(range(2, 34))
    history = store.list_versions("shared", "staging", 100, None)
    assert [record.version for record in history] == list(range(33, 0, -1))
    stored = [store.get_version("shared", "staging", record.version) for record in history]
    assert not any(record is None or record.source.startswith("refused") for record in stored)
    # Listeners saw every created version once, in commit order.
    assert committed == [("shared", number) for number in range(1, 34)]
    assert len(store.list_audit(100, None, action="push")) == 32
    if isinstance(store, SqliteStore):
        assert store.integrity_check() == "ok"


def test_an_operation_that_raises_undoes_only_its_own_changes(store: Store) -> None:
    def half_done(transaction: Transaction) -> None:
        transaction.append_version(_new("undone", "a"), None, None)
        raise ValueError("changed my mind")

    with pytest.raises(ValueError):
        store.write(half_done)
    assert store.current_version("undone", "staging") is None
    record, created = _append(store, _new("undone", "b"), None, None)
    assert created and record.version == 1
    again, created_again = _append(store, _new("undone", "b"), None, None)
    assert not created_again and again.version == 1
    store.close()
    with pytest.raises(RuntimeError):
        _append(store, _new("closed", "a"), None, None)


def test_writes_waiting_together_share_one_commit(store: Store) -> None:
    batches: list[int] = []
    store.add_commit_listener(lambda records: batches.append(len(records)))
    release, running = threading.Event(), threading.Event()

    def block(transaction: Transaction) -> bool:
        running.set()
        return release.wait(10)

    blocking = store.submit(block)
    # The writer is inside the first operation: everything submitted now waits together.
    assert running.wait(10)
    waiting = [
        store.submit(
            lambda transaction, number=number: transaction.append_version(
                _new(f"grouped-{number}", "a"), None, None
            )
        )
        for number in range(10)
    ]
    release.set()
    assert blocking.result(timeout=10) is True
    assert all(future.result(timeout=10)[1] for future in waiting)
    # The ten writes queued behind the first were committed as one batch: one listener call.
    assert batches == [10]


def test_in_a_batch_the_operations_that_raise_undo_only_their_own_changes(store: Store) -> None:
    batches: list[list[str]] = []
    store.add_commit_listener(lambda records: batches.append([record.service for record in records]))
    store.write(lambda transaction: transaction.insert_token(_token("taken"), None))
    release, running = threading.Event(), threading.Event()

    def block(transaction: Transaction) -> bool:
        running.set()
        return release.wait(10)

    def half_done(transaction: Transaction) -> None:
        transaction.append_version(_new("half", "a"), None, None)
        raise ValueError("changed my mind")

    def duplicate(transaction: Transaction) -> None:
        transaction.append_version(_new("duplicate", "a"), None, None)
        transaction.insert_token(_token("taken"), None)  # the database refuses it

    def push(service: str) -> Callable[[Transaction], tuple[VersionRecord, bool]]:
        return lambda transaction: transaction.append_version(_new(service, "a"), None, None)

    blocking = store.submit(block)
    assert running.wait(10)
    # Queued together behind the first: one batch.
    futures = [store.submit(operation) for operation in (push("first"), half_done, duplicate, push("last"))]
    release.set()
    assert blocking.result(timeout=10) is True
    assert futures[0].result(timeout=10)[1] and futures[3].result(timeout=10)[1]
    with pytest.raises(ValueError, match="changed my mind"):
        futures[1].result(timeout=10)
    with pytest.raises(Exception):  # noqa: B017 (each store's own integrity error)
        futures[2].result(timeout=10)
    for service in ("half", "duplicate"):
        assert store.current_version(service, "staging") is None
    assert store.current_version("first", "staging") is not None
    assert store.current_version("last", "staging") is not None
    # The two that succeeded were committed once, together, and told once.
    assert batches == [["first", "last"]]
    assert [record.service for record in store.versions_after(0, 10)] == ["first", "last"]


def test_changes_after_reads_the_last_sequence_and_the_versions_after_it_together(store: Store) -> None:
    assert store.changes_after(0, 10) == (0, [])
    for number in range(3):
        _append(store, _new("changes", f"n{number}"), None, None)
    sequence = store.write(lambda transaction: transaction.next_sequence())  # not a version
    bound, records = store.changes_after(0, 10)
    assert bound == sequence == store.last_sequence() == 4
    assert records == store.versions_after(0, 10)
    assert [record.version for record in records] == [1, 2, 3]
    assert all(record.source == "" and record.config == "" for record in records)  # metadata
    assert store.changes_after(1, 1) == (4, store.versions_after(1, 1))
    assert store.changes_after(4, 10) == (4, [])
    # The first `whole` come with their documents, as get_version gives them; the rest do not.
    bound, records = store.changes_after(1, 10, 1)
    assert bound == 4 and [record.version for record in records] == [2, 3]
    assert records[0] == store.get_version("changes", "staging", 2)
    assert records[0].source != "" and records[0].config != ""
    assert records[1] == store.versions_after(2, 1)[0]
    assert store.changes_after(0, 2, 5) == (4, [store.get_version("changes", "staging", n) for n in (1, 2)])


def _report(
    instance_id: str,
    version: int | None,
    status: str = "applied",
    error: str | None = None,
    failed_version: int | None = None,
    failed_hash: str | None = None,
    cohort: str | None = None,
) -> InstanceReport:
    return InstanceReport(
        "svc", "staging", instance_id, status, version, f"h{version}", error, failed_version, failed_hash, cohort
    )


def test_instances_per_document_are_bounded_stale_ones_make_room(store: Store) -> None:
    for index in range(3):
        _record(store, _report(f"host-{index}", 1), limit=3, forget_before=None)
    _record(
        store, InstanceReport("svc", "production", "other", "applied", 1, "h"), limit=3
    )
    # A fourth instance, none of the three stale: refused, nothing forgotten.
    with pytest.raises(TooManyInstances):
        _record(store, _report("host-3", 1), limit=3, forget_before="2000-01-01T00:00:00.000Z")
    listed = [record.instance_id for record in store.list_instances("svc", "staging")]
    assert listed == ["host-0", "host-1", "host-2"]
    # A known instance still reports, and forgets nobody.
    _record(store, _report("host-0", 2), limit=3)
    # Once the others count as stale, the one seen longest ago makes room.
    later = utc_timestamp(datetime.now(UTC) + timedelta(seconds=1))
    _record(store, _report("host-3", 2), limit=3, forget_before=later)
    listed = [record.instance_id for record in store.list_instances("svc", "staging")]
    assert listed == ["host-0", "host-2", "host-3"]
    assert [r.instance_id for r in store.list_instances("svc", "production")] == ["other"]


def test_a_failed_report_keeps_the_version_the_instance_runs(store: Store) -> None:
    _record(store, _report("a", 4))
    _record(store, _report("a", 5, "failed", error="boom"))  # failing `version`
    (record,) = store.list_instances("svc", "staging")
    assert (record.version, record.hash, record.failed_version, record.failed_hash) == (4, "h4", 5, "h5")
    assert (record.status, record.error) == ("failed", "boom")
    _record(store, _report("a", 4, "failed", failed_version=6, failed_hash="h6", cohort="c"))
    (record,) = store.list_instances("svc", "staging")
    assert (record.version, record.failed_version, record.cohort) == (4, 6, "c")
    _record(store, _report("a", 6))
    (record,) = store.list_instances("svc", "staging")
    assert (record.version, record.status, record.failed_version, record.failed_hash) == (6, "applied", None, None)
    # A first report that is a failure: it runs nothing the server knows of.
    _record(store, _report("b", 1, "failed"))
    record = store.list_instances("svc", "staging")[1]
    assert (record.instance_id, record.version, record.failed_version) == ("b", None, 1)


def test_current_documents_carry_their_config_and_listings_do_not(store: Store) -> None:
    _append(store, _new("documents", "a"), None, None)
    _append(store, _new("documents", "b"), None, None)
    [document] = store.current_documents()
    assert (document.version, document.source, document.config) == (2, "b", "{}")
    inside = store.write(lambda transaction: transaction.current_versions())
    assert [(record.version, record.config) for record in inside] == [(2, "{}")]
    [listed] = store.current_versions()
    assert listed.version == 2 and not listed.config


def test_two_servers_writing_concurrently_get_gapless_versions_and_one_increasing_sequence(
    stores: StoreMaker,
) -> None:
    """Two store objects on one store (two replicas), four threads each, pushing to two shared
    documents and one of their own: per document, versions 1..n without a gap or a repeat;
    across all, each sequence once, and each store's listener sees them increasing."""
    replicas = [stores(), stores()]
    seen: list[list[int]] = [[], []]
    for index, replica in enumerate(replicas):
        replica.add_commit_listener(
            lambda records, index=index: seen[index].extend(r.sequence for r in records)
        )
    acknowledged: list[VersionRecord] = []
    lock = threading.Lock()
    deadline = time.monotonic() + 60

    def push(replica: Store, writer: int) -> None:
        for number in range(15):
            if time.monotonic() > deadline:
                return
            service = ("shared-a", "shared-b", f"own-{writer}")[number % 3]
            record, created = _append(replica, _new(service, f"w{writer} n{number}"), None, None)
            assert created
            with lock:
                acknowledged.append(record)

    threads = [
        threading.Thread(target=push, args=(replicas[writer % 2], writer)) for writer in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=90)
    assert len(acknowledged) == 8 * 15
    sequences = [record.sequence for record in acknowledged]
    assert len(set(sequences)) == len(sequences)
    for service in {record.service for record in acknowledged}:
        numbers = sorted(r.version for r in acknowledged if r.service == service)
        assert numbers == list(range(1, len(numbers) + 1)), service
        history = replicas[0].list_versions(service, "staging", 100, None)
        assert [r.version for r in history] == numbers[::-1]
    # In commit order: each replica's own commits arrive with increasing sequences, and
    # replaying from 0 gives every acknowledged version once, in sequence order.
    for own in seen:
        assert own == sorted(own) and own
    replay = replicas[1].versions_after(0, 1000)
    assert [r.sequence for r in replay] == sorted(sequences)
    assert replicas[0].last_sequence() == max(sequences)
    # A version's number follows the one before it in sequence order, per document.
    for service in {record.service for record in acknowledged}:
        assert [r.version for r in replay if r.service == service] == list(
            range(1, sum(1 for r in replay if r.service == service) + 1)
        )


def _token(name: str) -> TokenRecord:
    return TokenRecord(name, name, "admin", ("*",), ("*",), "hash-" + name, "2026-01-01T00:00:00.000Z")


def test_only_the_first_of_two_servers_starting_together_makes_a_token(stores: StoreMaker) -> None:
    replicas = [stores(), stores()]
    assert not replicas[0].write(lambda transaction: transaction.has_tokens())
    outcomes: list[bool] = []
    start = threading.Barrier(2)

    def first_token(replica: Store, name: str) -> None:
        def insert(transaction: Transaction) -> bool:
            if transaction.has_tokens():
                return False
            transaction.insert_token(_token(name), None)
            return True

        start.wait(10)
        outcomes.append(replica.write(insert))

    threads = [
        threading.Thread(target=first_token, args=(replica, f"admin-{index}"))
        for index, replica in enumerate(replicas)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(outcomes) == [False, True]
    assert len(replicas[1].list_tokens()) == 1


def test_tokens_schemas_and_audit_round_trip(store: Store) -> None:
    store.write(lambda transaction: transaction.insert_token(
        _token("ci"), AuditEntry(actor="admin", action="token_create", detail={"ü": [1, None]})
    ))
    revoked = store.write(lambda transaction: transaction.revoke_token("ci", None))
    assert revoked is not None and revoked.revoked_at is not None
    assert store.write(lambda transaction: transaction.revoke_token("nobody", None)) is None
    [token] = store.list_tokens()
    assert (token.services, token.revoked_at) == (("*",), revoked.revoked_at)
    for text in ('{"a": 1}', '{"a": 2}', '{"a": 2}'):
        store.write(lambda transaction, text=text: transaction.append_schema(
            "svc", text, "h" + text, "admin", None, None
        ))
    assert store.current_schema("svc") is not None
    assert [s.version for s in store.list_schemas("svc", 10, None)] == [2, 1]
    assert store.get_schema("svc", 1).schema == '{"a": 1}'  # type: ignore[union-attr]
    assert [s.name for s in store.current_schemas()] == ["svc"]
    assert store.last_schema_by_author("svc", "admin").version == 2  # type: ignore[union-attr]
    [entry] = store.list_audit(10, None, actor="admin")
    assert (entry.action, entry.detail) == ("token_create", {"ü": [1, None]})
    assert store.list_audit(10, entry.id) == []


def test_an_operation_the_database_refuses_undoes_only_its_own_changes(store: Store) -> None:
    """A statement that fails in the database (a token id taken twice) fails its operation
    alone, even in a batch with others."""
    store.write(lambda transaction: transaction.insert_token(_token("taken"), None))
    release = threading.Event()
    blocking = store.submit(lambda transaction: release.wait(10))

    def twice(transaction: Transaction) -> None:
        transaction.append_version(_new("half", "a"), None, None)
        transaction.insert_token(_token("taken"), None)

    failing = store.submit(twice)
    fine = store.submit(lambda transaction: transaction.append_version(_new("whole", "a"), None, None))
    release.set()
    assert blocking.result(timeout=10) is True
    with pytest.raises(Exception, match="(?i)unique|duplicate"):
        failing.result(timeout=10)
    assert fine.result(timeout=10)[1]
    assert store.current_version("half", "staging") is None
    assert store.current_version("whole", "staging") is not None
    assert [token.id for token in store.list_tokens()] == ["taken"]


def test_retire_keeps_history_and_the_next_push_revives_the_document(store: Store) -> None:
    first = NewVersion("api", "staging", "a: 1\n", '{"a":1}', "h1", "ci", None, "")
    store.write(lambda t: t.append_version(first, 0, None))
    with pytest.raises(ValueError):
        store.write(lambda t: t.append_version(retirement("api", "production", "ci", None, ""), None, None))
    retire = retirement("api", "staging", "ci", "t1", "gone")
    audit = AuditEntry(actor="ci", action="retire", service="api", environment="staging")
    with pytest.raises(PreconditionFailed):
        store.write(lambda t: t.append_version(retire, 7, audit))
    record, created = store.write(lambda t: t.append_version(retire, 1, audit))
    assert created and (record.version, record.kind, record.retired) == (2, "retire", True)
    assert (record.source, record.config, record.hash) == ("", "", "")
    assert record.metadata()["hash"] is None
    again, created = store.write(lambda t: t.append_version(retire, None, None))
    assert not created and again.version == 2
    current = store.current_version("api", "staging")
    assert current is not None and current.retired
    stored = store.get_version("api", "staging", 2)
    assert stored is not None and (stored.source, stored.config, stored.hash) == ("", "", "")
    assert [(e.action, e.version) for e in store.list_audit(10, None)] == [("retire", 2)]
    # "*" needs a live document; the same source as before the retire is a new version.
    with pytest.raises(PreconditionFailed):
        store.write(lambda t: t.append_version(first, "*", None))
    revived, created = store.write(lambda t: t.append_version(first, None, None))
    assert created and revived.version == 3 and not revived.retired
    assert [r.version for r in store.list_versions("api", "staging", 10, None)] == [3, 2, 1]


def test_services_sync_state_and_kept_local_are_kept(store: Store) -> None:
    audit = AuditEntry(actor="admin", action="service_create", service="billing")
    made, created = store.write(lambda t: t.create_service("billing", "api", "admin", audit))
    assert created and made.origin == "api" and store.service("billing") == made
    same, created = store.write(lambda t: t.create_service("billing", "schema", "x", audit))
    assert not created and same == made
    assert [e.action for e in store.list_audit(10, None)] == ["service_create"]

    synced = NewVersion("api", "staging", "a: 1\n", "{}", "h", "file:staging/api.tsk", None, "", kind="sync")
    store.write(lambda t: t.append_version(synced, None, None))
    service = store.service("api")
    assert service is not None and (service.origin, service.created_by) == ("file", "file:staging/api.tsk")
    assert store.document("api", "staging") == DocumentState("api", "staging", 1)
    store.write(lambda t: t.set_sync_state("api", "staging", "staging/api.tsk", 1, False))
    with pytest.raises(ValueError):
        store.write(lambda t: t.set_sync_state("api", "production", "production/api.tsk", 1, False))
    promoted = NewVersion(
        "api", "staging", "a: 2\n", "{}", "h2", "ci", None, "", kind="promote",
        promoted_from_environment="development", promoted_from_version=4,
        kept_local=("/database/url", "/cache"),
    )
    record, _ = store.write(lambda t: t.append_version(promoted, None, None))
    assert record.kept_local == ("/database/url", "/cache")
    store.write(lambda t: t.set_sync_state("api", "staging", "staging/api.tsk", 1, True))
    assert store.document("api", "staging") == DocumentState("api", "staging", 2, "staging/api.tsk", 1, True)
    listed = store.list_versions("api", "staging", 10, None)[0]
    assert listed.metadata()["kept_local"] == ["/database/url", "/cache"]
    reread = store.get_version("api", "staging", 2)
    assert reread is not None and reread.kept_local == ("/database/url", "/cache")


def test_an_operation_alone_that_the_database_refuses_changes_nothing(store: Store) -> None:
    store.write(lambda transaction: transaction.insert_token(_token("taken"), None))

    def twice(transaction: Transaction) -> None:
        transaction.append_version(_new("alone", "a"), None, None)
        transaction.insert_token(_token("taken"), None)

    with pytest.raises(Exception, match="(?i)unique|duplicate"):
        store.write(twice)
    assert store.current_version("alone", "staging") is None
    record, created = _append(store, _new("alone", "b"), None, None)
    assert created and record.version == 1
    with pytest.raises(PreconditionFailed):
        _append(store, _new("alone", "c"), 0, None)
    assert store.current_version("alone", "staging").source == "b"  # type: ignore[union-attr]
