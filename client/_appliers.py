"""The section applier protocol: how the built-in appliers and the apply transaction meet.

An applier makes one top-level section of the config take effect in the running process.
Each follows the same three-step protocol, so an apply can be all or nothing:

- `apply(new, old)`: make `new` current (`old` is what was current; either may be None);
  raise to refuse, leaving things as they were;
- `revert(new, old)`: undo the `apply(new, old)` just made, because a later step failed;
- `commit()`: the whole apply succeeded; release what a revert would have needed.

The built-in ones: `LoggingApplier` (client/_logging_applier.py), `SecurityPolicy`
(client/_security.py), `CacheApplier` (client/_cache.py), `DatabaseApplier` (client/_database.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol


class Applier(Protocol):
    """What the apply transaction needs from a section applier."""

    def apply(self, new: Any, old: Any) -> None: ...

    def revert(self, new: Any, old: Any) -> None: ...

    def commit(self) -> None: ...


def section_mapping(section: Any, name: str) -> Mapping[str, Any]:
    if section is None:
        return {}
    if not isinstance(section, Mapping):
        raise ValueError(f"the {name} section must be an object, not {type(section).__name__}")
    return section
