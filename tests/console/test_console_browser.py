"""The console in a real browser: the system Chromium driven by Playwright against a real
`tskcfg serve` (docs/console.md). Sign in, the live matrix, a document, edit with a TSK error
then a valid push, promote after the dry run, roll back, scopes, CSRF, escaping, sign out."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.serving import USER_SERVICE, ServerProcess, push

pytestmark = pytest.mark.timeout(180)

SCRIPT = '<script>window.pwned = 1</script><img src=x onerror="window.pwned=2">'


def _release(release: str) -> str:
    return USER_SERVICE.replace('version: "1.0.0"', f'version: "{release}"')


@pytest.fixture(scope="module")
def documents(server: ServerProcess, admin: httpx.Client) -> None:
    assert push(admin, "user-service", "development", USER_SERVICE, "first").status_code == 201
    assert push(admin, "user-service", "development", _release("1.1.0"), SCRIPT).status_code == 201
    assert push(admin, "user-service", "staging", USER_SERVICE, "staging first").status_code == 201
    assert push(admin, "billing", "development", 'name: "billing"\n').status_code == 201
    report = {
        "instance_id": "web-1",
        "service": "user-service",
        "environment": "development",
        "version": 1,
        "status": "failed",
        "failed_version": 2,
        "error": "could not apply: " + SCRIPT,
    }
    assert admin.post("/v1/instances", json=report).status_code == 204


@pytest.fixture
def page(
    chromium: Callable[[], Any], server: ServerProcess, documents: None, tmp_path: Path
) -> Iterator[Any]:
    """A fresh browser (its own empty profile) signed in as the admin; what it shows last is
    saved as a screenshot in the test's temporary folder (docs/console/ is `make screenshots`')."""
    context = chromium()
    tab = context.new_page()
    _sign_in(tab, server, server.admin_token)
    yield tab
    tab.screenshot(path=tmp_path / "last.png")
    assert (tmp_path / "last.png").stat().st_size > 0
    context.close()


def _sign_in(tab: Any, server: ServerProcess, token: str) -> None:
    tab.goto(server.url + "/ui/")
    assert tab.url.endswith("/ui/login")
    tab.get_by_label("Token").fill(token)
    tab.get_by_role("button", name="Sign in").click()
    tab.wait_for_url(server.url + "/ui/")


def test_sign_in_shows_the_matrix_and_sign_out_ends_it(page: Any, server: ServerProcess) -> None:
    assert page.get_by_role("heading", name="Services").is_visible()
    cell = page.locator('td[data-document="user-service/development"]')
    assert cell.locator("a.version").inner_text() == "v2"
    assert "1 failed" in cell.inner_text()
    assert page.locator('td[data-document="user-service/staging"] a.version').inner_text() == "v1"
    assert page.locator('td[data-document="user-service/production"]').inner_text().strip() == "—"
    # The cookie is out of reach of scripts.
    assert page.evaluate("document.cookie") == ""
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(server.url + "/ui/login")
    page.goto(server.url + "/ui/")
    assert page.url.endswith("/ui/login")


def test_the_matrix_follows_new_versions_live(page: Any, admin: httpx.Client) -> None:
    page.wait_for_selector("#live[data-state=on]")
    assert push(admin, "billing", "development", 'name: "billing"\nlive: 1\n').status_code == 201
    # No reload: the page's script refetches the table when the event arrives. (A string
    # evaluated in the page would be refused: the CSP allows no eval.)
    expect(page.locator('td[data-document="billing/development"] a.version')).to_have_text("v2")
    assert "updated" in page.locator("#live").inner_text()


def test_a_document_shows_highlighted_source_tree_history_and_instances(page: Any, server: ServerProcess) -> None:
    page.locator('td[data-document="user-service/development"] a.version').click()
    page.wait_for_url(server.url + "/ui/doc/user-service/development")
    source = page.locator("ol.source")
    assert source.locator(".t-section").first.inner_text() == "[database]"
    assert source.locator(".t-env").first.inner_text() == "@env"
    tree = page.locator("ul.tree").first
    assert "pool_size" in tree.inner_text() and "20" in tree.inner_text()
    history = page.locator("table.history")
    assert "v1" in history.inner_text() and "v2" in history.inner_text()
    # A message and an instance error holding markup are shown as text, never run.
    assert SCRIPT in history.inner_text()
    assert SCRIPT in page.locator("table.instances").inner_text()
    assert page.evaluate("window.pwned === undefined")
    # Compare v1 with v2 side by side.
    page.get_by_role("button", name="Compare selected versions").click()
    assert page.locator("table.changes").inner_text().count("/version") == 1
    assert page.locator("table.sides tr.row-change").count() >= 1


def test_edit_shows_a_tsk_error_at_its_line_then_pushes(page: Any, server: ServerProcess, admin: httpx.Client) -> None:
    page.goto(server.url + "/ui/doc/user-service/development")
    page.get_by_role("link", name="Edit").click()
    editor = page.get_by_label("TSK source")
    text = editor.input_value()
    editor.fill(text.replace('version: "1.1.0"', "version: 1.1.0.0"))
    page.get_by_role("button", name="Push").click()
    problems = page.locator("#problems")
    assert "Not valid TSK" in problems.inner_text()
    assert "line 2, column" in problems.inner_text()
    assert page.locator("ol.source li.bad").count() == 1
    # The error's button puts the cursor on the line.
    problems.locator("button.goto").click()
    assert page.evaluate("document.activeElement.id") == "source"
    # A schema failure is shown at its path.
    editor = page.get_by_label("TSK source")
    editor.fill(_release("1.2.0").replace("pool_size: 20", 'pool_size: "lots"'))
    page.get_by_role("button", name="Push").click()
    assert "/database/pool_size" in page.locator("#problems").inner_text()
    before = admin.get("/v1/configs/user-service/development").json()["version"]
    page.get_by_label("TSK source").fill(_release("1.2.0"))
    page.get_by_label("Message").fill("from the browser")
    page.get_by_role("button", name="Push").click()
    page.wait_for_url("**/ui/doc/user-service/development?pushed=*")
    assert f"Pushed version {before + 1}" in page.locator(".success").inner_text()
    current = admin.get("/v1/configs/user-service/development").json()
    assert current["version"] == before + 1 and current["message"] == "from the browser"


def test_promote_shows_the_dry_run_then_promotes(page: Any, server: ServerProcess, admin: httpx.Client) -> None:
    source = admin.get("/v1/configs/user-service/development").json()
    before = admin.get("/v1/configs/user-service/staging").json()["version"]
    page.goto(server.url + "/ui/doc/user-service/staging")
    page.get_by_role("link", name="Promote from development").click()
    assert "dry run" in page.locator("main").inner_text()
    assert "/version" in page.locator("table.changes").inner_text()
    # Nothing changed yet.
    assert admin.get("/v1/configs/user-service/staging").json()["version"] == before
    page.get_by_role("button", name="Confirm promotion").click()
    page.wait_for_url("**/ui/doc/user-service/staging?promoted=*")
    after = admin.get("/v1/configs/user-service/staging").json()
    assert after["version"] == before + 1
    assert after["promoted_from"] == {"environment": "development", "version": source["version"]}


def test_rollback_from_the_history(page: Any, server: ServerProcess, admin: httpx.Client) -> None:
    before = admin.get("/v1/configs/user-service/development").json()["version"]
    page.goto(server.url + "/ui/doc/user-service/development")
    page.get_by_role("link", name="Roll back to v1").click()
    assert "/version" in page.locator("table.changes").inner_text()
    page.get_by_role("button", name="Roll back to v1").click()
    page.wait_for_url("**/ui/doc/user-service/development?rolled_back=*")
    after = admin.get("/v1/configs/user-service/development").json()
    assert after["version"] == before + 1 and after["kind"] == "rollback" and after["rolled_back_to"] == 1


def test_a_reader_of_one_service_sees_nothing_of_another(
    chromium: Callable[[], Any], server: ServerProcess, documents: None
) -> None:
    token = server.create_token("reader", ["user-*"], ["*"], name="browser-reader")
    context = chromium()
    tab = context.new_page()
    _sign_in(tab, server, token)
    assert "user-service" in tab.locator("main").inner_text()
    assert "billing" not in tab.content()
    assert tab.get_by_role("link", name="Audit").count() == 0
    answer = tab.goto(server.url + "/ui/doc/billing/development")
    assert answer is not None and answer.status == 403
    assert "billing" not in tab.locator("table").all_inner_texts()
    # The event stream under this session carries nothing of billing either.
    tab.goto(server.url + "/ui/doc/user-service/development")
    assert tab.get_by_role("link", name="Edit").count() == 0
    context.close()


def test_a_form_posted_without_its_csrf_token_is_refused(page: Any, server: ServerProcess, admin: httpx.Client) -> None:
    before = admin.get("/v1/configs/user-service/development").json()["version"]
    page.goto(server.url + "/ui/doc/user-service/development/edit")
    page.evaluate("document.querySelector('form[action$=\"/edit\"] input[name=csrf]').remove()")
    page.get_by_label("TSK source").fill(_release("9.9.9"))
    page.get_by_role("button", name="Push").click()
    assert "security token" in page.locator("main").inner_text()
    assert admin.get("/v1/configs/user-service/development").json()["version"] == before


def test_tokens_are_shown_once_and_revoked(page: Any, server: ServerProcess, admin: httpx.Client) -> None:
    page.get_by_role("link", name="Tokens").click()
    page.get_by_label("Name").fill("ci-browser")
    page.get_by_label("Role").select_option("writer")
    page.get_by_label("Services").fill("user-*")
    page.get_by_role("button", name="Create").click()
    secret = page.locator("#new-token").input_value()
    assert secret.startswith("tskcfg_")
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {secret}"}) as created:
        assert created.get("/v1/configs/user-service/development").status_code == 200
        page.goto(server.url + "/ui/tokens")
        assert secret not in page.content()
        page.get_by_role("button", name="Revoke ci-browser").click()
        page.wait_for_url(server.url + "/ui/tokens")
        assert created.get("/v1/configs/user-service/development").status_code == 401


def test_the_audit_log_filters(page: Any, server: ServerProcess) -> None:
    page.get_by_role("link", name="Audit").click()
    page.get_by_label("Action").fill("promote")
    page.get_by_role("button", name="Filter").click()
    rows = page.locator("table.audit tbody tr")
    if rows.count():
        assert all("promote" in text for text in rows.all_inner_texts())
    page.get_by_label("Action").fill("no-such-action")
    page.get_by_role("button", name="Filter").click()
    assert "Nothing found" in page.locator("main").inner_text()
