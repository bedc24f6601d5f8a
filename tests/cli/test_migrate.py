"""`tskcfg migrate`: a SQLite store with history moves into PostgreSQL and is served from there
with the old token; a target that is not empty, a source in use and bad URLs are refused."""

from __future__ import annotations

import subprocess
from pathlib import Path

import psycopg
from click.testing import CliRunner

from config_service.cli import main
from tests.postgres import PostgresServer
from tests.serving import TSKCFG, ServerProcess, make_root, push


def _migrate(root: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(TSKCFG), "migrate", *arguments], cwd=root, capture_output=True, text=True, timeout=120
    )


def _snapshot(server: ServerProcess, token: str) -> dict[str, object]:
    """What a user sees of the store, through the API."""
    with server.client(token) as client:
        return {
            "history": client.get("/v1/configs/fleet/staging/versions").json(),
            "production": client.get("/v1/configs/fleet/production").json(),
            "version-1": client.get("/v1/configs/fleet/staging/versions/1").json(),
            "tokens": client.get("/v1/tokens").json(),
            "audit": client.get("/v1/audit", params={"limit": 500}).json(),
            "instances": client.get("/v1/configs/fleet/staging/instances").json(),
            "schema": client.get("/v1/schemas/database").json(),
        }


def test_a_store_with_history_moves_to_postgresql_and_serves_the_same(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    root = make_root(tmp_path / "old")
    old = ServerProcess(root, "--no-access-log", open_services=True).start()
    token = old.admin_token
    try:
        reader = old.create_token("reader", ["fleet"], ["*"], name="fleet-reader")
        with old.client(token) as admin, old.client(reader) as client:
            for number in range(1, 6):
                assert push(admin, "fleet", "staging", f"n: {number}\n", f"push {number}").status_code == 201
            assert admin.post("/v1/configs/fleet/production/promote", json={"from": "staging"}).status_code == 201
            digest = admin.get("/v1/configs/fleet/staging").json()["hash"]
            report = {"service": "fleet", "environment": "staging", "version": 5, "hash": digest}
            assert client.post("/v1/instances", json={**report, "instance_id": "a", "status": "applied"}).status_code == 204
        before = _snapshot(old, token)
        # The source is in use: refused, naming the process.
        dsn = postgres.create_database()
        busy = _migrate(root, "--from", "sqlite:///data/config.db", "--to", dsn)
        assert busy.returncode == 1 and "in use by process" in busy.stderr, busy.stderr
    finally:
        old.stop()

    # Relative to the current folder (three slashes).
    moved = _migrate(root, "--from", "sqlite:///data/config.db", "--to", dsn)
    assert moved.returncode == 0, moved.stderr
    lines = moved.stdout.splitlines()
    assert lines[0] == f"copied sqlite:///data/config.db to {dsn}"
    counts = {line.split()[0]: int(line.split()[1]) for line in lines[2:-1]}
    assert counts["versions"] == 6 and counts["tokens"] == 2 and counts["instances"] == 1
    assert counts["audit"] >= 8 and counts["schemas"] >= 4
    assert counts["documents"] == 2 and counts["services"] >= 1 and counts["sequence"] == 6
    assert lines[-1].startswith("verified: ") and "every count and hash matches" in lines[-1]

    # Served from PostgreSQL by a new server (a new data folder), with the old token.
    new = ServerProcess(make_root(tmp_path / "new"), "--no-access-log", "--store", dsn).start()
    try:
        assert not (new.data_dir / "admin.token").exists()  # tokens exist: none is made
        after = _snapshot(new, token)
        assert after == before
        with new.client(token) as admin:
            created = push(admin, "fleet", "staging", "n: 6\n")
            assert created.status_code == 201 and created.json()["version"] == 6
            # The event ids continue the old sequence.
            with admin.stream("GET", "/v1/events", headers={"Last-Event-ID": "6"}, timeout=10) as events:
                ids = []
                for line in events.iter_lines():
                    if line.startswith("id: "):
                        ids.append(int(line[4:]))
                        break
            assert ids == [7]
    finally:
        new.stop()

    # Again into the same (now filled) database: refused, nothing changed.
    again = _migrate(root, "--from", "sqlite:///data/config.db", "--to", dsn)
    assert again.returncode == 1
    assert "is not empty (" in again.stderr and "versions (7 rows)" in again.stderr
    with psycopg.connect(dsn) as connection:
        assert connection.execute("SELECT COUNT(*) FROM versions").fetchone() == (7,)


def test_an_absolute_sqlite_url_and_bad_urls(postgres: PostgresServer, tmp_path: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(main, ["migrate", "--from", f"sqlite:///{tmp_path}/none.db", "--to", postgres.dsn])
    assert missing.exit_code == 1 and f"there is no SQLite store at {tmp_path}/none.db" in missing.stderr
    for source, target, says in (
        ("mysql://x/y", postgres.dsn, "--from: 'mysql://x/y' is not a store URL"),
        (f"sqlite:///{tmp_path}/a.db", "sqlite:///b.db", "--to must be a PostgreSQL store URL"),
        ("postgresql://a:secret@h/db", postgres.dsn, "--from must be a SQLite store URL"),
    ):
        result = runner.invoke(main, ["migrate", "--from", source, "--to", target])
        assert result.exit_code in (1, 2) and says in result.stderr, result.output
        assert "secret" not in result.output
