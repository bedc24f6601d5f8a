"""End-to-end: numbers past SQLite's range, non-ASCII digits, lone surrogates and oversized request
heads get a 4xx in the error shape, never a 500, and change nothing."""

from __future__ import annotations

import itertools
import random
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config_service.core import rendered as rendered_module
from config_service.core.wiring import Core
from config_service.settings import Settings
from tests.serving import USER_SERVICE, ServerProcess, assert_error, free_port, make_root, push

DOCUMENT = "/v1/configs/user-service/staging"
HUGE = 10**20  # past SQLite's 64-bit integers


@pytest.fixture(scope="module")
def seeded(server: ServerProcess, admin: httpx.Client) -> ServerProcess:
    assert push(admin, "user-service", "staging", USER_SERVICE).status_code == 201
    return server


@pytest.mark.parametrize(
    "path",
    [
        f"{DOCUMENT}/versions?before={HUGE}",
        f"{DOCUMENT}/diff?from=1&to={HUGE}",
        f"{DOCUMENT}/diff?from={HUGE}&to=1",
        f"/v1/schemas/user-service/versions?before={HUGE}",
        f"/v1/audit?before={HUGE}",
    ],
)
def test_query_numbers_past_the_store_range_are_400(
    seeded: ServerProcess, admin: httpx.Client, path: str
) -> None:
    assert_error(admin.get(path), 400, "bad_request")


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (f"{DOCUMENT}/rollback", {"version": HUGE}),
        ("/v1/configs/user-service/production/promote", {"from": "staging", "version": HUGE}),
        (
            "/v1/instances",
            {
                "service": "user-service",
                "environment": "staging",
                "instance_id": "i-1",
                "status": "applied",
                "version": HUGE,
            },
        ),
    ],
)
def test_body_numbers_past_the_store_range_are_400(
    seeded: ServerProcess, admin: httpx.Client, path: str, body: dict[str, object]
) -> None:
    assert_error(admin.post(path, json=body), 400, "bad_request")


def test_non_ascii_digits_are_not_versions(seeded: ServerProcess, admin: httpx.Client) -> None:
    # "²" is a digit to str.isdigit() but not to int(): each of these was a 500.
    superscript_two = '"\u00b2"'.encode("latin-1")
    assert_error(
        admin.put(
            DOCUMENT,
            content=USER_SERVICE,
            headers={"Content-Type": "text/x-tsk", "If-Match": superscript_two},
        ),
        400,
        "bad_request",
    )
    assert_error(admin.get(f"{DOCUMENT}/versions/%C2%B2"), 400, "bad_request")
    assert_error(admin.get("/v1/schemas/user-service/versions/%C2%B2"), 400, "bad_request")
    assert_error(admin.get("/v1/events", headers={"Last-Event-ID": b"\xb2"}), 400, "bad_request")
    assert_error(admin.get("/v1/events?last_event_id=%C2%B2"), 400, "bad_request")
    # If-None-Match holding no version of ours is simply not a match: the document, at once.
    response = admin.get(f"{DOCUMENT}?wait=5", headers={"If-None-Match": superscript_two})
    assert response.status_code == 200, response.text
    assert response.json()["version"] == 1


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PUT", DOCUMENT, b'{"source": "name: \\"x\\"\\n# \\ud800\\n"}'),
        ("PUT", DOCUMENT, b'{"source": "name: \\"x\\"\\n", "message": "half a pair \\uDC00"}'),
        (
            "POST",
            "/v1/tokens",
            b'{"name": "\\ud83d", "role": "reader", "services": ["*"], "environments": ["*"]}',
        ),
        (
            "POST",
            "/v1/instances",
            b'{"service": "user-service", "environment": "staging", "instance_id": "\\ud800", "status": "applied"}',
        ),
        ("PUT", "/v1/schemas/user-service", b'{"type": "object", "description": "\\ud800"}'),
    ],
)
def test_json_with_lone_surrogates_is_400(
    seeded: ServerProcess, admin: httpx.Client, method: str, path: str, body: bytes
) -> None:
    before = admin.get(DOCUMENT).json()["version"]
    response = admin.request(
        method, path, content=body, headers={"Content-Type": "application/json"}
    )
    assert "surrogate" in assert_error(response, 400, "bad_request")["message"]
    assert admin.get(DOCUMENT).json()["version"] == before


def test_json_with_a_surrogate_pair_is_fine(seeded: ServerProcess, admin: httpx.Client) -> None:
    source = (
        USER_SERVICE.replace("pool_size: 20", "pool_size: 21")
        .replace('"', '\\"')
        .replace("\n", "\\n")
    )
    body = ('{"source": "' + source + '", "message": "ok \\ud83d\\ude00"}').encode()
    response = admin.put(DOCUMENT, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 201, response.text
    assert response.json()["message"] == "ok \U0001f600"


def test_config_message_header_must_be_percent_encoded(
    seeded: ServerProcess, admin: httpx.Client
) -> None:
    source = USER_SERVICE + '\n[logging]\nlevel: "INFO"\n'
    raw_utf8 = "café".encode()  # sent as raw bytes, which the header decodes as Latin-1 mojibake
    response = admin.put(
        DOCUMENT,
        content=source,
        headers={"Content-Type": "text/x-tsk", "X-Config-Message": raw_utf8},
    )
    assert "percent-encoded" in assert_error(response, 400, "bad_request")["message"]
    response = admin.put(
        DOCUMENT,
        content=source,
        headers={"Content-Type": "text/x-tsk", "X-Config-Message": "caf%C3%A9"},
    )
    assert response.status_code == 201, response.text
    assert response.json()["message"] == "café"


def _raw_request(server: ServerProcess, head: bytes, chunk: bytes, chunks: int) -> bytes:
    """Send a request head with `chunks` times `chunk` in it; what the server answers (or b"")."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as connection:
        connection.sendall(head)
        try:
            for _ in range(chunks):
                connection.sendall(chunk)
            connection.sendall(b"\r\n\r\n")
        except OSError:
            pass  # the server closed the connection before we finished: what we want
        answer = b""
        try:
            while len(answer) < 65536:
                data = connection.recv(65536)
                if not data:
                    break
                answer += data
        except OSError:
            pass
        return answer


def test_an_oversized_request_head_is_refused(seeded: ServerProcess) -> None:
    # 8 MiB of one header value: refused with 431 long before it is all read into memory.
    answer = _raw_request(seeded, b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ", b"a" * 65536, 128)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert b'"error":"too_large"' in answer.replace(b" ", b"")
    assert b"\r\nx-request-id: " in answer
    # Many small headers count together.
    answer = _raw_request(seeded, b"GET /health HTTP/1.1\r\nHost: x\r\n", b"X-A: b\r\n" * 8192, 32)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    # A long but reasonable header still works, and so does the server.
    response = httpx.get(seeded.url + "/health", headers={"X-Note": "n" * 32768})
    assert response.status_code == 200
    assert "Traceback" not in seeded.log()


def test_a_client_still_sending_an_oversized_head_reads_the_431(seeded: ServerProcess) -> None:
    # The server keeps reading (and throwing away) the rest after its answer: a client that
    # sends its whole head before reading, as most do, gets the 431 instead of a reset.
    for size in (70_000, 3 * 1024 * 1024):
        with socket.create_connection(("127.0.0.1", seeded.port), timeout=10) as connection:
            connection.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Config-Message: " + b"m" * size + b"\r\n\r\n")
            answer = b""
            while data := connection.recv(65536):
                answer += data
        assert answer.startswith(b"HTTP/1.1 431 "), (size, answer[:200])
        assert answer.endswith(b"}") and b'"too_large"' in answer
        # And through an ordinary client, on a push.
        response = httpx.put(
            seeded.url + "/v1/configs/user-service/development",
            content=USER_SERVICE,
            headers={"Content-Type": "text/x-tsk", "X-Config-Message": "m" * size},
        )
        assert_error(response, 431, "too_large")
    # The same for the second request on a kept-alive connection.
    with socket.create_connection(("127.0.0.1", seeded.port), timeout=10) as connection:
        connection.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        first = b""
        while b'"status"' not in first:
            first += connection.recv(65536)
        assert first.startswith(b"HTTP/1.1 200 "), first[:200]
        connection.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Config-Message: " + b"m" * 70_000 + b"\r\n\r\n")
        answer = b""
        while data := connection.recv(65536):
            answer += data
        assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    response = httpx.get(seeded.url + "/health", headers={"X-Note": "n" * 60_000})
    assert response.status_code == 200
    assert "Traceback" not in seeded.log()


def test_a_resume_point_past_the_last_event_still_gets_new_events(
    seeded: ServerProcess, admin: httpx.Client
) -> None:
    # An id from another store (restored from a backup, or a fresh one) must not mute the
    # stream until the sequence catches up with it.
    with seeded.client(seeded.admin_token, timeout=10) as watcher:
        with watcher.stream("GET", "/v1/events", headers={"Last-Event-ID": str(10**15)}) as stream:
            lines = stream.iter_lines()
            assert next(lines) == "retry: 2000"
            source = USER_SERVICE.replace("pool_size: 20", "pool_size: 77")
            assert push(admin, "user-service", "staging", source).status_code == 201
            data = next(line for line in lines if line.startswith("data:"))
    assert '"pool_size"' not in data and '"service":"user-service"' in data


HEADER_BYTES = st.binary(min_size=0, max_size=24).map(
    lambda raw: bytes(byte for byte in raw if byte >= 0x20 and byte != 0x7F).strip()
)


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    header=st.sampled_from(
        [
            "If-None-Match",
            "If-Match",
            "Last-Event-ID",
            "Accept",
            "X-Request-ID",
            "X-Config-Message",
            "Content-Type",
        ]
    ),
    value=HEADER_BYTES,
    route=st.sampled_from(
        [
            ("GET", DOCUMENT + "?wait=0.01"),
            ("GET", DOCUMENT),
            ("PUT", DOCUMENT),
            ("GET", DOCUMENT + "/versions/1"),
            ("GET", "/v1/events?last_event_id=999999999"),
        ]
    ),
)
def test_any_latin1_header_value_gets_an_answer(
    seeded: ServerProcess, admin: httpx.Client, header: str, value: bytes, route: tuple[str, str]
) -> None:
    # Header values arrive as Latin-1: bytes above ASCII reach the handlers as characters
    # such as "²" or "é", which str methods treat differently from int() and the store.
    method, path = route
    headers: dict[str, str | bytes] = {header: value}
    if method == "PUT" and header != "Content-Type":
        headers["Content-Type"] = "text/x-tsk"
    content = USER_SERVICE if method == "PUT" else None
    request = admin.build_request(method, path, content=content, headers=headers)
    response = admin.send(request, stream=True)
    try:
        if response.status_code == 200 and path.startswith("/v1/events"):
            return  # a stream that opened: nothing more to check
        response.read()
    finally:
        response.close()
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert set(response.json()) == {"error", "message", "details"}


def test_openapi_describes_the_parameters_and_headers_each_route_reads(
    seeded: ServerProcess,
) -> None:
    paths = httpx.get(seeded.url + "/openapi.json").json()["paths"]

    def named(path: str, method: str) -> dict[tuple[str, str], dict[str, object]]:
        parameters = paths[path][method]["parameters"]
        return {(parameter["in"], parameter["name"]): parameter for parameter in parameters}

    document = "/v1/configs/{service}/{environment}"
    assert {("query", "wait"), ("header", "If-None-Match")} <= set(named(document, "get"))
    assert {("header", "If-Match"), ("header", "X-Config-Message")} <= set(named(document, "put"))
    assert {("query", "limit"), ("query", "before")} <= set(named(document + "/versions", "get"))
    diff = named(document + "/diff", "get")
    assert diff[("query", "from")]["required"] is True and diff[("query", "to")]["required"] is True
    assert {("query", "from"), ("query", "to")} <= set(named("/v1/diff/{service}", "get"))
    assert {
        ("query", "service"),
        ("query", "environment"),
        ("query", "last_event_id"),
        ("header", "Last-Event-ID"),
    } <= set(named("/v1/events", "get"))
    assert ("query", "force") in named("/v1/schemas/{service}", "put")
    assert {("query", "action"), ("query", "actor"), ("query", "before")} <= set(
        named("/v1/audit", "get")
    )
    service = named(document, "get")[("path", "service")]
    assert service["schema"] == {"type": "string", "pattern": "^[a-z0-9][a-z0-9._-]{0,62}$"}


def test_old_versions_held_in_memory_are_bounded_in_bytes(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, sync=False, access_log=False, open_services=True)
    config_server = Core(settings)
    config_server.start()
    try:
        admin_principal = config_server.tokens.authenticate(
            settings.admin_token_path.read_text().strip()
        )
        assert admin_principal is not None
        filler = "x" * 20_000
        for number in range(1, 7):
            config_server.documents.push(
                admin_principal, "big", "staging", f'n: {number}\nfiller: "{filler}"\n'
            )
        one = config_server.versions.version("big", "staging", 1)
        assert one is not None
        limit = 3 * one.size
        versions = rendered_module.RenderedVersions(config_server.store, max_old_bytes=limit)
        for number in range(1, 6):
            rendered = versions.version("big", "staging", number)
            assert rendered is not None and rendered.record.version == number
        count, size = versions.old_versions_cached
        assert size <= limit and count <= 3, (count, size)
        # An evicted version is read again from the store, unchanged.
        again = versions.version("big", "staging", 1)
        assert again is not None and again.json_body == one.json_body
    finally:
        config_server.stop()


@pytest.mark.parametrize("digits", ["9" * 5000, "1_" * 4400 + "1"])
def test_an_integer_too_long_for_python_is_invalid_tsk_with_its_position(
    seeded: ServerProcess, admin: httpx.Client, digits: str
) -> None:
    source = f'name: "x"\nlarge: {digits}\n'
    response = admin.put(
        "/v1/configs/long-number/staging", content=source, headers={"Content-Type": "text/x-tsk"}
    )
    body = assert_error(response, 422, "invalid_tsk")
    assert body["details"][0]["line"] == 2 and body["details"][0]["column"] == 8, body["details"]


def test_a_slow_diff_does_not_stall_other_requests(
    seeded: ServerProcess, admin: httpx.Client
) -> None:
    # A line diff grows with the product of the line counts: two documents of 40,000 lines that
    # share a few hundred distinct lines take seconds. Meanwhile the server answers others.
    def document(seed: int) -> str:
        generator = random.Random(seed)
        return (
            "items: [\n"
            + "".join(f"  {generator.randrange(150)},\n" for _ in range(40_000))
            + "]\n"
        )

    for seed in (1, 2):
        assert push(admin, "slow-diff", "staging", document(seed)).status_code == 201
    with ThreadPoolExecutor(1) as pool:
        diffing = pool.submit(
            admin.get, "/v1/configs/slow-diff/staging/diff", params={"from": 1, "to": 2}, timeout=60
        )
        time.sleep(0.3)
        started = time.monotonic()
        assert httpx.get(seeded.url + "/health", timeout=30).status_code == 200
        waited = time.monotonic() - started
        diff = diffing.result(timeout=60)
    assert diff.status_code == 200 and diff.json()["unified"]
    assert waited < 0.5, f"/health waited {waited:.2f} s behind the diff"


def _peak_memory_kib(process_id: int) -> int:
    status = Path(f"/proc/{process_id}/status").read_text()
    return int(status.split("VmHWM:")[1].split()[0])


def test_listings_and_event_replay_do_not_read_whole_documents(
    tmp_path: Path,
) -> None:
    root = make_root(tmp_path)
    server = ServerProcess(root, open_services=True).start()
    try:
        assert server.process is not None
        process_id = server.process.pid
        with server.client(server.admin_token, timeout=30) as admin:
            for number in range(16):  # 16 versions near 900 KB each
                source = f'blob: "{number}{"x" * 900_000}"\n'
                assert push(admin, "large-history", "staging", source).status_code == 201
                assert push(admin, f"large-{number}", "staging", source).status_code == 201
            for number in range(32):  # and 32 versions of a schema near 1,000 KB
                schema = {"type": "object", "description": f"{number}{'x' * 1_000_000}"}
                assert admin.put("/v1/schemas/large-schema", json=schema).status_code == 201
            Path(f"/proc/{process_id}/clear_refs").write_text("5")  # reset the peak
            before = _peak_memory_kib(process_id)

            def history() -> int:
                response = admin.get(
                    "/v1/configs/large-history/staging/versions", params={"limit": 500}
                )
                return len(response.json()["versions"])

            def replay() -> int:
                with admin.stream("GET", "/v1/events", headers={"Last-Event-ID": "0"}) as stream:
                    events = (line for line in stream.iter_lines() if line.startswith("data:"))
                    return len(list(itertools.islice(events, 16)))

            def services() -> int:
                listed = admin.get("/v1/services").json()["services"]
                # large-history and large-0..15; large-schema is a service too (its schema made it).
                return sum(1 for entry in listed if entry["service"].startswith("large-")) - 2

            def schema_history() -> int:
                response = admin.get("/v1/schemas/large-schema/versions", params={"limit": 500})
                return len(response.json()["versions"]) // 2

            with ThreadPoolExecutor(8) as pool:
                runs = [history, replay, services, schema_history] * 3
                counts = list(pool.map(lambda run: run(), runs))
            assert counts == [16] * 12
            grown_mib = (_peak_memory_kib(process_id) - before) / 1024
        assert grown_mib < 16, f"the server's peak memory grew by {grown_mib:.0f} MiB"
    finally:
        server.stop()


def test_a_request_head_that_never_ends_is_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    import uvicorn

    from config_service.http1 import bounded as bounded_http

    monkeypatch.setattr(bounded_http, "HEAD_SECONDS", 0.5)

    async def app(scope: dict[str, object], receive: object, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        http=bounded_http.bounded_protocol(),
        lifespan="off",
        log_level="error",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        assert httpx.get(f"http://127.0.0.1:{port}/").text == "ok"
        # A client that connects and says nothing; one that sends a head a byte now and then.
        for first_bytes, trickle in ((b"", b""), (b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ", b"a")):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
                connection.sendall(first_bytes)
                started = time.monotonic()
                for _ in range(3):
                    time.sleep(0.2)
                    try:
                        connection.sendall(trickle)
                    except OSError:
                        break
                try:
                    answer = connection.recv(1024)
                except ConnectionResetError:
                    answer = b""
                assert answer == b"" and time.monotonic() - started < 3, answer
    finally:
        server.should_exit = True
        thread.join(10)


# Each is a number to int() or float(), but not a count written in ASCII digits.
NOT_ASCII_COUNTS = ["\uff11\uff12", "1_2", "+2", " 2", "-1", "2 ", "1e1"]


@pytest.mark.parametrize("text", NOT_ASCII_COUNTS)
@pytest.mark.parametrize(
    ("path", "name"),
    [
        (f"{DOCUMENT}/versions?limit=", "limit"),
        (f"{DOCUMENT}/versions?before=", "before"),
        (f"{DOCUMENT}/diff?to=1&from=", "from"),
        (f"{DOCUMENT}/diff?from=1&to=", "to"),
        ("/v1/schemas/user-service/versions?before=", "before"),
        ("/v1/audit?limit=", "limit"),
    ],
)
def test_counts_in_query_strings_are_ascii_digits_only(
    seeded: ServerProcess, admin: httpx.Client, path: str, name: str, text: str
) -> None:
    response = admin.get(path + quote(text, safe=""))
    assert repr(name) in assert_error(response, 400, "bad_request")["message"]


@pytest.mark.parametrize("text", NOT_ASCII_COUNTS)
def test_a_long_poll_wait_is_ascii_digits_only(
    seeded: ServerProcess, admin: httpx.Client, text: str
) -> None:
    current = admin.get(DOCUMENT).headers["etag"]
    # Percent-encoded, and as the raw bytes a client may send (the hot path reads those).
    for query in (quote(text, safe=""), text.replace(" ", "%20")):
        started = time.monotonic()
        response = admin.get(f"{DOCUMENT}?wait={query}", headers={"If-None-Match": current})
        assert "'wait'" in assert_error(response, 400, "bad_request")["message"]
        assert time.monotonic() - started < 1


def test_a_long_poll_wait_may_have_a_fraction(seeded: ServerProcess, admin: httpx.Client) -> None:
    current = admin.get(DOCUMENT).headers["etag"]
    response = admin.get(f"{DOCUMENT}?wait=0.2", headers={"If-None-Match": current})
    assert response.status_code == 304


def _history(admin: httpx.Client, path: str = DOCUMENT) -> list[dict[str, Any]]:
    response = admin.get(f"{path}/versions", params={"limit": 500})
    assert response.status_code == 200, response.text
    versions: list[dict[str, Any]] = response.json()["versions"]
    return versions


def test_a_version_message_over_4_kib_is_413_and_stores_nothing(
    seeded: ServerProcess, admin: httpx.Client
) -> None:
    source = USER_SERVICE.replace("ttl: 300", "ttl: 301")
    history = _history(admin)
    megabyte = "m" * 1_000_000
    refused = [
        admin.put(DOCUMENT, json={"source": source, "message": megabyte}),
        # 2,049 characters, 4,098 bytes of UTF-8: the limit counts bytes after decoding.
        admin.put(DOCUMENT, json={"source": source, "message": "\u00e9" * 2049}),
        push(admin, "user-service", "staging", source, quote("\u00e9" * 2049)),
        admin.post(f"{DOCUMENT}/rollback", json={"version": 1, "message": megabyte}),
    ]
    for response in refused:
        assert "4096 bytes" in assert_error(response, 413, "too_large")["message"]
    assert _history(admin) == history
    audit = admin.get("/v1/audit", params={"service": "user-service", "limit": 1000}).json()
    assert all(len(entry["detail"].get("message", "")) <= 4096 for entry in audit["entries"])
    # Exactly at the limit is fine, in the header as in the body.
    accepted = push(admin, "user-service", "staging", source, quote("\u00e9" * 2048))
    assert accepted.status_code == 201, accepted.text
    assert accepted.json()["message"] == "\u00e9" * 2048


def test_a_promotion_message_over_the_limit_is_413(
    seeded: ServerProcess, admin: httpx.Client
) -> None:
    production = "/v1/configs/user-service/production"
    response = admin.post(
        f"{production}/promote", json={"from": "staging", "message": "p" * 4097}
    )
    assert "4096" in assert_error(response, 413, "too_large")["message"]
    dry_run = admin.post(
        f"{production}/promote", json={"from": "staging", "message": "p" * 4097, "dry_run": True}
    )
    assert_error(dry_run, 413, "too_large")
    assert admin.get(production).status_code == 404


def test_the_message_limit_is_a_setting(tmp_path: Path) -> None:
    server = ServerProcess(make_root(tmp_path), environ={"TSKCFG_MAX_MESSAGE": "10"}, open_services=True).start()
    try:
        with server.client(server.admin_token) as admin:
            response = push(admin, "user-service", "staging", USER_SERVICE, "eleven char")
            assert "10 bytes" in assert_error(response, 413, "too_large")["message"]
            assert push(admin, "user-service", "staging", USER_SERVICE, "ten chars!").status_code == 201
    finally:
        server.stop()
