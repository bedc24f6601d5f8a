"""The HTTP application: `create_app(settings)` and the whole route table, in one place."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from config_service.core.refusals import Refused, store_unavailable
from config_service.core.rendered import Rendered
from config_service.core.rollouts import RolloutChange
from config_service.core.wiring import Core
from config_service.http import (
    audit,
    configs,
    events,
    instances,
    operations,
    read,
    rollouts,
    schemas,
    tokens,
)
from config_service.http.access_log import AccessLog
from config_service.http.console.routes import console_app
from config_service.http.console.routes import route_names as console_route_names
from config_service.http.errors import error_body, refusal_body, refusal_headers, status_of
from config_service.http.metrics import Metrics
from config_service.http.openapi import Endpoint, build_openapi
from config_service.http.read import CLIENT_GONE
from config_service.http.telemetry import Telemetry
from config_service.hub import ChangeEvent, ChangeHub
from config_service.settings import Settings
from config_service.store import VersionRecord
from config_service.store.records import StoreUnavailable

logger = logging.getLogger("config_service")

DOCUMENT = "/v1/configs/{service}/{environment}"
# The scope extension `tskcfg serve`'s protocol sets on a request it answered 408 because its
# body came too slowly (config_service/http1/bounded.py); the application then sees the client leave.
BODY_TIMED_OUT = "tskcfg.body_timed_out"

# The whole HTTP API. Handlers are thin: they read the request, make one call into the core, render.
ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("GET", "/health", operations.health, "Process and store health", "public", (200, 503)),
    Endpoint("GET", "/metrics", operations.metrics, "Prometheus metrics", "public"),
    Endpoint("GET", "/openapi.json", operations.openapi, "This description", "public"),
    Endpoint("GET", "/v1/services", operations.list_services, "Every service in scope, with its current versions", "reader"),
    Endpoint("POST", "/v1/services", operations.create_service, "Create a service (pushes to a service that does not exist are 404 unknown_service)", "admin", (200, 201, 400, 403, 415, 422), "json"),
    Endpoint("DELETE", "/v1/services/{service}", operations.retire_service, "Retire every document of the service", "admin", (200, 403, 404, 422)),
    Endpoint("PUT", DOCUMENT, configs.put_config, "Push a document (TSK or JSON body); If-Match for compare-and-set; 404 unknown_service for a service that does not exist", "writer", (200, 201, 400, 404, 412, 413, 415, 422), "tsk-or-json", parameters=("If-Match", "X-Config-Message")),
    Endpoint("DELETE", DOCUMENT, configs.retire_config, "Retire the document: a retire version, no config; reads answer 404 retired until the next push revives it", "writer", (200, 201, 400, 403, 404, 412, 422), parameters=("If-Match", "X-Config-Message")),
    Endpoint("GET", DOCUMENT, read.get_config, "The current version; If-None-Match gives 304; ?wait=N long-polls; ?path= one key; 404 retired for a retired document", "reader", (200, 304, 400, 404, 422), parameters=("wait", "path", "If-None-Match")),
    Endpoint("GET", DOCUMENT + "/versions", configs.list_versions, "History, newest first (?limit, ?before)", "reader", (200, 400, 404, 422), parameters=("limit", "before")),
    Endpoint("GET", DOCUMENT + "/versions/{version}", configs.get_version, "One version; immutable", "reader", (200, 400, 404, 422)),
    Endpoint("GET", DOCUMENT + "/diff", configs.diff_versions, "Structural and unified diff of two versions (?from=N&to=M)", "reader", (200, 400, 404, 422), parameters=("from_version", "to_version")),
    Endpoint("POST", DOCUMENT + "/rollback", configs.rollback, "A new version with an older version's source", "writer", (200, 201, 400, 404, 413, 415, 422), "json"),
    Endpoint("POST", DOCUMENT + "/promote", configs.promote, "A new version with the previous environment's source", "writer", (200, 201, 400, 404, 409, 413, 415, 422), "json"),
    Endpoint("POST", DOCUMENT + "/sync", configs.take_file, "End a sync conflict: {\"take\": \"file\"} makes the file under environments/ the next version, validated like a push; 409 when there is no conflict, 404 when there is no file", "writer", (200, 201, 400, 403, 404, 409, 413, 415, 422), "json"),
    Endpoint("POST", DOCUMENT + "/rollouts", rollouts.start_rollout, "Start a rollout: a candidate version reaches a growing share of instances", "writer", (201, 400, 404, 409, 413, 415, 422), "json"),
    Endpoint("GET", DOCUMENT + "/rollout", rollouts.get_rollout, "The document's latest rollout, with its counts", "reader", (200, 404, 422)),
    Endpoint("POST", DOCUMENT + "/rollout/pause", rollouts.pause_rollout, "Pause the rollout (its bake clock stops)", "writer", (200, 404, 409, 422)),
    Endpoint("POST", DOCUMENT + "/rollout/resume", rollouts.resume_rollout, "Resume a paused rollout", "writer", (200, 404, 409, 422)),
    Endpoint("POST", DOCUMENT + "/rollout/abort", rollouts.abort_rollout, "Abort the rollout: everyone reads the stable version", "writer", (200, 404, 409, 422)),
    Endpoint("POST", DOCUMENT + "/rollout/complete", rollouts.complete_rollout, "Complete the rollout now: the candidate is current for everyone", "writer", (200, 404, 409, 422)),
    Endpoint("GET", DOCUMENT + "/instances", instances.list_instances, "Instances of the document, with staleness and drift", "reader", (200, 404, 422)),
    Endpoint("GET", "/v1/diff/{service}", configs.diff_environments, "Diff of the current versions of two environments (?from=&to=)", "reader", (200, 400, 404, 422), parameters=("from_environment", "to_environment")),
    Endpoint("POST", "/v1/instances", instances.report_instance, "An instance reports the version it runs", "reader", (204, 400, 404, 415, 422, 429), "json"),
    Endpoint("GET", "/v1/events", events.events, "Server-Sent Events, one per new version; Last-Event-ID resumes", "reader", (200, 400, 404, 422), parameters=("service", "environment", "last_event_id", "Last-Event-ID")),
    Endpoint("PUT", "/v1/schemas/{service}", schemas.put_schema, "Put a JSON Schema (draft 2020-12); ?force=true (admin) skips the check of current documents", "writer", (200, 201, 400, 409, 413, 415, 422), "json", parameters=("force",)),
    Endpoint("GET", "/v1/schemas/{service}", schemas.get_schema, "The current schema", "reader", (200, 404, 422)),
    Endpoint("GET", "/v1/schemas/{service}/versions", schemas.schema_versions, "Schema history, newest first", "reader", (200, 400, 422), parameters=("limit", "before")),
    Endpoint("GET", "/v1/schemas/{service}/versions/{version}", schemas.schema_version, "One version of the schema", "reader", (200, 400, 404, 422)),
    Endpoint("POST", "/v1/tokens", tokens.create_token, "Create a token; the secret is in this answer only", "admin", (201, 400, 415), "json"),
    Endpoint("GET", "/v1/tokens", tokens.list_tokens, "Every token, without secrets", "admin"),
    Endpoint("DELETE", "/v1/tokens/{token_id}", tokens.revoke_token, "Revoke a token at once", "admin", (204, 404)),
    Endpoint("GET", "/v1/audit", audit.list_audit, "The audit log, newest first (?service, ?environment, ?action, ?actor)", "admin", (200, 400), parameters=("limit", "before", "service", "environment", "action", "actor")),
)

class RequestContext:
    """Request ids, the JSON error shape for anything that escapes a handler, metrics, access log.

    (`tskcfg serve` answers most reads of a current config in its HTTP protocol, before they
    reach ASGI, and records them through the same `Telemetry`.)
    """

    def __init__(self, app: ASGIApp, routes: dict[Any, str], telemetry: Telemetry) -> None:
        self.app = app
        self.routes = routes
        self.telemetry = telemetry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started_at = time.perf_counter()
        request_id = self.telemetry.request_id(scope["headers"])
        status = 0
        latency = 0.0
        scope.setdefault("state", {})["request_id"] = request_id.decode("ascii")

        async def send_with_id(message: Message) -> None:
            nonlocal status, latency
            if message["type"] == "http.response.start":
                status = message["status"]
                latency = time.perf_counter() - started_at
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", request_id)]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except ClientDisconnect:
            # Not a failure of the server: the body stopped coming. Nothing can be answered.
            if status == 0:
                status = self._client_left(scope, request_id)
        except (Refused, StoreUnavailable) as failure:
            # A store that cannot be reached is the refusal `store_unavailable` (503).
            refused = failure if isinstance(failure, Refused) else store_unavailable(failure)
            if status == 0:
                await _send_error(
                    send_with_id, status_of(refused), refusal_body(refused), refusal_headers(refused)
                )
        except Exception:
            logger.exception("request %s failed", request_id.decode("ascii"))
            if status == 0:
                body = error_body("internal", "the server failed to answer; the failure is in its log")
                await _send_error(send_with_id, 500, body, {})
        finally:
            route = self.routes.get(scope.get("endpoint"), "unmatched")
            self._finish(scope, request_id, route, status, latency or time.perf_counter() - started_at)

    @staticmethod
    def _client_left(scope: Scope, request_id: bytes) -> int:
        """Log a request whose client left (or was cut off) before its body arrived; its status."""
        timed_out = scope.get("extensions", {}).get(BODY_TIMED_OUT)
        if timed_out is not None:
            # The protocol answered 408 and logged why; the access log says so too.
            return 408
        logger.info(
            "request %s: client disconnected before its request body arrived (%s %r)",
            request_id.decode("ascii"),
            scope["method"],
            scope["path"],
        )
        return CLIENT_GONE

    def _finish(self, scope: Scope, request_id: bytes, route: str, status: int, seconds: float) -> None:
        self.telemetry.finish(request_id, scope["method"], scope["path"], route, status, seconds)


async def _send_error(send: Send, status: int, body: bytes, headers: dict[str, str]) -> None:
    raw = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode("ascii")),
        *((name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def _announce_rollout(hub: ChangeHub[Rendered], change: RolloutChange) -> None:
    """On the event loop: make the hub answer as the rollout now says (waking exactly the
    waiters whose answer moved), then send its `event: rollout`."""
    rollout = change.rollout
    service, environment = rollout.service, rollout.environment
    if change.current is not None:  # completed: the candidate is current for everyone
        hub.publish(service, environment, change.current.version, change.current)
    view = change.view
    hub.set_rollout(
        service,
        environment,
        None if view is None else (view.percent, view.candidate.version, view.candidate),
    )
    moved_to = change.moved_to
    hub.announce(
        ChangeEvent(
            rollout.sequence,
            service,
            environment,
            moved_to.version if moved_to is not None else rollout.stable_version,
            moved_to.record.hash if moved_to is not None else "",
            rollout=json.dumps(change.public, ensure_ascii=False, separators=(",", ":")),
            moved=change.moved if moved_to is not None else None,
        )
    )


async def _http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 (no such route, wrong method) in the JSON error shape."""
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "bad_request")
    message = {
        404: f"there is no route {request.url.path}",
        405: f"{request.method} is not allowed on {request.url.path}",
    }.get(exc.status_code, str(exc.detail))
    return Response(
        error_body(code, message), exc.status_code, headers=exc.headers, media_type="application/json"
    )


class _RunOnce:
    """File sync, which must run in one process of those sharing the store: at once in a
    process alone on its store; else in the one that holds the store's lease (`Core.leads`),
    and the others ask for it every `LEAD_RETRY` seconds, so one takes over when it ends."""

    LEAD_RETRY = 1.0

    def __init__(self, core: Core) -> None:
        self.core = core
        self.file_sync: Any = None
        self.watching: asyncio.Task[None] | None = None
        self.waiting: asyncio.Task[None] | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        if await loop.run_in_executor(None, self.core.leads):
            await self._sync()
        else:
            self.waiting = asyncio.create_task(self._wait_for_lead())

    async def _wait_for_lead(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.LEAD_RETRY)
            try:
                leading = await loop.run_in_executor(None, self.core.leads)
            except Exception:
                logger.exception("cannot ask the store who runs file sync")
                continue
            if leading:
                logger.info("this process runs file sync from now on")
                try:
                    await self._sync()
                except Exception:
                    logger.exception("file sync failed to start in this process")
                return

    async def _sync(self) -> None:
        from config_service.sync.apply import make_file_sync

        file_sync = self.file_sync = make_file_sync(self.core)
        watching = self.watching = asyncio.create_task(file_sync.run())
        ready = asyncio.create_task(file_sync.wait_ready())
        # Serve only once schemas/ and environments/ are imported; if the watcher fails
        # before that, the start fails with its error.
        await asyncio.wait({watching, ready}, return_when=asyncio.FIRST_COMPLETED)
        if not ready.done():
            ready.cancel()
            watching.result()

    async def stop(self) -> None:
        if self.waiting is not None:
            self.waiting.cancel()
            await asyncio.gather(self.waiting, return_exceptions=True)
        if self.file_sync is not None and self.watching is not None:
            self.file_sync.stop()
            await asyncio.gather(self.watching, return_exceptions=True)


def create_app(settings: Settings, core: Core | None = None) -> Starlette:
    """The server's ASGI app. Nothing is opened until the app's lifespan starts."""
    core = core if core is not None else Core(settings)
    hub: ChangeHub[Rendered] = ChangeHub()
    metrics = Metrics()
    access_log = AccessLog() if settings.access_log else None
    telemetry = Telemetry(metrics, access_log)
    # Long polls are counted where they wait, whichever path parked them.
    metrics.waiters.labels(kind="long_poll").set_function(lambda: hub.waiter_count)
    metrics.waiters.labels(kind="events").set_function(lambda: hub.subscriber_count)
    core.add_commit_listener(lambda rendered: metrics.versions_written.labels(kind=rendered.record.kind).inc())
    core.add_refusal_listener(lambda code: metrics.validation_failures.labels(kind=code).inc())

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()

        def rollout_changed(change: RolloutChange) -> None:
            # Called on the writer's thread once the change is durable; the hub is the loop's.
            loop.call_soon_threadsafe(_announce_rollout, hub, change)

        core.rollouts.add_listener(rollout_changed)

        def publish(record: VersionRecord, rendered: Rendered | None) -> None:
            hub.publish_threadsafe(
                loop,
                record.service,
                record.environment,
                record.version,
                rendered,
                sequence=record.sequence,
                hash=record.hash,
                retired=record.retired,
            )

        # Before the start: a process that follows a shared store hands on versions from then.
        core.add_change_listener(publish)
        await loop.run_in_executor(None, core.start)
        for view in core.rollouts.views():
            # After a restart: the hub answers each document in a rollout per cohort again.
            record = view.stable.record
            document = (record.service, record.environment)
            stable = core.versions.cached(*document)
            if stable is not None:
                hub.publish(*document, stable.version, stable)
            hub.set_rollout(*document, (view.percent, view.candidate.version, view.candidate))

        def revoked(token_id: str) -> None:
            # Called on the thread that revoked the token; what it holds ends on the loop.
            loop.call_soon_threadsafe(hub.end_for, token_id)

        core.tokens.add_revocation_listener(revoked)
        once = _RunOnce(core)
        if settings.sync:
            await once.start()
        try:
            yield
        finally:
            core.tokens.remove_revocation_listener(revoked)
            await once.stop()
            await loop.run_in_executor(None, core.stop)
            if access_log is not None:
                access_log.flush()

    routes: list[BaseRoute] = [
        Route(endpoint.path, endpoint.handler, methods=[endpoint.method]) for endpoint in ENDPOINTS
    ]
    # The web console (docs/console.md): pages and forms over the same core calls.
    routes.append(Mount("/ui", app=console_app()))
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_exception},
    )
    app.state.core = core
    app.state.hub = hub
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.openapi = build_openapi(ENDPOINTS)
    app.state.telemetry = telemetry
    route_names = {endpoint.handler: endpoint.path for endpoint in ENDPOINTS}
    route_names.update(console_route_names())
    app.add_middleware(RequestContext, routes=route_names, telemetry=telemetry)
    return app
