"""Reading a request: the caller's token, a bounded body, JSON, parameters, and the core to call."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from config_service.core.access import Principal
from config_service.core.refusals import (
    Refused,
    bad_request,
    too_large,
    unauthorized,
    unsupported_media_type,
)
from config_service.core.tokens import TokenBook
from config_service.core.wiring import Core

JSON_TYPE = "application/json"
TSK_TYPES = ("text/x-tsk", "text/plain")
_ETAG = re.compile(r'\s*(?:W/)?"([^"]*)"\s*')
# Version numbers, event ids and other counts: ASCII digits only (str.isdigit also takes "²",
# which int() refuses), and few enough that the number fits the store's 64-bit integers.
_NUMBER = re.compile(r"[0-9]{1,18}")
_DIGITS = re.compile(r"[0-9]+")
_SECONDS = re.compile(r"[0-9]{1,18}(?:\.[0-9]{1,9})?")
LARGEST_NUMBER = 2**63 - 1
# A `\uD800`-`\uDFFF` escape: JSON allows it alone, but such a string cannot be stored as UTF-8.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def core_of(request: Request) -> Core:
    core: Core = request.app.state.core
    return core


def request_id(request: Request) -> str | None:
    value = request.scope.get("state", {}).get("request_id")
    return value if isinstance(value, str) else None


def authenticate_header(tokens: TokenBook, header: str | None) -> Principal:
    """The principal of an `Authorization` header; `unauthorized` when the bearer token is
    missing, unknown or revoked."""
    if not header:
        raise unauthorized("this route needs a bearer token (Authorization: Bearer <token>)")
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        raise unauthorized("use the Authorization header as 'Bearer <token>'")
    principal = tokens.authenticate(presented.strip())
    if principal is None:
        raise unauthorized("the token is not valid, or it was revoked")
    return principal


def authenticate(request: Request) -> Principal:
    """The caller's principal; `unauthorized` when the bearer token is missing, unknown or revoked."""
    return authenticate_header(core_of(request).tokens, request.headers.get("authorization"))


def json_response(
    content: Any, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    body = json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return Response(body, status_code=status, headers=headers, media_type=JSON_TYPE)


def media_type(request: Request) -> str:
    """The body's media type, lowercased; a charset other than UTF-8 is refused (415), since
    every body this server reads, TSK or JSON, is UTF-8."""
    kind, _, parameters = request.headers.get("content-type", "").partition(";")
    for parameter in parameters.split(";"):
        name, _, value = parameter.partition("=")
        charset = value.strip().strip('"').lower()
        if name.strip().lower() == "charset" and charset not in ("utf-8", "utf8"):
            raise Refused(
                "unsupported_media_type",
                f"the body is declared as {charset!r}: send it as UTF-8 (charset=utf-8, or no charset)",
            )
    return kind.strip().lower()


async def read_body(request: Request) -> bytes:
    """The whole body, refused with 413 as soon as it passes the size limit."""
    limit = core_of(request).settings.max_body
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise _too_large(limit)
        except ValueError:
            raise bad_request("Content-Length is not a number") from None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int) -> Refused:
    return too_large(f"the body is larger than this server's limit of {limit} bytes")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text} is too large to be a finite number")
    return value


def parse_json(body: bytes) -> Any:
    try:
        # UTF-8 only (RFC 8259), decoded strictly: json.loads would let encoded surrogates through.
        text = body.decode("utf-8").removeprefix("\ufeff")
        # NaN and Infinity are not JSON; Python would accept them (and read 1e999 as Infinity)
        # and then write invalid JSON.
        value = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError:
        raise bad_request("the JSON body is nested too deeply") from None
    except (UnicodeDecodeError, ValueError) as error:
        raise bad_request(f"the body is not valid JSON: {error}") from None
    if _SURROGATE_ESCAPE.search(body) and _has_lone_surrogate(value):
        raise bad_request("the JSON body holds a lone surrogate (\\uD800-\\uDFFF), which is not text")
    return value


def _has_lone_surrogate(value: Any) -> bool:
    """True when a string anywhere in a parsed JSON value (keys too) is not valid Unicode text."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


def parse_number(text: str) -> int | None:
    """A count written in ASCII digits that the store can hold, or None."""
    return int(text) if _NUMBER.fullmatch(text) else None


async def read_json_object(request: Request) -> dict[str, Any]:
    """A JSON object body: 415 for another content type, 400 when malformed or not an object."""
    if media_type(request) != JSON_TYPE:
        raise unsupported_media_type("application/json")
    value = parse_json(await read_body(request))
    if not isinstance(value, dict):
        raise bad_request("the JSON body must be an object")
    return value


def optional_string(body: dict[str, Any], key: str, default: str = "") -> str:
    value = body.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise bad_request(f"{key!r} must be a string")
    return value


def optional_int(body: dict[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_request(f"{key!r} must be an integer")
    if abs(value) > LARGEST_NUMBER:
        raise bad_request(f"{key!r} is larger than any version or count this server holds")
    return value


def int_query(
    request: Request, name: str, default: int | None, minimum: int, maximum: int | None = None
) -> int | None:
    """A count from the query string: ASCII digits only (int() would also take "１２", "1_2",
    "+2" and " 2"); larger than `maximum` is clamped, smaller than `minimum` is 400."""
    text = request.query_params.get(name)
    if text is None or text == "":
        return default
    if not _DIGITS.fullmatch(text):
        raise bad_request(
            f"the parameter {name!r} must be a whole number written in the digits 0-9, not {text!r}"
        )
    value = parse_number(text)
    if value is None:
        raise bad_request(f"the parameter {name!r} is larger than any version or count this server holds")
    if value < minimum:
        raise bad_request(f"the parameter {name!r} must be at least {minimum}")
    if maximum is not None and value > maximum:
        value = maximum
    return value


def parse_seconds(text: str) -> float | None:
    """Seconds written as ASCII digits with an optional fraction (`30`, `0.5`), or None.

    float() would also take "１２", "1_2", "+2", " 2", "1e2", "inf" and "nan".
    """
    return float(text) if _SECONDS.fullmatch(text) else None


def seconds_query(request: Request, name: str, maximum: float) -> float:
    """Seconds from the query string (0 when absent), clamped to `maximum`; 400 when malformed."""
    text = request.query_params.get(name)
    if text is None or text == "":
        return 0.0
    value = parse_seconds(text)
    if value is None:
        raise bad_request(
            f"the parameter {name!r} must be a number of seconds written in the digits 0-9 "
            f"(like 30 or 0.5), not {text!r}"
        )
    return min(value, maximum)


def path_version(request: Request, name: str = "version") -> int:
    text = request.path_params[name]
    number = parse_number(text)
    if number is None:
        raise bad_request(f"the version must be a positive integer, not {text!r}")
    return number


def etags(header: str) -> list[str] | None:
    """The quoted values of an If-None-Match / If-Match header; None for `*`; [] when malformed."""
    if len(header) > 1 and header[0] == '"' and header[-1] == '"' and '"' not in header[1:-1]:
        return [header[1:-1]]  # one plain tag, what every client of the service sends
    if header.strip() == "*":
        return None
    values: list[str] = []
    for part in header.split(","):
        match = _ETAG.fullmatch(part)
        if match is None:
            return []
        values.append(match.group(1))
    return values


def wants_tsk(request: Request) -> bool:
    return accepts_tsk(request.headers.get("accept", ""))


def accepts_tsk(accept: str) -> bool:
    """True when an `Accept` header asks for TSK: it names `text/x-tsk` with a quality above
    0 (`text/x-tsk;q=0` refuses it, and the answer is JSON). Media types ignore case."""
    accept = accept.lower()
    if "text/x-tsk" not in accept:
        return False
    for media_range in accept.split(","):
        media_type, *parameters = (part.strip() for part in media_range.split(";"))
        if media_type != "text/x-tsk":
            continue
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip() == "q":
                try:
                    return float(value.strip()) > 0
                except ValueError:
                    return False
        return True
    return False
