"""Taking the file in a sync conflict from the console (docs/console.md): a real `tskcfg serve`
with a real file under environments/ and its real watcher. The page shows the current version
beside the file; taking it is `POST .../sync {"take": "file"}`, needs the session's CSRF
token and a writer in scope; in a real browser too."""

from __future__ import annotations

import html
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.console.conftest import csrf_of, sign_in
from tests.serving import USER_SERVICE, ServerProcess, make_root, push

pytestmark = pytest.mark.timeout(120)

FILE = "staging/user-service.tsk"
PAGE = "/ui/doc/user-service/staging/sync"


def _sync(admin: httpx.Client) -> Any:
    for entry in admin.get("/v1/services").json()["services"]:
        if entry["service"] == "user-service":
            return entry["environments"].get("staging", {}).get("sync")
    return None


def _wait_for_conflict(admin: httpx.Client, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while (_sync(admin) or {}).get("state") != "conflict":
        if time.monotonic() > deadline:
            raise AssertionError(f"no sync conflict in time: {_sync(admin)}")
        time.sleep(0.05)


@pytest.fixture
def synced(tmp_path: Path) -> Iterator[tuple[ServerProcess, Path]]:
    """A server whose user-service/staging came from its file (version 1), then was pushed
    through the API (version 2, pool_size 3)."""
    root = make_root(tmp_path)
    document = root / "environments" / FILE
    document.write_text(USER_SERVICE, encoding="utf-8")
    server = ServerProcess(root, "--no-access-log").start()
    try:
        with server.client(server.admin_token) as admin:
            pushed = push(admin, "user-service", "staging", USER_SERVICE.replace("pool_size: 20", "pool_size: 3"))
            assert pushed.status_code == 201 and pushed.json()["version"] == 2
        yield server, document
    finally:
        server.stop()


def test_without_a_conflict_the_page_says_there_is_nothing_to_take(synced: tuple[ServerProcess, Path]) -> None:
    server, _ = synced
    client = sign_in(server, server.admin_token)
    page = client.get(PAGE)
    assert page.status_code == 200 and "Nothing to resolve" in page.text and "api_ahead" in page.text
    assert "Take the file</button>" not in page.text
    # Posting anyway is the API's refusal: 409, nothing taken.
    refused = client.post(PAGE, data={"csrf": csrf_of(page.text)})
    assert refused.status_code == 409 and "not in a sync conflict" in refused.text
    document = client.get("/ui/doc/user-service/staging").text
    assert "Sync conflict" not in document and "api ahead" in document


def test_taking_the_file_shows_both_then_needs_csrf_and_a_writer_in_scope(
    synced: tuple[ServerProcess, Path],
) -> None:
    server, document = synced
    with server.client(server.admin_token) as admin:
        document.write_text(USER_SERVICE.replace("pool_size: 20", "pool_size: 10"), encoding="utf-8")
        _wait_for_conflict(admin)
        client = sign_in(server, server.admin_token)
        matrix = client.get("/ui/").text
        assert "sync conflict" in matrix
        doc = client.get("/ui/doc/user-service/staging").text
        assert "Sync conflict:" in doc and f'href="{PAGE}"' in doc
        page = client.get(PAGE)
        text = html.unescape(page.text)
        assert "A sync conflict" in text and f"environments/{FILE}" in text
        assert "current version v2" in text and f"file environments/{FILE}" in text
        assert "/database/pool_size" in text and "pool_size: 3" in text and "pool_size: 10" in text
        csrf = csrf_of(page.text)
        # No CSRF token, a reader, a writer of another environment: refused, nothing taken.
        assert client.post(PAGE, data={"csrf": ""}).status_code == 403
        for token in (
            server.create_token("reader", ["*"], ["*"], name="sync-reader"),
            server.create_token("writer", ["*"], ["development"], name="sync-dev-writer"),
        ):
            other = sign_in(server, token)
            assert other.get(PAGE).status_code == 403
            other_csrf = csrf_of(other.get("/ui/").text)
            assert other.post(PAGE, data={"csrf": other_csrf}).status_code == 403
            assert "Compare and take the file" not in other.get("/ui/doc/user-service/staging").text
        assert admin.get("/v1/configs/user-service/staging").json()["version"] == 2
        taken = client.post(PAGE, data={"csrf": csrf})
        assert taken.status_code == 303 and taken.headers["location"].endswith("?took_file=3")
        current = admin.get("/v1/configs/user-service/staging").json()
        assert current["version"] == 3 and current["kind"] == "sync"
        assert current["config"]["database"]["pool_size"] == 10
        assert _sync(admin) == {"state": "in_sync", "file": FILE, "file_version": 3}
        entries = admin.get("/v1/audit", params={"action": "sync_take_file"}).json()["entries"]
        assert entries and "admin" in str(entries[0])


def test_a_file_that_is_not_valid_tsk_is_shown_with_its_error_and_cannot_be_taken(
    synced: tuple[ServerProcess, Path],
) -> None:
    server, document = synced
    with server.client(server.admin_token) as admin:
        document.write_text(USER_SERVICE.replace("pool_size: 20", "pool_size: 10"), encoding="utf-8")
        _wait_for_conflict(admin)
        # Then broken while in conflict (the watcher refuses it; the conflict stays): the page
        # reads the file as it is now.
        document.write_text(USER_SERVICE.replace("pool_size: 20", "pool_size: 20 20"), encoding="utf-8")
        client = sign_in(server, server.admin_token)
        page = client.get(PAGE)
        assert "The file is not valid TSK" in page.text and "line 7, column 15" in page.text
        assert "Both, side by side" in page.text
        taken = client.post(PAGE, data={"csrf": csrf_of(page.text)})
        assert taken.status_code == 422
        assert admin.get("/v1/configs/user-service/staging").json()["version"] == 2


def test_take_the_file_in_the_browser(
    chromium: Callable[[], Any], synced: tuple[ServerProcess, Path]
) -> None:
    server, document = synced
    with server.client(server.admin_token) as admin:
        document.write_text(USER_SERVICE.replace("pool_size: 20", "pool_size: 12"), encoding="utf-8")
        _wait_for_conflict(admin)
        context = chromium()
        tab = context.new_page()
        tab.goto(server.url + "/ui/login")
        tab.get_by_label("Token").fill(server.admin_token)
        tab.get_by_role("button", name="Sign in").click()
        tab.wait_for_url(server.url + "/ui/")
        cell = tab.locator('td[data-document="user-service/staging"]')
        expect(cell.locator(".badge")).to_have_text("sync conflict")
        cell.locator("a.version").click()
        tab.get_by_role("link", name="Compare and take the file").click()
        sides = tab.locator("table.sides")
        assert "pool_size: 3" in sides.inner_text() and "pool_size: 12" in sides.inner_text()
        tab.get_by_role("button", name="Take the file").click()
        tab.wait_for_url("**/ui/doc/user-service/staging?took_file=3")
        assert "Took the file: now at version 3" in tab.locator(".success").inner_text()
        assert "in sync" in tab.locator("dl.meta").inner_text()
        assert admin.get("/v1/configs/user-service/staging").json()["config"]["database"]["pool_size"] == 12
        context.close()
