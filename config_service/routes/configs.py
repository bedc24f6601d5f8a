"""Handlers of `/v1/configs/...`: push, get (with long poll), history, one version, diff, rollback, promote."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from config_service.auth import Principal
from config_service.diff import diff_document
from config_service.errors import ApiError, bad_request, not_found, unauthorized
from config_service.server import LARGE_DOCUMENT, ConfigServer, Rendered, decode_source
from config_service.store import IfMatch, VersionRecord

from . import hot
from ._http import (
    JSON_TYPE,
    TSK_TYPES,
    authenticate,
    etags,
    int_query,
    json_response,
    media_type,
    optional_int,
    optional_string,
    parse_json,
    parse_number,
    path_version,
    read_body,
    read_json_object,
    request_id,
    seconds_query,
    server_of,
    unsupported,
    wants_tsk,
)

TSK_MEDIA = "text/x-tsk; charset=utf-8"
IMMUTABLE = "private, max-age=31536000, immutable"


def _document(request: Request) -> tuple[str, str]:
    return request.path_params["service"], request.path_params["environment"]


def parse_if_match(header: str | None) -> IfMatch:
    """`If-Match`: a quoted version, `"0"` (must not exist) or `*` (must exist); else 400."""
    if header is None:
        return None
    text = header.strip()
    if text == "*":
        return "*"
    if len(text) >= 3 and text[0] == '"' and text[-1] == '"':
        number = parse_number(text[1:-1])
        if number is not None:
            return number
    raise bad_request(
        f"If-Match must be a quoted version like '\"3\"', '\"0\"' (must not exist) or '*', not {header!r}"
    )


def _config_message(header: str) -> str:
    """`X-Config-Message`: percent-encoded UTF-8. Raw bytes above ASCII are refused rather than
    read as Latin-1 (what HTTP headers decode to), which would store mojibake."""
    if header.isascii():
        try:
            return unquote(header, errors="strict")
        except UnicodeDecodeError:
            pass
    raise bad_request("X-Config-Message must be percent-encoded UTF-8 (like caf%C3%A9)")


def _rendered_response(rendered: Rendered, request: Request, status: int = 200) -> Response:
    headers = {"ETag": rendered.etag}
    if wants_tsk(request):
        return Response(rendered.source_body, status, headers, media_type=TSK_MEDIA)
    return Response(rendered.json_body, status, headers, media_type=JSON_TYPE)


def _metadata_response(record: VersionRecord, status: int) -> Response:
    return json_response(record.metadata(), status, {"ETag": f'"{record.version}"'})


async def put_config(request: Request) -> Response:
    server = server_of(request)
    principal = authenticate(request)
    service, environment = _document(request)
    server.check_document_access(principal, "writer", service, environment)
    if_match = parse_if_match(request.headers.get("if-match"))
    kind = media_type(request)
    if kind in TSK_TYPES:
        body = await read_body(request)
        source = decode_source(body)
        message = _config_message(request.headers.get("x-config-message", ""))
    elif kind == JSON_TYPE:
        value = parse_json(await read_body(request))
        if not isinstance(value, dict):
            raise bad_request("the JSON body must be an object with 'source' and 'message'")
        source_value = value.get("source")
        if not isinstance(source_value, str):
            raise bad_request("the JSON body needs 'source', the TSK document as a string")
        source = source_value
        message = optional_string(value, "message")
    else:
        raise unsupported("text/x-tsk (or text/plain), or application/json")
    rendered, created = await server.push_async(
        principal, service, environment, source, message, if_match, request_id=request_id(request)
    )
    return _metadata_response(rendered.record, 201 if created else 200)


async def get_config(request: Request) -> Response:
    server = server_of(request)
    principal = authenticate(request)
    service, environment = _document(request)
    server.check_document_access(principal, "reader", service, environment)
    wait = _wait_seconds(request, server)
    current = await _current(server, service, environment)
    header = request.headers.get("if-none-match")
    if header is None:
        if current is None:
            raise not_found(f"{service!r} has no version in {environment!r}")
        return _rendered_response(current, request)
    tags = etags(header)
    if tags == []:
        raise bad_request(f"If-None-Match must hold quoted versions like '\"3\"', not {header!r}")
    matches = current is not None and (tags is None or current.etag[1:-1] in tags)
    known = parse_number(tags[0]) if tags is not None and len(tags) == 1 else None
    if wait > 0 and known is not None:
        if (current is None and known == 0) or matches:
            return await _long_poll(request, server, principal, service, environment, known, current, wait)
    if current is None:
        raise not_found(f"{service!r} has no version in {environment!r}")
    if matches:
        return Response(status_code=304, headers={"ETag": current.etag})
    return _rendered_response(current, request)


def _wait_seconds(request: Request, server: ConfigServer) -> float:
    return seconds_query(request, "wait", server.settings.max_wait)


async def _long_poll(
    request: Request,
    server: ConfigServer,
    principal: Principal,
    service: str,
    environment: str,
    known: int,
    current: Rendered | None,
    wait: float,
) -> Response:
    """Hold the request until the document's version differs from `known`, or `wait` passes."""
    try:
        rendered = await hot.hold(
            server, request.app.state.hub, service, environment, known, current, wait, request.receive,
            principal,
        )
    except hot.ClientGone:
        # Nobody reads this answer; the status is for the log and the metrics.
        return Response(status_code=hot.CLIENT_GONE)
    if not server.tokens.is_live(principal):
        raise unauthorized("the token was revoked while the request waited")
    if rendered is None:
        latest = server.current(service, environment)
        if latest is None:
            return Response(status_code=304, headers={"ETag": '"0"'})
        if latest.version != known:
            # Committed just before the time ran out, its wake-up not yet here: the client's
            # version is stale, so it gets the new one (a 304 must not name a version it lacks).
            return _rendered_response(latest, request)
        return Response(status_code=304, headers={"ETag": latest.etag})
    return _rendered_response(rendered, request)


async def list_versions(request: Request) -> Response:
    server = server_of(request)
    principal = authenticate(request)
    service, environment = _document(request)
    server.check_document_access(principal, "reader", service, environment)
    limit = int_query(request, "limit", 50, 1, 500) or 50
    before = int_query(request, "before", None, 1)
    # Store reads run in a worker thread: a slow one must not stall every other request.
    return json_response(await run_in_threadpool(server.history, service, environment, limit, before))


async def get_version(request: Request) -> Response:
    server = server_of(request)
    principal = authenticate(request)
    service, environment = _document(request)
    server.check_document_access(principal, "reader", service, environment)
    number = path_version(request)
    rendered = await run_in_threadpool(server.version, service, environment, number)
    if rendered is None:
        raise not_found(f"{service!r} in {environment!r} has no version {number}")
    response = _rendered_response(rendered, request)
    response.headers["Cache-Control"] = IMMUTABLE
    return response


async def _current(server: ConfigServer, service: str, environment: str) -> Rendered | None:
    """The current version: from memory, or read from the store in a worker thread."""
    rendered = server.cached(service, environment)
    if rendered is not None:
        return rendered
    return await run_in_threadpool(server.current, service, environment)


async def _version_or_404(
    server: ConfigServer, service: str, environment: str, number: int
) -> VersionRecord:
    rendered = await run_in_threadpool(server.version, service, environment, number)
    if rendered is None:
        raise not_found(f"{service!r} in {environment!r} has no version {number}")
    return rendered.record


def _diff_records(old: VersionRecord, new: VersionRecord) -> dict[str, Any]:
    return diff_document(
        old.metadata(),
        new.metadata(),
        json.loads(old.config),
        json.loads(new.config),
        old.source,
        new.source,
    )


async def _diff(old: VersionRecord, new: VersionRecord) -> dict[str, Any]:
    """The diff of two versions; large ones in a worker thread, since a line diff can take
    seconds (it grows with the product of the line counts) and must not stall the event loop."""
    if len(old.source) + len(new.source) > LARGE_DOCUMENT:
        return await run_in_threadpool(_diff_records, old, new)
    return _diff_records(old, new)


async def diff_versions(request: Request) -> Response:
    server = server_of(request)
    principal = authenticate(request)
    service, environment = _document(request)
    server.check_document_access(principal, "reader", service, environment)
    first = int_query(request, "from", None, 1)
    second = int_query(request, "to", None, 1)
    if first is None or second is None:
        raise bad_request("give both 'from' and 'to' versions, like ?from=3&to=5")
    old = await _version_or_404(server, service, environment, first)
    new = await _version_or_404(server, service, environment, second)
    return json_response(await _diff(old, new))


async def diff_environments(request: Request) -> Response:
    """`/v1/diff/{service}?from=staging&to=production`: the current versions of two environments."""
    server = server_of(request)
    principal = authenticate(request)
    service = request.path_params["service"]
    first = request.query_params.get("from")
    second = request.query_params.get("to")
    if not first or not second:
        raise bad_request("give both 'from' and 'to' environments, like ?from=staging&to=production")
    for environment in (first, second):
        server.check_document_access(principal, "reader", service, environment)
    records = []
    for environment in (first, second):
        current = await _current(server, service, environment)
        if current is None:
            raise not_found(f"{service!r} has no version in {environment!r}")
        records.append(current.record)
    return json_response(await _diff(records[0], records[1]))


async def rollback(request: Request) -> Response:
    server = server_of(request)
    principal = authenticate(request)
    service, environment = _document(request)
    server.check_document_access(principal, "writer", service, environment)
    body = await read_json_object(request)
    version = optional_int(body, "version")
    if version is None or version < 1:
        raise bad_request("'version' is required: the version number to roll back to")
    message = optional_string(body, "message")
    rendered, created = await run_in_threadpool(
        server.rollback, principal, service, environment, version, message, request_id(request)
    )
    return _metadata_response(rendered.record, 201 if created else 200)


async def promote(request: Request) -> Response:
    server = server_of(request)
    principal = authenticate(request)
    service, environment = _document(request)
    server.check_document_access(principal, "writer", service, environment)
    body = await read_json_object(request)
    source_environment = body.get("from")
    if not isinstance(source_environment, str) or not source_environment:
        raise bad_request("'from' is required: the environment to promote from")
    version = optional_int(body, "version")
    if version is not None and version < 1:
        raise bad_request("'version' must be a positive integer")
    message = optional_string(body, "message")
    dry_run = body.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise bad_request("'dry_run' must be true or false")
    # Reading the source environment needs read access there, like any read.
    server.check_document_access(principal, "reader", service, source_environment)
    if dry_run:
        server.check_message(message)  # as the promotion itself would
        record = await run_in_threadpool(
            server.promotion_source, service, environment, source_environment, version
        )
        large = len(record.source) > LARGE_DOCUMENT
        check = server.check_promotion
        if large:
            document, failures = await run_in_threadpool(check, service, environment, record.source)
        else:
            document, failures = check(service, environment, record.source)
        if failures:
            raise ApiError(
                422,
                "schema_violation",
                f"promoting would break the schema of {service!r} ({len(failures)} failures)",
                failures,
            )
        current = await _current(server, service, environment)
        would_create = current is None or current.record.source != record.source
        target = current.record if current is not None else None
        candidate = {
            "environment": environment,
            "version": (target.version + 1) if target and would_create else (target.version if target else 1),
        }
        if target is not None:
            changes = await _diff(target, record)
            changes["to"] = candidate
        else:
            changes = diff_document(
                {"environment": environment, "version": 0},
                candidate,
                {},
                json.loads(document.wire),
                "",
                record.source,
            )
        return json_response({"would_create": would_create, "diff": changes})
    rendered, created = await run_in_threadpool(
        server.promote,
        principal,
        service,
        environment,
        source_environment,
        version,
        message,
        request_id(request),
    )
    return _metadata_response(rendered.record, 201 if created else 200)
