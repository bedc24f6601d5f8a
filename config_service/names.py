"""The naming rule shared by services and environments, and the error for a name that breaks it."""

from __future__ import annotations

import re

NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")


class InvalidName(ValueError):
    """A service or environment name that does not match `NAME_PATTERN`."""

    def __init__(self, name: str, kind: str) -> None:
        super().__init__(
            f"{kind} name {name!r} is not valid: use 1 to 63 characters from a-z, 0-9, '.', '_', '-', "
            "starting with a letter or digit"
        )
        self.name = name
        self.kind = kind


def is_valid_name(name: str) -> bool:
    return NAME_PATTERN.fullmatch(name) is not None


def check_name(name: str, kind: str) -> str:
    """Return `name` when it is valid, else raise InvalidName."""
    if not is_valid_name(name):
        raise InvalidName(name, kind)
    return name
