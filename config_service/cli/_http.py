"""The CLI's way to the server: one httpx client, token discovery, and HTTP results mapped to exit codes."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from config_service.cli._errors import REFUSED, UNREACHABLE, USAGE, CommandFailed

DEFAULT_SERVER = "http://localhost:8005"
TOKEN_FILE_NAME = "admin.token"
# Connecting should be quick; a long poll or an SSE stream overrides the read timeout.
DEFAULT_TIMEOUT = httpx.Timeout(15.0, connect=5.0)


def discover_token(given: str | None, environ: Mapping[str, str] | None = None) -> str | None:
    """--token, else TSKCFG_TOKEN, else the admin token a local server wrote
    ($TSKCFG_DATA_DIR/admin.token, by default ./data/admin.token), else no token."""
    if given:
        return given.strip()
    env = os.environ if environ is None else environ
    if env.get("TSKCFG_TOKEN", "").strip():
        return env["TSKCFG_TOKEN"].strip()
    data_dir = Path(env.get("TSKCFG_DATA_DIR") or "data")
    try:
        text = (data_dir / TOKEN_FILE_NAME).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return text or None


def exit_code_for(status: int) -> int:
    """DESIGN's exit codes: 5xx is the server failing (3); 400 is how the command was called (2)."""
    if status >= 500:
        return UNREACHABLE
    if status == 400:
        return USAGE
    return REFUSED


class Api:
    """A small wrapper over httpx.Client that turns every failure into a CommandFailed."""

    def __init__(self, server: str, token: str | None, *, json_output: bool = False) -> None:
        self.server = server.rstrip("/")
        self.json_output = json_output
        self.has_token = token is not None
        headers = {"User-Agent": "tskcfg-cli", "Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        try:
            self.client = httpx.Client(base_url=self.server, headers=headers, timeout=DEFAULT_TIMEOUT)
        except httpx.InvalidURL:
            raise self.bad_server_url() from None

    def close(self) -> None:
        self.client.close()

    def url(self, path: str) -> str:
        return f"{self.server}{path}"

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: httpx.Timeout | None = None,
    ) -> httpx.Response:
        """Send one request; a 2xx or 304 comes back, anything else raises CommandFailed."""
        clean_params = {key: value for key, value in (params or {}).items() if value is not None}
        try:
            response = self.client.request(
                method,
                path,
                params=clean_params,
                json=json,
                content=content,
                headers=headers,
                timeout=timeout if timeout is not None else DEFAULT_TIMEOUT,
            )
        except (httpx.InvalidURL, httpx.UnsupportedProtocol):
            raise self.bad_server_url() from None
        except httpx.HTTPError as error:
            raise self.unreachable(path, error) from None
        if response.status_code >= 400:
            raise self.refused(method, path, response)
        accept = (headers or {}).get("Accept", "application/json")
        if accept == "application/json" and response.status_code not in (204, 304):
            self.check_json(method, path, response)
        return response

    def check_json(self, method: str, path: str, response: httpx.Response) -> None:
        """Callers read `response.json()` as an object; anything else is not this API answering."""
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise CommandFailed(
                f"{method} {self.url(path)} answered {response.status_code} with something that is "
                "not the config API's JSON; is --server the config server?",
                exit_code=UNREACHABLE,
                error="bad_response",
                json_output=self.json_output,
            )

    @contextmanager
    def stream(
        self, path: str, *, params: Mapping[str, Any], headers: Mapping[str, str]
    ) -> Iterator[httpx.Response]:
        """An open streaming GET (server-sent events); errors mapped like `request`."""
        clean_params = {key: value for key, value in params.items() if value is not None}
        # No read timeout: the server sends a ping every 15 s, and the user stops with Ctrl-C.
        timeout = httpx.Timeout(None, connect=5.0)
        try:
            with self.client.stream(
                "GET", path, params=clean_params, headers=headers, timeout=timeout
            ) as response:
                if response.status_code >= 400:
                    response.read()
                    raise self.refused("GET", path, response)
                yield response
        except (httpx.InvalidURL, httpx.UnsupportedProtocol):
            raise self.bad_server_url() from None
        except httpx.HTTPError as error:
            raise self.unreachable(path, error) from None

    def bad_server_url(self) -> CommandFailed:
        return CommandFailed(
            f"the server URL {self.server!r} is not valid: give --server http://host:port",
            exit_code=USAGE,
            error="usage",
            json_output=self.json_output,
        )

    def unreachable(self, path: str, error: httpx.HTTPError) -> CommandFailed:
        reason = describe_transport_error(error)
        return CommandFailed(
            f"cannot reach the config server at {self.url(path)}: {reason}",
            exit_code=UNREACHABLE,
            error="unreachable",
            json_output=self.json_output,
        )

    def refused(self, method: str, path: str, response: httpx.Response) -> CommandFailed:
        body = error_body(response)
        status = response.status_code
        message = str(body.get("message") or response.reason_phrase or "request refused").rstrip(".")
        where = f"{method} {self.url(path)}"
        if status >= 500:
            sentence = f"the config server failed ({status} at {where}): {message}"
        else:
            sentence = f"{message} ({status} from {where})"
        if status == 401 and not self.has_token:
            sentence += "; give --token, set TSKCFG_TOKEN, or run where data/admin.token is"
        details = body.get("details")
        return CommandFailed(
            sentence,
            exit_code=exit_code_for(status),
            error=str(body.get("error") or f"http_{status}"),
            details=details if isinstance(details, list) else [],
            json_output=self.json_output,
            body=body,
            status=status,
        )


def error_body(response: httpx.Response) -> dict[str, Any]:
    """The API's error object, or an empty one when the answer is not JSON (a proxy's page)."""
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def describe_transport_error(error: httpx.HTTPError) -> str:
    if isinstance(error, httpx.ConnectTimeout):
        return "the connection timed out"
    if isinstance(error, httpx.TimeoutException):
        return "the server did not answer in time"
    if isinstance(error, httpx.ConnectError):
        return "the connection was refused or the host is unknown"
    if isinstance(error, httpx.RemoteProtocolError):
        return "the server closed the connection"
    return type(error).__name__
