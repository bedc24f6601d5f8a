"""The console's lifecycle forms over plain HTTP (httpx against a real `tskcfg serve`): retire
and rollouts (start, pause, resume, abort, complete) do what the API does, each needs the
session's CSRF token and a writer in scope, and a refusal changes nothing."""

from __future__ import annotations

import html
import re

import httpx
import pytest

from tests.console.conftest import csrf_of, sign_in
from tests.serving import USER_SERVICE, ServerProcess, push

BILLING = 'name: "billing"\nrate: 3\n'


def _release(release: str) -> str:
    return USER_SERVICE.replace('version: "1.0.0"', f'version: "{release}"')


def _rollout_form(**fields: str) -> dict[str, str]:
    form = {
        "candidate": "source",
        "source": _release("2.0.0"),
        "version": "",
        "steps": "10, 50, 100",
        "bake_seconds": "300",
        "max_failed": "0",
        "message": "",
    }
    form.update(fields)
    return form


@pytest.fixture(scope="module")
def documents(server: ServerProcess, admin: httpx.Client) -> None:
    for environment in ("development", "staging"):
        assert push(admin, "user-service", environment, USER_SERVICE).status_code == 201
    assert push(admin, "billing", "development", BILLING).status_code == 201
    assert push(admin, "billing", "staging", BILLING).status_code == 201


def test_the_new_pages_have_no_inline_script_or_style(server: ServerProcess, documents: None) -> None:
    client = sign_in(server, server.admin_token)
    for path in ("/ui/doc/user-service/development/retire", "/ui/doc/user-service/development/rollout"):
        answer = client.get(path)
        assert answer.status_code == 200, path
        assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", answer.text) == [], path
        assert " style=" not in answer.text and "<style" not in answer.text, path
        assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]


def test_retire_needs_the_csrf_token_a_writer_in_scope_and_the_version_shown(
    server: ServerProcess, admin: httpx.Client, documents: None
) -> None:
    path = "/ui/doc/billing/staging/retire"
    current = admin.get("/v1/configs/billing/staging").json()["version"]
    client = sign_in(server, server.admin_token)
    confirm = client.get(path)
    assert "Retire billing in staging" in confirm.text
    csrf = csrf_of(confirm.text)
    assert client.post(path, data={"version": str(current)}).status_code == 403
    assert client.post(path, data={"version": str(current), "csrf": "y" * 43}).status_code == 403
    # A reader, and a writer of another environment, get no confirm page and cannot post.
    for token in (
        server.create_token("reader", ["*"], ["*"], name="retire-reader"),
        server.create_token("writer", ["billing"], ["development"], name="retire-dev-writer"),
    ):
        other = sign_in(server, token)
        assert other.get(path).status_code == 403
        page = other.get("/ui/doc/billing/development")
        assert other.post(path, data={"version": str(current), "csrf": csrf_of(page.text)}).status_code == 403
    # Compare-and-set on the version the confirm page showed.
    stale = client.post(path, data={"version": str(current + 5), "csrf": csrf})
    assert stale.status_code == 412 and f"current version is {current}" in stale.text
    assert admin.get("/v1/configs/billing/staging").status_code == 200
    done = client.post(path, data={"version": str(current), "csrf": csrf, "message": "moved to payments"})
    assert done.status_code == 303
    assert done.headers["location"] == f"/ui/doc/billing/staging?retired={current + 1}"
    gone = admin.get("/v1/configs/billing/staging")
    assert gone.status_code == 404 and gone.json()["error"] == "retired"
    audit = admin.get("/v1/audit", params={"action": "retire", "service": "billing"}).json()["entries"]
    assert audit[0]["actor"] == "admin" and audit[0]["environment"] == "staging"


def test_a_retired_document_says_so_offers_its_history_and_shows_in_the_matrix(
    server: ServerProcess, admin: httpx.Client, documents: None
) -> None:
    if admin.get("/v1/configs/billing/staging").status_code == 200:
        current = admin.get("/v1/configs/billing/staging").json()["version"]
        assert admin.delete("/v1/configs/billing/staging", headers={"If-Match": f'"{current}"'}).status_code == 201
    client = sign_in(server, server.admin_token)
    page = client.get("/ui/doc/billing/staging").text
    assert "This document is retired" in page
    assert 'id="history"' in page and "Roll back to v1" in page
    assert "/retire" not in page and "Start a rollout" not in page
    assert "Push a new version" in page
    cell = re.search(r'data-document="billing/staging">(.*?)</td>', client.get("/ui/").text, re.S)
    assert cell is not None and "retired" in cell.group(1)
    # Its confirm page says it is retired already instead of offering the form.
    confirm = client.get("/ui/doc/billing/staging/retire").text
    assert "Already retired" in confirm and 'name="version"' not in confirm


def test_a_rollout_started_paused_resumed_and_aborted_from_the_console(
    server: ServerProcess, admin: httpx.Client, documents: None
) -> None:
    base = "/ui/doc/user-service/development"
    stable = admin.get("/v1/configs/user-service/development").json()["version"]
    client = sign_in(server, server.admin_token)
    form = client.get(base + "/rollout")
    assert 'value="source" checked' in form.text and 'version: "1.0.0"' in html.unescape(form.text)
    csrf = csrf_of(form.text)
    assert client.post(base + "/rollout", data=_rollout_form()).status_code == 403
    started = client.post(base + "/rollout", data=_rollout_form(csrf=csrf, message="two point oh"))
    assert started.status_code == 303, started.text
    rollout = admin.get("/v1/configs/user-service/development/rollout").json()
    assert rollout["state"] == "running" and rollout["steps"] == [10, 50, 100]
    assert rollout["bake_seconds"] == 300 and rollout["stable"]["version"] == stable
    assert started.headers["location"].endswith(f"candidate={rollout['candidate']['version']}")
    assert admin.get("/v1/configs/user-service/development").json()["version"] == stable
    page = client.get(base).text
    assert f"Rollout {rollout['id']}" in page and "running" in page
    assert "0 applied" in page and "0 pending" in page and "at most 0 allowed" in page
    assert "Pause" in page and "Abort" in page and ">Retire<" not in page
    matrix = client.get("/ui/").text
    assert "rollout running 10 %" in matrix
    # A change without the CSRF token changes nothing; an unknown change is 404.
    assert client.post(base + "/rollout/pause", data={"csrf": ""}).status_code == 403
    assert client.post(base + "/rollout/explode", data={"csrf": csrf}).status_code == 404
    assert admin.get("/v1/configs/user-service/development/rollout").json()["state"] == "running"
    for change, state in (("pause", "paused"), ("resume", "running"), ("abort", "aborted")):
        answer = client.post(base + f"/rollout/{change}", data={"csrf": csrf})
        assert answer.status_code == 303 and answer.headers["location"].endswith(f"rollout={state.replace('running', 'resumed')}")
        assert admin.get("/v1/configs/user-service/development/rollout").json()["state"] == state
    page = client.get(base).text
    assert f"Last rollout ({rollout['id']})" in page and "aborted" in page
    assert "Start a rollout" in page
    # An ended rollout cannot be aborted again: the API's refusal, as a page.
    again = client.post(base + "/rollout/abort", data={"csrf": csrf})
    assert again.status_code == 409
    audit = admin.get("/v1/audit", params={"service": "user-service", "environment": "development"})
    actions = [entry["action"] for entry in audit.json()["entries"]]
    assert {"rollout_start", "rollout_pause", "rollout_resume", "rollout_abort"} <= set(actions)


def test_a_refused_rollout_comes_back_on_the_form_and_starts_nothing(
    server: ServerProcess, admin: httpx.Client, documents: None
) -> None:
    base = "/ui/doc/user-service/staging"
    client = sign_in(server, server.admin_token)
    csrf = csrf_of(client.get(base + "/rollout").text)
    before = admin.get("/v1/configs/user-service/staging/versions").json()["versions"][0]["version"]
    cases = [
        (_rollout_form(csrf=csrf, steps="50, 10"), 400, "must increase"),
        (_rollout_form(csrf=csrf, steps="10, 50"), 400, "must end at 100"),
        (_rollout_form(csrf=csrf, steps="ten"), 400, "percents separated by commas"),
        (_rollout_form(csrf=csrf, bake_seconds="soon"), 400, "bake_seconds"),
        (_rollout_form(csrf=csrf, max_failed="-1"), 400, "max_failed"),
        (_rollout_form(csrf=csrf, candidate="everything"), 400, "choose what to roll out"),
        (_rollout_form(csrf=csrf, candidate="version", version="x"), 400, "version number"),
        (_rollout_form(csrf=csrf, source=USER_SERVICE), 409, "nothing to roll out"),
        (_rollout_form(csrf=csrf, source='name: "x"\nbroken: production\n'), 422, "line 2, column"),
        (_rollout_form(csrf=csrf, source=USER_SERVICE.replace("pool_size: 20", 'pool_size: "many"')), 422,
         "/database/pool_size"),
    ]
    for form, status, text in cases:
        answer = client.post(base + "/rollout", data=form)
        assert answer.status_code == status, (form, answer.text)
        assert text in answer.text, (form, answer.text)
        # What was typed stays on the form.
        assert 'name="steps" type="text" value="' + form["steps"].replace('"', "&#34;") in answer.text
    assert admin.get("/v1/configs/user-service/staging/rollout").status_code == 404
    after = admin.get("/v1/configs/user-service/staging/versions").json()["versions"][0]["version"]
    assert after == before


def test_a_rollout_of_a_version_or_of_a_promotion_then_completed(
    server: ServerProcess, admin: httpx.Client, documents: None
) -> None:
    base = "/ui/doc/user-service/staging"
    assert push(admin, "user-service", "development", _release("3.0.0")).status_code == 201
    client = sign_in(server, server.admin_token)
    form = client.get(base + "/rollout")
    assert "Promote from development" in form.text
    csrf = csrf_of(form.text)
    started = client.post(base + "/rollout", data=_rollout_form(csrf=csrf, candidate="from", **{"from": "development"}))
    assert started.status_code == 303, started.text
    rollout = admin.get("/v1/configs/user-service/staging/rollout").json()
    candidate = admin.get(f"/v1/configs/user-service/staging/versions/{rollout['candidate']['version']}").json()
    development = admin.get("/v1/configs/user-service/development").json()["version"]
    assert candidate["promoted_from"] == {"environment": "development", "version": development}
    # A second rollout cannot start while this one runs: the form says so instead.
    assert "must end before another starts" in client.get(base + "/rollout").text
    assert client.post(base + "/rollout/complete", data={"csrf": csrf}).status_code == 303
    current = admin.get("/v1/configs/user-service/staging").json()
    assert current["version"] == rollout["candidate"]["version"]
    # Roll out an earlier version (v1) the same way, and abort it.
    form = client.get(base + "/rollout?version=1").text
    assert 'value="version" checked' in form and '<option value="1" selected' in form
    started = client.post(base + "/rollout", data=_rollout_form(csrf=csrf, candidate="version", version="1"))
    assert started.status_code == 303, started.text
    rollout = admin.get("/v1/configs/user-service/staging/rollout").json()
    candidate = admin.get(f"/v1/configs/user-service/staging/versions/{rollout['candidate']['version']}",
                          headers={"Accept": "text/x-tsk"})
    assert 'version: "1.0.0"' in candidate.text
    assert client.post(base + "/rollout/abort", data={"csrf": csrf}).status_code == 303


def test_a_reader_or_a_writer_out_of_scope_cannot_start_or_change_a_rollout(
    server: ServerProcess, admin: httpx.Client, documents: None
) -> None:
    base = "/ui/doc/billing/development"
    for token in (
        server.create_token("reader", ["*"], ["*"], name="rollout-reader"),
        server.create_token("writer", ["user-*"], ["*"], name="rollout-user-writer"),
    ):
        client = sign_in(server, token)
        csrf = csrf_of(client.get("/ui/").text)
        assert client.get(base + "/rollout").status_code == 403
        started = client.post(base + "/rollout", data=_rollout_form(csrf=csrf, source=BILLING + "more: 1\n"))
        assert started.status_code == 403
        assert client.post(base + "/rollout/abort", data={"csrf": csrf}).status_code == 403
    assert admin.get("/v1/configs/billing/development/rollout").status_code == 404
    # The reader sees the document but no button to act on it.
    page = sign_in(server, server.create_token("reader", ["*"], ["*"], name="rollout-reader-2"))
    text = page.get(base).text
    assert "Start a rollout" not in text and "/retire" not in text
