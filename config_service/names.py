"""The one naming rule for services, environments and sections (server, client, sync and CLI use it).

A name matches `NAME_PATTERN` as a whole string: "user-service\n" is not a name.
"""

from __future__ import annotations

import re

NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")


class InvalidName(ValueError):
    """A service or environment name that does not match `NAME_PATTERN`."""

    def __init__(self, name: object, kind: str) -> None:
        super().__init__(
            f"{kind} name {name!r} is not valid: use 1 to 63 characters from a-z, 0-9, '.', '_', '-', "
            "starting with a letter or digit"
        )
        self.name = name
        self.kind = kind


def is_valid_name(name: object) -> bool:
    """Whether `name` is a string that matches `NAME_PATTERN` from its first to its last character."""
    return isinstance(name, str) and NAME_PATTERN.fullmatch(name) is not None


def check_name(name: object, kind: str) -> str:
    """Return `name` when it is valid, else raise InvalidName (a ValueError) naming `kind`."""
    if not isinstance(name, str) or not is_valid_name(name):
        raise InvalidName(name, kind)
    return name
