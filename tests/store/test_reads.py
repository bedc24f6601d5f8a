"""The reads both stores share (config_service/store/sql_reads.py), on both stores: the same
statement must give the same answer on SQLite and PostgreSQL, where each store used to
write its own."""

from __future__ import annotations

from config_service.store import AuditEntry, NewRollout, NewVersion, Store


def _version(environment: str, source: str, kind: str = "push") -> NewVersion:
    return NewVersion("svc", environment, source, "{}", "hash-" + source, "tester", None, "", kind=kind)


def test_each_schema_reads_as_its_newest_version_even_when_names_interleave(store: Store) -> None:
    for name, text in (("a", '{"v": 1}'), ("b", '{"v": 1}'), ("a", '{"v": 2}'), ("c", '{"v": 1}')):
        store.write(lambda transaction, name=name, text=text: transaction.append_schema(
            name, text, "h" + text, "admin", None, None
        ))
    assert [(s.name, s.version, s.schema) for s in store.current_schemas()] == [
        ("a", 2, '{"v": 2}'),
        ("b", 1, '{"v": 1}'),
        ("c", 1, '{"v": 1}'),
    ]
    # Listings leave the schema's text out; one version reads in full.
    assert [(s.version, s.schema) for s in store.list_schemas("a", 10, None)] == [(2, ""), (1, "")]
    assert [s.version for s in store.list_schemas("a", 10, 2)] == [1]
    assert store.get_schema("a", 1).schema == '{"v": 1}'  # type: ignore[union-attr]


def test_rollouts_of_versions_gives_only_the_versions_asked_for(store: Store) -> None:
    store.write(lambda transaction: transaction.append_version(_version("production", "a = 1"), None, None))

    def start(transaction):  # type: ignore[no-untyped-def]
        candidate, _ = transaction.append_version(_version("production", "a = 2", "rollout"), None, None)
        return transaction.insert_rollout(
            NewRollout("svc", "production", candidate.version, 1, (50, 100), 5.0, 0, "tester"), None
        )

    rollout = store.write(start)
    assert rollout.candidate_version == 2
    # Version 2 lies between 1 and 3 but was not asked for.
    assert store.rollouts_of_versions("svc", "production", [1, 3]) == {}
    assert store.rollouts_of_versions("svc", "production", []) == {}
    assert list(store.rollouts_of_versions("svc", "production", [3, 2, 1])) == [2]
    assert store.rollouts_of_versions("svc", "staging", [2]) == {}


def test_current_versions_follow_each_documents_pointer_not_its_highest_number(store: Store) -> None:
    for environment, source in (("staging", "a = 1"), ("production", "a = 1"), ("production", "a = 2")):
        store.write(lambda transaction, environment=environment, source=source: transaction.append_version(
            _version(environment, source), None, None
        ))
    # A rollout's candidate (version 3) is the highest number but not the current version.
    store.write(lambda transaction: transaction.append_version(
        _version("production", "a = 3", "rollout"), None, None
    ))
    listed = [(v.environment, v.version, v.source) for v in store.current_versions()]
    assert listed == [("production", 2, ""), ("staging", 1, "")]
    full = [(v.environment, v.version, v.source) for v in store.current_documents()]
    assert full == [("production", 2, "a = 2"), ("staging", 1, "a = 1")]
    current = store.current_version("svc", "production")
    assert current is not None and current.version == 2
    assert store.current_version("svc", "nowhere") is None
    assert [v.version for v in store.list_versions("svc", "production", 10, None)] == [3, 2, 1]
    replayed = store.versions_after(0, 10)
    assert [(v.environment, v.version) for v in replayed] == [
        ("staging", 1), ("production", 1), ("production", 2), ("production", 3)
    ]
    assert [v.version for v in store.versions_after(replayed[1].sequence, 1)] == [2]


def test_audit_filters_combine(store: Store) -> None:
    entries = (
        ("admin", "push", "svc", "staging"),
        ("admin", "push", "svc", "production"),
        ("ci", "push", "svc", "production"),
        ("ci", "rollback", "svc", "production"),
        ("ci", "push", "other", "production"),
    )
    for actor, action, service, environment in entries:
        store.write(lambda transaction, a=actor, b=action, s=service, e=environment: transaction.append_audit(
            AuditEntry(actor=a, action=b, service=s, environment=e)
        ))

    def listed(**filters: str) -> list[tuple[str, str, str | None, str | None]]:
        return [(e.actor, e.action, e.service, e.environment) for e in store.list_audit(10, None, **filters)]

    assert listed(service="svc", environment="production", action="push", actor="ci") == [entries[2]]
    assert listed(actor="ci", action="push") == [entries[4], entries[2]]
    assert listed(environment="staging") == [entries[0]]
    assert listed(actor="nobody") == []
    newest, *_ = store.list_audit(10, None)
    assert [e.id for e in store.list_audit(2, newest.id)] == [newest.id - 1, newest.id - 2]
