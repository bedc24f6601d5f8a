"""Every failure the client library raises, grouped under `ConfigError`.

ConfigError
├── ServerUnavailable      the server cannot be reached and nothing to fall back on
├── RequestRejected        the server refused a request (4xx)
│   ├── Unauthorized       401: no token, or a wrong or revoked one
│   ├── Forbidden          403: the token does not cover this service or environment
│   └── NotFound           404: no such service, environment or document
│       └── ConfigRetired  404: the document was retired (the next push revives it)
├── NoPreviousVersion      a diff without a range on a document with one version
├── InvalidConfig          a document that must not be applied
│   └── HashMismatch       the received data does not match its announced hash
└── ApplyFailed            an applier or handler raised; everything was reverted
"""

from __future__ import annotations

from typing import Any


class ConfigError(Exception):
    """The base of every error the client raises, so a caller can catch them all at once."""


class ServerUnavailable(ConfigError):
    """The config server cannot answer: a connection error, a timeout, a 5xx, or an answer
    that is not a valid config (not JSON, too deep, too large, too slow, a bad hash).

    Raised by a load only when no fallback (last-known-good cache, local file) was usable;
    the message names everything that was tried. From `AdminClient`, `status` is the status
    of an answer that came (a 5xx, or an answer that is not the API's JSON; None when none
    came), with the server's error `code` and `body` when it sent them.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str = "",
        body: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.body = body


class RequestRejected(ConfigError):
    """The server answered with a 4xx status; a fallback would hide a real mistake, so it is raised.

    `status` is the HTTP status, `code` the server's error code (`"not_found"`, ...),
    `details` the server's list of details and `body` its whole error object.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int,
        code: str = "",
        details: Any = None,
        body: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.details = details if details is not None else []
        self.body = body if body is not None else {}


class Unauthorized(RequestRejected):
    """The server did not accept the token (401): missing, wrong or revoked."""


class Forbidden(RequestRejected):
    """The token is valid but does not cover this service or environment (403)."""


class NotFound(RequestRejected):
    """The service, environment or document does not exist on the server (404)."""


class ConfigRetired(NotFound):
    """The document was retired (404 `retired`, docs/lifecycle.md "Retiring").

    Raised when a client starts on a retired document. A running client keeps its config
    and waits for the document to be revived; it does not raise this. `retired_version` is
    the retire's version number, `last_version` the last one with a config.
    """

    @property
    def retired_version(self) -> int | None:
        return _detail(self.details, "retired_version")

    @property
    def last_version(self) -> int | None:
        return _detail(self.details, "last_version")


def _detail(details: Any, key: str) -> int | None:
    if isinstance(details, list) and details and isinstance(details[0], dict):
        value = details[0].get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


class NoPreviousVersion(ConfigError):
    """`AdminClient.diff` without `from_version` on a document whose current version is its first."""


class InvalidConfig(ConfigError):
    """A received or local document that must not be applied.

    It did not parse, an `@env` reference could not be resolved, or the resolved data
    does not pass the service's schema. `details` lists the individual problems. Made
    invalid by this process's environment, it is raised at start rather than hidden by a
    fallback: the cache or the local file would fail the same way.
    """

    def __init__(self, message: str, *, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.details = details or []


class HashMismatch(InvalidConfig):
    """The data received does not hash to the hash that came with it (damaged or tampered)."""


class ApplyFailed(ConfigError):
    """An applier or a handler raised while applying a new version.

    Everything applied before it was reverted and the previous config is still current.
    `section` names the section whose applier or handler failed; the original exception
    is the `__cause__`.
    """

    def __init__(self, message: str, *, section: str, version: int | None) -> None:
        super().__init__(message)
        self.section = section
        self.version = version
