"""How `AdminClient` talks to the server: one request and its errors, JSON answers, listings
page by page, and naming a service that does not exist."""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from config_service import __version__
from config_service.names import check_name
from tskcfg import exceptions
from tskcfg._answers import error_for, json_body, server_message
from tskcfg._servers import Servers, may_resend, moves_on, parse_servers
from tskcfg._settings import DEFAULT_SERVER, tls_verification

# Connecting should be quick; an event stream has no read timeout (the server pings every 15 s).
DEFAULT_ADMIN_TIMEOUT = 15.0
# Failures that prove the request never reached the server: any request may go to the next one.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout)


@dataclass(frozen=True)
class Written:
    """The answer to a write: the API's JSON, and whether it made something new (201) or found
    it done already (200: an identical source, an identical schema)."""

    body: dict[str, Any]
    created: bool


def describe_transport_error(error: httpx.HTTPError) -> str:
    """Why no answer came, in words."""
    if isinstance(error, httpx.ConnectTimeout):
        return "the connection timed out"
    if isinstance(error, httpx.TimeoutException):
        return "the server did not answer in time"
    if isinstance(error, httpx.ConnectError):
        return "the connection was refused or the host is unknown"
    if isinstance(error, httpx.RemoteProtocolError):
        return "the server closed the connection"
    return type(error).__name__


class AdminRequests:
    """The connection of an `AdminClient` and the way each of its calls is sent and answered."""

    def __init__(
        self,
        server: str | Sequence[str] | None = None,
        token: str | None = None,
        *,
        timeout: float = DEFAULT_ADMIN_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        given = server or os.environ.get("CONFIG_STORE") or DEFAULT_SERVER
        try:
            self.servers = Servers(parse_servers(given))
        except ValueError as error:
            raise ValueError(f"the server URL {given!r} is not valid ({error})") from None
        self.has_token = bool(token)
        headers = {"User-Agent": f"tskcfg-admin/{__version__}", "Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._timeout = httpx.Timeout(timeout, connect=min(timeout, 5.0))
        self._http = httpx.Client(
            headers=headers,
            timeout=self._timeout,
            transport=transport,
            verify=tls_verification(self.servers.urls),
        )

    @property
    def server(self) -> str:
        """The server asked now: the last one that answered (see docs/client.md "Several servers")."""
        return self.servers.current

    def close(self) -> None:
        self._http.close()

    @staticmethod
    def _document(service: str, environment: str, *rest: str) -> str:
        check_name(service, "service")
        check_name(environment, "environment")
        return "/".join(["/v1/configs", service, environment, *rest])

    def _pages(
        self, path: str, key: str, filters: Mapping[str, Any], before: int | None, page_size: int
    ) -> Iterator[list[dict[str, Any]]]:
        """Each page of a listing, newest first, following `next_before` until the server has no more."""
        while True:
            body = self._json("GET", path, params={**filters, "limit": page_size, "before": before})
            items = body.get(key)
            yield [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []
            before = body.get("next_before")
            if not before:
                return

    def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        return self._body(method, path, self._send(method, path, **kwargs))

    def _written(self, method: str, path: str, **kwargs: Any) -> Written:
        response = self._send(method, path, **kwargs)
        return Written(self._body(method, path, response), created=response.status_code == 201)

    def _body(self, method: str, path: str, response: httpx.Response) -> dict[str, Any]:
        """The JSON object of an answer; anything else is not this API answering."""
        body = json_body(response)
        if not isinstance(body, dict):
            raise exceptions.ServerUnavailable(
                f"{method} {self.server}{path} answered {response.status_code} with something that "
                "is not the config API's JSON",
                status=response.status_code,
                code="bad_response",
            )
        return body

    def _send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        stream: bool = False,
        timeout: httpx.Timeout | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """One request to the current server, else the next ones (docs/client.md "Several
        servers"); an answer below 400 comes back, anything else is raised."""
        query = {key: value for key, value in (params or {}).items() if value is not None}
        servers = self.servers.in_turn()
        failures: list[exceptions.ConfigError] = []
        for server in servers:
            try:
                request = self._http.build_request(
                    method, server + path, params=query, headers=headers, timeout=timeout or self._timeout, **kwargs
                )
                response = self._http.send(request, stream=stream)
            except (httpx.InvalidURL, httpx.UnsupportedProtocol):
                raise ValueError(f"the server URL {server!r} is not valid") from None
            except httpx.HTTPError as error:
                failures.append(self._unreachable(path, error, server))
                self.servers.failed(server, describe_transport_error(error))
                if not may_resend(method, sent=not isinstance(error, NOT_SENT)):
                    break
                continue
            if response.status_code >= 400 and stream:
                response.read()
                response.close()
            if moves_on(response.status_code) and server != servers[-1]:
                failures.append(self._failed(method, server, path, response))
                self.servers.failed(server, f"it answered {response.status_code}")
                continue
            if response.status_code >= 400:
                if response.status_code >= 500:
                    raise self._failed(method, server, path, response)
                message = server_message(response).rstrip(".")
                raise error_for(response, f"{message} ({response.status_code} from {method} {server}{path})")
            return response
        if len(failures) == 1:
            raise failures[0]
        raise exceptions.ServerUnavailable(
            "no config server answered: " + "; ".join(str(failure) for failure in failures)
        )

    @staticmethod
    def _failed(method: str, server: str, path: str, response: httpx.Response) -> exceptions.ConfigError:
        """The error of a 5xx answer."""
        message = server_message(response).rstrip(".")
        where = f"{method} {server}{path}"
        return error_for(response, f"the config server failed ({response.status_code} at {where}): {message}")

    def _unreachable(
        self, path: str, error: httpx.HTTPError, server: str | None = None
    ) -> exceptions.ServerUnavailable:
        return exceptions.ServerUnavailable(
            f"cannot reach the config server at {server or self.server}{path}: {describe_transport_error(error)}"
        )

    # -- naming a service that does not exist

    @contextmanager
    def _naming_unknown_service(self, service: str) -> Iterator[None]:
        """A 404 about a document of `service` becomes `unknown service ...` when there is no such service."""
        try:
            yield
        except exceptions.NotFound as error:
            if error.code == "not_found":
                self._raise_if_unknown(service, error)
            raise

    def _raise_if_unknown(self, service: str, cause: BaseException | None = None) -> None:
        """Raise `NotFound` (code `unknown_service`) when `service` is no service the token can see,
        suggesting the nearest name `/v1/services` lists (only names the token may read)."""
        listed = self._json("GET", "/v1/services").get("services", [])
        names = [
            entry["service"]
            for entry in listed
            if isinstance(entry, dict) and isinstance(entry.get("service"), str)
        ]
        if service in names:
            return
        try:
            self._send("GET", f"/v1/schemas/{check_name(service, 'service')}")
            return
        except exceptions.NotFound:
            pass
        nearest = difflib.get_close_matches(service, names, n=1)
        message = f"unknown service {service!r}" + (f" (did you mean {nearest[0]!r}?)" if nearest else "")
        raise exceptions.NotFound(
            message,
            status=404,
            code="unknown_service",
            body={"error": "unknown_service", "message": message, "details": []},
        ) from cause
