"""The state and flows of one client, shared by `ConfigClient` and `AsyncConfigClient`; no I/O.

`ClientCore` holds the current config, the appliers and handlers and what the server showed,
and writes what a load or a new version does as flows (generators of effects, see
`_effects`): the sync and async clients only perform the effects, so the two cannot drift
apart. The requests come from `_requests`, the answers are read by `_answers`, the schemas
compiled by `_schemas`, and the cache and the local file are read by `_fallback`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from functools import partial

import httpx

from config_service import tsk
from config_service.schema import SchemaSet
from tskcfg import exceptions
from tskcfg._answers import Received, config_answer, raise_for_status, schema_answer
from tskcfg._appliers import Applier
from tskcfg._cache import CacheApplier, CacheFactory
from tskcfg._config import Config, Source
from tskcfg._database import DatabaseApplier
from tskcfg._documents import decode, describe, resolve
from tskcfg._effects import Exclusive, Flow, Offload, Report
from tskcfg._fallback import LocalSources
from tskcfg._lkg import write_lkg
from tskcfg._logging_applier import LoggingApplier
from tskcfg._redaction import environment_texts, hide_environment_text
from tskcfg._requests import Requests
from tskcfg._retry import RetryPolicy
from tskcfg._schemas import SchemaCompiler, sections_to_fetch
from tskcfg._security import SecurityPolicy
from tskcfg._servers import Servers, send_in_turn
from tskcfg._settings import Settings
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
        self.servers = Servers(settings.servers)
        self.requests = Requests(settings, self.servers)
        self.compiler = SchemaCompiler()
        self.local = LocalSources(settings)

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

    # -- applying

    def describe(self, config: Config | None) -> str:
        """How messages name a config: its version, or where it came from when it has none."""
        return describe(config, self.settings.file_path)

    def transaction(self, new: Config) -> Transaction:
        steps = plan(self.config, new, self.appliers, self.handlers)
        return transaction(steps, new.version, self.describe(new))

    def report_request(self, report: Report) -> httpx.Request:
        """`POST /v1/instances` with `report`, naming the current config as the one that runs."""
        return self.requests.report(report, self.config)

    def repeated_report_request(self) -> httpx.Request | None:
        """The last report again, as a sign of life (None when there is none to repeat)."""
        return self.requests.repeated_report(self.config)

    # -- flows

    def send_flow(
        self, build: Callable[[str], httpx.Request], *, stream: bool = False
    ) -> Flow[httpx.Response]:
        """`build(server)`'s request to the current server, else the next ones (`send_in_turn`)."""
        return (yield from send_in_turn(self.servers, build, stream=stream))

    def schemas_flow(self) -> Flow[SchemaSet | None]:
        """The service's compiled schema: fetched each time, compiled once per schema version."""
        service = self.settings.service
        answer = schema_answer(
            (yield from self.send_flow(lambda server: self.requests.schema(server))), service
        )
        if answer is None:
            return None
        known, compiled = self.compiler.cached(answer)
        if known:
            return compiled
        sections = {}
        try:
            for name in sections_to_fetch(answer):
                try:
                    fetch = partial(self.requests.schema, name=name)
                    section = schema_answer((yield from self.send_flow(fetch)), name)
                except exceptions.RequestRejected:
                    continue  # compile says what is missing
                if section is not None:
                    sections[name] = section.schema
            return self.compiler.compile(answer, sections)
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
            response = yield from self.send_flow(lambda server: self.requests.config(server, None))
            received = config_answer(response)
            if received is None:  # a request that named no version cannot be "not modified"
                raise exceptions.ServerUnavailable(
                    f"GET {response.request.url}: 304 to a request without If-None-Match"
                )
        except exceptions.ServerUnavailable as error:
            tried.append(f"{self.servers.describe()}: {error}")
        else:
            try:
                data = decode(received)
                schemas = yield from self.schemas_flow()
            except exceptions.ServerUnavailable as error:
                tried.append(f"{self.servers.describe()}: {error}")
            except exceptions.InvalidConfig as error:  # damaged on its way: a bad answer
                yield from self.refuse_first(received, error)
                tried.append(f"{self.servers.describe()}: {error}")
                refused = True
            else:
                try:
                    config = resolve(self.settings, received, data, "server", schemas)
                except exceptions.InvalidConfig as error:
                    yield from self.refuse_first(received, error)
                    raise
                self.seen_version = received.version
                return config
        return (yield from self.without_server(tried, refused))

    def refuse_first(self, received: Received, error: exceptions.InvalidConfig) -> Flow[None]:
        """The server's first answer cannot be applied: say so, and never try it again."""
        logger.error("the server's version of %s not applied: %s", self.settings.service, error)
        self.seen_version = received.version
        self.refused = (received.version, received.hash)
        yield Report("failed", received, str(error))

    def without_server(self, tried: list[str], refused: bool) -> Flow[Config]:
        """The config when the server gave none (`tried` says why): the running one, else a
        fallback. `refused`: the server is there, only its version was refused."""
        if self.config is not None:
            # A running client's config is newer than any cache or file: keep it.
            logger.warning(
                "no new config for %s (%s); %s stays current",
                self.settings.service,
                "; ".join(tried),
                self.describe(self.config),
            )
            return self.config
        config = self.local.fallback(tried)
        if refused:
            # Say now what runs instead, rather than after the next long poll.
            yield Report("fallback", config)
        else:
            self.fallback_pending = True
        return config

    def load_flow(self) -> Flow[Config]:
        """`load()`: the first config, applied in full; returns the config current afterwards."""
        fetched_over = self.config
        config = (
            self.local.read_file()
            if self.settings.mode == "files"
            else (yield from self.initial_flow())
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
        seen = self.seen_version
        try:
            received = config_answer(
                (
                    yield from self.send_flow(
                        lambda server: self.requests.config(server, seen, wait=wait)
                    )
                )
            )
        except exceptions.ConfigRetired as retired:
            # Keep running on what we have; the next long poll names the retire, so the
            # server holds it until the document is revived.
            if retired.retired_version is not None and retired.retired_version != self.seen_version:
                logger.warning(
                    "%s was retired on the server (version %s); %s stays current until it is "
                    "pushed again",
                    self.settings.service,
                    retired.retired_version,
                    self.describe(self.config),
                )
                self.seen_version = retired.retired_version
            return False
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

    def events_flow(self, last_event_id: str | None) -> Flow[httpx.Response]:
        """Open the server's event stream for this document (on the first server that answers),
        resumed after `last_event_id`; a refusal raises. The open response comes back."""
        response = yield from self.send_flow(
            partial(self.requests.events, last_event_id=last_event_id), stream=True
        )
        raise_for_status(response, "GET /v1/events")
        return response

    def reload_file_flow(self) -> Flow[None]:
        """Files mode: apply the local file if it changed and parses; else log why not."""
        try:
            config = self.local.read_file()
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
