"""The effects the client's flows yield, and the two loops (threads, asyncio) that perform them.

What the client does on a load or a new version is written once, as generators ("flows")
that yield the effects they need and receive the results: a request to `Send` (the response
comes back), an applier's or handler's `Call` (the async client awaits what it returns), a
`Blocking` call (the async client runs it in a thread), a `Report` to deliver in the
background, an `Offload` of blocking file work, and an `Exclusive` sub-flow to run under the
client's apply lock. `ConfigClient` and
`AsyncConfigClient` only perform effects, so the two cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import httpx

from tskcfg._answers import Received
from tskcfg._config import Config

T = TypeVar("T")


@dataclass(frozen=True)
class Send:
    """An HTTP request to send; the flow receives the whole answer, read within its bounds.

    With `stream`, only the head is read (an event stream): the flow receives the open
    response, or, for a status of 400 or more, the whole answer, read and closed.
    """

    request: httpx.Request
    stream: bool = False


@dataclass(frozen=True)
class Call:
    """An applier's or handler's call; the async client awaits what a coroutine handler returns."""

    function: Callable[[], Any]

    def __call__(self) -> Any:
        return self.function()


@dataclass(frozen=True)
class Blocking:
    """A step's call that may block for long (a database connect): the async client runs it in
    a worker thread, so the service's event loop keeps serving; the sync client just calls it.

    A call cannot be stopped half-way: if the apply is cancelled while it runs, the async
    client waits for it, runs `undo` if it succeeded, and only then lets the cancellation
    revert the steps before it.
    """

    function: Callable[[], Any]
    undo: Callable[[], Any] | None = None

    def __call__(self) -> Any:
        return self.function()


@dataclass(frozen=True)
class Report:
    """Tell the server which version this instance runs (never blocking the service)."""

    status: Literal["applied", "failed", "fallback", "stopped"]
    subject: Config | Received | None
    error: str | None = None


@dataclass(frozen=True)
class Offload:
    """Blocking work (an fsync) the async client runs in a thread."""

    function: Callable[[], Any]


@dataclass(frozen=True)
class Exclusive:
    """A sub-flow that must not interleave with another apply."""

    flow: Generator[Any, Any, Any]


# What a handler that calls load() or refresh() of its own client gets, rather than waiting
# for the apply it runs in to finish: that wait would never end.
REENTRANT_APPLY = "a handler cannot call load() or refresh() of the client applying it"


Flow = Generator[Any, Any, T]


def drive(flow: Generator[Any, Any, T], perform: Callable[[Any], Any]) -> T:
    """Run a flow, performing each effect with `perform`; an effect's exception goes back in."""
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            effect = flow.throw(error) if error is not None else flow.send(value)
        except StopIteration as finished:
            return finished.value
        value, error = None, None
        try:
            value = perform(effect)
        except BaseException as raised:  # thrown into the flow, so an apply can revert first
            error = raised


async def drive_async(flow: Generator[Any, Any, T], perform: Callable[[Any], Awaitable[Any]]) -> T:
    """`drive` for an event loop: `perform` is a coroutine function."""
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            effect = flow.throw(error) if error is not None else flow.send(value)
        except StopIteration as finished:
            return finished.value
        value, error = None, None
        try:
            value = await perform(effect)
        except BaseException as raised:  # a cancellation too: the apply reverts, then it goes on
            error = raised
