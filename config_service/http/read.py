"""The one read path of a current config: `GET /v1/configs/{service}/{environment}`, plain,
conditional (`If-None-Match`) or long-polled (`?wait=N`).

`parse` reads such a request from its ASGI scope (token, scope, parameters), `decide` says
how to answer it given the current version (a `Reply` now, or a `Hold` until the document
changes), and `after_hold` answers a hold that ended. Two callers act on them: the ASGI
handler `get_config` (any server), and `tskcfg serve`'s HTTP protocol
(config_service/http1/protocol.py), which answers from memory before any ASGI task starts,
parks a held connection in the change hub as a callback, and hands the request to
`get_config` only when the document must first be read from the store (with the request it
already parsed, so the token is checked once).

See docs/lifecycle.md ("Long poll") for what a client sees.
"""

from __future__ import annotations

import asyncio
import json
import weakref
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope

from config_service import cohorts, tsk
from config_service.core.access import Principal
from config_service.core.refusals import Refused, bad_request, not_found, retired, unauthorized
from config_service.core.rendered import Rendered, key_at
from config_service.core.wiring import Core
from config_service.http.errors import refusal_body, refusal_headers, status_of
from config_service.http.requests import (
    accepts_tsk,
    authenticate_header,
    etags,
    parse_number,
    parse_seconds,
)
from config_service.hub import ChangeHub

PREFIX = "/v1/configs/"
PREFIX_BYTES = PREFIX.encode("ascii")
# Logged and counted when a long-polling client leaves before its answer; nothing is sent.
CLIENT_GONE = 499
# The scope extension that carries a request the protocol already parsed (`ReadRequest`).
PARSED = "tskcfg.read_request"
# A long poll whose time ran out while this process was catching up with the store (after a
# lost connection) waits this long more, up to `LAG_CHECKS` times, before "no change".
LAG_CHECK_SECONDS = 0.1
LAG_CHECKS = 30

RawHeaders = list[tuple[bytes, bytes]]


@dataclass(slots=True)
class ReadRequest:
    """A read of a current config, checked: who asks, for what, and how.

    `tags` holds the versions named by `If-None-Match` (None for `*`); `conditional` says
    whether that header was sent at all. `cohort` is what a rollout buckets the instance by
    (`X-Config-Cohort`, else `X-Instance-ID`; docs/rollouts.md), None when it sent neither.
    """

    principal: Principal
    service: str
    environment: str
    wait: float
    conditional: bool
    tags: list[str] | None
    source: bool  # Accept: text/x-tsk
    path: str | None = None  # ?path=/a/b: one key (`{path, value, version}`)
    cohort: bytes | None = None
    authorization: bytes | None = None  # the header as sent (what `Tokens.recall` knows it by)

    @property
    def bucket(self) -> int:
        """The instance's rollout bucket for this document (cohorts.NO_BUCKET: none)."""
        return cohorts.bucket(self.service, self.environment, self.cohort)


@dataclass(frozen=True, slots=True)
class Reply:
    """An answer ready to send: status, headers (for ASGI and as HTTP/1.1 lines), body."""

    status: int
    headers: RawHeaders
    head: bytes
    body: bytes


class Behind:
    """The request names a version newer than the one this process holds: read the store
    first (another process committed it), then `decide` again with `fresh=True`."""

    __slots__ = ()


BEHIND = Behind()


@dataclass(slots=True)
class Hold:
    """Wait up to `request.wait` seconds for a version other than `known`, then `after_hold`."""

    request: ReadRequest
    known: int
    rendered: Rendered | None


def document_of(path: str) -> tuple[str, str] | None:
    """(service, environment) of a path `/v1/configs/{service}/{environment}`, else None."""
    if not path.startswith(PREFIX):
        return None
    service, separator, environment = path[len(PREFIX) :].partition("/")
    if not service or not separator or not environment or "/" in environment:
        return None
    return service, environment


def _wait(query: bytes, maximum: float) -> float:
    """`?wait=N` in seconds (0 when absent), clamped to `maximum`; `bad_request` when malformed."""
    if not query:
        return 0.0
    if query.startswith(b"wait=") and b"&" not in query and b"%" not in query and b"+" not in query:
        text: str | None = query[5:].decode("latin-1")
    else:
        # As Starlette reads a query string: the last value of a repeated name counts.
        text = dict(parse_qsl(query.decode("latin-1"), keep_blank_values=True)).get("wait")
    if text is None or text == "":
        return 0.0
    value = parse_seconds(text)
    if value is None:
        raise bad_request(
            f"the parameter 'wait' must be a number of seconds written in the digits 0-9 "
            f"(like 30 or 0.5), not {text!r}"
        )
    return min(value, maximum)


def parse(core: Core, scope: Scope, service: str, environment: str) -> ReadRequest:
    """The read request in `scope`, checked: 401, then 403 (before the document is looked at,
    so out of scope an existing and a missing document take the same steps), then names and
    parameters (400, 404, 422)."""
    return parse_head(core, scope["headers"], scope["query_string"], service, environment)


def parse_head(
    core: Core, headers: RawHeaders, query: bytes, service: str, environment: str
) -> ReadRequest:
    """`parse`, from the request's headers and query string."""
    # A repeated header counts once, by its first value, as everywhere else in the server.
    authorization = if_none_match = accept = instance = cohort = None
    for name, value in headers:
        if name == b"authorization":
            if authorization is None:
                authorization = value
        elif name == b"if-none-match":
            if if_none_match is None:
                if_none_match = value
        elif name == b"accept":
            if accept is None:
                accept = value
        elif name == b"x-instance-id":
            if instance is None:
                instance = value
        elif name == b"x-config-cohort":
            if cohort is None:
                cohort = value
    tokens = core.tokens
    principal = None if authorization is None else tokens.recall(authorization)
    if principal is None:
        principal = authenticate_header(
            tokens, None if authorization is None else authorization.decode("latin-1")
        )
        if authorization is not None:
            tokens.remember(authorization, principal)
    core.access.check_document(principal, "reader", service, environment)
    wait = _wait(query, core.settings.max_wait)
    tags: list[str] | None = None
    if if_none_match is not None:
        header = if_none_match.decode("latin-1")
        tags = etags(header)
        if tags == []:
            raise bad_request(f"If-None-Match must hold quoted versions like '\"3\"', not {header!r}")
    source = accept is not None and accepts_tsk(accept.decode("latin-1"))
    return ReadRequest(
        principal, service, environment, wait, if_none_match is not None, tags, source,
        _path(query) if b"path=" in query else None,
        cohort or instance or None,
        authorization,
    )


# Longest `?path=` pointer read (a key is at most a line of a document anyway).
MAX_PATH = 1024


def _path(query: bytes) -> str | None:
    """`?path=` (a JSON pointer), checked; None when absent."""
    text = dict(parse_qsl(query.decode("latin-1"), keep_blank_values=True)).get("path")
    if text is None:
        return None
    if len(text) > MAX_PATH:
        raise bad_request(f"the parameter 'path' is {len(text)} characters; at most {MAX_PATH}")
    try:
        tsk.pointer_parts(text)
    except ValueError as error:
        raise bad_request(f"the parameter 'path': {error}") from None
    if not text:
        raise bad_request("the parameter 'path' names the whole document; leave it out for that")
    return text


def decide(request: ReadRequest, current: Rendered | None, fresh: bool = False) -> Reply | Hold | Behind:
    """How to answer `request` when `current` is the document's current version (None: none).

    `BEHIND` when `If-None-Match` names a version newer than `current` and `current` was not
    just read from the store (`fresh`): this process has not seen that version yet, so it
    must not answer 304 or an older version before it reads the store.
    """
    if not request.conditional:
        if current is None:
            raise _missing(request)
        return answer(request, current)
    tags = request.tags
    matches = current is not None and (tags is None or current.etag[1:-1] in tags)
    if not matches and not fresh and tags is not None and current is not None:
        for tag in tags:
            number = parse_number(tag)
            if number is not None and number > current.version:
                return BEHIND
    if request.wait > 0 and tags is not None and len(tags) == 1:
        known = parse_number(tags[0])
        if known is not None and ((current is None and known == 0) or matches):
            return Hold(request, known, current)
    if current is None:
        raise _missing(request)
    if matches:
        return not_modified(current)
    return answer(request, current)


def answer(request: ReadRequest, rendered: Rendered) -> Reply:
    """200 with the document (or, for `?path=`, the one key) the request asks for."""
    if request.path is None or rendered.record.retired:
        return document_reply(rendered, request.source)
    body = json.dumps(key_at(rendered, request.path), ensure_ascii=False, separators=(",", ":"))
    rollout = [(b"x-config-rollout", rendered.rollout)] if rendered.rollout else []
    return _reply(
        200, b"application/json", rendered.etag.encode("ascii"), body.encode("utf-8"), rollout
    )


def after_hold(core: Core, hold: Hold, newer: Rendered | None) -> Reply:
    """The answer once a hold ends: the newer version, or 304 when the time ran out;
    `unauthorized` when the token was revoked while the request waited."""
    request = hold.request
    if not core.tokens.is_live(request.principal):
        raise unauthorized("the token was revoked while the request waited")
    if newer is not None:
        return answer(request, newer)
    latest = core.versions.cached_for(request.service, request.environment, request.cohort)
    latest = latest or hold.rendered
    if latest is None:
        return not_modified(None)
    if latest.version != hold.known:
        # Committed just before the time ran out, its wake-up not yet here: the client's
        # version is stale, so it gets the new one (a 304 must not name a version it lacks).
        return answer(request, latest)
    return not_modified(latest)


def newer_version(core: Core, hold: Hold, payload: Any) -> Rendered | None:
    """The rendered version a hub wake-up carries (or the current one if it carries none)."""
    if isinstance(payload, Rendered):
        return payload
    request = hold.request
    return core.versions.current_for(request.service, request.environment, request.cohort)


def _missing(request: ReadRequest) -> Refused:
    return not_found(f"{request.service!r} has no version in {request.environment!r}")


# -- the bytes of an answer ------------------------------------------------------


class _Framed:
    """A rendered version's headers, as ASGI raw headers and as HTTP/1.1 lines, made once."""

    __slots__ = ("json", "source", "not_modified", "rendered")

    def __init__(self, rendered: Rendered) -> None:
        etag = rendered.etag.encode("ascii")
        rollout = [(b"x-config-rollout", rendered.rollout)] if rendered.rollout else []
        if rendered.record.retired:
            # A retired document answers 404 `retired`, with the retire's ETag to long-poll on.
            gone = refusal_reply(retired(rendered.record))
            headers = [*gone.headers, (b"etag", etag)]
            self.json = self.source = Reply(gone.status, headers, _header_lines(headers), gone.body)
        else:
            self.json = _reply(200, b"application/json", etag, rendered.json_body, rollout)
            self.source = _reply(
                200, b"text/x-tsk; charset=utf-8", etag, rendered.source_body, rollout
            )
        self.not_modified = _not_modified(etag, rollout)
        key = id(rendered)

        def forget(reference: weakref.ref[Rendered]) -> None:
            if (framed := _framed.get(key)) is not None and framed.rendered is reference:
                del _framed[key]

        self.rendered = weakref.ref(rendered, forget)


# id(rendered) -> its framing, dropped with the rendered version. (A WeakKeyDictionary made a
# weak reference per lookup: measurable on the hot path.)
_framed: dict[int, _Framed] = {}


def _header_lines(headers: RawHeaders) -> bytes:
    return b"".join(name + b": " + value + b"\r\n" for name, value in headers)


def _reply(
    status: int, content_type: bytes, etag: bytes, body: bytes, extra: RawHeaders
) -> Reply:
    headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode("ascii")),
        (b"etag", etag),
        *extra,
    ]
    return Reply(status, headers, _header_lines(headers), body)


def _not_modified(etag: bytes, extra: RawHeaders | None = None) -> Reply:
    headers = [(b"etag", etag), *(extra or ())]
    return Reply(304, headers, _header_lines(headers), b"")


def _frames(rendered: Rendered) -> _Framed:
    framed = _framed.get(id(rendered))
    if framed is None or framed.rendered() is not rendered:
        framed = _framed[id(rendered)] = _Framed(rendered)
    return framed


def document_reply(rendered: Rendered, source: bool) -> Reply:
    """200 with the rendered document: its JSON, or its TSK source."""
    framed = _frames(rendered)
    return framed.source if source else framed.json


_NO_VERSION = _not_modified(b'"0"')


def not_modified(rendered: Rendered | None) -> Reply:
    """304 naming the current version (`"0"`: the document has none)."""
    return _NO_VERSION if rendered is None else _frames(rendered).not_modified


def refusal_reply(refused: Refused) -> Reply:
    """A refusal in the JSON error shape, with its status."""
    body = refusal_body(refused)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode("ascii")),
        *(
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in refusal_headers(refused).items()
        ),
    ]
    return Reply(status_of(refused), headers, _header_lines(headers), body)


# -- ASGI ----------------------------------------------------------------------


class ReplyResponse(Response):
    """A `Reply` as the Starlette response a handler returns (headers as they are)."""

    def __init__(self, reply: Reply) -> None:
        self.status_code = reply.status
        self.body = reply.body
        self.background = None
        self.raw_headers = list(reply.headers)


class ClientGone(Exception):
    """The client disconnected while its long poll was held."""


async def _disconnected(receive: Receive) -> None:
    """Return when the client disconnects (a GET has no body, so only that can arrive)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def hold(core: Core, hub: ChangeHub[Rendered], held: Hold, receive: Receive) -> Rendered | None:
    """Wait until the document's version differs from `held.known`, for at most its wait.

    Returns the new version, or None when the time is up or the token is revoked; raises
    ClientGone when the client leaves first (the wait is dropped at once, not kept until it
    times out).
    """
    request = held.request
    principal = request.principal
    # Revoked before the wait began, or (the hub's `end_for`) while it lasts.
    if not core.tokens.is_live(principal):
        return None
    stable = core.versions.cached(request.service, request.environment)
    if stable is not None:
        # Teach the hub the version we know of (after a restart it knows none): the stable
        # one, which a rollout's candidate is not.
        hub.publish(request.service, request.environment, stable.version, stable)
    handler = asyncio.current_task()
    listener = asyncio.ensure_future(_disconnected(receive))
    gone = False

    def client_gone(task: asyncio.Future[None]) -> None:
        nonlocal gone
        if not task.cancelled() and handler is not None:
            gone = True
            handler.cancel()

    listener.add_done_callback(client_gone)
    try:
        result = await hub.wait_for_change(
            request.service,
            request.environment,
            held.known,
            request.wait,
            principal.token_id,
            request.bucket,
        )
        checks = 0
        while result is None and core.lagging and checks < LAG_CHECKS and not hub.stopping:
            # Not "no change" before this process has caught up with the store.
            checks += 1
            result = await hub.wait_for_change(
                request.service, request.environment, held.known, LAG_CHECK_SECONDS,
                principal.token_id, request.bucket,
            )
    except asyncio.CancelledError:
        if not gone or handler is None:
            raise
        handler.uncancel()
        raise ClientGone from None
    finally:
        listener.remove_done_callback(client_gone)
        listener.cancel()
    if result is None:
        return None
    return newer_version(core, held, result[1])


async def get_config(request: Request) -> Response:
    """`GET /v1/configs/{service}/{environment}`: the current version, 304, or a long poll."""
    core: Core = request.app.state.core
    scope = request.scope
    read = scope.get("extensions", {}).get(PARSED)
    if not isinstance(read, ReadRequest):
        read = parse(core, scope, request.path_params["service"], request.path_params["environment"])
    current = core.versions.cached_for(read.service, read.environment, read.cohort)
    fresh = current is None
    if current is None:
        # Not in memory yet: read from the store in a worker thread, off the event loop.
        current = await run_in_threadpool(
            core.versions.current_for, read.service, read.environment, read.cohort
        )
    decision = decide(read, current, fresh)
    if isinstance(decision, Behind):
        # Read your notification: the client saw a version another process committed.
        stored = await run_in_threadpool(core.read_through, read.service, read.environment)
        if stored is not None:
            request.app.state.hub.publish(read.service, read.environment, stored.version, stored)
        current = await run_in_threadpool(
            core.versions.current_for, read.service, read.environment, read.cohort
        )
        decision = decide(read, current, fresh=True)
        assert not isinstance(decision, Behind)
    if isinstance(decision, Hold):
        try:
            newer = await hold(core, request.app.state.hub, decision, request.receive)
        except ClientGone:
            # Nobody reads this answer; the status is for the log and the metrics.
            return Response(status_code=CLIENT_GONE)
        decision = after_hold(core, decision, newer)
    return ReplyResponse(decision)
