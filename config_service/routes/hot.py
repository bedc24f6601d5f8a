"""The hot read: a plain `GET` of a current config, answered in ASGI from the rendered bytes.

Most requests a config server sees are services asking for their document, or asking
whether it changed (`If-None-Match`). This path answers exactly those, when the document
is already rendered in memory and the token may read it, without building Starlette
request and response objects. Anything else (no or bad token, out of scope, a long poll,
a document not yet in memory, an If-None-Match that is not the current ETag) returns 0
and the regular handler in `configs.py` answers, with the same rules and errors.
"""

from __future__ import annotations

from starlette.types import Scope, Send

from config_service.server import ConfigServer

PREFIX = "/v1/configs/"


async def answer_current_config(server: ConfigServer, scope: Scope, send: Send, request_id: bytes) -> int:
    """Send the current version (200) or 304 if this path can; returns the status, or 0."""
    if scope["method"] != "GET" or scope["query_string"]:
        return 0
    path: str = scope["path"]
    if not path.startswith(PREFIX):
        return 0
    service, separator, environment = path[len(PREFIX) :].partition("/")
    if not separator or "/" in environment:
        return 0
    rendered = server.cached(service, environment)
    if rendered is None:
        return 0
    authorization = if_none_match = accept = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            authorization = value
        elif name == b"if-none-match":
            if_none_match = value
        elif name == b"accept":
            accept = value
    if authorization is None or authorization[:7].lower() != b"bearer ":
        return 0
    principal = server.tokens.authenticate(authorization[7:].strip().decode("latin-1"))
    if principal is None or not principal.may("reader", service, environment):
        return 0
    if if_none_match is not None:
        if if_none_match.strip() != rendered.etag_bytes:
            return 0
        await send(
            {
                "type": "http.response.start",
                "status": 304,
                "headers": [(b"etag", rendered.etag_bytes), (b"x-request-id", request_id)],
            }
        )
        await send({"type": "http.response.body", "body": b""})
        return 304
    if accept is not None and b"text/x-tsk" in accept:
        headers, body = rendered.source_headers, rendered.source_body
    else:
        headers, body = rendered.json_headers, rendered.json_body
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [*headers, (b"x-request-id", request_id)],
        }
    )
    await send({"type": "http.response.body", "body": body})
    return 200
