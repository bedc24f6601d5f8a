"""`TSK`: a parsed document with dotted-path lookups, in the shape the seed code uses."""

from __future__ import annotations

import os
from typing import Any

from config_service.tsk._parser import load, loads
from config_service.tsk._types import copy_data
from config_service.tsk._wire import document_hash

_ABSENT = object()


class TSK:
    """A parsed TSK document: `TSK.from_file("app.tsk").get("database.port", 5432)`."""

    __slots__ = ("_data", "_hash")

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data
        self._hash: str | None = None

    @classmethod
    def from_string(cls, text: str) -> TSK:
        return cls(loads(text))

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> TSK:
        with open(path, "rb") as file:
            return cls(load(file))

    def get(self, path: str, default: Any = None) -> Any:
        """The value at a dotted path (`"database.pool_size"`), or `default` when absent."""
        node: Any = self._data
        for part in path.split("."):
            if not isinstance(node, dict):
                return default
            node = node.get(part, _ABSENT)
            if node is _ABSENT:
                return default
        return node

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def to_dict(self) -> dict[str, Any]:
        """A copy of the data: changing it does not change this document."""
        result: dict[str, Any] = copy_data(self._data)
        return result

    @property
    def hash(self) -> str:
        """The document hash (hex SHA-256 of the canonical wire JSON)."""
        if self._hash is None:
            self._hash = document_hash(self._data)
        return self._hash

    def __repr__(self) -> str:
        return f"TSK(keys={list(self._data)!r}, hash={self.hash[:12]!r})"
