"""The state and flows of one client, shared by `ConfigClient` and `AsyncConfigClient`; no I/O.

`ClientCore` holds the current config, the appliers and handlers and what the server showed,
builds the requests and reads the answers, and writes what a load or a new version does as
flows (generators of effects, see `_effects`): the sync and async clients only perform the
effects, so the two cannot drift apart.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

import httpx
from referencing.exceptions import Unresolvable

from config_service import __version__, tsk
from config_service.schema import SchemaSet, build_registry, referenced_schemas, schema_file_name
from tskcfg import exceptions
from tskcfg._answers import (
    BoundedBody,
    Received,
    SchemaAnswer,
    json_body,
    raise_for_status,
    received_from_file,
)
from tskcfg._appliers import (
    Applier,
    CacheApplier,
    CacheFactory,
    DatabaseApplier,
    LoggingApplier,
    SecurityPolicy,
)
from tskcfg._config import Config, Source
from tskcfg._documents import decode, resolve
from tskcfg._effects import Exclusive, Flow, Offload, Report, Send
from tskcfg._events import ServerEvent
from tskcfg._lkg import read_lkg, write_lkg
from tskcfg._redaction import environment_texts, hide_environment_text
from tskcfg._retry import RetryPolicy
from tskcfg._schemas import lkg_schemas, local_schemas
from tskcfg._settings import (
    DEFAULT_TIMEOUT,
    MIN_CHECK_INTERVAL,
    REPORT_TIMEOUT,
    Settings,
)
from tskcfg._transaction import Handler, Transaction, plan, transaction

logger = logging.getLogger("tskcfg")

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
        self._schemas: tuple[Any, SchemaSet | None] | None = None
        # What this instance last told the server (sent again after quiet intervals).
        self.last_report: Report | None = None
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

    def repeated_report_request(self) -> httpx.Request | None:
        """The last report again (None before the first, and after `stopped`): the clients send
        it after `report_interval` quiet seconds, so the server sees the instance is alive."""
        report = self.last_report
        if report is None or report.status == "stopped":
            return None
        return self.report_request(report)

    def report_request(self, report: Report) -> httpx.Request:
        """`POST /v1/instances`: `version`/`hash` are what this instance runs; a `failed` report
        adds `failed_version`/`failed_hash`, the version it could not apply."""
        self.last_report = report
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
        body = json_body(response)
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
        body = json_body(response)
        if not isinstance(body, dict) or not isinstance(body.get("schema"), dict):
            raise exceptions.ServerUnavailable(
                f"GET /v1/schemas/{name}: the answer is not {{service, version, schema}}"
            )
        # The hash names the schema's content; the version alone would do on one server.
        key = (body.get("version"), body.get("hash"))
        return SchemaAnswer(name=name, version=key, schema=body["schema"])

    def cached_schemas(self, answer: SchemaAnswer) -> tuple[bool, SchemaSet | None]:
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
        registry = build_registry({**(sections or {}), answer.name: answer.schema})
        resolver = registry.resolver(base_uri=schema_file_name(answer.name))
        missing = []
        for name in sorted(referenced_schemas(answer.schema)):
            try:
                resolver.lookup(schema_file_name(name))
            except Unresolvable:
                missing.append(name)
        return missing

    def compile_schemas(
        self, answer: SchemaAnswer, sections: Mapping[str, Mapping[str, Any]]
    ) -> SchemaSet | None:
        """Compile the service schema with its section schemas, once per schema version.

        When a section schema could not be had (say the token does not cover it), the client
        skips its own validation with a warning: the server validated the document already.
        """
        missing = self.sections_to_fetch(answer, sections)
        if missing:
            logger.warning(
                "the schema of %s refers to %s, which this client cannot read; validating on the server only",
                answer.name,
                ", ".join(schema_file_name(name) for name in missing),
            )
            self._schemas = (answer.version, None)
            return None
        compiled = SchemaSet({**sections, answer.name: answer.schema}, generation=0)
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

    def build(
        self, received: Received, source: Source, schemas: SchemaSet | None = None
    ) -> Config:
        """Check the hash, resolve `@env` in this process, validate: a Config ready to apply."""
        return resolve(self.settings, received, decode(received), source, schemas)

    def read_cache(self) -> tuple[Received, SchemaSet | None] | None:
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

    def file_schemas(self) -> SchemaSet | None:
        """The schemas a local file is checked against: those beside it (`schemas_dir`)."""
        return local_schemas(self.settings.schemas_dir, self.settings.service)

    def from_file(self, schemas: SchemaSet | None = None) -> Config:
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

    def transaction(self, new: Config) -> Transaction:
        steps = plan(self.config, new, self.appliers, self.handlers)
        return transaction(steps, new.version, self.describe(new))

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

    def schemas_flow(self) -> Flow[SchemaSet | None]:
        """The service's compiled schema: fetched each time, compiled once per schema version."""
        service = self.settings.service
        answer = self.read_schema((yield Send(self.schema_request())), service)
        if answer is None:
            return None
        known, compiled = self.cached_schemas(answer)
        if known:
            return compiled
        sections = {}
        try:
            for name in self.sections_to_fetch(answer):
                try:
                    section = self.read_schema((yield Send(self.schema_request(name))), name)
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
        data = decode(received)
        schemas = yield from self.schemas_flow()
        return resolve(self.settings, received, data, "server", schemas)

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
            received = self.read_config((yield Send(self.config_request(conditional=False))))
            if received is None:  # a request that named no version cannot be "not modified"
                raise exceptions.ServerUnavailable(
                    f"GET {self.settings.config_url}: 304 to a request without If-None-Match"
                )
        except exceptions.ServerUnavailable as error:
            tried.append(f"server {self.settings.server}: {error}")
        else:
            try:
                data = decode(received)
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
                    config = resolve(self.settings, received, data, "server", schemas)
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
        received = self.read_config((yield Send(self.config_request(wait=wait))))
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
