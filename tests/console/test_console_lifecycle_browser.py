"""The console's lifecycle actions in a real browser (the system Chromium driven by Playwright
against a real `tskcfg serve`, docs/console.md): a rollout started and aborted from the
console while another tab's matrix follows it live, and a document retired."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.serving import USER_SERVICE, ServerProcess, push

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def documents(server: ServerProcess, admin: httpx.Client) -> None:
    assert push(admin, "user-service", "development", USER_SERVICE, "first").status_code == 201
    assert push(admin, "billing", "development", 'name: "billing"\n').status_code == 201


def _signed_in(chromium: Callable[[], Any], server: ServerProcess) -> tuple[Any, Any]:
    """A fresh browser signed in as the admin, and its tab showing the matrix."""
    context = chromium()
    tab = context.new_page()
    tab.goto(server.url + "/ui/login")
    tab.get_by_label("Token").fill(server.admin_token)
    tab.get_by_role("button", name="Sign in").click()
    tab.wait_for_url(server.url + "/ui/")
    return context, tab


def test_a_rollout_started_and_aborted_from_the_console_shows_live_in_the_matrix(
    chromium: Callable[[], Any], server: ServerProcess, admin: httpx.Client, documents: None
) -> None:
    context, matrix = _signed_in(chromium, server)
    matrix.wait_for_selector("#live[data-state=on]")
    cell = matrix.locator('td[data-document="user-service/development"]')
    assert "rollout" not in cell.inner_text()

    tab = context.new_page()
    tab.goto(server.url + "/ui/doc/user-service/development")
    tab.get_by_role("link", name="Start a rollout").click()
    editor = tab.get_by_label("TSK source")
    editor.fill(editor.input_value().replace('version: "1.0.0"', 'version: "2.0.0"'))
    tab.get_by_label("Steps (% of instances)").fill("50, 100")
    tab.get_by_label("Bake seconds per step").fill("600")
    tab.get_by_label("Message").fill("two point oh, half first")
    tab.get_by_role("button", name="Start the rollout").click()
    tab.wait_for_url("**/ui/doc/user-service/development?rollout=started*")
    panel = tab.locator("#rollout")
    expect(panel.locator(".badge")).to_have_text("running")
    assert "1 of 2 · 50 % of instances" in panel.inner_text()
    assert "0 applied" in panel.inner_text()
    rollout = admin.get("/v1/configs/user-service/development/rollout").json()
    assert rollout["state"] == "running" and rollout["steps"] == [50, 100]
    assert rollout["bake_seconds"] == 600
    # The other tab's matrix heard `event: rollout` and redrew itself, no reload.
    expect(cell.locator(".badge")).to_have_text("rollout running 50 %")

    tab.get_by_role("button", name="Abort").click()
    tab.wait_for_url("**/ui/doc/user-service/development?rollout=aborted")
    assert "Rollout aborted." in tab.locator(".success").inner_text()
    expect(tab.locator("#rollout .badge")).to_have_text("aborted")
    assert admin.get("/v1/configs/user-service/development/rollout").json()["state"] == "aborted"
    assert admin.get("/v1/configs/user-service/development").json()["version"] == 1
    # The history marks the candidate as aborted; the matrix no longer shows a rollout.
    candidate = tab.locator("table.history tbody tr").first
    assert "rollout" in candidate.inner_text() and "aborted" in candidate.inner_text()
    expect(cell.locator(".badge")).to_have_count(0)
    context.close()


def test_a_document_page_hears_its_rollout_change(
    chromium: Callable[[], Any], server: ServerProcess, admin: httpx.Client, documents: None
) -> None:
    context, tab = _signed_in(chromium, server)
    tab.goto(server.url + "/ui/doc/billing/development")
    tab.wait_for_timeout(300)  # the page's event stream is open
    started = admin.post(
        "/v1/configs/billing/development/rollouts",
        json={"source": 'name: "billing"\nnew: 1\n', "steps": [100], "bake_seconds": 600},
    )
    assert started.status_code == 201, started.text
    notice = tab.locator("#notice")
    expect(notice).to_be_visible()
    assert "The rollout changed." in notice.inner_text()
    notice.get_by_role("link", name="Reload").click()
    expect(tab.locator("#rollout .badge")).to_have_text("running")
    tab.get_by_role("button", name="Complete now").click()
    tab.wait_for_url("**?rollout=completed")
    assert admin.get("/v1/configs/billing/development").json()["version"] == started.json()["candidate"]["version"]
    context.close()


def test_retire_from_the_console(
    chromium: Callable[[], Any], server: ServerProcess, admin: httpx.Client, documents: None
) -> None:
    assert push(admin, "billing", "staging", 'name: "billing"\n').status_code == 201
    context, tab = _signed_in(chromium, server)
    tab.goto(server.url + "/ui/doc/billing/staging")
    tab.get_by_role("link", name="Retire").click()
    assert "What retiring does" in tab.locator("main").inner_text()
    assert admin.get("/v1/configs/billing/staging").status_code == 200  # nothing yet
    tab.get_by_label("Message").fill("moved to payments")
    tab.get_by_role("button", name="Retire billing in staging").click()
    tab.wait_for_url("**/ui/doc/billing/staging?retired=2")
    retired = tab.locator("section.retired")
    assert "This document is retired" in retired.inner_text()
    assert "moved to payments" in retired.inner_text()
    answer = admin.get("/v1/configs/billing/staging")
    assert answer.status_code == 404 and answer.json()["error"] == "retired"
    # The history is offered: rolling back to v1 revives the document.
    retired.get_by_role("link", name="history").click()
    tab.get_by_role("link", name="Roll back to v1").click()
    tab.get_by_role("button", name="Roll back to v1").click()
    tab.wait_for_url("**/ui/doc/billing/staging?rolled_back=3")
    assert admin.get("/v1/configs/billing/staging").json()["version"] == 3
    tab.goto(server.url + "/ui/")
    assert "retired" not in tab.locator('td[data-document="billing/staging"]').inner_text()
    context.close()


def test_the_matrix_marks_a_retired_document(
    chromium: Callable[[], Any], server: ServerProcess, admin: httpx.Client, documents: None
) -> None:
    assert push(admin, "user-service", "staging", USER_SERVICE).status_code in (200, 201)
    context, matrix = _signed_in(chromium, server)
    matrix.wait_for_selector("#live[data-state=on]")
    assert admin.delete("/v1/configs/user-service/staging").status_code == 201
    # Redrawn on the stream's `event: retired`.
    expect(matrix.locator('td[data-document="user-service/staging"] .badge.retired')).to_have_text("retired")
    context.close()
