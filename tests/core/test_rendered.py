"""The old versions kept rendered: least recently used first out, bounded in count and in bytes."""

from __future__ import annotations

from config_service.core.rendered import OldVersions, Rendered, render
from config_service.store import VersionRecord


def rendered(version: int, filler: int = 0) -> Rendered:
    source = f'n: {version}\nfiller: "{"x" * filler}"\n'
    return render(
        VersionRecord(
            sequence=version,
            service="user-service",
            environment="staging",
            version=version,
            source=source,
            config=f'{{"n":{version},"filler":"{"x" * filler}"}}',
            hash="h",
            author="admin",
            token_id=None,
            message="",
            created_at="2026-01-01T00:00:00Z",
            kind="push",
        )
    )


def test_past_the_count_the_least_recently_used_goes() -> None:
    old = OldVersions(max_versions=3, max_bytes=10**9)
    for number in (1, 2, 3):
        old[("user-service", "staging", number)] = rendered(number)
    assert old.get(("user-service", "staging", 1)) is not None  # 1 is now the most recent
    old[("user-service", "staging", 4)] = rendered(4)
    assert sorted(key[2] for key in old) == [1, 3, 4]
    assert len(old) == 3


def test_past_the_bytes_the_least_recently_used_go_and_the_size_is_counted() -> None:
    one = rendered(1, filler=1000)
    old = OldVersions(max_versions=100, max_bytes=3 * one.size)
    for number in range(1, 6):
        old[("user-service", "staging", number)] = rendered(number, filler=1000)
    assert sorted(key[2] for key in old) == [3, 4, 5]
    assert old.currsize == sum(value.size for value in old.values()) <= 3 * one.size


def test_one_key_reads_parse_a_version_once(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # A `?path=` read (and every long poll it wakes) must not parse the whole config again.
    import json

    from config_service.core import rendered as module

    version = rendered(1, filler=10)
    parses = []
    real_loads = json.loads
    monkeypatch.setattr(module.json, "loads", lambda text: parses.append(1) or real_loads(text))
    for _ in range(5):
        assert module.key_at(version, "/n") == {"path": "/n", "value": 1, "version": 1}
    assert len(parses) == 1
