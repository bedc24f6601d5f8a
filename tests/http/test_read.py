"""The one read decision (`config_service/http/read.py`), without a server: what a read of a
current config is answered, given the version in memory."""

from __future__ import annotations

import gc
from dataclasses import replace
from pathlib import Path

import pytest

from config_service.core.access import Principal
from config_service.core.refusals import Refused
from config_service.core.rendered import Rendered, render
from config_service.core.wiring import Core
from config_service.http import read
from config_service.settings import Settings
from config_service.store import VersionRecord

READER = Principal(None, "file:test", "reader", ("*",), ("*",))


def _rendered(version: int) -> Rendered:
    return render(
        VersionRecord(
            version, "api", "staging", version, f"n: {version}\n", f'{{"n":{version}}}', "h",
            "test", None, "", "2026-01-01T00:00:00Z", "push",
        )
    )


def _request(
    if_none_match: str | None = None, wait: float = 0.0, source: bool = False
) -> read.ReadRequest:
    tags = None if if_none_match is None else read.etags(if_none_match)
    return read.ReadRequest(READER, "api", "staging", wait, if_none_match is not None, tags, source)


def test_a_plain_read_gets_the_current_version_or_404() -> None:
    current = _rendered(3)
    reply = read.decide(_request(), current)
    assert isinstance(reply, read.Reply)
    assert (reply.status, reply.body) == (200, current.json_body)
    assert (b"etag", b'"3"') in reply.headers and b'etag: "3"\r\n' in reply.head
    source = read.decide(_request(source=True), current)
    assert isinstance(source, read.Reply) and source.body == b"n: 3\n"
    with pytest.raises(Refused) as raised:
        read.decide(_request(), None)
    assert raised.value.code == "not_found"


def test_a_conditional_read_is_304_for_the_current_version_and_200_for_another() -> None:
    current = _rendered(3)
    for header in ('"3"', '"1", "3"', "*", 'W/"3"'):
        reply = read.decide(_request(header), current)
        assert isinstance(reply, read.Reply) and (reply.status, reply.body) == (304, b""), header
    stale = read.decide(_request('"2"'), current)
    assert isinstance(stale, read.Reply) and stale.status == 200


def test_a_long_poll_holds_only_on_the_current_version_or_on_0_for_a_missing_document() -> None:
    current = _rendered(3)
    held = read.decide(_request('"3"', wait=30), current)
    assert isinstance(held, read.Hold) and (held.known, held.rendered) == (3, current)
    stale = read.decide(_request('"2"', wait=30), current)
    assert isinstance(stale, read.Reply) and stale.status == 200
    waiting = read.decide(_request('"0"', wait=30), None)
    assert isinstance(waiting, read.Hold) and waiting.rendered is None
    with pytest.raises(Refused):
        read.decide(_request('"5"', wait=30), None)
    # `*` names no version to wait on: answered at once.
    star = read.decide(_request("*", wait=30), current)
    assert isinstance(star, read.Reply) and star.status == 304


def test_a_hold_that_ends_gets_the_newer_version_or_304(tmp_path: Path) -> None:
    core = Core(Settings(data_dir=tmp_path, sync=False, access_log=False))
    current = _rendered(3)
    held = read.decide(_request('"3"', wait=30), current)
    assert isinstance(held, read.Hold)
    newer = _rendered(4)
    assert read.after_hold(core, held, newer).body == newer.json_body
    timed_out = read.after_hold(core, held, None)
    assert (timed_out.status, timed_out.head) == (304, b'etag: "3"\r\n')
    missing = read.decide(_request('"0"', wait=30), None)
    assert isinstance(missing, read.Hold)
    nothing = read.after_hold(core, missing, None)
    assert nothing.status == 304 and nothing.headers == [(b"etag", b'"0"')]
    # Committed just before the time ran out, its wake-up not yet here: the new version.
    core.versions.remember(newer)
    assert read.after_hold(core, held, None).body == newer.json_body
    assert read.after_hold(core, missing, None).body == newer.json_body


def _scope(token: str) -> dict[str, object]:
    return {"headers": [(b"authorization", f"Bearer {token}".encode())], "query_string": b""}


def test_a_token_read_again_is_recalled_until_it_is_revoked(tmp_path: Path) -> None:
    core = Core(Settings(data_dir=tmp_path, sync=False, access_log=False))
    core.start()
    try:
        admin = core.tokens.authenticate(core.settings.admin_token_path.read_text().strip())
        assert admin is not None
        record, token = core.tokens.create(admin, "reader", "reader", ["api"], ["*"])
        first = read.parse(core, _scope(token), "api", "staging")
        credentials = f"Bearer {token}".encode()
        assert core.tokens.recall(credentials) == first.principal
        assert read.parse(core, _scope(token), "api", "staging").principal is first.principal
        # A wrong secret is never remembered.
        with pytest.raises(Refused):
            read.parse(core, _scope(token + "x"), "api", "staging")
        assert core.tokens.recall(f"Bearer {token}x".encode()) is None
        core.tokens.revoke(admin, record.id)
        assert core.tokens.recall(credentials) is None
        with pytest.raises(Refused) as raised:
            read.parse(core, _scope(token), "api", "staging")
        assert raised.value.code == "unauthorized"
    finally:
        core.stop()


def test_a_remembered_token_whose_record_changed_is_checked_afresh(tmp_path: Path) -> None:
    core = Core(Settings(data_dir=tmp_path, sync=False, access_log=False))
    core.start()
    try:
        admin = core.tokens.authenticate(core.settings.admin_token_path.read_text().strip())
        assert admin is not None
        record, token = core.tokens.create(admin, "reader", "reader", ["api"], ["*"])
        read.parse(core, _scope(token), "api", "staging")
        credentials = f"Bearer {token}".encode()
        # Revoked by another path than `put` clearing the remembered ones (a reload from the
        # store): the remembered record is no longer the token's, so it does not count.
        core.tokens.replace([replace(record, revoked_at="2026-01-01T00:00:00Z")])
        core.tokens._recent[credentials] = (record, Principal.from_record(record))
        assert core.tokens.recall(credentials) is None
    finally:
        core.stop()


def test_the_framing_of_a_version_is_made_once_and_dropped_with_the_version() -> None:
    current = _rendered(7)
    first = read.document_reply(current, False)
    assert read.document_reply(current, False) is first
    assert read.not_modified(current) is read.not_modified(current)
    reference = read._framed[id(current)].rendered
    del current, first
    gc.collect()
    assert reference() is None
    assert all(framed.rendered is not reference for framed in read._framed.values())
