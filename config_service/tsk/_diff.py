"""Differences between two versions of a document: structural (JSON pointers) and line by line.

`structural_diff` works on the wire form of a document (what `tsk.to_wire`
gives and the API's `config` holds): dicts, lists, strings, numbers,
booleans and null, with each `@env` reference as a `{"$env": ...}` object.
Such an object is one value: two references are equal or the whole reference
changed, never a change "inside" it.

Each change is a dict:

* `{"op": "add", "path": p, "new": value}` — `p` did not exist in the old document;
* `{"op": "remove", "path": p, "old": value}` — `p` no longer exists;
* `{"op": "change", "path": p, "old": value, "new": value}` — a different value,
  including a different type (`1` and `1.0`, `1` and `true` differ).

`path` is a JSON pointer (RFC 6901: `~` is written `~0` and `/` `~1`; the
whole document is `""`). Dicts are compared key by key, in the new
document's key order, then the keys only the old one had. Lists are
compared item by item: a path ends with the index; items past the shorter
list are adds (increasing index) or removes (decreasing index), so applying
the changes in order, as a JSON Patch would, turns the old document into the
new one.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterator, Mapping
from typing import Any

from config_service.tsk._types import pointer_token

Change = dict[str, Any]


def structural_diff(old: Any, new: Any) -> list[Change]:
    """The changes that turn wire-form `old` into wire-form `new` (see the module doc)."""
    changes: list[Change] = []
    _compare(old, new, "", changes)
    return changes


def unified_diff(
    old_source: str, new_source: str, from_label: str = "old", to_label: str = "new"
) -> str:
    """A unified diff of two sources, with three lines of context; "" when they are equal.

    A last line without a newline is marked `\\ No newline at end of file`,
    so the output is well formed for `patch` and `git apply`.
    """
    lines = difflib.unified_diff(
        _lines(old_source),
        _lines(new_source),
        fromfile=from_label,
        tofile=to_label,
    )
    return "".join(_terminated(lines))


def diff_document(
    from_meta: Mapping[str, Any],
    to_meta: Mapping[str, Any],
    from_config: Any,
    to_config: Any,
    from_source: str,
    to_source: str,
) -> dict[str, Any]:
    """The API's diff body for two versions (of one environment or of two).

    `from_meta` and `to_meta` are version metadata (at least `environment`
    and `version`; `service` when present goes into the diff labels), the
    configs are wire form and the sources TSK text. Returns
    `{"from": {environment, version}, "to": {...}, "changes": [...], "unified": "..."}`.
    """
    return {
        "from": {"environment": from_meta["environment"], "version": from_meta["version"]},
        "to": {"environment": to_meta["environment"], "version": to_meta["version"]},
        "changes": structural_diff(from_config, to_config),
        "unified": unified_diff(from_source, to_source, _label(from_meta), _label(to_meta)),
    }


def _label(meta: Mapping[str, Any]) -> str:
    # "user-service/staging@3": names the document and version in the diff header.
    prefix = f"{meta['service']}/" if meta.get("service") else ""
    return f"{prefix}{meta['environment']}@{meta['version']}"


def _is_mapping(value: Any) -> bool:
    # A dict holding "$env" is an @env reference: a leaf, not a mapping to descend into.
    return isinstance(value, dict) and "$env" not in value


def _same_leaf(old: Any, new: Any) -> bool:
    if type(old) is not type(new):
        return False
    if isinstance(old, float) and math.isnan(old) and math.isnan(new):
        return True
    if isinstance(old, dict):
        # An @env reference: equal only as a whole, with the same types inside.
        return old.keys() == new.keys() and all(_same(old[key], new[key]) for key in old)
    return bool(old == new)


def _same(old: Any, new: Any) -> bool:
    if isinstance(old, list) and isinstance(new, list):
        return len(old) == len(new) and all(map(_same, old, new))
    if _is_mapping(old) and _is_mapping(new):
        return old.keys() == new.keys() and all(_same(old[key], new[key]) for key in old)
    return _same_leaf(old, new)


def _compare(old: Any, new: Any, path: str, changes: list[Change]) -> None:
    if _is_mapping(old) and _is_mapping(new):
        for key, new_value in new.items():
            child = f"{path}/{pointer_token(key)}"
            if key in old:
                _compare(old[key], new_value, child, changes)
            else:
                changes.append({"op": "add", "path": child, "new": new_value})
        for key, old_value in old.items():
            if key not in new:
                child = f"{path}/{pointer_token(key)}"
                changes.append({"op": "remove", "path": child, "old": old_value})
    elif isinstance(old, list) and isinstance(new, list):
        shared = min(len(old), len(new))
        for index in range(shared):
            _compare(old[index], new[index], f"{path}/{index}", changes)
        for index in range(shared, len(new)):
            changes.append({"op": "add", "path": f"{path}/{index}", "new": new[index]})
        # Highest index first, so each remove leaves the indices still to remove in place.
        for index in range(len(old) - 1, shared - 1, -1):
            changes.append({"op": "remove", "path": f"{path}/{index}", "old": old[index]})
    elif not _same(old, new):
        changes.append({"op": "change", "path": path, "old": old, "new": new})


def _lines(source: str) -> list[str]:
    # Only "\n" ends a line: str.splitlines would also split on form feeds and
    # Unicode separators that may sit inside a TSK string.
    pieces = source.split("\n")
    lines = [piece + "\n" for piece in pieces[:-1]]
    if pieces[-1]:
        lines.append(pieces[-1])
    return lines


def _terminated(lines: Iterator[str]) -> Iterator[str]:
    for line in lines:
        if line.endswith("\n"):
            yield line
        else:
            yield line + "\n"
            yield "\\ No newline at end of file\n"
