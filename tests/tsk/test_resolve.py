"""`@env` resolution in the service's process: types, defaults, and errors that name the variable."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from config_service import tsk
from config_service.tsk import EnvRef

DOCUMENT = """\
port: @env("PORT", 8001)
ratio: @env("RATIO", 0.5)
debug: @env("DEBUG", false)
name: @env("NAME", "svc")
hosts: @env("HOSTS", ["a"])
limits: @env("LIMITS", {rps: 10})
url: @env("URL")
nested: [1, {deep: @env("DEEP", 2)}]
"""


def test_unset_variables_take_their_defaults() -> None:
    data = tsk.resolve(tsk.loads(DOCUMENT), {"URL": "http://x"})
    assert data == {
        "port": 8001,
        "ratio": 0.5,
        "debug": False,
        "name": "svc",
        "hosts": ["a"],
        "limits": {"rps": 10},
        "url": "http://x",
        "nested": [1, {"deep": 2}],
    }


@pytest.mark.parametrize(
    ("variable", "raw", "key", "expected"),
    [
        ("PORT", " 9000 ", "port", 9000),
        ("PORT", "-3", "port", -3),
        ("RATIO", "2", "ratio", 2.0),
        ("RATIO", "1.5e3", "ratio", 1500.0),
        ("DEBUG", "YES", "debug", True),
        ("DEBUG", "0", "debug", False),
        ("DEBUG", "True", "debug", True),
        ("NAME", "  other  ", "name", "other"),
        ("HOSTS", '["b", "c"]', "hosts", ["b", "c"]),
        ("LIMITS", "{rps: 5, burst: 10}", "limits", {"rps": 5, "burst": 10}),
        ("URL", "postgres://db", "url", "postgres://db"),
    ],
)
def test_set_variables_convert_to_the_type_of_the_default(
    variable: str, raw: str, key: str, expected: object
) -> None:
    environ = {"URL": "u", variable: raw}
    value = tsk.resolve(tsk.loads(DOCUMENT), environ)[key]
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("variable", "raw", "expected"),
    [
        ("PORT", "eighty", "expected an integer"),
        ("PORT", "80.5", "expected an integer"),
        ("RATIO", "nan", "expected a number"),
        ("RATIO", "inf", "expected a number"),
        ("DEBUG", "maybe", "expected a boolean"),
        ("HOSTS", "a,b", "expected an array"),
        ("HOSTS", "{a: 1}", "expected an array"),
        ("LIMITS", '@env("X")', "expected an object"),
    ],
)
def test_unconvertible_values_name_variable_value_and_type(
    variable: str, raw: str, expected: str
) -> None:
    with pytest.raises(tsk.TSKResolveError) as caught:
        tsk.resolve(tsk.loads(DOCUMENT), {"URL": "u", variable: raw})
    assert caught.value.name == variable
    assert variable in str(caught.value)
    assert repr(raw.strip()) in str(caught.value)
    assert expected in str(caught.value)


def test_unset_without_default_is_an_error_never_an_empty_string() -> None:
    with pytest.raises(tsk.TSKResolveError) as caught:
        tsk.resolve(tsk.loads(DOCUMENT), {})
    assert caught.value.name == "URL"
    assert "URL is not set" in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_resolve_does_not_change_its_input() -> None:
    data = tsk.loads(DOCUMENT)
    tsk.resolve(data, {"URL": "u"})
    assert data["port"] == EnvRef("PORT", 8001)


def test_resolve_reads_the_real_process_environment() -> None:
    code = (
        "from config_service import tsk;"
        "print(tsk.resolve(tsk.loads('p: @env(\"TSK_TEST_PORT\", 1)\\n'))['p'] + 1)"
    )
    env = dict(os.environ, TSK_TEST_PORT="41")
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "42"


def test_validation_view_uses_defaults_and_skips_references_without_one() -> None:
    view = tsk.validation_view(tsk.loads(DOCUMENT + 'list: [@env("A"), 1]\n'))
    assert view["port"] == 8001
    assert "url" not in view
    assert view["nested"] == [1, {"deep": 2}]
    assert view["list"] == [1]


def test_validation_view_names_the_paths_it_skipped() -> None:
    skipped: list[str] = []
    tsk.validation_view(
        tsk.loads('[database]\nurl: @env("DATABASE_URL")\n"a/b~c": @env("X")\nl: [@env("Y")]\n'),
        skipped,
    )
    assert skipped == ["/database/url", "/database/a~1b~0c", "/database/l/0"]
