"""What a schema makes costly to check never holds up other requests: a push is checked in a
worker thread, and a schema is checked against the documents it governs before the store's
writer is taken, so other teams' pushes go on meanwhile."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from config_service.core.access import Principal
from config_service.core.refusals import Refused
from config_service.core.wiring import Core
from config_service.settings import Settings
from tests.serving import ServerProcess, assert_error, push

# Thousands of patterns over thousands of keys: a check that spends the whole step budget.
PATTERNS = {"patternProperties": {f"^k{index}x$": {"type": "integer"} for index in range(3000)}}
MANY_KEYS = "".join(f"key{index}: {index}\n" for index in range(3000))


def test_a_costly_push_does_not_stall_other_requests(server: ServerProcess, admin: httpx.Client) -> None:
    assert admin.put("/v1/schemas/costly", json=PATTERNS).status_code == 201
    finished: dict[str, float] = {}

    def costly_push() -> None:
        with server.client(server.admin_token) as client:
            assert_error(push(client, "costly", "staging", MANY_KEYS), 422, "schema_violation")
        finished["push"] = time.monotonic()

    pushing = threading.Thread(target=costly_push)
    pushing.start()
    try:
        time.sleep(0.3)  # the push is being checked now
        with server.client() as anyone:
            assert anyone.get("/health").status_code == 200
        finished["health"] = time.monotonic()
    finally:
        pushing.join(30)
    # Answered while the push was still being checked, not after it.
    assert finished["health"] < finished["push"], finished


def _admin(core: Core) -> Principal:
    principal = core.tokens.authenticate(core.settings.admin_token_path.read_text().strip())
    assert principal is not None
    return principal


@pytest.fixture
def core(tmp_path: Path) -> Any:
    started = Core(Settings(data_dir=tmp_path / "data", sync=False, access_log=False, open_services=True))
    started.start()
    try:
        yield started
    finally:
        started.stop()


class HeldCheck:
    """Holds the first check of documents against a new schema until the test releases it."""

    def __init__(self, core: Core) -> None:
        self.entered = threading.Event()
        self.released = threading.Event()
        original = core.schemas.conflicts

        def conflicts(*arguments: Any) -> Any:
            if not self.entered.is_set():
                self.entered.set()
                self.released.wait(10)
            return original(*arguments)

        core.schemas.conflicts = conflicts  # type: ignore[method-assign]


def test_other_pushes_go_on_while_a_schema_is_checked_against_documents(core: Core) -> None:
    admin = _admin(core)
    core.documents.push(admin, "user-lib", "staging", "size: 1\n")
    held = HeldCheck(core)
    results: list[Any] = []
    putting = threading.Thread(
        target=lambda: results.append(core.schemas.put(admin, "user-lib", {"type": "object"}))
    )
    putting.start()
    try:
        assert held.entered.wait(5)
        other = threading.Thread(target=core.documents.push, args=(admin, "pay-lib", "staging", "a: 1\n"))
        other.start()
        other.join(5)
        assert not other.is_alive(), "another team's push waited for the schema check"
        assert core.versions.current("pay-lib", "staging") is not None
    finally:
        held.released.set()
        putting.join(10)
    assert results and results[0][1] is True


def test_a_document_that_changes_during_the_check_is_checked_too(core: Core) -> None:
    admin = _admin(core)
    core.documents.push(admin, "user-lib", "staging", "size: 10\n")
    held = HeldCheck(core)
    stricter = {"type": "object", "properties": {"size": {"type": "integer", "minimum": 5}}}
    raised: list[BaseException] = []

    def put() -> None:
        try:
            core.schemas.put(admin, "user-lib", stricter)
        except Refused as error:
            raised.append(error)

    putting = threading.Thread(target=put)
    putting.start()
    try:
        assert held.entered.wait(5)
        core.documents.push(admin, "user-lib", "staging", "size: 1\n")  # breaks the new schema
    finally:
        held.released.set()
        putting.join(10)
    assert raised and isinstance(raised[0], Refused) and raised[0].code == "schema_conflict"
    assert [(d["environment"], d["version"], d["path"]) for d in raised[0].details] == [
        ("staging", 2, "/size")
    ]
    assert core.schemas.current.schemas.get("user-lib") is None
