"""The all-or-nothing apply: one step per applier or handler, reverted in reverse order on failure."""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass
from typing import Any

from tskcfg import exceptions
from tskcfg._appliers import Applier

logger = logging.getLogger("tskcfg")

Handler = Callable[[Any, Any], Any]


@dataclass(frozen=True)
class Step:
    """One applier or handler call for one section, with how to undo and settle it."""

    section: str
    label: str
    forward: Callable[[], Any]
    backward: Callable[[], Any]
    commit: Callable[[], Any]


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


def _nothing() -> None:
    return None


def applier_step(section: str, applier: Applier, new: Any, old: Any) -> Step:
    def forward() -> Any:
        return applier.apply(new, old)

    def backward() -> Any:
        return applier.revert(new, old)

    if getattr(applier, "blocking", False):
        return Step(
            section=section,
            label=f"the built-in {section} applier",
            forward=Blocking(forward, undo=backward),
            backward=Blocking(backward),
            commit=applier.commit,
        )
    return Step(
        section=section,
        label=f"the built-in {section} applier",
        forward=forward,
        backward=backward,
        commit=applier.commit,
    )


def handler_step(section: str, handler: Handler, new: Any, old: Any) -> Step:
    name = getattr(handler, "__qualname__", repr(handler))
    return Step(
        section=section,
        label=f"handler {name} for {section!r}",
        forward=lambda: handler(new, old),
        # A handler undoes itself by being told to go from the new section back to the old one.
        backward=lambda: handler(old, new),
        commit=_nothing,
    )


Transaction = Generator[Callable[[], Any], None, None]


def transaction(steps: Iterable[Step], version: int | None, label: str | None = None) -> Transaction:
    """Yield each call to make; a call that raises is thrown back in and reverts the ones before.

    Written once as a generator so the sync client runs it with plain calls and the async
    client awaits the handlers that are coroutines: one copy of the all-or-nothing rule.
    """
    done: list[Step] = []
    for step in steps:
        try:
            yield step.forward
        # BaseException too: a cancelled task or Ctrl-C in the middle of a handler must not leave
        # the steps before it applied. The revert runs, then the interruption goes on as it was.
        except BaseException as error:
            interruption = None if isinstance(error, Exception) else error
            for finished in reversed(done):
                try:
                    yield finished.backward
                except BaseException as failure:
                    logger.exception("reverting %s failed", finished.label)
                    if interruption is None and not isinstance(failure, Exception):
                        interruption = failure  # a cancellation during a revert is not swallowed
            if interruption is error:
                raise
            if interruption is not None:
                raise interruption from error
            raise exceptions.ApplyFailed(
                f"applying {label or f'version {version}'} failed in {step.label}: "
                f"{type(error).__name__}: {error}",
                section=step.section,
                version=version,
            ) from error
        done.append(step)
    for step in done:
        try:
            yield step.commit
        except Exception:
            logger.exception("settling %s failed", step.label)
