"""The document hash is a function of the data alone: same data, any spelling, same hash."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from config_service import tsk
from config_service.tsk import EnvRef

SPELLINGS = [
    # the plain way
    """\
name: "user-service"
port: @env("PORT", 8001)

[database]
url: @env("DATABASE_URL")
pool_size: 20
options: {retries: 3, verbose: false}
hosts: ["a", "b"]
""",
    # comments, spacing, '=' instead of ':', other quotes, semicolons, commas
    """\
# the user service
name = 'user-service';   # quoted the other way
port =   @env( 'PORT' , 8001 ) ;

[database]   # the database
hosts = [
    "a",   # first
    'b',
]
options = {
    verbose = false
    retries: 3,
}
pool_size: 2_0,
url: @env("DATABASE_URL")
""",
    # key order changed, a block instead of a section, a variable
    """\
$pool: 20
port: @env("PORT", 8001)
database >
    pool_size: $pool
    url: @env("DATABASE_URL")
    options: {verbose: false, retries: 3}
    hosts: ["a", "b"]
<
name: "user-service"
""",
]


def test_the_same_data_written_differently_has_one_hash() -> None:
    hashes = {tsk.document_hash(tsk.loads(text)) for text in SPELLINGS}
    assert len(hashes) == 1


def test_one_changed_value_changes_the_hash() -> None:
    base = tsk.loads(SPELLINGS[0])
    changed = tsk.loads(SPELLINGS[0].replace("pool_size: 20", "pool_size: 21"))
    assert tsk.document_hash(base) != tsk.document_hash(changed)
    # an int and a float that compare equal are different data on the wire
    as_float = tsk.loads(SPELLINGS[0].replace("pool_size: 20", "pool_size: 20.0"))
    assert tsk.document_hash(base) != tsk.document_hash(as_float)
    # a default is part of the reference
    other_default = tsk.loads(SPELLINGS[0].replace("8001", "8002"))
    assert tsk.document_hash(base) != tsk.document_hash(other_default)


def test_canonical_form_is_the_documented_json() -> None:
    data = {"b": [1, 2.5, None], "a": {"port": EnvRef("PORT", 8001), "é": EnvRef("X")}}
    expected = json.dumps(
        {"a": {"port": {"$env": "PORT", "default": 8001}, "é": {"$env": "X"}}, "b": [1, 2.5, None]},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()
    assert tsk.canonical_json(data) == expected
    assert tsk.document_hash(data) == hashlib.sha256(expected).hexdigest()


def test_section_hashes_change_only_for_the_changed_section() -> None:
    before = tsk.section_hashes(tsk.loads(SPELLINGS[0]))
    after = tsk.section_hashes(tsk.loads(SPELLINGS[0].replace("pool_size: 20", "pool_size: 5")))
    assert set(before) == {"name", "port", "database"}
    assert [key for key in before if before[key] != after[key]] == ["database"]
    assert before["name"] == tsk.document_hash("user-service")


def test_wire_form_of_env_references() -> None:
    data = {"port": EnvRef("PORT", 8001), "host": EnvRef("DB_HOST"), "list": [EnvRef("A", [1])]}
    wire = tsk.to_wire(data)
    assert wire == {
        "port": {"$env": "PORT", "default": 8001},
        "host": {"$env": "DB_HOST"},
        "list": [{"$env": "A", "default": [1]}],
    }
    assert tsk.from_wire(wire) == data


def test_from_wire_refuses_malformed_references() -> None:
    import pytest

    for bad in (
        {"$env": "A", "extra": 1},
        {"$env": 5},
        {"$env": "1A"},
        {"$other": 1},
        {"a": {"$env": "A", "default": {"$env": "B"}}},
    ):
        with pytest.raises(ValueError):
            tsk.from_wire(bad)


def test_env_ref_is_a_frozen_value() -> None:
    assert EnvRef("A", 1) == EnvRef("A", 1)
    assert EnvRef("A") != EnvRef("A", None)
    assert not EnvRef("A").has_default
    assert EnvRef("A", None).has_default
    assert EnvRef("A").default is tsk.MISSING


def test_tsk_class_gives_the_seed_shape(tmp_path: Path) -> None:
    path = tmp_path / "service.tsk"
    path.write_text('[microservice]\nname: "user-service"\nhealth: { interval: 30 }\n')
    config = tsk.TSK.from_file(path)
    assert config.get("microservice.name") == "user-service"
    assert config.get("microservice.health.interval") == 30
    assert config.get("microservice.missing", "fallback") == "fallback"
    assert config.get("microservice.name.deeper") is None
    assert config.hash == tsk.document_hash(config.to_dict())
    copy = config.to_dict()
    copy["microservice"]["name"] = "changed"
    assert config.get("microservice.name") == "user-service"
    assert tsk.TSK.from_string(path.read_text()).hash == config.hash


def test_wire_hash_is_the_document_hash_of_the_wire_form() -> None:
    data = tsk.loads(SPELLINGS[0])
    assert tsk.wire_hash(tsk.to_wire(data)) == tsk.document_hash(data)
    assert tsk.wire_hash(json.loads(json.dumps(tsk.to_wire(data)))) == tsk.document_hash(data)


def test_a_lone_surrogate_has_no_hash_and_the_error_says_where() -> None:
    import pytest

    for data, where in (
        ({"db": {"url": "caf\udce9"}}, "at /db/url"),
        ({"hosts": ["a", "\ud800"]}, "at /hosts/1"),
        ({"db": {"\udfff": 1}}, "at /db"),
        ({"port": EnvRef("PORT", "\ud83d")}, "at /port/default"),
    ):
        with pytest.raises(ValueError) as refused:
            tsk.document_hash(data)
        assert not isinstance(refused.value, UnicodeError)
        assert "lone surrogate" in str(refused.value)
        assert where in str(refused.value)


def test_from_wire_refuses_lone_surrogates_in_strings_and_keys() -> None:
    import pytest

    # What a JSON answer holding "\ud800" decodes to.
    for wire in (
        json.loads('{"a": "\\ud800"}'),
        json.loads('{"a": ["x", {"\\udc00": 1}]}'),
        json.loads('{"a": {"$env": "A", "default": "\\udfff"}}'),
    ):
        with pytest.raises(ValueError) as refused:
            tsk.from_wire(wire)
        assert "lone surrogate" in str(refused.value)
