"""The console over plain HTTP (httpx against a real `tskcfg serve`): security headers, the
session cookie, CSRF, scopes, sessions ending, and no token in a URL or a log."""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path

import httpx
import pytest

from config_service.core.tokens import split_token
from tests.console.conftest import csrf_of, login_field, sign_in
from tests.serving import USER_SERVICE, ServerProcess, make_root, push

BILLING = 'name: "billing"\nrate: 3\n'


def _changed(release: str) -> str:
    """user-service's document with another (schema-valid) release string."""
    return USER_SERVICE.replace('version: "1.0.0"', f'version: "{release}"')


@pytest.fixture(scope="module")
def documents(server: ServerProcess, admin: httpx.Client) -> None:
    for environment in ("development", "staging"):
        assert push(admin, "user-service", environment, USER_SERVICE).status_code in (200, 201)
    assert push(admin, "billing", "development", BILLING).status_code in (200, 201)


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> ServerProcess:
    """A server that trusts 127.0.0.1 as its proxy and ends sessions idle for 1.5 s."""
    root = make_root(tmp_path_factory.mktemp("proxied"))
    process = ServerProcess(root, "--trusted-proxy", "127.0.0.1", "--session-idle", "1.5").start()
    yield process
    process.stop()


def _cookie_header(response: httpx.Response, name: str) -> str:
    for value in response.headers.get_list("set-cookie"):
        if value.startswith(name + "="):
            return value
    raise AssertionError(f"no {name} cookie in {response.headers}")


def test_every_console_answer_carries_the_security_headers(server: ServerProcess, documents: None) -> None:
    client = sign_in(server, server.admin_token)
    for path in ("/ui/login", "/ui/", "/ui/static/console.css", "/ui/doc/user-service/development",
                 "/ui/doc/user-service/nowhere"):
        answer = client.get(path, follow_redirects=False)
        policy = answer.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy, path
        assert "frame-ancestors 'none'" in policy
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["x-content-type-options"] == "nosniff"
    assert client.get("/ui/doc/user-service/nowhere").status_code == 404


def test_pages_have_no_inline_script_or_style(server: ServerProcess, documents: None) -> None:
    client = sign_in(server, server.admin_token)
    for path in ("/ui/login", "/ui/", "/ui/doc/user-service/development", "/ui/doc/user-service/staging/promote",
                 "/ui/doc/user-service/development/edit", "/ui/audit", "/ui/tokens"):
        text = client.get(path).text
        assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", text) == [], path
        assert " style=" not in text and "<style" not in text, path
        assert re.search(r"\son[a-z]+=", text) is None, path  # no event handler attributes


def test_the_session_cookie_is_httponly_strict_and_secure_only_over_https(server: ServerProcess) -> None:
    page = httpx.get(server.url + "/ui/login")
    login = _cookie_header(page, "tskcfg_login")
    assert "HttpOnly" in login and "SameSite=strict" in login and "Secure" not in login
    answer = httpx.post(
        server.url + "/ui/login",
        data={"token": server.admin_token, "login": login_field(page.text)},
        cookies=page.cookies,
        # Not a trusted proxy of this server: the header does not count.
        headers={"X-Forwarded-Proto": "https"},
    )
    cookie = _cookie_header(answer, "tskcfg_session")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ui" in cookie
    assert "Secure" not in cookie
    assert server.admin_token not in cookie


def test_a_trusted_proxy_saying_https_makes_the_cookie_secure(proxied: ServerProcess) -> None:
    headers = {"X-Forwarded-Proto": "https"}
    page = httpx.get(proxied.url + "/ui/login", headers=headers)
    assert "Secure" in _cookie_header(page, "tskcfg_login")
    answer = httpx.post(
        proxied.url + "/ui/login",
        data={"token": proxied.admin_token, "login": login_field(page.text)},
        # As the browser would send it over HTTPS (httpx keeps Secure cookies off plain HTTP).
        headers={**headers, "Cookie": f"tskcfg_login={page.cookies['tskcfg_login']}"},
    )
    assert answer.status_code == 303
    assert "Secure" in _cookie_header(answer, "tskcfg_session")


def test_a_session_ends_after_its_idle_time(proxied: ServerProcess) -> None:
    client = sign_in(proxied, proxied.admin_token)
    assert client.get("/ui/").status_code == 200
    time.sleep(2.0)
    answer = client.get("/ui/", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/ui/login"


def test_a_wrong_token_or_a_forged_login_form_signs_nobody_in(server: ServerProcess) -> None:
    client = httpx.Client(base_url=server.url)
    page = client.get("/ui/login")
    wrong = client.post("/ui/login", data={"token": "tskcfg_abc_def", "login": login_field(page.text)})
    assert wrong.status_code == 401 and "not valid" in wrong.text
    assert "tskcfg_session" not in wrong.headers.get("set-cookie", "")
    # A form posted from elsewhere has no login cookie to match.
    forged = httpx.post(server.url + "/ui/login", data={"token": server.admin_token, "login": "guess"})
    assert forged.status_code == 403
    assert "tskcfg_session" not in forged.headers.get("set-cookie", "")


def test_a_form_without_its_csrf_token_is_refused_and_changes_nothing(
    server: ServerProcess, admin: httpx.Client, documents: None
) -> None:
    client = sign_in(server, server.admin_token)
    before = admin.get("/v1/configs/user-service/development").json()["version"]
    edit = client.get("/ui/doc/user-service/development/edit")
    form = {"source": USER_SERVICE + "extra: 1\n", "base": str(before), "message": "csrf"}
    refused = client.post("/ui/doc/user-service/development/edit", data=form)
    assert refused.status_code == 403 and "security token" in refused.text
    wrong = client.post("/ui/doc/user-service/development/edit", data={**form, "csrf": "x" * 43})
    assert wrong.status_code == 403
    # Another site's page posting with the right token (were it to know it) is refused too.
    other = client.post(
        "/ui/doc/user-service/development/edit",
        data={**form, "csrf": csrf_of(edit.text)},
        headers={"Origin": "https://evil.example"},
    )
    assert other.status_code == 403
    assert admin.get("/v1/configs/user-service/development").json()["version"] == before
    logout = client.post("/ui/logout", data={"other": "field"})
    assert logout.status_code == 403
    assert client.get("/ui/", follow_redirects=False).status_code == 200  # still signed in


def test_a_form_that_is_not_url_encoded_is_refused(server: ServerProcess) -> None:
    client = sign_in(server, server.admin_token)
    answer = client.post(
        "/ui/logout", content=b'{"csrf": "x"}', headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 415


def test_push_through_the_console_is_compare_and_set_and_reports_errors_where_they_are(
    server: ServerProcess, admin: httpx.Client, documents: None
) -> None:
    client = sign_in(server, server.admin_token)
    edit = client.get("/ui/doc/user-service/development/edit")
    csrf = csrf_of(edit.text)
    current = admin.get("/v1/configs/user-service/development").json()["version"]
    bad = client.post(
        "/ui/doc/user-service/development/edit",
        data={"csrf": csrf, "base": str(current), "source": 'name: "x"\nport: 80\nbroken: production\n'},
    )
    assert bad.status_code == 422
    assert "line 3, column" in bad.text
    schema = client.post(
        "/ui/doc/user-service/development/edit",
        data={"csrf": csrf, "base": str(current), "source": USER_SERVICE.replace("pool_size: 20", 'pool_size: "many"')},
    )
    assert schema.status_code == 422 and "/database/pool_size" in schema.text
    stale = client.post(
        "/ui/doc/user-service/development/edit",
        data={"csrf": csrf, "base": str(current - 1 if current > 1 else 99), "source": _changed("1.0.1")},
    )
    assert stale.status_code == 412 and "Someone pushed first" in stale.text
    assert admin.get("/v1/configs/user-service/development").json()["version"] == current
    good = client.post(
        "/ui/doc/user-service/development/edit",
        data={"csrf": csrf, "base": str(current), "source": _changed("1.0.1"), "message": "from the console"},
    )
    assert good.status_code == 303
    after = admin.get("/v1/configs/user-service/development").json()
    assert after["version"] == current + 1 and after["message"] == "from the console"
    assert after["author"] == "admin"  # the token's name, as a script's push would record


def test_a_reader_scoped_to_one_service_sees_nothing_of_another(
    server: ServerProcess, documents: None
) -> None:
    token = server.create_token("reader", ["user-*"], ["*"], name="user-reader")
    client = sign_in(server, token)
    matrix = client.get("/ui/")
    assert "user-service" in matrix.text and "billing" not in matrix.text
    assert "/ui/audit" not in matrix.text and "/ui/tokens" not in matrix.text
    assert client.get("/ui/doc/billing/development").status_code == 403
    assert client.get("/ui/doc/billing/development/diff?from=1&to=1").status_code == 403
    assert client.get("/ui/diff/billing?from=development&to=staging").status_code == 403
    assert client.get("/ui/audit").status_code == 403
    assert client.get("/ui/tokens").status_code == 403
    # A reader cannot write, whatever form it posts.
    page = client.get("/ui/doc/user-service/development")
    assert "/edit" not in page.text
    edit = client.post(
        "/ui/doc/user-service/development/edit",
        data={"csrf": csrf_of(page.text), "base": "1", "source": USER_SERVICE},
    )
    assert edit.status_code == 403


def test_console_events_carry_only_the_sessions_scope(
    server: ServerProcess, admin: httpx.Client, documents: None
) -> None:
    token = server.create_token("reader", ["user-*"], ["*"], name="events-reader")
    client = sign_in(server, token)
    assert httpx.get(server.url + "/ui/events").status_code == 401  # no session, no stream
    received: list[str] = []
    opened = threading.Event()

    def listen() -> None:
        with client.stream("GET", "/ui/events", timeout=10.0) as stream:
            opened.set()
            for line in stream.iter_lines():
                if line.startswith("data:"):
                    received.append(line)
                    if "user-service" in line:
                        return

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    assert opened.wait(5)
    time.sleep(0.3)
    assert push(admin, "billing", "development", BILLING + "more: 1\n").status_code == 201
    assert push(admin, "user-service", "staging", _changed("2.0.0")).status_code == 201
    listener.join(10)
    assert not listener.is_alive()
    events = [json.loads(line[5:]) for line in received]
    assert [event["service"] for event in events] == ["user-service"]


def test_revoking_the_token_ends_its_sessions(server: ServerProcess, admin: httpx.Client) -> None:
    token = server.create_token("writer", ["*"], ["*"], name="short-lived")
    client = sign_in(server, token)
    assert client.get("/ui/").status_code == 200
    token_id = token.split("_")[1]  # tskcfg_<id>_<secret>; the id is hex
    assert admin.delete(f"/v1/tokens/{token_id}").status_code == 204
    answer = client.get("/ui/", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/ui/login"


def test_signing_in_again_ends_the_browsers_previous_session(server: ServerProcess) -> None:
    client = sign_in(server, server.admin_token)
    first = client.cookies["tskcfg_session"]
    page = client.get("/ui/login", follow_redirects=False)
    assert page.status_code == 303  # already signed in
    login = httpx.get(server.url + "/ui/login")
    again = httpx.post(
        server.url + "/ui/login",
        data={"token": server.admin_token, "login": login_field(login.text)},
        cookies={"tskcfg_login": login.cookies["tskcfg_login"], "tskcfg_session": first},
    )
    assert again.status_code == 303 and again.cookies["tskcfg_session"] != first
    replay = httpx.get(server.url + "/ui/", cookies={"tskcfg_session": first}, follow_redirects=False)
    assert replay.status_code == 303


def test_signing_out_ends_the_session_on_the_server(server: ServerProcess) -> None:
    client = sign_in(server, server.admin_token)
    secret = client.cookies["tskcfg_session"]
    page = client.get("/ui/")
    out = client.post("/ui/logout", data={"csrf": csrf_of(page.text)})
    assert out.status_code == 303 and out.headers["location"] == "/ui/login"
    # The old cookie, replayed, opens nothing.
    replay = httpx.get(server.url + "/ui/", cookies={"tskcfg_session": secret}, follow_redirects=False)
    assert replay.status_code == 303


def test_no_token_reaches_a_url_or_the_log(server: ServerProcess, documents: None) -> None:
    token = server.create_token("admin", ["*"], ["*"], name="logged")
    client = sign_in(server, token)
    client.get("/ui/")
    client.get("/ui/doc/user-service/development")
    secret = client.cookies["tskcfg_session"]
    time.sleep(0.3)  # the access log is written in batches
    log = Path(server.log_path).read_text(errors="replace")
    assert '"path": "/ui/login"' in log and '"route": "/ui/login"' in log
    parts = split_token(token)
    assert parts is not None
    assert token not in log and parts[1] not in log  # neither the token nor its secret part
    assert secret not in log
