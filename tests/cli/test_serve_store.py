"""`tskcfg serve --store URL`: servers sharing one PostgreSQL, the first admin token made once,
writes refused with 503 (reads still served) while PostgreSQL is stopped; a SQLite file named
by URL is held like the data folder."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.postgres import PostgresServer, start_postgres
from tests.serving import USER_SERVICE, ServerProcess, assert_error, make_root, push


def _document(version: str) -> str:
    return USER_SERVICE.replace('version: "1.0.0"', f'version: "{version}"')


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    server = start_postgres()
    try:
        yield server
    finally:
        server.remove()


def test_two_servers_share_one_postgresql_store(own_postgres: PostgresServer, tmp_path: Path) -> None:
    dsn = own_postgres.create_database()
    first = ServerProcess(make_root(tmp_path / "a"), "--store", dsn, "--no-access-log").start()
    second: ServerProcess | None = None
    try:
        token = first.admin_token
        # Only local files in the data folder: no SQLite file.
        assert not (first.data_dir / "config.db").exists()
        with first.client(token) as client:
            for number in (1, 2):
                response = push(client, "user-service", "staging", _document(f"1.0.{number}"))
                assert response.status_code == 201, response.text
        # A second server on the same store (through TSKCFG_STORE) makes no admin token of its
        # own, takes the first one's, and sees what it stored.
        second = ServerProcess(
            make_root(tmp_path / "b"), "--no-access-log", environ={"TSKCFG_STORE": dsn}
        ).start()
        assert not (second.data_dir / "admin.token").exists()
        with second.client(token) as client:
            current = client.get("/v1/configs/user-service/staging")
            assert current.status_code == 200 and current.json()["version"] == 2
            history = client.get("/v1/configs/user-service/staging/versions").json()
            assert [item["version"] for item in history["versions"]] == [2, 1]
            tokens = client.get("/v1/tokens").json()["tokens"]
            assert [item["name"] for item in tokens] == ["admin"]

        own_postgres.stop()
        with first.client(token) as client:
            refused = push(client, "user-service", "staging", _document("2.0.0-away"))
            body = assert_error(refused, 503, "store_unavailable")
            assert "cannot reach its store (PostgreSQL)" in body["message"]
            assert refused.headers["retry-after"] == "1"
            # Reads are answered from memory meanwhile.
            served = client.get("/v1/configs/user-service/staging")
            assert served.status_code == 200 and served.json()["version"] == 2
            health = client.get("/health")
            assert health.status_code == 200
            assert {k: health.json()[k] for k in ("status", "store")} == {"status": "degraded", "store": "unavailable"}
        own_postgres.start()
        with first.client(token) as client:
            resumed = push(client, "user-service", "staging", _document("2.0.0-back"))
            assert resumed.status_code == 201, resumed.text
            assert resumed.json()["version"] == 3
            assert client.get("/health").json()["status"] == "ok"
    finally:
        first.stop()
        if second is not None:
            second.stop()


def test_a_server_whose_postgresql_is_away_does_not_start(own_postgres: PostgresServer, tmp_path: Path) -> None:
    dsn = own_postgres.create_database()
    own_postgres.stop()
    server = ServerProcess(make_root(tmp_path), "--store", dsn)
    with pytest.raises(RuntimeError, match="PostgreSQL store cannot be reached"):
        server.start(timeout=30)


def test_a_sqlite_url_names_the_file_and_its_folder_is_held(tmp_path: Path) -> None:
    root = make_root(tmp_path / "root")
    (tmp_path / "store").mkdir()
    url = f"sqlite:///{tmp_path}/store/config.db"  # four slashes in all: an absolute path
    first = ServerProcess(root, "--store", url, "--no-access-log").start()
    try:
        with first.client(first.admin_token) as client:
            assert push(client, "user-service", "staging", _document("1.0.1")).status_code == 201
        assert (tmp_path / "store" / "config.db").is_file()
        assert not (first.data_dir / "config.db").exists()
        second = ServerProcess(make_root(tmp_path / "other"), "--store", url)
        with pytest.raises(RuntimeError, match="is in use by process"):
            second.start()
    finally:
        first.stop()


def test_two_servers_starting_together_on_an_empty_store_make_one_admin_token(
    postgres_dsn: str, tmp_path: Path
) -> None:
    servers = [
        ServerProcess(make_root(tmp_path / name), "--store", postgres_dsn, "--no-access-log", "--no-sync")
        for name in ("a", "b", "c")
    ]
    threads = [threading.Thread(target=server.start, kwargs={"timeout": 60}) for server in servers]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=90)
        written = [server for server in servers if (server.data_dir / "admin.token").exists()]
        assert len(written) == 1
        token = written[0].admin_token
        for server in servers:
            with server.client(token) as client:
                listed = client.get("/v1/tokens")
                assert listed.status_code == 200, server.log()
                assert [item["name"] for item in listed.json()["tokens"]] == ["admin"]
    finally:
        for server in servers:
            server.stop()


def test_a_push_through_one_server_wakes_a_long_poll_on_the_other(
    postgres_dsn: str, tmp_path: Path
) -> None:
    """Replicas follow each other through the store's notifications: a long poll held by B
    wakes with the version pushed through A, and a token revoked through A stops working on B."""
    first = ServerProcess(make_root(tmp_path / "a"), "--store", postgres_dsn, "--no-access-log").start()
    second = ServerProcess(
        make_root(tmp_path / "b"), "--store", postgres_dsn, "--no-access-log", "--no-sync"
    ).start()
    try:
        token = first.admin_token
        with first.client(token) as a:
            assert push(a, "user-service", "staging", _document("1.0.1")).status_code == 201
            reader = a.post(
                "/v1/tokens",
                json={"name": "r", "role": "reader", "services": ["*"], "environments": ["*"]},
            ).json()
        answers: list[httpx.Response] = []

        def wait_on_second() -> None:
            with second.client(token, timeout=30) as b:
                answers.append(
                    b.get(
                        "/v1/configs/user-service/staging",
                        params={"wait": 20},
                        headers={"If-None-Match": '"1"'},
                    )
                )

        waiter = threading.Thread(target=wait_on_second)
        waiter.start()
        time.sleep(0.5)
        started = time.monotonic()
        with first.client(token) as a:
            assert push(a, "user-service", "staging", _document("1.0.2")).status_code == 201
        waiter.join(timeout=30)
        assert answers and answers[0].status_code == 200, answers
        assert answers[0].json()["version"] == 2
        assert time.monotonic() - started < 5
        # A token revoked through A stops working on B within a few seconds.
        with second.client(reader["token"]) as b:
            assert b.get("/v1/configs/user-service/staging").status_code == 200
        with first.client(token) as a:
            assert a.delete(f"/v1/tokens/{reader['id']}").status_code == 204
        deadline = time.monotonic() + 5
        with second.client(reader["token"]) as b:
            while b.get("/v1/configs/user-service/staging").status_code != 401:
                assert time.monotonic() < deadline, "B still accepts the revoked token"
                time.sleep(0.1)
    finally:
        first.stop()
        second.stop()
