"""Tests of structural and unified diffs, with examples and hypothesis properties."""

from __future__ import annotations

import copy
import itertools
import math
import re
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from config_service import tsk
from config_service.tsk import (
    diff_document,
    structural_diff,
    unified_diff,
)

# -- helpers: apply the changes the way a JSON Patch would, compare strictly -----------------


def _tokens(path: str) -> list[str]:
    if path == "":
        return []
    assert path.startswith("/"), path
    return [token.replace("~1", "/").replace("~0", "~") for token in path[1:].split("/")]


def apply_changes(document: Any, changes: list[dict[str, Any]]) -> Any:
    for change in changes:
        tokens = _tokens(change["path"])
        if not tokens:
            assert change["op"] == "change"
            document = copy.deepcopy(change["new"])
            continue
        parent = document
        for token in tokens[:-1]:
            parent = parent[int(token)] if isinstance(parent, list) else parent[token]
        last = tokens[-1]
        if isinstance(parent, list):
            index = int(last)
            if change["op"] == "add":
                assert index == len(parent), "adds to a list only append"
                parent.append(copy.deepcopy(change["new"]))
            elif change["op"] == "remove":
                assert index == len(parent) - 1, "removes from a list take the last item"
                assert strictly_equal(parent.pop(), change["old"])
            else:
                assert strictly_equal(parent[index], change["old"])
                parent[index] = copy.deepcopy(change["new"])
        else:
            if change["op"] == "add":
                assert last not in parent
                parent[last] = copy.deepcopy(change["new"])
            elif change["op"] == "remove":
                assert strictly_equal(parent.pop(last), change["old"])
            else:
                assert strictly_equal(parent[last], change["old"])
                parent[last] = copy.deepcopy(change["new"])
    return document


def strictly_equal(left: Any, right: Any) -> bool:
    """Equal as JSON values, where 1, 1.0 and true are three different values."""
    if type(left) is not type(right):
        return False
    if isinstance(left, dict):
        return left.keys() == right.keys() and all(strictly_equal(left[k], right[k]) for k in left)
    if isinstance(left, list):
        return len(left) == len(right) and all(map(strictly_equal, left, right))
    if isinstance(left, float) and math.isnan(left):
        return math.isnan(right)
    return bool(left == right)


# -- strategies: wire-form documents ---------------------------------------------------------

keys = st.text(alphabet="ab~/$. -", max_size=4).filter(lambda key: key != "$env")
scalars = (
    st.none() | st.booleans() | st.integers(-3, 3) | st.floats(-2, 2) | st.text("xy", max_size=2)
)
env_references = st.builds(
    lambda name, default: {"$env": name} if default is None else {"$env": name, "default": default},
    st.sampled_from(["DB_HOST", "PORT"]),
    st.none() | st.integers(0, 2) | st.text("z", max_size=1),
)
values = st.recursive(
    scalars | env_references,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4),
    max_leaves=20,
)
documents = st.dictionaries(keys, values, max_size=5)


@settings(max_examples=200, deadline=None)
@given(documents, documents)
def test_applying_the_changes_to_old_yields_new(old: dict[str, Any], new: dict[str, Any]) -> None:
    original = copy.deepcopy(old)
    changes = structural_diff(old, new)
    assert strictly_equal(old, original), "the diff must not modify its input"
    assert strictly_equal(apply_changes(copy.deepcopy(old), changes), new)
    for change in changes:
        expected = {"add": {"op", "path", "new"}, "remove": {"op", "path", "old"}}.get(
            change["op"], {"op", "path", "old", "new"}
        )
        assert set(change) == expected


@settings(max_examples=200, deadline=None)
@given(values, values)
def test_any_two_values_diff_and_apply_including_the_root(old: Any, new: Any) -> None:
    assert strictly_equal(apply_changes(copy.deepcopy(old), structural_diff(old, new)), new)


@settings(max_examples=100, deadline=None)
@given(documents)
def test_a_document_has_no_changes_against_itself(document: dict[str, Any]) -> None:
    assert structural_diff(document, copy.deepcopy(document)) == []


def test_changes_follow_new_key_order_then_removed_keys() -> None:
    old = {"name": "api", "database": {"host": "db", "port": 5432}, "debug": True}
    new = {"port": 8080, "database": {"port": 6432, "pool": 20, "host": "db"}, "name": "api"}
    assert structural_diff(old, new) == [
        {"op": "add", "path": "/port", "new": 8080},
        {"op": "change", "path": "/database/port", "old": 5432, "new": 6432},
        {"op": "add", "path": "/database/pool", "new": 20},
        {"op": "remove", "path": "/debug", "old": True},
    ]


def test_lists_are_compared_item_by_item_with_the_index_in_the_path() -> None:
    old = {"hosts": ["a", "b", "c", "d"], "ports": [1]}
    new = {"hosts": ["a", "x"], "ports": [1, 2, 3]}
    assert structural_diff(old, new) == [
        {"op": "change", "path": "/hosts/1", "old": "b", "new": "x"},
        {"op": "remove", "path": "/hosts/3", "old": "d"},
        {"op": "remove", "path": "/hosts/2", "old": "c"},
        {"op": "add", "path": "/ports/1", "new": 2},
        {"op": "add", "path": "/ports/2", "new": 3},
    ]


def test_a_type_change_is_a_change_even_between_equal_numbers() -> None:
    old = {"a": 1, "b": 1, "c": {"x": 1}, "d": [1], "e": 0}
    new = {"a": 1.0, "b": True, "c": [1], "d": {"0": 1}, "e": None}
    assert [change["path"] for change in structural_diff(old, new)] == [
        "/a",
        "/b",
        "/c",
        "/d",
        "/e",
    ]
    assert all(change["op"] == "change" for change in structural_diff(old, new))


def test_an_env_reference_is_one_value() -> None:
    old = {
        "database": {
            "password": {"$env": "DB_PASSWORD"},
            "host": {"$env": "DB_HOST", "default": "a"},
        }
    }
    new = {
        "database": {
            "password": {"$env": "DB_PASSWORD"},
            "host": {"$env": "DB_HOST", "default": "b"},
        }
    }
    assert structural_diff(old, new) == [
        {
            "op": "change",
            "path": "/database/host",
            "old": {"$env": "DB_HOST", "default": "a"},
            "new": {"$env": "DB_HOST", "default": "b"},
        }
    ]
    literal = {"database": {"password": "hunter2"}}
    assert structural_diff(literal, {"database": {"password": {"$env": "DB_PASSWORD"}}}) == [
        {
            "op": "change",
            "path": "/database/password",
            "old": "hunter2",
            "new": {"$env": "DB_PASSWORD"},
        }
    ]
    # A default of another type is another reference.
    assert structural_diff({"p": {"$env": "P", "default": 1}}, {"p": {"$env": "P", "default": 1.0}})


def test_pointer_tokens_escape_tilde_and_slash() -> None:
    assert tsk.pointer_token("a/b~c") == "a~1b~0c"
    assert tsk.pointer_token("~1") == "~01"
    changes = structural_diff({"paths": {"/api/v1": 1}}, {"paths": {"/api/v1": 2, "~home": 3}})
    assert [change["path"] for change in changes] == ["/paths/~1api~1v1", "/paths/~0home"]


def test_the_empty_key_and_the_root() -> None:
    assert structural_diff({"": 1}, {"": 2}) == [{"op": "change", "path": "/", "old": 1, "new": 2}]
    assert structural_diff({"a": 1}, [1]) == [
        {"op": "change", "path": "", "old": {"a": 1}, "new": [1]}
    ]


# -- unified diff ----------------------------------------------------------------------------


def apply_unified(source: str, patch: str) -> str:
    """Apply a unified diff to `source`, checking every context and removed line."""
    lines = source.split("\n")
    old = [line + "\n" for line in lines[:-1]] + ([lines[-1]] if lines[-1] else [])
    result: list[str] = []
    position = 0
    patch_lines = patch.split("\n")[:-1]
    assert patch_lines[0].startswith("--- ") and patch_lines[1].startswith("+++ ")
    index = 2
    while index < len(patch_lines):
        header = re.fullmatch(r"@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@", patch_lines[index])
        assert header, patch_lines[index]
        start = int(header.group(1)) - (0 if header.group(2) == "0" else 1)
        result.extend(old[position:start])
        position = start
        index += 1
        while index < len(patch_lines) and not patch_lines[index].startswith("@@"):
            line = patch_lines[index] + "\n"
            if (
                index + 1 < len(patch_lines)
                and patch_lines[index + 1] == "\\ No newline at end of file"
            ):
                line = patch_lines[index]
                index += 1
            kind, text = line[0], line[1:]
            if kind in " -":
                assert old[position] == text, (old[position], text)
                position += 1
            if kind in " +":
                result.append(text)
            index += 1
    result.extend(old[position:])
    return "".join(result)


sources = st.lists(
    st.sampled_from(["a", "b", "port: 1", "", "  x", "c\x0cd", "é"]), max_size=12
).map("\n".join)


@settings(max_examples=200, deadline=None)
@given(sources, sources, st.booleans(), st.booleans())
def test_the_unified_diff_patches_old_into_new(
    old: str, new: str, old_nl: bool, new_nl: bool
) -> None:
    old += "\n" if old_nl else ""
    new += "\n" if new_nl else ""
    patch = unified_diff(old, new, "staging@1", "staging@2")
    if old == new:
        assert patch == ""
    else:
        assert patch.startswith("--- staging@1\n+++ staging@2\n")
        assert apply_unified(old, patch) == new


def test_a_missing_final_newline_is_marked() -> None:
    patch = unified_diff("port: 1\n", "port: 2", "a", "b")
    assert patch == "--- a\n+++ b\n@@ -1 +1 @@\n-port: 1\n+port: 2\n\\ No newline at end of file\n"


def test_diff_document_has_the_api_shape() -> None:
    from_meta = {"service": "user-service", "environment": "staging", "version": 3, "hash": "h3"}
    to_meta = {"service": "user-service", "environment": "production", "version": 7}
    body = diff_document(
        from_meta,
        to_meta,
        {"database": {"pool_size": 10}},
        {"database": {"pool_size": 20}},
        "[database]\npool_size: 10\n",
        "[database]\npool_size: 20\n",
    )
    assert body == {
        "from": {"environment": "staging", "version": 3},
        "to": {"environment": "production", "version": 7},
        "changes": [{"op": "change", "path": "/database/pool_size", "old": 10, "new": 20}],
        "unified": (
            "--- user-service/staging@3\n+++ user-service/production@7\n"
            "@@ -1,2 +1,2 @@\n [database]\n-pool_size: 10\n+pool_size: 20\n"
        ),
    }


# -- real documents ----------------------------------------------------------------------------

REPOSITORY = Path(__file__).resolve().parents[2]
CORPUS = REPOSITORY / "tests" / "tsk" / "corpus"
PARSING = sorted(
    [*CORPUS.glob("service-*.tsk"), *CORPUS.glob("styles-*.tsk")]
    + [*(REPOSITORY / "environments").glob("*/user-service.tsk")]
)


def test_every_pair_of_real_documents_diffs_into_a_patch_that_applies() -> None:
    assert len(PARSING) >= 11
    wire = {path: tsk.to_wire(tsk.loads(path.read_text(encoding="utf-8"))) for path in PARSING}
    sources = {path: path.read_text(encoding="utf-8") for path in PARSING}
    for old, new in itertools.permutations(PARSING, 2):
        changes = structural_diff(wire[old], wire[new])
        assert changes, (old.name, new.name)
        assert strictly_equal(apply_changes(copy.deepcopy(wire[old]), changes), wire[new])
        assert apply_unified(sources[old], unified_diff(sources[old], sources[new])) == sources[new]


def test_staging_to_production_of_the_shipped_service() -> None:
    documents = REPOSITORY / "environments"
    staging = tsk.to_wire(tsk.loads((documents / "staging" / "user-service.tsk").read_text()))
    production = tsk.to_wire(tsk.loads((documents / "production" / "user-service.tsk").read_text()))
    changes = {change["path"]: change for change in structural_diff(staging, production)}
    url = changes["/database/url"]
    assert url["op"] == "change"
    assert url["old"]["$env"] == url["new"]["$env"] == "DATABASE_URL"
    assert url["old"]["default"] != url["new"]["default"]
    assert not any(path.startswith("/database/url/") for path in changes)
    assert changes["/database/pool_size"] == {
        "op": "change",
        "path": "/database/pool_size",
        "old": staging["database"]["pool_size"],
        "new": production["database"]["pool_size"],
    }
