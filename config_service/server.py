"""The config server's rules without HTTP: accept, validate, version, render and authorise documents.

`ConfigServer` owns the store, the compiled schemas, the live tokens and the rendered
responses. Route handlers read the request, call one method here, and send what it returns;
file sync and tests call the same methods. Every refusal is an `ApiError`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from config_service import tsk
from config_service.atomic_file import replacing
from config_service.auth import Principal, TokenBook, make_token
from config_service.errors import ApiError, forbidden, not_found, precondition_failed
from config_service.metrics import Metrics
from config_service.names import InvalidName, check_name
from config_service.schema import SchemaInvalid, SchemaSet, check_schema, identifier_failures
from config_service.settings import Settings
from config_service.store import (
    AuditEntry,
    IfMatch,
    InstanceReport,
    NewVersion,
    PreconditionFailed,
    SchemaRecord,
    SqliteStore,
    Store,
    TokenRecord,
    TooManyInstances,
    Transaction,
    VersionRecord,
    utc_timestamp,
)
from config_service.store.data_folder import make_private_folder

logger = logging.getLogger("config_service")

# Old versions rendered for `versions/{n}` are kept in a small LRU, bounded in count and in
# bytes (512 documents near the body limit would otherwise hold more than a GiB); current
# ones are always kept.
RENDERED_CACHE_SIZE = 512
RENDERED_CACHE_BYTES = 64 * 1024 * 1024
# Above this many bytes, parsing is worth moving off the event loop (routes decide).
LARGE_DOCUMENT = 64 * 1024

CommitListener = Callable[["Rendered"], None]


RawHeaders = list[tuple[bytes, bytes]]


@dataclass(frozen=True)
class Rendered:
    """One version with its response bodies and headers, rendered once and shared by every request."""

    record: VersionRecord
    etag: str
    json_body: bytes  # metadata plus "config"
    source_body: bytes  # the TSK source as stored
    json_headers: RawHeaders
    source_headers: RawHeaders
    etag_bytes: bytes
    # The same headers as HTTP/1.1 lines ("name: value\r\n" each), for the protocol's hot path.
    json_head: bytes
    source_head: bytes

    @property
    def version(self) -> int:
        return self.record.version

    @property
    def size(self) -> int:
        """Bytes held by the rendered bodies (what the cache of old versions counts)."""
        return len(self.json_body) + len(self.source_body)


def render(record: VersionRecord) -> Rendered:
    metadata = json.dumps(record.metadata(), ensure_ascii=False, separators=(",", ":"))
    # The stored wire JSON is spliced in as it is, not parsed and dumped again.
    json_body = (metadata[:-1] + ',"config":' + record.config + "}").encode("utf-8")
    source_body = record.source.encode("utf-8")
    etag = f'"{record.version}"'
    etag_bytes = etag.encode("ascii")
    json_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(json_body)).encode("ascii")),
        (b"etag", etag_bytes),
    ]
    source_headers = [
        (b"content-type", b"text/x-tsk; charset=utf-8"),
        (b"content-length", str(len(source_body)).encode("ascii")),
        (b"etag", etag_bytes),
    ]
    return Rendered(
        record=record,
        etag=etag,
        json_body=json_body,
        source_body=source_body,
        json_headers=json_headers,
        source_headers=source_headers,
        etag_bytes=etag_bytes,
        json_head=header_lines(json_headers),
        source_head=header_lines(source_headers),
    )


def header_lines(headers: RawHeaders) -> bytes:
    """Headers as they appear in an HTTP/1.1 head: `name: value\r\n` each."""
    return b"".join(name + b": " + value + b"\r\n" for name, value in headers)


@dataclass(frozen=True)
class Document:
    """A parsed source: its data, wire JSON text and hash."""

    source: str
    data: dict[str, Any]
    wire: str
    hash: str


def decode_source(body: bytes) -> str:
    """UTF-8 text of a TSK body; bytes that are not UTF-8 are `invalid_tsk` with line and column."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        prefix = body[: error.start].decode("utf-8", errors="replace")
        line = prefix.count("\n") + 1
        column = len(prefix) - (prefix.rfind("\n") + 1) + 1
        raise ApiError(
            422,
            "invalid_tsk",
            f"the document is not UTF-8 (line {line}, column {column})",
            [{"line": line, "column": column, "message": "bytes that are not UTF-8"}],
        ) from None
    return text


def parse_document(source: str) -> Document:
    """Parse TSK source; a syntax error is `invalid_tsk` with line, column and message."""
    try:
        data = tsk.loads(source)
    except tsk.TSKDecodeError as error:
        raise ApiError(
            422,
            "invalid_tsk",
            f"the document is not valid TSK: {error}",
            [{"line": error.lineno, "column": error.colno, "message": error.msg}],
        ) from None
    wire_data = tsk.to_wire(data)
    wire = json.dumps(wire_data, ensure_ascii=False, separators=(",", ":"))
    # From the wire data already at hand rather than converting the document a second time.
    return Document(source=source, data=data, wire=wire, hash=tsk.wire_hash(wire_data))


def schema_failures(schemas: SchemaSet, service: str, data: dict[str, Any]) -> list[dict[str, str]]:
    """Every schema failure of `data`, with `@env` standing for its default (TSK.md section 4)."""
    return schemas.document_errors(service, data)


def schema_hash(schema: Any) -> str:
    canonical = json.dumps(schema, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class RateWindow:
    """At most `limit` events per key in each window of `seconds` (a fixed window per key)."""

    def __init__(
        self, limit: int, seconds: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.seconds = seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._windows: dict[str, tuple[float, int]] = {}

    def take(self, key: str) -> float | None:
        """Count one event for `key`: None when within the limit, else seconds until it resets."""
        now = self._clock()
        with self._lock:
            started, count = self._windows.get(key, (now, 0))
            if now - started >= self.seconds:
                started, count = now, 0
            if count >= self.limit:
                return started + self.seconds - now
            self._windows[key] = (started, count + 1)
            if len(self._windows) > 1024:
                # Keys are tokens, so few; forget the windows that have ended.
                self._windows = {
                    other: window
                    for other, window in self._windows.items()
                    if now - window[0] < self.seconds
                }
        return None


class ConfigServer:
    """Everything one server process knows and does, for any number of HTTP apps or none."""

    def __init__(self, settings: Settings, store: Store | None = None) -> None:
        self.settings = settings
        self.store: Store = store if store is not None else SqliteStore(settings.database_path)
        self.tokens = TokenBook()
        self.metrics = Metrics()
        self._schemas = SchemaSet({}, 0)
        self._render_lock = threading.Lock()
        self._current: dict[tuple[str, str], Rendered] = {}
        self._old: OrderedDict[tuple[str, str, int], Rendered] = OrderedDict()
        self._old_bytes = 0
        self._listeners: list[CommitListener] = []
        self._instance_reports = RateWindow(settings.instance_reports_per_minute)
        self.store.add_commit_listener(self._committed)

    # -- life cycle ------------------------------------------------------------------

    def start(self) -> None:
        """Open the store, load tokens and schemas, and make the first admin token if needed."""
        self.store.open()
        self.tokens.replace(self.store.list_tokens())
        self._schemas = self._schema_set_from_store()
        self.ensure_admin_token()

    def stop(self) -> None:
        self.store.close()

    def add_commit_listener(self, listener: CommitListener) -> None:
        """Call `listener(rendered)` after each new version commits, in commit order.

        It runs on the store's writer thread, after the commit and before the writer is
        answered, so it must be quick (hand work to the event loop with
        `loop.call_soon_threadsafe`, as the change hub does).
        """
        self._listeners.append(listener)

    def _committed(self, records: list[VersionRecord]) -> None:
        for record in records:
            rendered = render(record)
            self._remember(rendered)
            self.metrics.versions_written.labels(kind=record.kind).inc()
            for listener in self._listeners:
                try:
                    listener(rendered)
                except Exception:  # a listener must never undo an acknowledged write
                    logger.exception("commit listener failed")

    # -- rendered documents ------------------------------------------------------------

    def _remember(self, rendered: Rendered) -> None:
        key = (rendered.record.service, rendered.record.environment)
        with self._render_lock:
            known = self._current.get(key)
            if known is None or known.version < rendered.version:
                self._current[key] = rendered

    def cached(self, service: str, environment: str) -> Rendered | None:
        """The current version if this process already holds it rendered; never reads the store."""
        return self._current.get((service, environment))

    def current(self, service: str, environment: str) -> Rendered | None:
        """The current version, rendered; served from memory after the first read."""
        rendered = self._current.get((service, environment))
        if rendered is not None:
            return rendered
        record = self.store.current_version(service, environment)
        if record is None:
            return None
        rendered = render(record)
        self._remember(rendered)
        return self._current.get((service, environment), rendered)

    def version(self, service: str, environment: str, number: int) -> Rendered | None:
        current = self.current(service, environment)
        if current is not None and current.version == number:
            return current
        key = (service, environment, number)
        with self._render_lock:
            cached = self._old.get(key)
            if cached is not None:
                self._old.move_to_end(key)
                return cached
        record = self.store.get_version(service, environment, number)
        if record is None:
            return None
        rendered = render(record)
        size = rendered.size
        if size > RENDERED_CACHE_BYTES:
            return rendered
        with self._render_lock:
            replaced = self._old.pop(key, None)
            if replaced is not None:
                self._old_bytes -= replaced.size
            self._old[key] = rendered
            self._old_bytes += size
            while len(self._old) > RENDERED_CACHE_SIZE or self._old_bytes > RENDERED_CACHE_BYTES:
                _, evicted = self._old.popitem(last=False)
                self._old_bytes -= evicted.size
        return rendered

    @property
    def old_versions_cached(self) -> tuple[int, int]:
        """(versions, bytes) of the old versions held rendered in memory."""
        with self._render_lock:
            return len(self._old), self._old_bytes

    def history(
        self, service: str, environment: str, limit: int, before: int | None
    ) -> dict[str, Any]:
        records = self.store.list_versions(service, environment, limit + 1, before)
        page = records[:limit]
        next_before = page[-1].version if len(records) > limit and page else None
        return {"versions": [record.metadata() for record in page], "next_before": next_before}

    def services(self, principal: Principal) -> dict[str, Any]:
        """Every service the token covers, with its current version per covered environment."""
        by_service: dict[str, dict[str, Any]] = {}
        for record in self.store.current_versions():
            if record.environment not in self.settings.pipeline:
                continue
            if not principal.covers(record.service, record.environment):
                continue
            by_service.setdefault(record.service, {})[record.environment] = {
                "version": record.version,
                "hash": record.hash,
                "created_at": record.created_at,
            }
        pipeline = self.settings.pipeline
        return {
            "services": [
                {
                    "service": service,
                    "environments": {env: environments[env] for env in pipeline if env in environments},
                }
                for service, environments in sorted(by_service.items())
            ]
        }

    # -- instances ----------------------------------------------------------------------

    def report_instance(self, principal: Principal, report: InstanceReport) -> None:
        """Remember what an instance runs; the token may read the document (checked before).

        429 when the token sent too many reports this minute, or the document has as many
        instances as it may keep and none is stale; 404 when the document does not exist.
        """
        key = principal.token_id or principal.name
        wait = self._instance_reports.take(key)
        if wait is not None:
            seconds = max(1, math.ceil(wait))
            raise ApiError(
                429,
                "too_many_requests",
                f"this token sent more than {self._instance_reports.limit} instance reports in a "
                f"minute; send the next one in {seconds} s",
                headers={"Retry-After": str(seconds)},
            )
        service, environment = report.service, report.environment
        if self.current(service, environment) is None:
            raise not_found(
                f"{service!r} has no version in {environment!r}; instances report only on documents "
                "that exist"
            )
        limit = self.settings.max_instances_per_document
        try:
            forget_before = utc_timestamp(self._stale_since())
            self.store.write(
                lambda transaction: transaction.record_instance(report, limit, forget_before)
            )
        except TooManyInstances:
            raise ApiError(
                429,
                "too_many_instances",
                f"{service!r} in {environment!r} already has {limit} instances that reported "
                f"recently; a new one is taken once one of them has been silent for "
                f"{self._stale_after():g} s",
            ) from None

    def instances(self, service: str, environment: str) -> dict[str, Any]:
        """The instances of a document, with `stale` (silent for 3 report intervals) and
        `behind` (running an older version than the current one, or none)."""
        current = self.current(service, environment)
        stale_since = utc_timestamp(self._stale_since())
        return {
            "instances": [
                {
                    "instance_id": record.instance_id,
                    "version": record.version,
                    "hash": record.hash,
                    "status": record.status,
                    "error": record.error,
                    "failed_version": record.failed_version,
                    "last_seen": record.last_seen,
                    "stale": record.last_seen < stale_since,
                    "behind": current is not None
                    and (record.version is None or record.version < current.version),
                }
                for record in self.store.list_instances(service, environment)
            ]
        }

    def _stale_after(self) -> float:
        return 3 * self.settings.instance_report_interval

    def _stale_since(self) -> datetime:
        return datetime.now(UTC) - timedelta(seconds=self._stale_after())

    # -- names and permissions -----------------------------------------------------------

    def check_document_access(
        self, principal: Principal, role: str, service: str, environment: str
    ) -> None:
        """403 unless the token may act as `role` on the document; then 422/404 for bad names.

        Scope is checked first so that a token learns nothing about documents outside it.
        """
        if not principal.may(role, service, environment):
            raise forbidden(
                f"this token may not {_VERBS[role]} {service!r} in {environment!r}"
            )
        self.check_names(service, environment)

    def check_schema_read(self, principal: Principal, name: str) -> None:
        """403 unless the token may read schema `name`; then 422 for a bad name.

        Every token reads the section schemas (a client validates with them); otherwise a
        token reads the schemas of the services it covers, and nothing else: a service
        schema refers only to sections and itself, so that is all a client needs.
        """
        if name not in self.settings.sections and not principal.covers_service(name):
            raise forbidden(f"this token may not read the schema of {name!r}")
        self.check_names(name)

    def check_schema_write(self, principal: Principal, name: str) -> None:
        """403 unless the token may put schema `name`: a writer holding the service in every
        environment (a schema binds them all), and for a section schema, an admin."""
        if name in self.settings.sections:
            if not principal.is_admin:
                raise forbidden(
                    f"{name!r} is a section schema, shared by every service: only an admin may put it"
                )
        elif not (
            principal.has_role("writer")
            and principal.covers_service(name)
            and principal.covers_all_environments(self.settings.pipeline)
        ):
            raise forbidden(
                f"this token may not put the schema of {name!r} (it needs every environment)"
            )

    def check_names(self, service: str, environment: str | None = None) -> None:
        try:
            check_name(service, "service")
            if environment is not None:
                check_name(environment, "environment")
        except InvalidName as error:
            raise ApiError(422, "invalid_name", str(error)) from None
        if environment is not None and environment not in self.settings.pipeline:
            raise ApiError(
                404,
                "unknown_environment",
                f"environment {environment!r} is not one of this server's environments "
                f"({', '.join(self.settings.pipeline)})",
            )

    # -- writing documents ------------------------------------------------------------

    def push(
        self,
        principal: Principal,
        service: str,
        environment: str,
        source: str,
        message: str = "",
        if_match: IfMatch = None,
        *,
        kind: str = "push",
        request_id: str | None = None,
        promoted_from: tuple[str, int] | None = None,
        rolled_back_to: int | None = None,
        audit_detail: dict[str, Any] | None = None,
    ) -> tuple[Rendered, bool]:
        """Validate and store `source` as the next version; (rendered, created).

        Raises ApiError: 422 invalid_tsk / schema_violation, 412 precondition_failed.
        An identical source (after the precondition) answers the current version, created=False.
        """
        operation = self.prepare_push(
            principal,
            service,
            environment,
            source,
            message,
            if_match,
            kind=kind,
            request_id=request_id,
            promoted_from=promoted_from,
            rolled_back_to=rolled_back_to,
            audit_detail=audit_detail,
        )
        return self.complete_push(self.store.submit(operation))

    async def push_async(
        self,
        principal: Principal,
        service: str,
        environment: str,
        source: str,
        message: str = "",
        if_match: IfMatch = None,
        *,
        request_id: str | None = None,
    ) -> tuple[Rendered, bool]:
        """`push` for the event loop: parse and validate here (in a thread when large), then
        wait for the writer thread without holding a thread of our own.
        """
        arguments = (principal, service, environment, source, message, if_match)
        if len(source) > LARGE_DOCUMENT:
            operation = await asyncio.to_thread(self.prepare_push, *arguments, request_id=request_id)
        else:
            operation = self.prepare_push(*arguments, request_id=request_id)
        future = self.store.submit(operation)
        try:
            await asyncio.wrap_future(future)
        except Exception:
            pass  # complete_push raises it, in the form the caller expects
        return self.complete_push(future)

    def prepare_push(
        self,
        principal: Principal,
        service: str,
        environment: str,
        source: str,
        message: str = "",
        if_match: IfMatch = None,
        *,
        kind: str = "push",
        request_id: str | None = None,
        promoted_from: tuple[str, int] | None = None,
        rolled_back_to: int | None = None,
        audit_detail: dict[str, Any] | None = None,
    ) -> Callable[[Transaction], tuple[VersionRecord, bool]]:
        """Parse and validate `source` (raising ApiError when refused); the write operation."""
        if service in self.settings.sections:
            # A service named like a section would be validated against, and could rewrite,
            # the schema every service shares.
            raise ApiError(
                422,
                "invalid_name",
                f"{service!r} is the name of a section schema ({', '.join(self.settings.sections)}); "
                "a service cannot have it",
            )
        self.check_message(message)
        try:
            document = parse_document(source)
        except ApiError:
            self.metrics.validation_failures.labels(kind="invalid_tsk").inc()
            raise
        schemas = self._schemas
        failures = schema_failures(schemas, service, document.data)
        if failures:
            self._refuse_invalid(service, environment, failures)
        new = NewVersion(
            service=service,
            environment=environment,
            source=source,
            config=document.wire,
            hash=document.hash,
            author=principal.name,
            token_id=principal.token_id,
            message=message,
            kind=kind,
            promoted_from_environment=promoted_from[0] if promoted_from else None,
            promoted_from_version=promoted_from[1] if promoted_from else None,
            rolled_back_to=rolled_back_to,
        )
        audit = AuditEntry(
            actor=principal.name,
            token_id=principal.token_id,
            action=kind,
            service=service,
            environment=environment,
            request_id=request_id,
            detail={"hash": document.hash, "message": message, **(audit_detail or {})},
        )

        # Runs on the store's writer thread, in commit order with every other write.
        def operation(transaction: Transaction) -> tuple[VersionRecord, bool]:
            if self._schemas is not schemas:
                # A schema changed after we validated: validate against today's schema.
                failures = schema_failures(self._schemas, service, document.data)
                if failures:
                    self._refuse_invalid(service, environment, failures)
            return transaction.append_version(new, if_match, audit)

        return operation

    def complete_push(self, future: Future[tuple[VersionRecord, bool]]) -> tuple[Rendered, bool]:
        """The answer to a push once its write operation finished (raising what it raised)."""
        try:
            record, created = future.result()
        except PreconditionFailed as failure:
            raise precondition_failed(
                f"the current version is "
                f"{failure.current if failure.current is not None else 'none'}, "
                f"not the one named in If-Match",
                failure.current,
            ) from None
        service, environment = record.service, record.environment
        if created:
            rendered = self._current.get((service, environment))
            if rendered is None or rendered.version != record.version:
                rendered = render(record)
            return rendered, True
        current = self.current(service, environment)
        assert current is not None
        return current, False

    def check_message(self, message: str) -> None:
        """413 `too_large` when a version's message is over the limit, in bytes of UTF-8.

        Every listing of the history carries the messages, so one large message costs
        memory and time on every read of it.
        """
        limit = self.settings.max_message
        if len(message) * 4 <= limit:  # no character takes more than 4 bytes
            return
        size = len(message.encode("utf-8", "surrogatepass"))
        if size > limit:
            raise ApiError(
                413,
                "too_large",
                f"the version's message is {size} bytes of UTF-8; this server's limit is {limit} bytes",
            )

    def _refuse_invalid(
        self, service: str, environment: str, failures: list[dict[str, str]]
    ) -> None:
        self.metrics.validation_failures.labels(kind="schema_violation").inc()
        raise ApiError(
            422,
            "schema_violation",
            f"the document breaks the schema of {service!r} "
            f"({len(failures)} failure{'s' if len(failures) != 1 else ''})",
            failures,
        )

    def rollback(
        self,
        principal: Principal,
        service: str,
        environment: str,
        version: int,
        message: str = "",
        request_id: str | None = None,
    ) -> tuple[Rendered, bool]:
        """A new version with the source of `version`, validated against today's schema."""
        target = self.store.get_version(service, environment, version)
        if target is None:
            raise not_found(f"{service!r} in {environment!r} has no version {version}")
        return self.push(
            principal,
            service,
            environment,
            target.source,
            message or f"roll back to version {version}",
            kind="rollback",
            request_id=request_id,
            rolled_back_to=version,
        )

    def promotion_source(
        self, service: str, environment: str, source_environment: str, version: int | None
    ) -> VersionRecord:
        """The version a promotion would copy; 409 unless `source_environment` is the previous step."""
        previous = self.settings.previous_environment(environment)
        if previous != source_environment:
            expected = f"only from {previous!r}" if previous else "not at all (it is the first step)"
            raise ApiError(
                409,
                "conflict",
                f"{environment!r} can be promoted into {expected}, not from {source_environment!r}",
            )
        if version is None:
            record = self.store.current_version(service, source_environment)
            if record is None:
                raise not_found(f"{service!r} has no version in {source_environment!r}")
        else:
            record = self.store.get_version(service, source_environment, version)
            if record is None:
                raise not_found(f"{service!r} in {source_environment!r} has no version {version}")
        return record

    def promote(
        self,
        principal: Principal,
        service: str,
        environment: str,
        source_environment: str,
        version: int | None,
        message: str = "",
        request_id: str | None = None,
    ) -> tuple[Rendered, bool]:
        record = self.promotion_source(service, environment, source_environment, version)
        return self.push(
            principal,
            service,
            environment,
            record.source,
            message or f"promote {source_environment} version {record.version}",
            kind="promote",
            request_id=request_id,
            promoted_from=(source_environment, record.version),
        )

    def check_promotion(
        self, service: str, environment: str, source: str
    ) -> tuple[Document, list[dict[str, str]]]:
        """Parse and validate what a promotion would store, without storing it."""
        document = parse_document(source)
        return document, schema_failures(self._schemas, service, document.data)

    # -- schemas ------------------------------------------------------------------------

    def _schema_set_from_store(self) -> SchemaSet:
        schemas = {record.name: json.loads(record.schema) for record in self.store.current_schemas()}
        for name, schema in sorted(schemas.items()):
            # Stored by a server that did not check identifiers: known by its name from now on.
            for failure in identifier_failures(name, schema) if isinstance(schema, dict) else ():
                logger.warning(
                    "the stored schema %r has an identifier it may no longer carry (%s: %s); "
                    "it is used as %r only, and the next put of it must leave that out",
                    name,
                    failure["path"] or "/",
                    failure["message"],
                    f"{name}.json",
                )
        return SchemaSet(schemas, generation=self._schemas.generation + 1)

    @property
    def schemas(self) -> SchemaSet:
        return self._schemas

    def schema_conflicts(
        self, candidate: SchemaSet, changed: str, current: list[VersionRecord]
    ) -> list[dict[str, Any]]:
        """Every current document (in a configured environment) that `candidate` would refuse,
        among the services whose schema is `changed` or uses it through `$ref`.
        """
        affected = candidate.users_of(changed)
        conflicts: list[dict[str, Any]] = []
        for record in current:
            if record.environment not in self.settings.pipeline:
                continue
            if record.service not in affected or candidate.validator(record.service) is None:
                continue
            data = tsk.from_wire(json.loads(record.config))
            for failure in schema_failures(candidate, record.service, data):
                conflicts.append(
                    {
                        "service": record.service,
                        "environment": record.environment,
                        "version": record.version,
                        "path": failure["path"],
                        "message": failure["message"],
                    }
                )
        return conflicts

    def put_schema(
        self,
        principal: Principal,
        name: str,
        schema: Any,
        force: bool = False,
        request_id: str | None = None,
        text: str | None = None,
    ) -> tuple[SchemaRecord, bool]:
        """Store a new version of schema `name` unless it is invalid or breaks current documents.

        `text` is the JSON as received, stored as it is (a file's content, so file sync can
        tell whether the file changed); without it the schema is stored re-serialised.

        Raises ApiError 403 when the token may not put it (`check_schema_write`) or asks for
        `force` without being admin, 422 invalid_name for a section named like a service
        with documents, 422 invalid_schema, 409 schema_conflict (details: every failing
        document the token may read, with its path).
        """
        if force and not principal.is_admin:
            raise forbidden("only an admin token may force a schema")
        self.check_schema_write(principal, name)
        if name in self.settings.sections and self.store.has_versions(name):
            raise ApiError(
                422,
                "invalid_name",
                f"{name!r} is a service with documents, so it cannot be a section schema's name "
                "too; take it out of the server's sections or rename the section",
            )
        digest = schema_hash(schema)
        stored_text = text if text is not None else json.dumps(schema, ensure_ascii=False, indent=2)

        # Runs on the store's writer thread, alone in its transaction: the documents it
        # checks are exactly the current ones, and no push can pass it.
        def operation(transaction: Transaction) -> tuple[SchemaRecord, bool]:
            # Identical to the current schema: nothing to check (it may have been forced in).
            current = transaction.current_schema(name)
            if current is not None and current.hash == digest:
                return current, False
            others = {key: value for key, value in self._schemas.schemas.items() if key != name}
            try:
                check_schema(name, schema, others, self.settings.sections)
            except SchemaInvalid as error:
                self.metrics.validation_failures.labels(kind="invalid_schema").inc()
                raise ApiError(422, "invalid_schema", str(error), error.details) from None
            candidate = SchemaSet({**others, name: schema}, self._schemas.generation + 1)
            conflicts = self.schema_conflicts(candidate, name, transaction.current_versions())
            if conflicts and not force:
                self._refuse_conflicts(principal, name, conflicts)
            audit = AuditEntry(
                actor=principal.name,
                token_id=principal.token_id,
                action="schema",
                service=name,
                request_id=request_id,
                detail={"forced": bool(force and conflicts), "conflicts": len(conflicts)},
            )
            record, created = transaction.append_schema(
                name, stored_text, digest, principal.name, principal.token_id, audit
            )
            if created:
                transaction.after_commit(lambda: self._use_schemas(candidate))
            return record, created

        return self.store.write(operation, exclusive=True)

    def _refuse_conflicts(
        self, principal: Principal, name: str, conflicts: list[dict[str, Any]]
    ) -> None:
        """409 schema_conflict naming the failing documents the token may read; the others
        are only counted, so a schema writer learns nothing of documents outside its scope."""
        shown = [c for c in conflicts if principal.covers(c["service"], c["environment"])]
        hidden = len(
            {
                (c["service"], c["environment"])
                for c in conflicts
                if not principal.covers(c["service"], c["environment"])
            }
        )
        outside = f"{hidden} document{'s' if hidden != 1 else ''} outside this token's scope"
        if shown:
            environments = ", ".join(sorted({conflict["environment"] for conflict in shown}))
            also = f", and {outside}" if hidden else ""
            message = (
                f"schema {name!r} would break the current document in {environments}{also}; "
                "fix them first, or force it as an admin"
            )
        else:
            message = f"schema {name!r} would break {outside}; ask an admin"
        raise ApiError(409, "schema_conflict", message, shown)

    def _use_schemas(self, schemas: SchemaSet) -> None:
        self._schemas = schemas

    def get_schema(self, name: str, version: int | None = None) -> SchemaRecord:
        record = (
            self.store.current_schema(name)
            if version is None
            else self.store.get_schema(name, version)
        )
        if record is None:
            what = f"version {version} of its schema" if version is not None else "schema"
            raise not_found(f"{name!r} has no {what}")
        return record

    # -- tokens ---------------------------------------------------------------------------

    def create_token(
        self,
        principal: Principal,
        name: str,
        role: str,
        services: list[str],
        environments: list[str],
        request_id: str | None = None,
    ) -> tuple[TokenRecord, str]:
        record, secret = make_token(name, role, services, environments, principal.name)
        audit = AuditEntry(
            actor=principal.name,
            token_id=principal.token_id,
            action="token_create",
            request_id=request_id,
            detail={"id": record.id, "name": name, "role": role},
        )
        self.store.write(lambda transaction: transaction.insert_token(record, audit))
        self.tokens.put(record)
        return record, secret

    def revoke_token(
        self, principal: Principal, token_id: str, request_id: str | None = None
    ) -> TokenRecord:
        audit = AuditEntry(
            actor=principal.name,
            token_id=principal.token_id,
            action="token_revoke",
            request_id=request_id,
            detail={"id": token_id},
        )
        record = self.store.write(lambda transaction: transaction.revoke_token(token_id, audit))
        if record is None:
            raise not_found(f"there is no token {token_id!r}")
        self.tokens.put(record)
        return record

    def ensure_admin_token(self) -> Path | None:
        """On first start (no tokens at all), create an admin token and write it, mode 0600."""
        if self.store.list_tokens():
            return None
        record, secret = make_token("admin", "admin", ["*"], ["*"], "first start")
        path = self.settings.admin_token_path
        make_private_folder(path.parent)
        audit = AuditEntry(
            actor="system", action="token_create", detail={"id": record.id, "name": "admin"}
        )
        # Store first, then publish the file: a crash in between leaves no orphan secret file.
        with replacing(path, (secret + "\n").encode("ascii"), mode=0o600):
            self.store.write(lambda transaction: transaction.insert_token(record, audit))
        self.tokens.put(record)
        logger.info("created the first admin token; it is in %s (mode 0600)", path)
        return path


_VERBS = {"reader": "read", "writer": "write", "admin": "administer"}
