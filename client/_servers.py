"""Which of a client's config servers it asks now, when it moves to the next one, and the flow
that asks them in turn; no I/O.

A client given several servers (`CONFIG_STORE=http://a:8005,http://b:8005`, or a list for
`server=`) asks one at a time and stays on the one that answers. A request that gets no
answer (no connection, a timeout, a broken or oversized answer) or a 5xx moves the client to
the next server, and the same request goes there at once; a 4xx is the server's answer and
moves nothing. See docs/client.md "Several servers".
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

import httpx

from tskcfg import exceptions
from tskcfg._answers import server_message
from tskcfg._effects import Flow, Send

logger = logging.getLogger("tskcfg")

# More would only make a dead fleet take longer to declare dead.
MAX_SERVERS = 16


def parse_servers(given: str | Sequence[str]) -> tuple[str, ...]:
    """The servers of `server=` or `CONFIG_STORE`: one URL, URLs separated by commas, or a list.

    Each must be an http:// or https:// URL, none listed twice, at most `MAX_SERVERS`.
    """
    items = given.split(",") if isinstance(given, str) else list(given)
    urls: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"server must be a URL or a list of URLs, not {item!r}")
        url = item.strip().rstrip("/")
        if not url.startswith(("http://", "https://")) or url in ("http://", "https://"):
            raise ValueError(f"server must be an http:// or https:// URL, not {item.strip()!r}")
        if url in urls:
            raise ValueError(f"server {url!r} is listed twice")
        urls.append(url)
    if not urls:
        raise ValueError("server names no URL")
    if len(urls) > MAX_SERVERS:
        raise ValueError(f"server lists {len(urls)} URLs; at most {MAX_SERVERS} are taken")
    return tuple(urls)


def moves_on(status: int) -> bool:
    """Whether an answer with `status` sends the request to the next server: a 5xx does (that
    server cannot answer now), a 4xx does not (it is the answer, and every server would give it)."""
    return status >= 500


# Methods that do the same thing sent twice as once. A request that may have reached a server
# that then did not answer (a timeout, a lost connection) goes to the next server only with one
# of these: a POST (rollback, promote, a new token) might have been done already.
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


def may_resend(method: str, *, sent: bool) -> bool:
    """Whether a request that got no answer may go to the next server: always when it was never
    `sent` (no connection), else only when doing it twice is no different from once."""
    return not sent or method.upper() in IDEMPOTENT


class Servers:
    """The servers one client may ask, in order, and the one it asks now.

    Shared by a client's threads (the watch, the reporter, a caller's `refresh()`): a failure
    moves to the next server only if the failed one is still the current one, so two requests
    failing on the same server move the client one step, not two.
    """

    def __init__(self, urls: Sequence[str]) -> None:
        if not urls:
            raise ValueError("a client needs at least one server")
        self.urls = tuple(urls)
        self._current = 0
        self._lock = threading.Lock()

    @property
    def current(self) -> str:
        """The server asked now: the last one that answered, at first the first one listed."""
        return self.urls[self._current]

    def in_turn(self) -> tuple[str, ...]:
        """Every server once, the current one first, then the ones after it in list order."""
        start = self._current
        return self.urls[start:] + self.urls[:start]

    def failed(self, url: str, why: str) -> None:
        """`url` could not answer: the next server becomes the current one (if `url` still was)."""
        if len(self.urls) == 1:
            return
        with self._lock:
            if self.urls[self._current] != url:
                return
            self._current = (self._current + 1) % len(self.urls)
            following = self.urls[self._current]
        logger.warning("config server %s cannot answer (%s); asking %s", url, why, following)

    def describe(self) -> str:
        """How messages name them: `server URL`, or `servers URL, URL`."""
        if len(self.urls) == 1:
            return f"server {self.urls[0]}"
        return "servers " + ", ".join(self.urls)


def send_in_turn(
    servers: Servers, build: Callable[[str], httpx.Request], *, stream: bool = False
) -> Flow[httpx.Response]:
    """Send the request `build(server)` makes to the current server; when no answer comes (no
    connection, a timeout, a broken answer) or a 5xx, to the next server at once, each server
    once. The answer of the server that answered comes back (a 4xx too: it is the answer);
    when none answered, `ServerUnavailable` saying what each did. With one server, its
    answer or its failure comes back as it is."""
    failures: list[str] = []
    turn = servers.in_turn()
    for server in turn:
        request = build(server)
        try:
            response: httpx.Response = yield Send(request, stream=stream)
        except exceptions.ServerUnavailable as error:
            if len(turn) == 1:
                raise
            servers.failed(server, str(error))
            failures.append(str(error))
            continue
        if len(turn) == 1 or not moves_on(response.status_code):
            return response
        why = (
            f"{request.method} {request.url.copy_with(query=None)}: the server answered "
            f"{response.status_code}: {server_message(response)}"
        )
        servers.failed(server, why)
        failures.append(why)
    raise exceptions.ServerUnavailable("no config server answered: " + "; ".join(failures))
