"""How `AdminClient` talks to the server: one request and its errors, JSON answers, listings
page by page, and naming a service that does not exist."""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from config_service import __version__
from config_service.names import check_name
from tskcfg import exceptions
from tskcfg._answers import error_for, json_body, server_message
from tskcfg._settings import DEFAULT_SERVER, tls_verification

# Connecting should be quick; an event stream has no read timeout (the server pings every 15 s).
DEFAULT_ADMIN_TIMEOUT = 15.0


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
        server: str | None = None,
        token: str | None = None,
        *,
        timeout: float = DEFAULT_ADMIN_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.server = (server or os.environ.get("CONFIG_STORE") or DEFAULT_SERVER).rstrip("/")
        self.has_token = bool(token)
        if not self.server.startswith(("http://", "https://")):
            raise ValueError(self._bad_url())
        headers = {"User-Agent": f"tskcfg-admin/{__version__}", "Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._timeout = httpx.Timeout(timeout, connect=min(timeout, 5.0))
        try:
            self._http = httpx.Client(
                base_url=self.server,
                headers=headers,
                timeout=self._timeout,
                transport=transport,
                verify=tls_verification(self.server),
            )
        except httpx.InvalidURL:
            raise ValueError(self._bad_url()) from None

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
        """One request; an answer below 400 comes back, anything else is raised."""
        query = {key: value for key, value in (params or {}).items() if value is not None}
        try:
            request = self._http.build_request(
                method, path, params=query, headers=headers, timeout=timeout or self._timeout, **kwargs
            )
            response = self._http.send(request, stream=stream)
        except (httpx.InvalidURL, httpx.UnsupportedProtocol):
            raise ValueError(self._bad_url()) from None
        except httpx.HTTPError as error:
            raise self._unreachable(path, error) from None
        if response.status_code >= 400:
            if stream:
                response.read()
                response.close()
            status = response.status_code
            where = f"{method} {self.server}{path}"
            message = server_message(response).rstrip(".")
            if status >= 500:
                raise error_for(response, f"the config server failed ({status} at {where}): {message}")
            raise error_for(response, f"{message} ({status} from {where})")
        return response

    def _unreachable(self, path: str, error: httpx.HTTPError) -> exceptions.ServerUnavailable:
        return exceptions.ServerUnavailable(
            f"cannot reach the config server at {self.server}{path}: {describe_transport_error(error)}"
        )

    def _bad_url(self) -> str:
        return f"the server URL {self.server!r} is not valid"

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
