"""Rendered answers: each version's response bodies and ETag, made once and shared by every reader.

The current version of every document is kept rendered in memory; old versions asked for by
number are kept in a small LRU. How they are framed for a protocol (headers, event-stream
frames) is decided at the edge.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import threading
from dataclasses import dataclass
from typing import Any

from cachetools import LRUCache

from config_service import cohorts, tsk
from config_service.core.refusals import not_found
from config_service.store import RolloutRecord, Store, VersionRecord

# Old versions rendered for `versions/{n}` are kept in a small LRU, bounded in count and in
# bytes (512 documents near the body limit would otherwise hold more than a GiB); current
# ones are always kept.
RENDERED_CACHE_SIZE = 512
RENDERED_CACHE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, eq=False)
class Rendered:
    """One version with its response bodies, rendered once and shared by every request."""

    record: VersionRecord
    etag: str  # the quoted version, `"3"`
    json_body: bytes  # metadata plus "config"
    source_body: bytes  # the TSK source as stored
    # `X-Config-Rollout` of an answer during a rollout (`<id>; cohort=candidate`), else b"".
    rollout: bytes = b""

    @property
    def version(self) -> int:
        return self.record.version

    @functools.cached_property
    def data(self) -> Any:
        """The config parsed from its wire JSON, once per version (one-key reads look in it)."""
        return json.loads(self.record.config)

    @property
    def size(self) -> int:
        """Bytes held by the rendered bodies (what the cache of old versions counts)."""
        return len(self.json_body) + len(self.source_body)


def render(record: VersionRecord) -> Rendered:
    metadata = json.dumps(record.metadata(), ensure_ascii=False, separators=(",", ":"))
    # The stored wire JSON is spliced in as it is, not parsed and dumped again. A retire has
    # none: readers are answered `retired` (config_service/http/read.py).
    config = record.config if not record.retired else "null"
    json_body = (metadata[:-1] + ',"config":' + config + "}").encode("utf-8")
    return Rendered(
        record=record,
        etag=f'"{record.version}"',
        json_body=json_body,
        source_body=record.source.encode("utf-8"),
    )


def key_at(rendered: Rendered, pointer: str) -> dict[str, Any]:
    """One key of a version: `{"path", "value", "version"}` (value in wire form, an `@env` as
    `{"$env", "default"}`); `not_found` naming the path when the version has none there."""
    found, value = tsk.value_at(rendered.data, tsk.pointer_parts(pointer))
    if not found:
        record = rendered.record
        raise not_found(
            f"version {record.version} of {record.service!r} in {record.environment!r} has "
            f"nothing at {pointer}"
        )
    return {"path": pointer, "value": value, "version": rendered.version}

OldKey = tuple[str, str, int]


class OldVersions(LRUCache[OldKey, Rendered]):
    """Least recently used old versions, bounded in bytes (each counts its rendered size) and
    in count. Not thread-safe on its own: `RenderedVersions` holds its lock around it."""

    def __init__(self, max_versions: int, max_bytes: int) -> None:
        super().__init__(maxsize=max_bytes, getsizeof=_rendered_size)
        self.max_versions = max_versions

    def __setitem__(self, key: OldKey, value: Rendered) -> None:
        super().__setitem__(key, value)  # evicts the least recently used past the byte bound
        while len(self) > self.max_versions:
            self.popitem()


def _rendered_size(rendered: Rendered) -> int:
    return rendered.size


@dataclass(frozen=True, eq=False)
class RolloutView:
    """What a document in a rollout answers: the candidate to buckets below `percent`, the
    stable version to every other read, each rendered once with its `X-Config-Rollout`."""

    rollout: RolloutRecord
    stable: Rendered
    candidate: Rendered
    # cohort -> its answer, so a read that was answered before costs one lookup; bounded, and
    # gone with the view when the rollout changes.
    answers: dict[bytes | None, Rendered] = dataclasses.field(default_factory=dict)

    @property
    def percent(self) -> int:
        return self.rollout.percent

    def answer(self, cohort: bytes | None) -> Rendered:
        """What the instance of `cohort` reads."""
        found = self.answers.get(cohort)
        if found is None:
            if cohort is not None and len(cohort) > cohorts.MAX_COHORT:
                return self.stable  # names no cohort, and is not kept (a bound on memory)
            record = self.rollout
            number = cohorts.bucket(record.service, record.environment, cohort)
            found = self.candidate if cohorts.reads_candidate(number, record.percent) else self.stable
            if len(self.answers) >= cohorts.MAX_CACHED:
                self.answers.clear()
            self.answers[cohort] = found
        return found


def rollout_view(rollout: RolloutRecord, stable: Rendered, candidate: Rendered) -> RolloutView:
    """The view of an active rollout; the bodies are shared with `stable` and `candidate`."""
    return RolloutView(
        rollout,
        dataclasses.replace(stable, rollout=b"%d; cohort=stable" % rollout.id),
        dataclasses.replace(candidate, rollout=b"%d; cohort=candidate" % rollout.id),
    )


class RenderedVersions:
    """The rendered versions of one server: every current one, the two answers of each document
    in a rollout, and an LRU of old ones."""

    def __init__(
        self,
        store: Store,
        *,
        max_old_versions: int = RENDERED_CACHE_SIZE,
        max_old_bytes: int = RENDERED_CACHE_BYTES,
    ) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._current: dict[tuple[str, str], Rendered] = {}
        self._rollouts: dict[tuple[str, str], RolloutView] = {}
        self._old = OldVersions(max_old_versions, max_old_bytes)

    def remember(self, rendered: Rendered) -> Rendered:
        """Keep `rendered` as its document's current version unless a newer one is known;
        returns the one kept."""
        key = (rendered.record.service, rendered.record.environment)
        with self._lock:
            known = self._current.get(key)
            if known is None or known.version < rendered.version:
                self._current[key] = rendered
                return rendered
            return known

    def cached(self, service: str, environment: str) -> Rendered | None:
        """The current version if this process already holds it rendered; never reads the store."""
        return self._current.get((service, environment))

    def cached_for(self, service: str, environment: str, cohort: bytes | None) -> Rendered | None:
        """`cached`, as the instance of `cohort` reads it (docs/rollouts.md): during a rollout
        the candidate when its bucket is below the step's percent, else the stable version."""
        key = (service, environment)
        view = self._rollouts.get(key)
        if view is None:
            return self._current.get(key)
        return view.answer(cohort)

    def current_for(self, service: str, environment: str, cohort: bytes | None) -> Rendered | None:
        """`current`, as the instance of `cohort` reads it."""
        rendered = self.cached_for(service, environment, cohort)
        return rendered if rendered is not None else self.current(service, environment)

    def rollout(self, service: str, environment: str) -> RolloutView | None:
        """The document's active rollout as reads see it, or None."""
        return self._rollouts.get((service, environment))

    def set_rollout(self, service: str, environment: str, view: RolloutView | None) -> None:
        """Answer the document's reads through `view` from now on (None: no rollout)."""
        if view is None:
            self._rollouts.pop((service, environment), None)
        else:
            self._rollouts[(service, environment)] = view

    def current(self, service: str, environment: str) -> Rendered | None:
        """The current version, rendered; served from memory after the first read."""
        rendered = self._current.get((service, environment))
        if rendered is not None:
            return rendered
        record = self._store.current_version(service, environment)
        if record is None:
            return None
        return self.remember(render(record))

    def of(self, record: VersionRecord) -> Rendered:
        """`record` rendered, shared with the current one when it is that version."""
        rendered = self._current.get((record.service, record.environment))
        if rendered is None or rendered.version != record.version:
            rendered = render(record)
        return rendered

    def version(self, service: str, environment: str, number: int) -> Rendered | None:
        """Version `number` of the document, rendered, or None when there is none."""
        current = self.current(service, environment)
        if current is not None and current.version == number:
            return current
        key = (service, environment, number)
        with self._lock:
            cached = self._old.get(key)  # a hit makes it the most recently used
            if cached is not None:
                return cached
        record = self._store.get_version(service, environment, number)
        if record is None:
            return None
        rendered = render(record)
        if rendered.size > self._old.maxsize:
            return rendered  # larger than the whole bound: served, not kept
        with self._lock:
            self._old[key] = rendered
        return rendered

    @property
    def old_versions_cached(self) -> tuple[int, int]:
        """(versions, bytes) of the old versions held rendered in memory."""
        with self._lock:
            return len(self._old), int(self._old.currsize)
