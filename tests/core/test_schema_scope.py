"""End-to-end: a schema is known by its name only, a service schema refers only to the section
schemas and itself, only an admin puts a section schema, and no answer to a schema writer
names a document outside its token's scope."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from config_service.core.access import Principal
from config_service.core.refusals import Refused
from config_service.core.schemas import schema_hash
from config_service.core.wiring import Core
from config_service.http.errors import refusal_body, status_of
from config_service.schema import SchemaInvalid, check_schema
from config_service.settings import Settings
from config_service.store import Transaction
from tests.serving import REPOSITORY, ServerProcess, assert_error, make_root, push

DRAFT_04 = "http://json-schema.org/draft-04/schema#"
PAY_SERVICE_SCHEMA = {"type": "object", "properties": {"database": {"$ref": "database.json"}}}
PAY_DOCUMENT = '[database]\nurl: "postgresql://pay:s3cret-pay@db.internal/pay"\n'
# Breaks the database section: no url, and pool_size must be at least 1.
INVALID_DATABASE = "[database]\npool_size: 0\n"


def _token(
    admin: httpx.Client, role: str, services: list[str], environments: list[str] | None = None
) -> str:
    response = admin.post(
        "/v1/tokens",
        json={
            "name": f"{role}-scope",
            "role": role,
            "services": services,
            "environments": environments or ["*"],
        },
    )
    assert response.status_code == 201, response.text
    return str(response.json()["token"])


def _paths(body: dict[str, Any]) -> list[str]:
    return [detail["path"] for detail in body["details"]]


# -- a schema is known by its name only ------------------------------------------------------


@pytest.mark.parametrize(
    ("schema", "pointer"),
    [
        ({"$id": "database.json", "type": "object"}, "/$id"),
        ({"$id": "https://schemas.example/database.json"}, "/$id"),
        ({"properties": {"db": {"$id": "database.json"}}}, "/properties/db/$id"),
        ({"$defs": {"d": {"$id": "https://schemas.example/cache.json"}}}, "/$defs/d/$id"),
        ({"$schema": DRAFT_04, "id": "database.json"}, "/$schema /id"),
        ({"allOf": [{"$schema": DRAFT_04, "id": "database.json"}]}, "/allOf/0/$schema /allOf/0/id"),
        ({"$schema": "http://json-schema.org/draft-07/schema#"}, "/$schema"),
        # An embedded $id, even the schema's own name, would make a second schema of that name.
        ({"$id": "user-evil.json", "items": {"$id": "user-evil.json"}}, "/items/$id"),
        # A `$ref` makes a schema of whatever it points at.
        ({"$ref": "#/x-shared", "x-shared": {"$id": "database.json"}}, "/x-shared/$id"),
        # ... under any spelling of the schema's own address, data positions included: this one
        # made `#/...` below it resolve inside pay-service's schema, whose words then came back
        # in the 422s of pushes to user-evil.
        (
            {
                "properties": {"secret": {}, "x": {"$ref": "user-evil.json#/default"}},
                "default": {"properties": {"y": {"$id": "pay-service.json", "$ref": "#/properties/a"}}},
            },
            "/default/properties/y/$id",
        ),
        (
            {"$ref": "./user-evil.json#/examples/0", "examples": [{"$id": "database.json"}]},
            "/examples/0/$id",
        ),
        ({"const": {"$schema": DRAFT_04, "id": "database.json"}}, "/const/$schema"),
    ],
)
def test_a_schema_whose_id_is_not_its_own_name_is_422_with_the_pointer(
    server: ServerProcess, admin: httpx.Client, schema: dict[str, Any], pointer: str
) -> None:
    with server.client(_token(admin, "writer", ["user-*"])) as writer:
        for client in (writer, admin):
            response = client.put("/v1/schemas/user-evil", json=schema)
            body = assert_error(response, 422, "invalid_schema")
            assert _paths(body) == pointer.split(), body
            assert "user-evil.json" in body["details"][-1]["message"] or "2020-12" in body["details"][-1]["message"]
    assert_error(admin.get("/v1/schemas/user-evil"), 404, "not_found")


def test_a_writer_cannot_stand_in_for_a_section_schema_through_id(
    server: ServerProcess, admin: httpx.Client
) -> None:
    assert admin.put("/v1/schemas/pay-service", json=PAY_SERVICE_SCHEMA).status_code in (200, 201)
    assert push(admin, "pay-service", "production", PAY_DOCUMENT).status_code in (200, 201)
    with server.client(_token(admin, "writer", ["user-*"])) as writer:
        # A schema that, as "database.json", would refuse pay-service's current document.
        evil = {"$id": "database.json", "type": "object", "required": ["nothing-has-this"]}
        response = writer.put("/v1/schemas/user-evil", json=evil)
        assert_error(response, 422, "invalid_schema")
        assert "s3cret-pay" not in response.text and "pay-service" not in response.text
        # Nor one that would accept anything as "database.json".
        assert_error(
            writer.put("/v1/schemas/user-evil", json={"$id": "database.json"}), 422, "invalid_schema"
        )
    # pay-service is still checked against the real database section.
    body = assert_error(
        push(admin, "pay-service", "production", INVALID_DATABASE), 422, "schema_violation"
    )
    assert sorted(_paths(body)) == ["/database/pool_size", "/database/url"]


def test_an_id_equal_to_the_schema_name_and_properties_named_id_are_accepted(
    server: ServerProcess, admin: httpx.Client
) -> None:
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "user-accounts.json",
        "type": "object",
        "required": ["id"],
        # Property names are data, not identifiers; so are examples and defaults. (A key `$id`
        # is refused anywhere below the top level: no TSK document can have one.)
        "properties": {"id": {"type": "string"}},
        "examples": [{"id": "user-1"}],
        "default": {"id": "billing.json"},
        "$defs": {"account": {"properties": {"id": {"type": "integer"}}}},
    }
    with server.client(_token(admin, "writer", ["user-*"])) as writer:
        response = writer.put("/v1/schemas/user-accounts", json=schema)
        assert response.status_code == 201, response.text
        assert push(writer, "user-accounts", "staging", 'id: "u-1"\n').status_code == 201
        body = assert_error(push(writer, "user-accounts", "staging", "other: 1\n"), 422, "schema_violation")
        assert _paths(body) == ["/id"]


def test_every_shipped_schema_complies_with_the_name_rule() -> None:
    shipped = {path.stem: json.loads(path.read_text()) for path in (REPOSITORY / "schemas").glob("*.json")}
    assert {"database", "cache", "logging", "security", "user-service"} <= set(shipped)
    for name, schema in shipped.items():
        others = {key: value for key, value in shipped.items() if key != name}
        check_schema(name, schema, others)
        assert schema.get("$id", f"{name}.json") == f"{name}.json"


# -- references: the section schemas and itself, nothing else --------------------------------


@pytest.mark.parametrize(
    "reference",
    [
        "billing-ledger.json",
        "billing-ledger.json#/properties",
        "./billing-ledger.json",
        "https://schemas.example/billing-ledger.json",
        "user-other.json",
    ],
)
def test_a_service_schema_may_not_refer_to_another_service_schema(
    server: ServerProcess, admin: httpx.Client, reference: str
) -> None:
    ledger = {"type": "object", "properties": {"signing_key": {"type": "string"}}}
    assert admin.put("/v1/schemas/billing-ledger", json=ledger).status_code in (200, 201)
    assert admin.put("/v1/schemas/user-other", json={"type": "object"}).status_code in (200, 201)
    schema = {"type": "object", "properties": {"x": {"$ref": reference}}}
    with server.client(_token(admin, "writer", ["user-*"])) as writer:
        for client in (writer, admin):
            body = assert_error(client.put("/v1/schemas/user-refs", json=schema), 422, "invalid_schema")
            assert _paths(body) == ["/properties/x/$ref"], body
            assert "database.json" in body["details"][0]["message"]  # it says what it may refer to
    assert_error(admin.get("/v1/schemas/user-refs"), 404, "not_found")


def test_a_service_schema_refers_to_sections_and_to_itself(
    server: ServerProcess, admin: httpx.Client
) -> None:
    schema = {
        "$id": "user-selfref.json",
        "$defs": {"count": {"type": "integer", "minimum": 1}},
        "type": "object",
        "properties": {
            "workers": {"$ref": "#/$defs/count"},
            "threads": {"$ref": "user-selfref.json#/$defs/count"},
            "database": {"$ref": "database.json"},
            "cache": {"$ref": "./cache.json"},
        },
    }
    with server.client(_token(admin, "writer", ["user-*"])) as writer:
        assert writer.put("/v1/schemas/user-selfref", json=schema).status_code == 201
        body = assert_error(
            push(writer, "user-selfref", "staging", "workers: 0\nthreads: 0\n[cache]\nttl: -1\n"),
            422,
            "schema_violation",
        )
        assert _paths(body) == ["/cache/ttl", "/threads", "/workers"]


def test_a_writer_cannot_squat_another_team_schema(server: ServerProcess, admin: httpx.Client) -> None:
    owner_token = _token(admin, "writer", ["billing-*"])
    with server.client(owner_token) as owner, server.client(_token(admin, "writer", ["user-*"])) as squatter:
        first = {"type": "object", "properties": {"key_name": {"type": "string", "pattern": "^hsm-"}}}
        assert owner.put("/v1/schemas/billing-pay", json=first).status_code == 201
        # billing-pay has no document yet: still not the squatter's to refer to, nor to read.
        body = assert_error(
            squatter.put("/v1/schemas/user-squat", json={"$ref": "billing-pay.json"}),
            422,
            "invalid_schema",
        )
        assert _paths(body) == ["/$ref"]
        assert_error(squatter.get("/v1/schemas/billing-pay"), 403, "forbidden")
        # The owners keep their schema.
        second = {**first, "required": ["key_name"]}
        response = owner.put("/v1/schemas/billing-pay", json=second)
        assert response.status_code == 201, response.text


# -- numbers in schemas are finite -----------------------------------------------------------


@pytest.mark.parametrize("number", ["1e999", "-1e999", "1E400"])
def test_a_schema_number_that_is_not_finite_is_400(admin: httpx.Client, number: str) -> None:
    body = b'{"type": "number", "maximum": ' + number.encode() + b"}"
    response = admin.put(
        "/v1/schemas/user-infinite", content=body, headers={"Content-Type": "application/json"}
    )
    error = assert_error(response, 400, "bad_request")
    assert number in error["message"] and "finite" in error["message"]
    assert_error(admin.get("/v1/schemas/user-infinite"), 404, "not_found")


def test_a_schema_value_that_is_not_finite_is_invalid_with_its_pointer() -> None:
    for value in (math.inf, -math.inf, math.nan):
        with pytest.raises(SchemaInvalid) as raised:
            check_schema("svc", {"properties": {"n": {"maximum": value}}}, {})
        assert raised.value.details[0]["path"] == "/properties/n/maximum"


# -- schemas/ files at start ------------------------------------------------------------------


def test_schema_files_that_break_the_rules_are_refused_at_start(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    schemas = root / "schemas"
    (schemas / "user-evil.json").write_text('{"$id": "database.json", "type": "object"}')
    (schemas / "user-infinite.json").write_text('{"type": "number", "maximum": 1e999}')
    (schemas / "user-squat.json").write_text('{"$ref": "user-service.json"}')
    process = ServerProcess(root, open_services=True).start()
    try:
        with process.client(process.admin_token) as admin:
            for name in ("user-evil", "user-infinite", "user-squat"):
                assert_error(admin.get(f"/v1/schemas/{name}"), 404, "not_found")
            refused = admin.get("/v1/audit", params={"action": "schema_refused"}).json()["entries"]
            pointers = {entry["service"]: _paths(entry["detail"]) for entry in refused}
            assert pointers == {
                "user-evil": ["/$id"],
                "user-infinite": ["/maximum"],
                "user-squat": ["/$ref"],
            }
            assert admin.get("/v1/schemas/user-service").status_code == 200
        assert "user-evil.json was not imported" in process.log()
    finally:
        process.stop()


# -- section schemas -------------------------------------------------------------------------

TRACING_SCHEMA = {"$id": "tracing.json", "type": "object", "properties": {"rate": {"type": "number"}}}


@pytest.fixture(scope="module")
def sectioned(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server whose section list adds `tracing` (its schema in schemas/)."""
    root = make_root(tmp_path_factory.mktemp("sectioned"))
    (root / "schemas" / "tracing.json").write_text(json.dumps(TRACING_SCHEMA))
    process = ServerProcess(root, "--sections", "tracing", open_services=True).start()
    try:
        yield process
    finally:
        process.stop()


def test_only_an_admin_puts_a_section_schema(sectioned: ServerProcess) -> None:
    with sectioned.client(sectioned.admin_token) as admin:
        everything = _token(admin, "writer", ["*"])
        with sectioned.client(everything) as writer:
            for name in ("database", "tracing"):
                current = admin.get(f"/v1/schemas/{name}").json()["schema"]
                changed = {**current, "title": "changed by a writer"}
                body = assert_error(writer.put(f"/v1/schemas/{name}", json=changed), 403, "forbidden")
                assert "admin" in body["message"] and name in body["message"]
                # Refused before the body is read: a malformed one gets the same answer.
                assert_error(
                    writer.put(
                        f"/v1/schemas/{name}", content=b"{", headers={"Content-Type": "application/json"}
                    ),
                    403,
                    "forbidden",
                )
            # A service schema is still the writer's to put.
            assert writer.put("/v1/schemas/tracer", json={"type": "object"}).status_code == 201
        changed = {**TRACING_SCHEMA, "title": "tracing section"}
        assert admin.put("/v1/schemas/tracing", json=changed).status_code == 201


def test_every_token_reads_the_section_schemas_and_only_its_services(sectioned: ServerProcess) -> None:
    with sectioned.client(sectioned.admin_token) as admin:
        assert admin.put("/v1/schemas/billing", json={"type": "object"}).status_code == 201
        reader_token = _token(admin, "reader", ["user-*"], ["staging"])
    with sectioned.client(reader_token) as reader:
        for name in ("database", "cache", "logging", "security", "tracing"):
            assert reader.get(f"/v1/schemas/{name}").status_code == 200, name
            assert reader.get(f"/v1/schemas/{name}/versions").status_code == 200, name
            assert reader.get(f"/v1/schemas/{name}/versions/1").status_code == 200, name
        assert reader.get("/v1/schemas/user-service").status_code == 200
        for path in ("/v1/schemas/billing", "/v1/schemas/billing/versions", "/v1/schemas/billing/versions/1"):
            assert_error(reader.get(path), 403, "forbidden")


def test_a_service_schema_refers_to_a_configured_section(
    sectioned: ServerProcess, server: ServerProcess, admin: httpx.Client
) -> None:
    schema = {"type": "object", "properties": {"tracing": {"$ref": "tracing.json"}}}
    with sectioned.client(sectioned.admin_token) as sectioned_admin:
        token = _token(sectioned_admin, "writer", ["user-*"])
    with sectioned.client(token) as writer:
        assert writer.put("/v1/schemas/user-traced", json=schema).status_code == 201
        body = assert_error(push(writer, "user-traced", "staging", '[tracing]\nrate: "all"\n'), 422, "schema_violation")
        assert _paths(body) == ["/tracing/rate"]
    # Where `tracing` is not a section it is a service like any other: not to be referred to.
    assert admin.put("/v1/schemas/tracing", json=TRACING_SCHEMA).status_code in (200, 201)
    assert_error(admin.put("/v1/schemas/user-traced", json=schema), 422, "invalid_schema")


# -- in-process: a section name that is a service, legacy schemas, hidden conflicts -----------


def _admin(server: Core) -> Principal:
    principal = server.tokens.authenticate(server.settings.admin_token_path.read_text().strip())
    assert principal is not None
    return principal


def _writer(services: str) -> Principal:
    return Principal(None, "writer-scope", "writer", (services,), ("*",))


def _store_as_before(server: Core, name: str, schema: dict[str, Any]) -> None:
    """Store a schema as a server without these rules may have stored it (no check at all)."""

    def operation(transaction: Transaction) -> None:
        transaction.append_schema(name, json.dumps(schema), schema_hash(schema), "admin", None, None)

    server.store.write(operation, exclusive=True)


def _started(data_dir: Path, **settings: Any) -> Core:
    server = Core(Settings(data_dir=data_dir / "data", sync=False, access_log=False, **settings, open_services=True))
    server.start()
    return server


def test_a_section_schema_cannot_take_the_name_of_a_service(tmp_path: Path) -> None:
    server = _started(tmp_path)
    try:
        server.documents.push(_admin(server), "metrics-agent", "staging", "a: 1\n")
    finally:
        server.stop()
    server = _started(tmp_path, sections=("database", "cache", "logging", "security", "metrics-agent"))
    try:
        with pytest.raises(Refused) as raised:
            server.schemas.put(_admin(server), "metrics-agent", {"type": "object"})
        assert (status_of(raised.value), raised.value.code) == (422, "invalid_name")
        assert "metrics-agent" in raised.value.message
    finally:
        server.stop()


def test_a_stored_schema_with_a_foreign_id_no_longer_stands_in_for_another(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = _started(tmp_path)
    try:
        admin = _admin(server)
        database = json.loads((REPOSITORY / "schemas" / "database.json").read_text())
        server.schemas.put(admin, "database", database)
        server.schemas.put(admin, "pay-service", PAY_SERVICE_SCHEMA)
        # Stored by an older server: it would answer for "database.json" as well.
        _store_as_before(server, "user-evil", {"$id": "database.json"})
    finally:
        server.stop()
    server = _started(tmp_path)
    try:
        with pytest.raises(Refused) as raised:
            server.documents.push(_admin(server), "pay-service", "staging", INVALID_DATABASE)
        assert raised.value.code == "schema_violation"
        assert "user-evil" in caplog.text and "database.json" in caplog.text
    finally:
        server.stop()


def test_conflict_details_name_only_documents_in_the_token_scope(tmp_path: Path) -> None:
    server = _started(tmp_path)
    try:
        admin = _admin(server)
        server.schemas.put(admin, "user-lib", {"type": "object"})
        server.documents.push(admin, "user-lib", "staging", "size: 1\n")
        server.documents.push(admin, "user-lib", "production", "size: 2\n")
        # An older server let billing's schema refer to user-lib's; its document then
        # depends on user-lib's schema too.
        _store_as_before(server, "billing", {"properties": {"ledger": {"$ref": "user-lib.json"}}})
    finally:
        server.stop()
    server = _started(tmp_path)
    try:
        admin = _admin(server)
        server.documents.push(admin, "billing", "production", '[ledger]\nsize: "s3cret-ledger"\n')
        stricter = {"type": "object", "properties": {"size": {"type": "integer", "minimum": 5}}}
        with pytest.raises(Refused) as raised:
            server.schemas.put(_writer("user-*"), "user-lib", stricter)
        error = raised.value
        assert (status_of(error), error.code) == (409, "schema_conflict")
        assert {(d["service"], d["environment"], d["path"]) for d in error.details} == {
            ("user-lib", "staging", "/size"),
            ("user-lib", "production", "/size"),
        }
        assert "billing" not in json.dumps(error.details) + error.message
        assert "s3cret-ledger" not in refusal_body(error).decode()
        assert "1 document outside this token's scope" in error.message
        # Only documents outside the scope fail: still refused, and still nothing named.
        integers = {"properties": {"size": {"type": "integer"}}}
        with pytest.raises(Refused) as raised:
            server.schemas.put(_writer("user-*"), "user-lib", integers)
        assert (status_of(raised.value), raised.value.details) == (409, [])
        assert "1 document outside this token's scope" in raised.value.message
        assert "billing" not in raised.value.message
        # An admin sees every document.
        with pytest.raises(Refused) as raised:
            server.schemas.put(admin, "user-lib", stricter)
        assert ("billing", "production", "/ledger/size") in {
            (d["service"], d["environment"], d["path"]) for d in raised.value.details
        }
        assert "outside" not in raised.value.message
    finally:
        server.stop()


def test_no_document_can_be_pushed_under_a_section_name(tmp_path: Path) -> None:
    server = _started(tmp_path)
    try:
        for section in ("database", "logging"):
            with pytest.raises(Refused) as raised:
                server.documents.push(_admin(server), section, "staging", "url: \"x\"\n")
            assert (status_of(raised.value), raised.value.code) == (422, "invalid_name")
            assert "section schema" in raised.value.message
            assert server.versions.current(section, "staging") is None
    finally:
        server.stop()
