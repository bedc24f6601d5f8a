"""End-to-end: watching (long poll, SSE with resume), history, diff, rollback, promotion, instances, file sync."""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.serving import REPOSITORY, USER_SERVICE, ServerProcess, assert_error, make_root, push


def _push_later(server: ServerProcess, delay: float, service: str, environment: str, source: str) -> threading.Thread:
    def run() -> None:
        time.sleep(delay)
        with server.client(server.admin_token) as client:
            assert push(client, service, environment, source).status_code == 201

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_long_poll_wakes_on_a_push_and_times_out_with_304(server: ServerProcess, admin: httpx.Client) -> None:
    assert push(admin, "polled", "staging", "n: 1\n").status_code == 201
    writer = _push_later(server, 0.3, "polled", "staging", "n: 2\n")
    started = time.monotonic()
    woken = admin.get("/v1/configs/polled/staging", params={"wait": 10}, headers={"If-None-Match": '"1"'})
    elapsed = time.monotonic() - started
    writer.join()
    assert woken.status_code == 200
    assert woken.json()["version"] == 2 and woken.json()["config"] == {"n": 2}
    assert woken.headers["etag"] == '"2"'
    assert 0.25 < elapsed < 5
    started = time.monotonic()
    timed_out = admin.get("/v1/configs/polled/staging", params={"wait": 0.5}, headers={"If-None-Match": '"2"'})
    assert timed_out.status_code == 304 and timed_out.headers["etag"] == '"2"'
    assert 0.45 < time.monotonic() - started < 3
    # A stale or unknown ETag answers at once.
    started = time.monotonic()
    assert admin.get("/v1/configs/polled/staging", params={"wait": 30}, headers={"If-None-Match": '"1"'}).status_code == 200
    assert time.monotonic() - started < 1
    # Without If-None-Match it is a plain GET; wait must be a number.
    assert admin.get("/v1/configs/polled/staging", params={"wait": 30}).status_code == 200
    assert_error(admin.get("/v1/configs/polled/staging", params={"wait": "soon"}), 400, "bad_request")
    assert_error(admin.get("/v1/configs/polled/staging", params={"wait": "-1"}), 400, "bad_request")


def test_long_poll_on_a_missing_document_holds_until_its_first_version(
    server: ServerProcess, admin: httpx.Client
) -> None:
    writer = _push_later(server, 0.3, "born-later", "staging", "n: 1\n")
    response = admin.get("/v1/configs/born-later/staging", params={"wait": 10}, headers={"If-None-Match": '"0"'})
    writer.join()
    assert response.status_code == 200 and response.json()["version"] == 1
    assert_error(
        admin.get("/v1/configs/never-born/staging", params={"wait": 10}, headers={"If-None-Match": '"4"'}),
        404,
        "not_found",
    )


def test_a_thousand_long_polls_all_wake_on_one_push(server: ServerProcess, admin: httpx.Client) -> None:
    assert push(admin, "crowd", "production", "n: 1\n").status_code == 201
    count = 1000

    async def main() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=count + 10, max_keepalive_connections=0)
        async with httpx.AsyncClient(
            base_url=server.url, headers={"Authorization": f"Bearer {server.admin_token}"},
            limits=limits, timeout=60,
        ) as client:
            polls = [
                asyncio.create_task(
                    client.get("/v1/configs/crowd/production", params={"wait": 60}, headers={"If-None-Match": '"1"'})
                )
                for _ in range(count)
            ]
            deadline = time.monotonic() + 40
            while time.monotonic() < deadline:
                metrics = (await client.get("/metrics")).text
                waiting = [line for line in metrics.splitlines() if line.startswith('tskcfg_watchers{kind="long_poll"}')]
                if waiting and float(waiting[0].split()[-1]) >= count:
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("the long polls did not all arrive")
            pushed = await client.put(
                "/v1/configs/crowd/production", content=b"n: 2\n", headers={"Content-Type": "text/x-tsk"}
            )
            assert pushed.status_code == 201
            return await asyncio.gather(*polls)

    responses = asyncio.run(main())
    assert len(responses) == count
    assert {response.status_code for response in responses} == {200}
    assert {response.json()["version"] for response in responses} == {2}


def _read_events(lines: Iterator[str], wanted: int, timeout: float = 10) -> list[dict[str, object]]:
    """Parse SSE frames from `lines` until `wanted` version events arrived."""
    events: list[dict[str, object]] = []
    frame: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    for line in lines:
        if time.monotonic() > deadline:
            break
        if line == "":
            if frame.get("event") == "version":
                events.append({"id": int(frame["id"]), **json.loads(frame["data"])})
                if len(events) >= wanted:
                    break
            frame = {}
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(": ")
        frame[field] = value
    return events


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[ServerProcess]:
    process = ServerProcess(make_root(tmp_path), "--no-access-log", open_services=True).start()
    try:
        yield process
    finally:
        process.stop()


def test_events_stream_and_resume_across_a_restart(own_server: ServerProcess) -> None:
    server = own_server
    token = server.admin_token
    reader = server.create_token("reader", ["*"], ["staging"])
    with server.client(token) as admin, server.client(reader, timeout=15) as watcher:
        with watcher.stream("GET", "/v1/events") as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            time.sleep(0.3)  # the subscription is made when the stream opens
            assert push(admin, "streamed", "production", "n: 1\n").status_code == 201  # out of scope
            assert push(admin, "streamed", "staging", "n: 1\n").status_code == 201
            assert push(admin, "other", "staging", "n: 1\n").status_code == 201
            first = _read_events(stream.iter_lines(), 2)
        assert [(event["service"], event["environment"], event["version"]) for event in first] == [
            ("streamed", "staging", 1),
            ("other", "staging", 1),
        ]
        assert first[0]["id"] < first[1]["id"]
        assert set(first[0]) == {"id", "service", "environment", "version", "hash"}
        last_seen = first[-1]["id"]
        # Missed while disconnected, then the server restarts.
        assert push(admin, "streamed", "staging", "n: 2\n").status_code == 201
        assert push(admin, "streamed", "production", "n: 2\n").status_code == 201
        assert push(admin, "other", "staging", "n: 2\n").status_code == 201
    server.stop()
    server.start()
    with server.client(server.admin_token) as admin, server.client(reader, timeout=15) as watcher:
        with watcher.stream("GET", "/v1/events", headers={"Last-Event-ID": str(last_seen)}) as stream:
            lines = stream.iter_lines()
            replayed = _read_events(lines, 2)
            assert push(admin, "streamed", "staging", "n: 3\n").status_code == 201
            live = _read_events(lines, 1)
        assert [(event["service"], event["version"]) for event in replayed] == [("streamed", 2), ("other", 2)]
        assert [(event["service"], event["version"]) for event in live] == [("streamed", 3)]
        ids = [event["id"] for event in replayed + live]
        assert ids == sorted(set(ids)) and ids[0] > last_seen
        # A filter on service; the query form of the resume point.
        with watcher.stream("GET", "/v1/events", params={"service": "other", "last_event_id": 0}) as stream:
            filtered = _read_events(stream.iter_lines(), 2)
        assert [(event["service"], event["version"]) for event in filtered] == [("other", 1), ("other", 2)]
        assert_error(watcher.get("/v1/events", headers={"Last-Event-ID": "abc"}), 400, "bad_request")


def test_diff_between_versions_and_environments(admin: httpx.Client) -> None:
    assert push(admin, "diffed", "staging", 'a: 1\nb: [1, 2]\nc: "x"\n').status_code == 201
    assert push(admin, "diffed", "staging", 'a: 2\nb: [1]\nd: true\n').status_code == 201
    body = admin.get("/v1/configs/diffed/staging/diff", params={"from": 1, "to": 2}).json()
    assert body["from"] == {"environment": "staging", "version": 1}
    assert body["to"] == {"environment": "staging", "version": 2}
    assert {"op": "change", "path": "/a", "old": 1, "new": 2} in body["changes"]
    assert {"op": "remove", "path": "/b/1", "old": 2} in body["changes"]
    assert {"op": "remove", "path": "/c", "old": "x"} in body["changes"]
    assert {"op": "add", "path": "/d", "new": True} in body["changes"]
    assert "-a: 1" in body["unified"] and "+a: 2" in body["unified"]
    assert_error(admin.get("/v1/configs/diffed/staging/diff", params={"from": 1}), 400, "bad_request")
    assert_error(admin.get("/v1/configs/diffed/staging/diff", params={"from": 1, "to": 9}), 404, "not_found")
    assert push(admin, "diffed", "production", 'a: 2\nb: [1]\n').status_code == 201
    across = admin.get("/v1/diff/diffed", params={"from": "staging", "to": "production"}).json()
    assert across["from"] == {"environment": "staging", "version": 2}
    assert across["changes"] == [{"op": "remove", "path": "/d", "old": True}]


def test_rollback(admin: httpx.Client) -> None:
    assert push(admin, "rolled", "staging", "n: 1\n").status_code == 201
    assert push(admin, "rolled", "staging", "n: 2\n").status_code == 201
    rolled = admin.post("/v1/configs/rolled/staging/rollback", json={"version": 1, "message": "bad deploy"})
    assert rolled.status_code == 201
    body = rolled.json()
    assert body["version"] == 3 and body["kind"] == "rollback" and body["rolled_back_to"] == 1
    assert body["message"] == "bad deploy"
    assert admin.get("/v1/configs/rolled/staging").json()["config"] == {"n": 1}
    again = admin.post("/v1/configs/rolled/staging/rollback", json={"version": 1})
    assert again.status_code == 200 and again.json()["version"] == 3
    assert_error(admin.post("/v1/configs/rolled/staging/rollback", json={"version": 99}), 404, "not_found")
    assert_error(admin.post("/v1/configs/rolled/staging/rollback", json={}), 400, "bad_request")
    assert_error(admin.post("/v1/configs/rolled/staging/rollback", json={"version": "1"}), 400, "bad_request")
    # Validated against today's schema.
    assert admin.put("/v1/schemas/rolled", json={"properties": {"n": {"minimum": 2}}}, params={"force": "true"}).status_code == 201
    assert_error(admin.post("/v1/configs/rolled/staging/rollback", json={"version": 1}), 422, "schema_violation")
    rolled_to_two = admin.post("/v1/configs/rolled/staging/rollback", json={"version": 2})
    assert rolled_to_two.status_code == 201 and rolled_to_two.json()["rolled_back_to"] == 2


def test_promotion_rules(server: ServerProcess, admin: httpx.Client) -> None:
    assert push(admin, "promoted", "development", "n: 1\n").status_code == 201
    assert push(admin, "promoted", "development", "n: 2\n").status_code == 201
    dry = admin.post("/v1/configs/promoted/staging/promote", json={"from": "development", "dry_run": True})
    assert dry.status_code == 200
    assert dry.json()["would_create"] is True
    assert dry.json()["diff"]["changes"] == [{"op": "add", "path": "/n", "new": 2}]
    assert_error(admin.get("/v1/configs/promoted/staging"), 404, "not_found")  # nothing stored
    promoted = admin.post("/v1/configs/promoted/staging/promote", json={"from": "development", "version": 1})
    assert promoted.status_code == 201
    body = promoted.json()
    assert body["kind"] == "promote" and body["promoted_from"] == {"environment": "development", "version": 1}
    again = admin.post("/v1/configs/promoted/staging/promote", json={"from": "development", "version": 1})
    assert again.status_code == 200 and again.json()["version"] == 1
    current = admin.post("/v1/configs/promoted/staging/promote", json={"from": "development"})
    assert current.status_code == 201 and current.json()["promoted_from"]["version"] == 2
    # Only one step along the pipeline.
    assert_error(admin.post("/v1/configs/promoted/production/promote", json={"from": "development"}), 409, "conflict")
    assert_error(admin.post("/v1/configs/promoted/staging/promote", json={"from": "production"}), 409, "conflict")
    assert_error(admin.post("/v1/configs/promoted/development/promote", json={"from": "staging"}), 409, "conflict")
    assert_error(admin.post("/v1/configs/promoted/staging/promote", json={"from": "development", "version": 7}), 404, "not_found")
    assert_error(admin.post("/v1/configs/promoted/staging/promote", json={"dry_run": True}), 400, "bad_request")
    # Validated against the schema of the service.
    assert admin.put("/v1/schemas/promoted", json={"properties": {"n": {"maximum": 2}}}).status_code == 201
    assert push(admin, "promoted", "staging", "n: 2\n").status_code == 200
    # Writers promote only into environments they hold.
    writer = server.create_token("writer", ["promoted"], ["staging", "production"])
    with server.client(writer) as client:
        assert client.post("/v1/configs/promoted/production/promote", json={"from": "staging"}).status_code == 201
    staging_only = server.create_token("writer", ["promoted"], ["development", "staging"])
    with server.client(staging_only) as client:
        assert_error(client.post("/v1/configs/promoted/production/promote", json={"from": "staging"}), 403, "forbidden")


def test_instances_show_drift_and_staleness(tmp_path: Path) -> None:
    server = ServerProcess(make_root(tmp_path), "--no-sync", environ={"TSKCFG_INSTANCE_REPORT_INTERVAL": "0.3"}, open_services=True).start()
    try:
        reader = server.create_token("reader", ["fleet"], ["staging"])
        with server.client(server.admin_token) as admin, server.client(reader) as client:
            assert push(admin, "fleet", "staging", "n: 1\n").status_code == 201
            digest = admin.get("/v1/configs/fleet/staging").json()["hash"]
            report = {"service": "fleet", "environment": "staging", "version": 1, "hash": digest}
            assert client.post("/v1/instances", json={**report, "instance_id": "a", "status": "applied"}).status_code == 204
            assert client.post("/v1/instances", json={**report, "instance_id": "b", "status": "failed", "error": "boom"}).status_code == 204
            assert push(admin, "fleet", "staging", "n: 2\n").status_code == 201
            assert client.post("/v1/instances", json={**report, "version": 2, "instance_id": "a", "status": "applied"}).status_code == 204
            listed = {item["instance_id"]: item for item in client.get("/v1/configs/fleet/staging/instances").json()["instances"]}
            assert listed["a"]["version"] == 2 and listed["a"]["behind"] is False and listed["a"]["stale"] is False
            assert listed["b"]["behind"] is True and listed["b"]["status"] == "failed" and listed["b"]["error"] == "boom"
            assert set(listed["a"]) == {"instance_id", "version", "hash", "status", "error", "failed_version", "last_seen", "stale", "behind"}
            time.sleep(1.0)
            assert client.post("/v1/instances", json={**report, "version": 2, "instance_id": "a", "status": "applied"}).status_code == 204
            listed = {item["instance_id"]: item for item in client.get("/v1/configs/fleet/staging/instances").json()["instances"]}
            assert listed["a"]["stale"] is False and listed["b"]["stale"] is True
            for bad in ({**report, "instance_id": "c", "status": "sleeping"}, {**report, "status": "applied"},
                        {**report, "instance_id": "c", "status": "applied", "version": "2"}):
                assert_error(client.post("/v1/instances", json=bad), 400, "bad_request")
            assert_error(client.post("/v1/instances", json={**report, "environment": "production", "instance_id": "c", "status": "applied"}), 403, "forbidden")
    finally:
        server.stop()


def _wait_for(predicate: object, timeout: float = 10) -> bool:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_file_sync_watches_documents(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    document = root / "environments" / "staging" / "user-service.tsk"
    shutil.copy(REPOSITORY / "environments" / "staging" / "user-service.tsk", document)
    server = ServerProcess(root, "--no-access-log", open_services=True).start()
    try:
        with server.client(server.admin_token) as admin:
            def version() -> int:
                return int(admin.get("/v1/configs/user-service/staging").json()["version"])

            assert version() == 1
            original = document.read_text()
            document.write_text(original.replace("pool_size: 10", "pool_size: 11"))
            assert _wait_for(lambda: version() == 2)
            current = admin.get("/v1/configs/user-service/staging").json()
            assert current["kind"] == "sync" and current["author"] == "file:staging/user-service.tsk"
            # A broken file: logged, audited, the current version stays.
            document.write_text(original + "\nbroken: \"\n")
            assert _wait_for(lambda: bool(admin.get("/v1/audit", params={"action": "sync_failed"}).json()["entries"]))
            assert version() == 2
            # Writes within the debounce window become one version.
            for size in (12, 13, 14):
                document.write_text(original.replace("pool_size: 10", f"pool_size: {size}"))
                time.sleep(0.05)
            assert _wait_for(lambda: version() == 3)
            time.sleep(0.8)
            assert version() == 3
            assert admin.get("/v1/configs/user-service/staging").json()["config"]["database"]["pool_size"] == 14
            # A folder made after start is read at once.
            folder = root / "environments" / "production"
            shutil.rmtree(folder)
            folder.mkdir()
            (folder / "late.tsk").write_text(USER_SERVICE.replace('"user-service"', '"late"'))
            assert _wait_for(lambda: admin.get("/v1/configs/late/production").status_code == 200)
    finally:
        server.stop()


def _gauge(server: ServerProcess, kind: str) -> float:
    for line in httpx.get(server.url + "/metrics").text.splitlines():
        if line.startswith(f'tskcfg_watchers{{kind="{kind}"}}'):
            return float(line.split()[-1])
    return 0.0


def test_disconnected_long_polls_are_dropped(server: ServerProcess, admin: httpx.Client) -> None:
    import socket

    assert push(admin, "left", "staging", "n: 1\n").status_code == 201
    before = _gauge(server, "long_poll")
    request = (
        f"GET /v1/configs/left/staging?wait=60 HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {server.admin_token}\r\nIf-None-Match: \"1\"\r\n\r\n"
    ).encode()
    # The same through the regular handler: a document that does not exist yet, ETag "0".
    unborn = (
        f"GET /v1/configs/unborn/staging?wait=60 HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {server.admin_token}\r\nIf-None-Match: \"0\"\r\n\r\n"
    ).encode()
    sockets = []
    for index in range(20):
        connection = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        connection.sendall(request if index % 2 else unborn)
        sockets.append(connection)
    assert _wait_for(lambda: _gauge(server, "long_poll") >= before + 20)
    for connection in sockets:
        connection.close()
    assert _wait_for(lambda: _gauge(server, "long_poll") == before, timeout=5)


def test_event_stream_refusals_are_json_errors(server: ServerProcess, admin: httpx.Client) -> None:
    assert_error(httpx.get(server.url + "/v1/events"), 401, "unauthorized")
    assert_error(admin.get("/v1/events", params={"environment": "qa"}), 404, "unknown_environment")
    assert_error(admin.get("/v1/events", params={"service": "Bad Name"}), 422, "invalid_name")
    assert_error(admin.post("/v1/events"), 405, "method_not_allowed")
    metrics = httpx.get(server.url + "/metrics").text
    assert 'route="/v1/events"' in metrics


def test_stopping_the_server_answers_held_long_polls_and_ends_streams_at_once(tmp_path: Path) -> None:
    import socket

    server = ServerProcess(make_root(tmp_path), open_services=True).start()
    try:
        with server.client(server.admin_token) as admin:
            assert push(admin, "stopping", "staging", "n: 1\n").status_code == 201
        auth = f"Authorization: Bearer {server.admin_token}\r\n"
        poll = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        poll.sendall(
            f'GET /v1/configs/stopping/staging?wait=60 HTTP/1.1\r\nHost: x\r\n{auth}If-None-Match: "1"\r\n\r\n'.encode()
        )
        stream = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        stream.sendall(f"GET /v1/events HTTP/1.1\r\nHost: x\r\n{auth}\r\n".encode())
        assert stream.recv(4096).startswith(b"HTTP/1.1 200 OK")
        assert _wait_for(lambda: _gauge(server, "long_poll") == 1 and _gauge(server, "events") == 1)
        started = time.monotonic()
        server.stop()
        stopped = time.monotonic() - started

        def read_all(connection: socket.socket) -> bytes:
            data = b""
            while chunk := connection.recv(65536):
                data += chunk
            return data

        answer = read_all(poll)
        assert answer.startswith(b"HTTP/1.1 304 "), answer
        assert b'etag: "1"' in answer and b"connection: close" in answer
        assert read_all(stream).endswith(b"0\r\n\r\n")  # the stream's last chunk
        # Not held until uvicorn's graceful timeout (5 s) or the poll's 60 s.
        assert stopped < 3, stopped
    finally:
        server.kill()
