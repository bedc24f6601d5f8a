"""The part of the client that does no I/O, shared by `ConfigClient` and `AsyncConfigClient`.

It builds requests and reads responses, turns a received document into a `Config` (hash
check, `@env` resolution, schema validation), plans and runs the all-or-nothing apply, and
decides how long to wait after a failure. The sync and async clients only move bytes and
sleep, so the two cannot drift apart.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import time
from collections.abc import Awaitable, Callable, Generator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import httpx
from referencing.exceptions import Unresolvable

from config_service import __version__, tsk, validation
from config_service.names import check_name
from tskcfg import exceptions
from tskcfg._appliers import (
    Applier,
    CacheApplier,
    CacheFactory,
    DatabaseApplier,
    LoggingApplier,
    SecurityPolicy,
)
from tskcfg._config import Config, Source
from tskcfg._events import ServerEvent
from tskcfg._lkg import default_cache_dir, lkg_path, read_lkg, write_lkg
from tskcfg._retry import RetryPolicy
from tskcfg._transaction import Handler, Step, Transaction, applier_step, handler_step, transaction

logger = logging.getLogger("tskcfg")

DEFAULT_SERVER = "http://localhost:8005"
DEFAULT_ENVIRONMENT = "development"
Mode = Literal["watch", "poll", "sse", "files"]
MODES = ("watch", "poll", "sse", "files")
# The built-in appliers run first, always in this order, then the service's handlers.
BUILTIN_ORDER = ("logging", "security", "cache", "database")
# A long poll is held this long by the server; the deadline leaves room for the answer.
WATCH_WAIT = 60.0
# The whole of one answer (connect, head and body) must arrive within this many seconds,
# beyond a long poll's wait; the largest answer taken. Past either it is a failed answer.
DEFAULT_TIMEOUT = 10.0
DEFAULT_MAX_RESPONSE_BYTES = 8 * 1024 * 1024
REPORT_TIMEOUT = 5.0
# An answer that brings nothing new sooner than this is followed by a pause, so a server
# that ignores `wait` cannot turn the watch loop into a busy loop.
MIN_CHECK_INTERVAL = 1.0

T = TypeVar("T")


# ---------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Settings:
    """Everything a client was told, with the environment variables' defaults filled in."""

    service: str
    environment: str
    server: str
    token: str | None
    cache_dir: Path
    environments_dir: Path
    mode: Mode
    poll_interval: float
    instance_id: str
    schemas_dir: Path
    timeout: float = DEFAULT_TIMEOUT
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES

    @property
    def lkg_path(self) -> Path:
        return lkg_path(self.cache_dir, self.service, self.environment)

    @property
    def file_path(self) -> Path:
        return self.environments_dir / self.environment / f"{self.service}.tsk"

    @property
    def config_url(self) -> str:
        return f"{self.server}/v1/configs/{self.service}/{self.environment}"


def make_settings(
    service: str,
    environment: str | None = None,
    *,
    server: str | None = None,
    token: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    environments_dir: str | os.PathLike[str] | None = None,
    mode: str = "watch",
    poll_interval: float = 30.0,
    instance_id: str | None = None,
    schemas_dir: str | os.PathLike[str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
) -> Settings:
    """Fill in defaults (`SERVICE_ENV`, `CONFIG_STORE`, `CONFIG_TOKEN`) and check every argument."""
    environment = environment or os.environ.get("SERVICE_ENV") or DEFAULT_ENVIRONMENT
    check_name(service, "service")
    check_name(environment, "environment")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if (
        isinstance(poll_interval, bool)
        or not isinstance(poll_interval, int | float)
        or poll_interval <= 0
    ):
        raise ValueError(
            f"poll_interval must be a positive number of seconds, not {poll_interval!r}"
        )
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not math.isfinite(timeout)
        or timeout <= 0
    ):
        raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
    if (
        isinstance(max_response_bytes, bool)
        or not isinstance(max_response_bytes, int)
        or max_response_bytes <= 0
    ):
        raise ValueError(
            f"max_response_bytes must be a positive whole number, not {max_response_bytes!r}"
        )
    server = (server or os.environ.get("CONFIG_STORE") or DEFAULT_SERVER).rstrip("/")
    if not server.startswith(("http://", "https://")):
        raise ValueError(f"server must be an http:// or https:// URL, not {server!r}")
    environments = Path(environments_dir) if environments_dir is not None else Path("environments")
    return Settings(
        service=service,
        environment=environment,
        server=server,
        token=token if token is not None else os.environ.get("CONFIG_TOKEN") or None,
        cache_dir=Path(cache_dir) if cache_dir is not None else default_cache_dir(),
        environments_dir=environments,
        mode=mode,  # type: ignore[arg-type]
        poll_interval=float(poll_interval),
        instance_id=instance_id or f"{socket.gethostname()}:{os.getpid()}",
        # The layout of this repository: schemas/ beside environments/.
        schemas_dir=Path(schemas_dir) if schemas_dir is not None else environments.parent / "schemas",
        timeout=float(timeout),
        max_response_bytes=max_response_bytes,
    )


# ---------------------------------------------------------------------------- received documents


@dataclass(frozen=True)
class Received:
    """A document as it arrived (server, cache file or local file), not yet checked."""

    version: int | None
    hash: str
    wire: dict[str, Any]
    # How messages name it when it has no version: "file environments/…/user-service.tsk".
    origin: str = "the document"

    @property
    def label(self) -> str:
        return f"version {self.version}" if self.version is not None else self.origin


def _json_body(response: httpx.Response) -> Any:
    """The JSON of an answer, or None when it is not JSON this client can take.

    A server or proxy may send anything: nesting deeper than the parser's stack
    (RecursionError) and integers of thousands of digits (ValueError) are answers that are
    not a config, like any other bad answer.
    """
    try:
        return response.json()
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None


class BoundedBody:
    """Collects the body of one answer, refusing it past the size limit or the deadline.

    The clients read answers as streams and feed the chunks here, so no more than
    `limit` bytes of an answer are ever held, and a body that trickles in ends at the
    deadline however often bytes arrive.
    """

    def __init__(self, request: httpx.Request, response: httpx.Response, *, limit: int, deadline: float) -> None:
        self.request = request
        self.response = response
        self.limit = limit
        self.deadline = deadline
        self.chunks: list[bytes] = []
        self.size = 0
        announced = response.headers.get("Content-Length", "")
        if announced.isdigit() and int(announced) > limit:
            raise self._refused(f"it announces {int(announced)} bytes")
        self.check_time()

    def _refused(self, why: str) -> exceptions.ServerUnavailable:
        return exceptions.ServerUnavailable(
            f"{self.request.method} {self.request.url.copy_with(query=None)}: "
            f"the answer is larger than the limit of {self.limit} bytes ({why})"
        )

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise exceptions.ServerUnavailable(
                f"{self.request.method} {self.request.url.copy_with(query=None)}: "
                "the answer did not arrive in full within the client's timeout"
            )

    def add(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.limit:
            raise self._refused(f"{self.size} bytes read so far")
        self.chunks.append(chunk)
        self.check_time()

    def complete(self) -> httpx.Response:
        """The answer with its whole body, decoded already."""
        headers = [
            (name, value)
            for name, value in self.response.headers.multi_items()
            if name.lower() not in ("content-encoding", "content-length", "transfer-encoding")
        ]
        return httpx.Response(
            self.response.status_code,
            headers=headers,
            content=b"".join(self.chunks),
            request=self.request,
            extensions={"reason_phrase": self.response.reason_phrase.encode("ascii", "replace")},
        )


def raise_for_status(response: httpx.Response, what: str) -> None:
    """Map an error answer to the client's exceptions: 5xx is unavailability, 4xx is raised as is."""
    status = response.status_code
    if status < 400:
        return
    body = _json_body(response)
    body = body if isinstance(body, dict) else {}
    message = str(body.get("message") or response.reason_phrase or "error")
    text = f"{what}: the server answered {status}: {message}"
    if status >= 500:
        raise exceptions.ServerUnavailable(text)
    kind: type[exceptions.RequestRejected] = {
        401: exceptions.Unauthorized,
        403: exceptions.Forbidden,
        404: exceptions.NotFound,
    }.get(status, exceptions.RequestRejected)
    raise kind(text, status=status, code=str(body.get("error", "")), details=body.get("details"))


def received_from_file(path: Path) -> Received:
    """Parse a local TSK document; a syntax error becomes InvalidConfig with line and column."""
    try:
        text = path.read_text(encoding="utf-8")
        data = tsk.loads(text)
    except FileNotFoundError as error:
        raise exceptions.ConfigError(f"{path}: no such file") from error
    except OSError as error:  # a directory in its place, no permission: say so, keep watching
        raise exceptions.ConfigError(
            f"{path}: cannot be read ({error.strerror or error})"
        ) from error
    except tsk.TSKDecodeError as error:
        raise exceptions.InvalidConfig(
            f"{path}:{error.lineno}:{error.colno}: {error.msg}",
            details=[{"line": error.lineno, "column": error.colno, "message": error.msg}],
        ) from error
    except UnicodeDecodeError as error:
        raise exceptions.InvalidConfig(f"{path}: not UTF-8 ({error.reason})") from error
    return Received(
        version=None, hash=tsk.document_hash(data), wire=tsk.to_wire(data), origin=f"file {path}"
    )


def local_schemas(directory: Path, service: str) -> validation.SchemaSet | None:
    """`<directory>/<service>.json` with the section schemas it refers to, checked as the server
    checks a schema it is given; None when the directory has no schema for the service."""
    if not (directory / validation.schema_file_name(service)).is_file():
        return None
    schemas: dict[str, Any] = {}
    pending = [service]
    while pending:
        name = pending.pop()
        path = directory / validation.schema_file_name(name)
        try:
            schemas[name] = json.loads(path.read_text(encoding="utf-8"))
        except OSError as error:
            raise exceptions.InvalidConfig(
                f"{path}: cannot be read ({error.strerror or error})"
            ) from error
        except (ValueError, RecursionError) as error:
            raise exceptions.InvalidConfig(f"{path} is not JSON: {error}") from error
        for target in sorted(validation.referenced_schemas(schemas[name])):
            # A missing one is left to check_schema, which says which $ref does not resolve.
            if target not in schemas and (directory / validation.schema_file_name(target)).is_file():
                pending.append(target)
    for name, schema in schemas.items():
        others = {other: value for other, value in schemas.items() if other != name}
        try:
            validation.check_schema(name, schema, others)
        except validation.SchemaInvalid as error:
            raise exceptions.InvalidConfig(
                f"{directory / validation.schema_file_name(name)}: {error}", details=error.details
            ) from None
    return validation.SchemaSet(schemas, generation=0)


def lkg_schemas(stored: Mapping[str, Any]) -> validation.SchemaSet | None:
    """The schemas a last-known-good record was validated against (None: on the server only)."""
    schemas = stored.get("schema")
    if schemas is None:
        return None
    if not isinstance(schemas, dict) or not all(
        isinstance(schema, dict) for schema in schemas.values()
    ):
        raise ValueError("its schema is not a set of schemas by name")
    return validation.SchemaSet(schemas, generation=0)


# A string from the environment shorter than this is hidden only where it is quoted: bare, it
# could be any word of a message ("true", a port number).
BARE_SECRET_LENGTH = 8


def environment_texts(data: Any, resolved: Any) -> dict[str, str]:
    """Each string that came from an environment variable (as quoted and, when long, as is) ->
    `@env(NAME)`. Values written in the document (defaults too) are not in it."""
    texts: dict[str, str] = {}

    def collect(value: Any, name: str) -> None:
        if isinstance(value, str) and value:
            texts[repr(value)] = f"@env({name})"
            if len(value) >= BARE_SECRET_LENGTH:
                texts[value] = f"@env({name})"
        elif isinstance(value, dict):
            for key, item in value.items():
                collect(key, name)
                collect(item, name)
        elif isinstance(value, list):
            for item in value:
                collect(item, name)

    def walk(node: Any, value: Any) -> None:
        if isinstance(node, tsk.EnvRef):
            if node.name in os.environ:
                collect(value, node.name)
        elif isinstance(node, dict) and isinstance(value, dict):
            for key, item in node.items():
                walk(item, value.get(key))
        elif isinstance(node, list) and isinstance(value, list):
            for item, resolved_item in zip(node, value, strict=False):
                walk(item, resolved_item)

    walk(data, resolved)
    return texts


def hide_environment_text(message: str, texts: Mapping[str, str]) -> str:
    """`message` with every text of `environment_texts` replaced by its `@env(NAME)`.

    Schema messages repeat the value they refuse, and an applier's or handler's error may quote
    a url with its password; both are logged and reported to the server, where any reader of
    the service sees them: a secret passed through `@env` must not travel that way.
    """
    for text in sorted(texts, key=len, reverse=True):
        message = message.replace(text, texts[text])
    return message


def hide_environment_values(
    details: list[dict[str, Any]], data: Any, resolved: Any
) -> list[dict[str, Any]]:
    """Schema failures `{path, message}` with their messages passed through `hide_environment_text`."""
    texts = environment_texts(data, resolved)
    if not texts:
        return details
    return [
        {**detail, "message": hide_environment_text(str(detail.get("message", "")), texts)}
        for detail in details
    ]


@dataclass(frozen=True)
class SchemaAnswer:
    """A schema as `GET /v1/schemas/{name}` serves it."""

    name: str
    version: Any
    schema: dict[str, Any]


# ---------------------------------------------------------------------------- flows and effects
#
# What the client does on a load or a new version is written once, as generators ("flows")
# that yield the effects they need and receive the results: an `httpx.Request` to send (the
# response comes back), a plain callable to call (a handler; the async client awaits what it
# returns), a `Report` to deliver in the background, an `Offload` of blocking file work, and
# an `Exclusive` sub-flow to run under the client's apply lock. `ConfigClient` and
# `AsyncConfigClient` only perform effects, so the two cannot drift apart.


@dataclass(frozen=True)
class Report:
    """Tell the server which version this instance runs (never blocking the service)."""

    status: Literal["applied", "failed", "fallback", "stopped"]
    subject: Config | Received | None
    error: str | None = None


@dataclass(frozen=True)
class Offload:
    """Blocking work (an fsync) the async client runs in a thread."""

    function: Callable[[], Any]


@dataclass(frozen=True)
class Exclusive:
    """A sub-flow that must not interleave with another apply."""

    flow: Generator[Any, Any, Any]


# What a handler that calls load() or refresh() of its own client gets, rather than waiting
# for the apply it runs in to finish: that wait would never end.
REENTRANT_APPLY = "a handler cannot call load() or refresh() of the client applying it"


Flow = Generator[Any, Any, T]


def drive(flow: Generator[Any, Any, T], perform: Callable[[Any], Any]) -> T:
    """Run a flow, performing each effect with `perform`; an effect's exception goes back in."""
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            effect = flow.throw(error) if error is not None else flow.send(value)
        except StopIteration as finished:
            return finished.value
        value, error = None, None
        try:
            value = perform(effect)
        except BaseException as raised:  # thrown into the flow, so an apply can revert first
            error = raised


async def drive_async(flow: Generator[Any, Any, T], perform: Callable[[Any], Awaitable[Any]]) -> T:
    """`drive` for an event loop: `perform` is a coroutine function."""
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            effect = flow.throw(error) if error is not None else flow.send(value)
        except StopIteration as finished:
            return finished.value
        value, error = None, None
        try:
            value = await perform(effect)
        except BaseException as raised:  # a cancellation too: the apply reverts, then it goes on
            error = raised


# ---------------------------------------------------------------------------- the shared core


class ClientCore:
    """The state and rules of one client: current config, appliers, handlers, what was seen."""

    def __init__(
        self,
        settings: Settings,
        *,
        database: DatabaseApplier | None = None,
        cache_backends: Mapping[str, CacheFactory] | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.settings = settings
        self.logging = LoggingApplier()
        self.security = SecurityPolicy()
        self.cache = CacheApplier(cache_backends)
        self.database = database if database is not None else DatabaseApplier()
        self.appliers: dict[str, Applier] = {
            "logging": self.logging,
            "security": self.security,
            "cache": self.cache,
            "database": self.database,
        }
        self.handlers: list[tuple[str, Handler]] = []
        self.retry = retry or RetryPolicy()
        self.config: Config | None = None
        # The last version the server showed us, applied or refused: a refused version is not
        # fetched again, the watch waits for the next one.
        self.seen_version: int | None = None
        # (version, hash) of the last version refused (invalid, or an applier or handler raised):
        # served again, say by a proxy that drops If-None-Match, it is not tried again.
        self.refused: tuple[int | None, str] | None = None
        self.fallback_pending = False
        self._file_signature: tuple[int, int, int] | None = None
        # (schema version, compiled schemas or None when unusable on the client)
        self._schemas: tuple[Any, validation.SchemaSet | None] | None = None
        self._headers = {"User-Agent": f"tskcfg-client/{__version__}", "Accept": "application/json"}
        if settings.token:
            self._headers["Authorization"] = f"Bearer {settings.token}"

    # -- requests

    def _request(self, method: str, url: str, *, timeout: float, **kwargs: Any) -> httpx.Request:
        """A request whose every phase times out at `timeout` (see `deadline`)."""
        return httpx.Request(
            method,
            url,
            headers=self._headers,
            extensions={"timeout": httpx.Timeout(timeout, connect=min(timeout, 5.0)).as_dict()},
            **kwargs,
        )

    @staticmethod
    def seconds_allowed(request: httpx.Request) -> float:
        """How long the whole answer to `request` may take: its read timeout, as one deadline.

        httpx times each read alone, so a server sending a byte a second would never time
        out; the clients hold the whole exchange to this.
        """
        timeout = request.extensions.get("timeout", {}).get("read")
        return float(timeout) if timeout is not None else DEFAULT_TIMEOUT

    def bounded_body(self, request: httpx.Request, response: httpx.Response, started: float) -> BoundedBody:
        return BoundedBody(
            request,
            response,
            limit=self.settings.max_response_bytes,
            deadline=started + self.seconds_allowed(request),
        )

    def config_request(
        self, *, wait: float | None = None, conditional: bool = True
    ) -> httpx.Request:
        """GET the current document; with `wait`, a long poll held until a version after `seen_version`."""
        headers = {}
        params = {}
        if conditional and self.seen_version is not None:
            headers["If-None-Match"] = f'"{self.seen_version}"'
            if wait:
                params["wait"] = str(int(wait))
        request = self._request(
            "GET",
            self.settings.config_url,
            params=params,
            timeout=(wait or 0) + self.settings.timeout,
        )
        request.headers.update(headers)
        return request

    def schema_request(self, name: str | None = None) -> httpx.Request:
        return self._request(
            "GET",
            f"{self.settings.server}/v1/schemas/{name or self.settings.service}",
            timeout=self.settings.timeout,
        )

    def events_request(self, last_event_id: str | None) -> httpx.Request:
        params = {"service": self.settings.service, "environment": self.settings.environment}
        # The read timeout outlasts the server's 15 s pings, so a silent stream means a dead one.
        request = self._request(
            "GET", f"{self.settings.server}/v1/events", params=params, timeout=45.0
        )
        request.headers["Accept"] = "text/event-stream"
        if last_event_id is not None:
            request.headers["Last-Event-ID"] = last_event_id
        return request

    def report_request(self, report: Report) -> httpx.Request:
        """`POST /v1/instances`: `version`/`hash` are what this instance runs; a `failed` report
        adds `failed_version`/`failed_hash`, the version it could not apply."""
        runs = self.config if report.status == "failed" else report.subject
        body: dict[str, Any] = {
            "instance_id": self.settings.instance_id,
            "service": self.settings.service,
            "environment": self.settings.environment,
            "version": runs.version if runs is not None else None,
            "hash": runs.hash if runs is not None else None,
            "status": report.status,
            "error": report.error,
        }
        if report.status == "failed":
            failed = report.subject
            body["failed_version"] = failed.version if failed is not None else None
            body["failed_hash"] = failed.hash if failed is not None else None
        return self._request(
            "POST", f"{self.settings.server}/v1/instances", json=body, timeout=REPORT_TIMEOUT
        )

    # -- responses

    def read_config(self, response: httpx.Response) -> Received | None:
        """The document in a GET answer, or None for 304 (nothing new)."""
        if response.status_code == 304:
            return None
        raise_for_status(response, f"GET {self.settings.config_url}")
        body = _json_body(response)
        try:
            version = body["version"]
            digest = body["hash"]
            wire = body["config"]
            if (
                isinstance(version, bool)
                or not isinstance(version, int)
                or not isinstance(digest, str)
                or not isinstance(wire, dict)
            ):
                raise TypeError
        except (KeyError, TypeError) as error:
            raise exceptions.ServerUnavailable(
                f"GET {self.settings.config_url}: the answer is not a config document"
            ) from error
        return Received(version=version, hash=digest, wire=wire)

    def read_schema(self, response: httpx.Response, name: str) -> SchemaAnswer | None:
        """The schema in a `GET /v1/schemas/{name}` answer, or None when there is none (404)."""
        if response.status_code == 404:
            return None
        raise_for_status(response, f"GET /v1/schemas/{name}")
        body = _json_body(response)
        if not isinstance(body, dict) or not isinstance(body.get("schema"), dict):
            raise exceptions.ServerUnavailable(
                f"GET /v1/schemas/{name}: the answer is not {{service, version, schema}}"
            )
        # The hash names the schema's content; the version alone would do on one server.
        key = (body.get("version"), body.get("hash"))
        return SchemaAnswer(name=name, version=key, schema=body["schema"])

    def cached_schemas(self, answer: SchemaAnswer) -> tuple[bool, validation.SchemaSet | None]:
        """(True, compiled) when this schema version was compiled already (compiled may be None)."""
        cached = self._schemas
        if cached is not None and cached[0] == answer.version:
            return True, cached[1]
        return False, None

    def sections_to_fetch(
        self, answer: SchemaAnswer, sections: Mapping[str, Mapping[str, Any]] | None = None
    ) -> list[str]:
        """Section schemas the service schema refers to by file name and that `sections` do
        not provide (a schema is known by its name only, never by an `$id` inside another)."""
        registry = validation.build_registry({**(sections or {}), answer.name: answer.schema})
        resolver = registry.resolver(base_uri=validation.schema_file_name(answer.name))
        missing = []
        for name in sorted(validation.referenced_schemas(answer.schema)):
            try:
                resolver.lookup(validation.schema_file_name(name))
            except Unresolvable:
                missing.append(name)
        return missing

    def compile_schemas(
        self, answer: SchemaAnswer, sections: Mapping[str, Mapping[str, Any]]
    ) -> validation.SchemaSet | None:
        """Compile the service schema with its section schemas, once per schema version.

        When a section schema could not be had (say the token does not cover it), the client
        skips its own validation with a warning: the server validated the document already.
        """
        missing = self.sections_to_fetch(answer, sections)
        if missing:
            logger.warning(
                "the schema of %s refers to %s, which this client cannot read; validating on the server only",
                answer.name,
                ", ".join(validation.schema_file_name(name) for name in missing),
            )
            self._schemas = (answer.version, None)
            return None
        compiled = validation.SchemaSet({**sections, answer.name: answer.schema}, generation=0)
        self._schemas = (answer.version, compiled)
        return compiled

    def is_news(self, version: int | None, digest: str, source: Source) -> bool:
        """Whether a document differs from the current config by version, content or source.

        A client started from its cache that finds the very same version on the server still
        takes it, so it runs (and reports) the server's version, not a fallback.
        """
        current = self.config
        return (
            current is None
            or current.hash != digest
            or current.version != version
            or current.source != source
        )

    # -- building a Config

    def decode(self, received: Received) -> Any:
        """The TSK data of a received document, its hash checked.

        What fails here is a document damaged on its way (bad hash, not a document): from the
        server, an answer that is not a valid config, which a fallback may stand in for.
        """
        try:
            data = tsk.from_wire(received.wire)
            actual = tsk.document_hash(data)
        except (ValueError, TypeError, RecursionError) as error:
            raise exceptions.InvalidConfig(
                f"{received.label} is not a valid document: {error}"
            ) from error
        if actual != received.hash:
            raise exceptions.HashMismatch(
                f"{received.label} was announced with hash {received.hash[:12]}… "
                f"but its data hashes to {actual[:12]}…; not applied"
            )
        return data

    def resolve(
        self,
        received: Received,
        data: Any,
        source: Source,
        schemas: validation.SchemaSet | None = None,
    ) -> Config:
        """Resolve `@env` in this process and validate: a Config ready to apply.

        What fails here is made invalid by this process's environment (or, for a local file,
        by its own content): no fallback may hide it, the cache would fail the same way.
        """
        try:
            resolved = tsk.resolve(data, environ=os.environ)
        except tsk.TSKResolveError as error:
            # The message quotes the variable's text, which may be a secret: it is logged and
            # reported to the server, so the text is left out.
            message = str(error)
            raw = os.environ.get(error.name)
            if raw is not None and raw.strip():
                message = message.replace(repr(raw.strip()), "set to a value (not shown)")
            raise exceptions.InvalidConfig(
                f"{received.label}: {message}",
                details=[{"variable": error.name, "message": message}],
            ) from None
        if schemas is not None:
            details = hide_environment_values(
                schemas.errors(self.settings.service, resolved), data, resolved
            )
            if details:
                first = details[0]
                raise exceptions.InvalidConfig(
                    f"{received.label} does not pass the {self.settings.service} schema "
                    f"after resolving @env: {first['path']}: {first['message']}",
                    details=details,
                )
        return Config(
            resolved,
            service=self.settings.service,
            environment=self.settings.environment,
            version=received.version,
            hash=received.hash,
            source=source,
            wire=received.wire,
            section_hashes=tsk.section_hashes(resolved),
            schemas=schemas.schemas if schemas is not None else None,
        )

    def build(
        self, received: Received, source: Source, schemas: validation.SchemaSet | None = None
    ) -> Config:
        """Check the hash, resolve `@env` in this process, validate: a Config ready to apply."""
        return self.resolve(received, self.decode(received), source, schemas)

    def read_cache(self) -> tuple[Received, validation.SchemaSet | None] | None:
        """The last-known-good document with the schemas it was validated against, or None
        when there is none usable (damage is logged)."""
        path = self.settings.lkg_path
        stored = read_lkg(path, service=self.settings.service, environment=self.settings.environment)
        if stored is None:
            return None
        try:
            schemas = lkg_schemas(stored)
        except (ValueError, TypeError, RecursionError) as error:
            logger.warning("last-known-good %s ignored: %s", path, error)
            return None
        version = stored.get("version")
        received = Received(
            version=version,
            hash=stored["hash"],
            wire=stored["config"],
            origin=f"last-known-good {path}",
        )
        return received, schemas

    def file_schemas(self) -> validation.SchemaSet | None:
        """The schemas a local file is checked against: those beside it (`schemas_dir`)."""
        return local_schemas(self.settings.schemas_dir, self.settings.service)

    def from_file(self, schemas: validation.SchemaSet | None = None) -> Config:
        """The local file, checked against `schemas`, else against those in `schemas_dir`."""
        self._file_signature = self.file_signature()
        received = received_from_file(self.settings.file_path)
        return self.build(received, "file", schemas if schemas is not None else self.file_schemas())

    def file_signature(self) -> tuple[int, int, int] | None:
        try:
            status = self.settings.file_path.stat()
        except OSError:
            return None
        return (status.st_mtime_ns, status.st_size, status.st_ino)

    def file_changed(self) -> bool:
        """Whether the local file differs from when it was last read.

        The file watcher only sees events after it has started; this check, made on its
        timeouts, catches an edit made between the first load and the watcher's start.
        """
        return self.file_signature() != self._file_signature

    def fallback(self, tried: list[str]) -> Config:
        """Start-up without the server: the cache, then the local file, each validated exactly as
        a server answer. When neither is usable: InvalidConfig if one failed validation here
        (this process makes it invalid), else ServerUnavailable."""
        invalid: exceptions.InvalidConfig | None = None
        config: Config | None = None
        cache_path = self.settings.lkg_path
        cached = self.read_cache()
        schemas = None
        if cached is None:
            tried.append(f"cache {cache_path}: none usable")
        else:
            received, schemas = cached
            try:
                config = self.build(received, "cache", schemas)
            except exceptions.InvalidConfig as error:
                logger.warning("last-known-good %s not usable: %s", cache_path, error)
                tried.append(f"cache {cache_path}: {error}")
                invalid = error
        if config is None:
            path = self.settings.file_path
            if path.is_file():
                try:
                    # Checked against the schema the cache was validated with, the newest known.
                    config = self.from_file(schemas)
                except exceptions.InvalidConfig as error:
                    tried.append(f"file {path}: {error}")
                    invalid = invalid or error
                except exceptions.ConfigError as error:  # gone since is_file(), unreadable
                    tried.append(f"file {path}: {error}")
            else:
                tried.append(f"file {path}: not found")
        if config is None:
            message = (
                f"no config for {self.settings.service}/{self.settings.environment}; tried "
                + "; ".join(tried)
            )
            if invalid is not None:
                raise exceptions.InvalidConfig(message, details=invalid.details)
            raise exceptions.ServerUnavailable(message)
        logger.warning(
            "config server unavailable; %s/%s starts from the %s",
            self.settings.service,
            self.settings.environment,
            self.describe(config),
        )
        return config

    def describe(self, config: Config | None) -> str:
        """How messages name a config: its version, or where it came from when it has none."""
        if config is None:
            return "no config"
        if config.source == "file":
            return f"file {self.settings.file_path}"
        if config.source == "cache":
            return f"last-known-good version {config.version}"
        return f"version {config.version}"

    # -- applying

    def plan(self, new: Config) -> list[Step]:
        """The steps that apply `new` over the current config: changed sections only."""
        old = self.config
        old_hashes = old.section_hashes if old is not None else {}
        new_hashes = new.section_hashes
        changed = {
            key
            for key in old_hashes.keys() | new_hashes.keys()
            if old_hashes.get(key) != new_hashes.get(key)
        }

        def sections(name: str) -> tuple[Any, Any]:
            before = old.section(name, None) if old is not None else None
            return new.section(name, None), before

        steps = [
            applier_step(name, self.appliers[name], *sections(name))
            for name in BUILTIN_ORDER
            if name in changed
        ]
        steps += [
            handler_step(name, handler, *sections(name))
            for name, handler in self.handlers
            if name in changed
        ]
        return steps

    def transaction(self, new: Config) -> Transaction:
        return transaction(self.plan(new), new.version, self.describe(new))

    # -- watching

    def pause_after_check(self, changed: bool, elapsed: float) -> float:
        """Seconds to wait after a check that succeeded (failures ask `retry`)."""
        self.retry.success()
        if self.settings.mode == "poll":
            return self.settings.poll_interval
        if changed:
            return 0.0
        return max(0.0, MIN_CHECK_INTERVAL - elapsed)

    def pause_after_failure(self, error: Exception) -> float:
        """Count a failed check, say why, and give the seconds to wait (backoff, breaker)."""
        pause = self.retry.failure()
        if isinstance(error, exceptions.ConfigError):
            logger.warning(
                "watching %s: %s; next try in %.1f s", self.settings.service, error, pause
            )
        else:
            logger.error(
                "watching %s failed; next try in %.1f s",
                self.settings.service,
                pause,
                exc_info=error,
            )
        return pause

    def announces_news(self, event: ServerEvent | None) -> bool:
        """Whether a server-sent event names a version of this document not seen yet."""
        if event is None or event.event != "version":
            return False
        try:
            announced = json.loads(event.data)
        except ValueError:
            logger.warning("ignored an event whose data is not JSON: %r", event.data[:200])
            return False
        return isinstance(announced, dict) and announced.get("version") != self.seen_version

    # -- flows

    def schemas_flow(self) -> Flow[validation.SchemaSet | None]:
        """The service's compiled schema: fetched each time, compiled once per schema version."""
        service = self.settings.service
        answer = self.read_schema((yield self.schema_request()), service)
        if answer is None:
            return None
        known, compiled = self.cached_schemas(answer)
        if known:
            return compiled
        sections = {}
        try:
            for name in self.sections_to_fetch(answer):
                try:
                    section = self.read_schema((yield self.schema_request(name)), name)
                except exceptions.RequestRejected:
                    continue  # compile_schemas says what is missing
                if section is not None:
                    sections[name] = section.schema
            return self.compile_schemas(answer, sections)
        except (ValueError, TypeError, RecursionError) as error:
            # The server checked its schemas; one that cannot be compiled here is a bad answer.
            raise exceptions.ServerUnavailable(
                f"GET /v1/schemas/{service}: the schema cannot be used: {error}"
            ) from error

    def prepare_flow(self, received: Received) -> Flow[Config]:
        data = self.decode(received)
        schemas = yield from self.schemas_flow()
        return self.resolve(received, data, "server", schemas)

    def overtaken(self, config: Config, fetched_over: Config | None) -> bool:
        """Whether a newer server version was applied while `config` was being fetched.

        `fetched_over` is what was current when the fetch began. A caller's `load()` and the
        watch can fetch at the same time; the slower must not take the service back a version.
        """
        current = self.config
        return (
            current is not fetched_over
            and current is not None
            and current.source == config.source == "server"
            and current.version is not None
            and config.version is not None
            and current.version > config.version
        )

    def apply_flow(self, config: Config, fetched_over: Config | None) -> Flow[Config]:
        """Apply all or nothing, make `config` current, keep it as last-known-good, report.

        Returns the config current afterwards. Run it as `Exclusive`: two applies must not
        interleave.
        """
        if not self.is_news(config.version, config.hash, config.source):
            return self.config or config  # another caller applied this very version meanwhile
        if self.overtaken(config, fetched_over):
            assert self.config is not None
            logger.debug(
                "version %s of %s not applied: version %s arrived meanwhile",
                config.version,
                self.settings.service,
                self.config.version,
            )
            return self.config
        try:
            yield from self.transaction(config)
        except exceptions.ApplyFailed as error:
            text = hide_environment_text(
                str(error), environment_texts(tsk.from_wire(config.wire), config.to_dict())
            )
            logger.error("%s; %s stays current", text, self.describe(self.config))
            self.refused = (config.version, config.hash)
            yield Report("failed", config, text)
            raise
        self.config = config
        if config.source == "server":
            self.fallback_pending = False  # `applied` says it all: the fallback is over
            yield Offload(lambda: self.remember(config))
            yield Report("applied", config)
        return config

    def remember(self, config: Config) -> None:
        """Write the last-known-good file; a failure is logged, the service goes on."""
        try:
            write_lkg(
                self.settings.lkg_path,
                service=config.service,
                environment=config.environment,
                version=config.version,
                hash=config.hash,
                wire=config.wire,
                schemas=config._schemas,
            )
        except OSError as error:
            logger.warning("last-known-good %s not written: %s", self.settings.lkg_path, error)

    def initial_flow(self) -> Flow[Config]:
        """The first config: the server's, else the fallbacks (cache, file).

        Only a server that cannot answer leads to a fallback: no connection, a timeout, a
        5xx, or an answer that is not a valid config. A version this process makes invalid
        (an `@env` value, the schema after resolving) is raised as InvalidConfig.
        """
        tried: list[str] = []
        refused = False
        try:
            received = self.read_config((yield self.config_request(conditional=False)))
            if received is None:  # a request that named no version cannot be "not modified"
                raise exceptions.ServerUnavailable(
                    f"GET {self.settings.config_url}: 304 to a request without If-None-Match"
                )
        except exceptions.ServerUnavailable as error:
            tried.append(f"server {self.settings.server}: {error}")
        else:
            try:
                data = self.decode(received)
                schemas = yield from self.schemas_flow()
            except exceptions.ServerUnavailable as error:
                tried.append(f"server {self.settings.server}: {error}")
            except exceptions.InvalidConfig as error:  # damaged on its way: a bad answer
                logger.error(
                    "the server's version of %s not applied: %s", self.settings.service, error
                )
                self.seen_version = received.version
                self.refused = (received.version, received.hash)
                yield Report("failed", received, str(error))
                tried.append(f"server {self.settings.server}: {error}")
                refused = True
            else:
                try:
                    config = self.resolve(received, data, "server", schemas)
                except exceptions.InvalidConfig as error:
                    logger.error(
                        "the server's version of %s not applied: %s", self.settings.service, error
                    )
                    self.seen_version = received.version
                    self.refused = (received.version, received.hash)
                    yield Report("failed", received, str(error))
                    raise
                self.seen_version = received.version
                return config
        if self.config is not None:
            # A running client's config is newer than any cache or file: keep it.
            logger.warning(
                "no new config for %s (%s); %s stays current",
                self.settings.service,
                "; ".join(tried),
                self.describe(self.config),
            )
            return self.config
        config = self.fallback(tried)
        if refused:
            # The server is there, only its version was refused: say now what runs instead,
            # rather than after the next long poll.
            yield Report("fallback", config)
        else:
            self.fallback_pending = True
        return config

    def load_flow(self) -> Flow[Config]:
        """`load()`: the first config, applied in full; returns the config current afterwards."""
        fetched_over = self.config
        config = (
            self.from_file() if self.settings.mode == "files" else (yield from self.initial_flow())
        )
        current: Config = yield Exclusive(self.apply_flow(config, fetched_over))
        return current

    def fetch_flow(self) -> Flow[Config]:
        """`load_config()`: the first config, kept as last-known-good, not applied."""
        config = yield from self.initial_flow()
        if config.source == "server":
            yield Offload(lambda: self.remember(config))
        return config

    def refresh_flow(self, wait: float | None) -> Flow[bool]:
        """Ask the server once for a newer version and apply it; True when one arrived."""
        fetched_over = self.config
        received = self.read_config((yield self.config_request(wait=wait)))
        if self.fallback_pending:
            self.fallback_pending = False
            yield Report("fallback", self.config)
        if received is None:
            return False
        if (
            not self.is_news(received.version, received.hash, "server")
            or (received.version, received.hash) == self.refused
        ):
            # Nothing to do; the next long poll names this version, so the server holds it.
            self.seen_version = received.version
            return False
        try:
            config = yield from self.prepare_flow(received)
            yield Exclusive(self.apply_flow(config, fetched_over))
        except exceptions.InvalidConfig as error:
            logger.error("%s of %s not applied: %s", received.label, self.settings.service, error)
            self.refused = (received.version, received.hash)
            yield Report("failed", received, str(error))
        except exceptions.ApplyFailed:
            pass  # logged, reverted and reported by apply_flow
        self.seen_version = received.version
        return True

    def reload_file_flow(self) -> Flow[None]:
        """Files mode: apply the local file if it changed and parses; else log why not."""
        try:
            config = self.from_file()
        except exceptions.ConfigError as error:
            logger.error("%s not applied: %s", self.settings.file_path, error)
            return
        if self.is_news(config.version, config.hash, config.source):
            try:
                yield Exclusive(self.apply_flow(config, self.config))
            except exceptions.ApplyFailed:
                pass  # logged and reverted by apply_flow

    def on(self, section: str) -> Callable[[Handler], Handler]:
        if not isinstance(section, str) or not section:
            raise ValueError("on() takes the name of a top-level key")

        def register(handler: Handler) -> Handler:
            self.handlers.append((section, handler))
            return handler

        return register
