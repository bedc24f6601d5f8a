"""Reading what arrives: a server's answer (bounded, JSON, refusals as exceptions, a document, a schema) or a local TSK file."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from config_service import tsk
from tskcfg import exceptions


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


def json_body(response: httpx.Response) -> Any:
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


def server_message(response: httpx.Response) -> str:
    """The one sentence an error answer gives: the API's `message`, else the status's phrase."""
    body = json_body(response)
    message = body.get("message") if isinstance(body, dict) else None
    return str(message or response.reason_phrase or "error")


def error_for(response: httpx.Response, message: str) -> exceptions.ConfigError:
    """The exception for an error answer: 5xx is unavailability, a 4xx is refused as it is;
    either carries the server's error code and body (and a refusal its details)."""
    body = json_body(response)
    body = body if isinstance(body, dict) else {}
    status = response.status_code
    code = str(body.get("error") or "")
    if status >= 500:
        return exceptions.ServerUnavailable(message, status=status, code=code, body=body)
    kind: type[exceptions.RequestRejected] = {
        401: exceptions.Unauthorized,
        403: exceptions.Forbidden,
        404: exceptions.ConfigRetired if code == "retired" else exceptions.NotFound,
    }.get(status, exceptions.RequestRejected)
    return kind(message, status=status, code=code, details=body.get("details"), body=body)


def raise_for_status(response: httpx.Response, what: str) -> None:
    """Raise `error_for` an error answer (status 400 or more), saying `what` was asked."""
    if response.status_code >= 400:
        raise error_for(
            response,
            f"{what}: the server answered {response.status_code}: {server_message(response)}",
        )


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


@dataclass(frozen=True)
class SchemaAnswer:
    """A schema as `GET /v1/schemas/{name}` serves it."""

    name: str
    version: Any
    schema: dict[str, Any]


def config_answer(response: httpx.Response) -> Received | None:
    """The document in the answer to `GET /v1/configs/...`, or None for 304 (nothing new)."""
    url = response.request.url.copy_with(query=None)
    if response.status_code == 304:
        return None
    raise_for_status(response, f"GET {url}")
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
            f"GET {url}: the answer is not a config document"
        ) from error
    return Received(version=version, hash=digest, wire=wire)


def schema_answer(response: httpx.Response, name: str) -> SchemaAnswer | None:
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
