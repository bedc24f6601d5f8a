"""`tskcfg service create`, and what `promote --dry-run` and `diff` say about environment-local values."""

from __future__ import annotations

import json

from .conftest import Server


def test_service_create_says_whether_it_made_the_service(server: Server) -> None:
    made = server.cli("service", "create", "ledger")
    assert made.exit_code == 0, made.output
    assert made.stdout == "service ledger created\n"
    again = server.cli("service", "create", "ledger", "--json")
    assert again.exit_code == 0 and json.loads(again.stdout)["origin"] == "api"
    bad = server.cli("service", "create", "Not A Name")
    assert bad.exit_code == 1 and "not valid" in bad.output
    reader = server.process.create_token("reader", ["*"], ["*"], name="reader")
    refused = server.cli("service", "create", "other", token=reader)
    assert refused.exit_code == 1 and "admin" in refused.output


def test_promote_dry_run_and_diff_show_the_local_paths(server: Server) -> None:
    schema = {"type": "object", "properties": {"url": {"x-environment-local": True}}}
    with server.http() as admin:
        assert admin.put("/v1/schemas/notes", json=schema).status_code == 201
    assert server.cli("push", "notes", "development", "-", input='url: "http://dev"\nn: 2\n').exit_code == 0
    assert server.cli("push", "notes", "staging", "-", input='url: "http://stg"\nn: 1\n').exit_code == 0
    preview = server.cli("promote", "notes", "--from", "development", "--to", "staging", "--dry-run")
    assert preview.exit_code == 0, preview.output
    assert "~ /n: 1 -> 2" in preview.stdout
    assert "kept from staging (environment-local): /url" in preview.stdout
    diff = server.cli("diff", "notes", "--from-env", "development", "--to-env", "staging")
    assert diff.exit_code == 0, diff.output
    assert '~ /url: "http://dev" -> "http://stg"  (local)' in diff.stdout
    assert "~ /n: 2 -> 1\n" in diff.stdout
