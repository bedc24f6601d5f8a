"""Handlers of `/v1/configs/...` besides the read of the current version (`read.py`): push,
history, one version, diffs, rollback, promote, retire. Each reads the request, makes one call into
the core, and renders what it returns."""

from __future__ import annotations

from urllib.parse import unquote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from config_service.core.documents import decode_source
from config_service.core.refusals import bad_request, unsupported_media_type
from config_service.http.read import ReplyResponse, document_reply
from config_service.http.requests import (
    JSON_TYPE,
    TSK_TYPES,
    authenticate,
    core_of,
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
    wants_tsk,
)
from config_service.store import IfMatch, VersionRecord

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


def _metadata_response(record: VersionRecord, status: int) -> Response:
    return json_response(record.metadata(), status, {"ETag": f'"{record.version}"'})


async def put_config(request: Request) -> Response:
    core = core_of(request)
    principal = authenticate(request)
    service, environment = _document(request)
    core.access.check_document(principal, "writer", service, environment)
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
        raise unsupported_media_type("text/x-tsk (or text/plain), or application/json")
    rendered, created = await core.documents.push_async(
        principal, service, environment, source, message, if_match, request_id=request_id(request)
    )
    return _metadata_response(rendered.record, 201 if created else 200)


async def list_versions(request: Request) -> Response:
    core = core_of(request)
    principal = authenticate(request)
    service, environment = _document(request)
    core.access.check_document(principal, "reader", service, environment)
    limit = int_query(request, "limit", 50, 1, 500) or 50
    before = int_query(request, "before", None, 1)
    # Store reads run in a worker thread: a slow one must not stall every other request.
    history = await run_in_threadpool(core.documents.history, service, environment, limit, before)
    return json_response(history)


async def get_version(request: Request) -> Response:
    core = core_of(request)
    principal = authenticate(request)
    service, environment = _document(request)
    core.access.check_document(principal, "reader", service, environment)
    number = path_version(request)
    rendered = await run_in_threadpool(core.documents.version, service, environment, number)
    if rendered.record.retired:
        # A retire is a version like any other in history: its metadata, with no config.
        response: Response = Response(
            rendered.json_body,
            media_type="application/json",
            headers={"etag": rendered.etag},
        )
    else:
        response = ReplyResponse(document_reply(rendered, wants_tsk(request)))
    response.raw_headers.append((b"cache-control", IMMUTABLE.encode("ascii")))
    return response


async def diff_versions(request: Request) -> Response:
    core = core_of(request)
    principal = authenticate(request)
    service, environment = _document(request)
    core.access.check_document(principal, "reader", service, environment)
    first = int_query(request, "from", None, 1)
    second = int_query(request, "to", None, 1)
    if first is None or second is None:
        raise bad_request("give both 'from' and 'to' versions, like ?from=3&to=5")
    # A line diff can take seconds (it grows with the product of the line counts): off the loop.
    changes = await run_in_threadpool(core.documents.diff_versions, service, environment, first, second)
    return json_response(changes)


async def diff_environments(request: Request) -> Response:
    """`/v1/diff/{service}?from=staging&to=production`: the current versions of two environments."""
    core = core_of(request)
    principal = authenticate(request)
    service = request.path_params["service"]
    first = request.query_params.get("from")
    second = request.query_params.get("to")
    if not first or not second:
        raise bad_request("give both 'from' and 'to' environments, like ?from=staging&to=production")
    for environment in (first, second):
        core.access.check_document(principal, "reader", service, environment)
    changes = await run_in_threadpool(core.documents.diff_environments, service, first, second)
    return json_response(changes)


async def rollback(request: Request) -> Response:
    core = core_of(request)
    principal = authenticate(request)
    service, environment = _document(request)
    core.access.check_document(principal, "writer", service, environment)
    body = await read_json_object(request)
    version = optional_int(body, "version")
    if version is None or version < 1:
        raise bad_request("'version' is required: the version number to roll back to")
    message = optional_string(body, "message")
    rendered, created = await run_in_threadpool(
        core.documents.rollback, principal, service, environment, version, message, request_id(request)
    )
    return _metadata_response(rendered.record, 201 if created else 200)


async def promote(request: Request) -> Response:
    core = core_of(request)
    principal = authenticate(request)
    service, environment = _document(request)
    core.access.check_document(principal, "writer", service, environment)
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
    core.access.check_document(principal, "reader", service, source_environment)
    if dry_run:
        preview = await run_in_threadpool(
            core.documents.preview_promotion, service, environment, source_environment, version, message
        )
        return json_response(preview)
    rendered, created = await run_in_threadpool(
        core.documents.promote,
        principal,
        service,
        environment,
        source_environment,
        version,
        message,
        request_id(request),
    )
    return _metadata_response(rendered.record, 201 if created else 200)


async def retire_config(request: Request) -> Response:
    """`DELETE /v1/configs/{service}/{environment}`: 201 with the retire version's metadata,
    200 when the document was retired already."""
    core = core_of(request)
    principal = authenticate(request)
    service, environment = _document(request)
    core.access.check_document(principal, "writer", service, environment)
    if_match = parse_if_match(request.headers.get("if-match"))
    message = _config_message(request.headers.get("x-config-message", ""))
    record, created = await run_in_threadpool(
        core.documents.retire, principal, service, environment, if_match, message, request_id(request)
    )
    return _metadata_response(record, 201 if created else 200)


async def take_file(request: Request) -> Response:
    """`POST /v1/configs/{service}/{environment}/sync {"take": "file"}`: end a sync conflict by
    making the file's source the next version (201; 200 when it equals the current source)."""
    core = core_of(request)
    principal = authenticate(request)
    service, environment = _document(request)
    core.access.check_document(principal, "writer", service, environment)
    body = await read_json_object(request)
    if body.get("take") != "file" or set(body) != {"take"}:
        raise bad_request('the body must be {"take": "file"}: take the file under environments/')
    rendered, created = await run_in_threadpool(
        core.file_sync.take_file, principal, service, environment, request_id(request)
    )
    return _metadata_response(rendered.record, 201 if created else 200)
