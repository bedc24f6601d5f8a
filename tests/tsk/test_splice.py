"""`tsk.write_values`: new values written into a text in place, the rest of it as it was."""

from __future__ import annotations

import pytest

from config_service import tsk
from config_service.tsk import EnvRef

TEXT = """\
# head comment
$region: "eu-west-1"

name: "api"  # the name
limits: { burst: 5, per_minute: 60 }

[database]
# where it lives
url: @env("DATABASE_URL", "postgresql://db.a:5432/x")
pool_size: 2

[security]
region: $region
origins: ["https://a"]
loggers {
    http: "DEBUG"
}
"""


def test_a_pair_gets_its_value_replaced_and_everything_else_stays() -> None:
    out = tsk.write_values(TEXT, {("database", "pool_size"): 20, ("database", "url"): EnvRef("DATABASE_URL", "pg://b")})
    assert out == TEXT.replace("pool_size: 2", "pool_size: 20").replace(
        '"postgresql://db.a:5432/x"', '"pg://b"'
    )


def test_a_variable_use_is_replaced_and_the_definition_it_no_longer_needs_goes() -> None:
    out = tsk.write_values(TEXT, {("security", "region"): "us-east-1"})
    assert out == TEXT.replace('$region: "eu-west-1"\n', "").replace("region: $region", 'region: "us-east-1"')
    assert tsk.loads(out)["security"]["region"] == "us-east-1"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # The source environment's value leaves the text with its last use.
        ('$h: "dev-SECRET-host"  # the host\nhost: $h\n', 'host: "stg"\n'),
        # A variable still used elsewhere stays.
        ('$h: "x"\nhost: $h\nother: $h\n', '$h: "x"\nhost: "stg"\nother: $h\n'),
        ('$h: "x"\nhost: $h\nother: @env("O", $h)\n', '$h: "x"\nhost: "stg"\nother: @env("O", $h)\n'),
        # A chain of variables goes as far as nothing else uses it.
        ('$a: "s"\n$b: [$a]\nhost: $b\n', 'host: "stg"\n'),
        ('$a: "s"\n$b: [$a]\nhost: $b\nkeep: $a\n', '$a: "s"\nhost: "stg"\nkeep: $a\n'),
        # A variable the source text did not use is the author's: left as it was.
        ('$unused: 1\n$h: "x"\nhost: $h\n', '$unused: 1\nhost: "stg"\n'),
        # A definition in a section; a text without a final newline.
        ('z: 1\n[s]\n$h: "x"\nhost: $h\n[t]\nhost: $h', 'z: 1\n[s]\n$h: "x"\nhost: $h\n[t]\nhost: "stg"'),
    ],
)
def test_a_definition_whose_last_use_is_replaced_goes(text: str, expected: str) -> None:
    path = ("t", "host") if "[t]" in text else ("host",)
    assert tsk.write_values(text, {path: "stg"}) == expected
    both = 'z: 1\n[s]\n$h: "x"\nhost: $h\n[t]\nhost: $h'
    assert tsk.write_values(both, {("s", "host"): "a", ("t", "host"): "b"}) == (
        'z: 1\n[s]\nhost: "a"\n[t]\nhost: "b"'
    )


def test_missing_keys_are_added_at_the_end_of_their_table() -> None:
    out = tsk.write_values(
        TEXT,
        {("database", "timeout"): 5.0, ("owner",): "team-a", ("security", "loggers", "sql"): "ERROR",
         ("cache",): {"ttl": 30}},
    )
    lines = out.splitlines()
    assert lines[lines.index("pool_size: 2") + 1] == "timeout: 5.0"
    # A new top-level key goes after the last top-level pair
    # (in the order of their paths), before the first [section].
    after = lines.index("limits: { burst: 5, per_minute: 60 }")
    assert lines[after + 1 : after + 3] == ["cache: { ttl: 30 }", 'owner: "team-a"']
    assert lines[lines.index('    http: "DEBUG"') + 1] == '    sql: "ERROR"'
    data = tsk.loads(out)
    assert data["cache"] == {"ttl": 30} and data["security"]["loggers"]["sql"] == "ERROR"
    assert out.startswith("# head comment\n")


def test_an_object_is_written_key_by_key_and_keys_it_lacks_go() -> None:
    out = tsk.write_values(TEXT, {("database",): {"url": "sqlite://", "echo": True}})
    assert tsk.loads(out)["database"] == {"url": "sqlite://", "echo": True}
    assert "# where it lives\nurl: \"sqlite://\"\necho: true\n" in out
    inline = tsk.write_values(TEXT, {("limits", "burst"): 9})
    assert "limits: { burst: 9, per_minute: 60 }" in inline
    block = tsk.write_values(TEXT, {("security", "loggers"): {"sql": "INFO"}})
    assert tsk.loads(block)["security"]["loggers"] == {"sql": "INFO"}
    gone = tsk.write_values(TEXT, {("security",): {"region": "x"}})
    assert tsk.loads(gone)["security"] == {"region": "x"} and "loggers" not in gone


def test_a_value_that_cannot_be_written_is_refused() -> None:
    with pytest.raises(ValueError):
        tsk.write_values(TEXT, {("database", "pool_size"): float("inf")})


@pytest.mark.parametrize(
    ("text", "values", "expected"),
    [
        ("z: 1", {("host",): "stg"}, 'z: 1\nhost: "stg"\n'),
        ('$h: "x"\nz: $h', {("host",): "stg"}, '$h: "x"\nz: $h\nhost: "stg"\n'),
        ("[db]\nurl: 1", {("db", "pool"): 3}, "[db]\nurl: 1\npool: 3\n"),
        ("[db]", {("db", "pool"): 3}, "[db]\npool: 3\n"),
        ("z: 1\n[db]\nurl: 1", {("host",): "stg"}, 'z: 1\nhost: "stg"\n[db]\nurl: 1'),
        ("z: 1", {("a",): 1, ("b",): 2}, "z: 1\na: 1\nb: 2\n"),
        # An implicit table gets one header, however many keys it gains.
        ("[a.b]\nu: 1", {("a", "x"): 1, ("a", "y"): 2}, "[a.b]\nu: 1\n\n[a]\nx: 1\ny: 2\n"),
    ],
)
def test_a_key_added_after_a_last_line_without_newline_goes_on_a_line_of_its_own(
    text: str, values: dict[tuple[str, ...], object], expected: str
) -> None:
    assert tsk.write_values(text, values) == expected
