"""Console sessions, on both stores: the block every store implements (docs/console.md, "Sessions")."""

from __future__ import annotations

from collections.abc import Callable

from config_service.store import SessionRecord, Store


def _session(id_hash: str, token_id: str, last_seen: str) -> SessionRecord:
    return SessionRecord(id_hash, token_id, "csrf-" + id_hash, "2026-01-01T00:00:00.000Z", last_seen)


def test_sessions_are_kept_moved_forward_and_ended_by_token_or_idleness(store: Store) -> None:
    store.write(lambda t: t.insert_session(_session("a", "token-1", "2026-01-01T00:00:00.000Z")))
    store.write(lambda t: t.insert_session(_session("b", "token-1", "2026-01-01T00:10:00.000Z")))
    store.write(lambda t: t.insert_session(_session("c", "token-2", "2026-01-01T00:20:00.000Z")))
    assert store.get_session("a") == _session("a", "token-1", "2026-01-01T00:00:00.000Z")
    assert store.get_session("missing") is None

    store.write(lambda t: t.touch_session("a", "2026-01-01T00:30:00.000Z"))
    store.write(lambda t: t.touch_session("a", "2026-01-01T00:05:00.000Z"))  # never back
    touched = store.get_session("a")
    assert touched is not None and touched.last_seen == "2026-01-01T00:30:00.000Z"

    # Idle: b (00:10) is before 00:15; a was touched, c is newer.
    assert store.write(lambda t: t.delete_sessions(idle_before="2026-01-01T00:15:00.000Z")) == 1
    assert store.get_session("b") is None and store.get_session("a") is not None

    assert store.write(lambda t: t.delete_sessions(token_id="token-1")) == 1
    assert store.get_session("a") is None and store.get_session("c") is not None

    store.write(lambda t: t.delete_session("c"))
    assert store.get_session("c") is None


def test_sessions_survive_a_restart_of_the_store(stores: Callable[[], Store]) -> None:
    store = stores()
    store.write(lambda t: t.insert_session(_session("kept", "token-1", "2026-01-01T00:00:00.000Z")))
    store.close()
    assert stores().get_session("kept") is not None
