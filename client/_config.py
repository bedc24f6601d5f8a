"""`Config`: one resolved version of a service's configuration, immutable once built."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Literal

Source = Literal["server", "cache", "file"]

_NO_DEFAULT: Any = object()


def copy_data(value: Any) -> Any:
    """A deep copy of JSON-like data; faster than copy.deepcopy for dicts, lists and scalars."""
    if isinstance(value, dict):
        return {key: copy_data(item) for key, item in value.items()}
    if isinstance(value, list):
        return [copy_data(item) for item in value]
    return value


class Config(Mapping[str, Any]):
    """A service's configuration as this process uses it: `@env` resolved, validated.

    A `Config` never changes: every read returns a copy of containers, so a caller that
    edits what it got cannot alter the config other threads see. A new version is a new
    `Config`.

    - `config.get("database.pool_size", default)` reads a dotted path.
    - `config.section("database")` returns one top-level section.
    - `config.version` (None for a local file), `config.hash` (the document hash the
      server announced, verified), `config.source` (`"server"`, `"cache"` or `"file"`).
    """

    __slots__ = (
        "_data",
        "_wire",
        "_section_hashes",
        "_schemas",
        "service",
        "environment",
        "version",
        "hash",
        "source",
    )
    _data: dict[str, Any]
    _wire: dict[str, Any]
    _section_hashes: dict[str, str]
    _schemas: dict[str, Any] | None
    service: str
    environment: str
    version: int | None
    hash: str
    source: Source

    def __init__(
        self,
        data: Mapping[str, Any],
        *,
        service: str,
        environment: str,
        version: int | None,
        hash: str,
        source: Source,
        wire: Mapping[str, Any] | None = None,
        section_hashes: Mapping[str, str] | None = None,
        schemas: Mapping[str, Any] | None = None,
    ) -> None:
        fields = {
            "_data": copy_data(dict(data)),
            # The unresolved wire form is kept for the last-known-good file, so @env is
            # resolved afresh by the next process that starts from it.
            "_wire": copy_data(dict(wire)) if wire is not None else {},
            "_section_hashes": dict(section_hashes or {}),
            # The schemas it was validated against, kept with it in the last-known-good file.
            "_schemas": copy_data(dict(schemas)) if schemas is not None else None,
            "service": service,
            "environment": environment,
            "version": version,
            "hash": hash,
            "source": source,
        }
        for name, value in fields.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"a Config never changes; {name!r} cannot be set")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"a Config never changes; {name!r} cannot be deleted")

    def __getitem__(self, key: str) -> Any:
        return copy_data(self._data[key])

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __repr__(self) -> str:
        return (
            f"Config(service={self.service!r}, environment={self.environment!r}, "
            f"version={self.version!r}, hash={self.hash[:12]!r}, source={self.source!r})"
        )

    def get(self, path: str, default: Any = None) -> Any:
        """The value at a dotted path (`"database.pool_size"`), or `default` when absent."""
        if path in self._data:
            return copy_data(self._data[path])
        node: Any = self._data
        for part in path.split("."):
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                return default
        return copy_data(node)

    def section(self, name: str, default: Any = _NO_DEFAULT) -> Any:
        """One top-level section; KeyError naming it when absent and no default is given."""
        if name in self._data:
            return copy_data(self._data[name])
        if default is _NO_DEFAULT:
            raise KeyError(f"the config of {self.service!r} has no section {name!r}")
        return default

    def to_dict(self) -> dict[str, Any]:
        """The whole resolved data as a new plain dict."""
        return copy_data(self._data)

    @property
    def wire(self) -> dict[str, Any]:
        """The document as served, `@env` references unresolved (a copy)."""
        return copy_data(self._wire)

    @property
    def section_hashes(self) -> dict[str, str]:
        """One hash per top-level key of the resolved data: what changed between versions."""
        return dict(self._section_hashes)
