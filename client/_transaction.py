"""Planning and running the all-or-nothing apply: one step per changed section's applier or handler,
reverted in reverse order on failure."""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from tskcfg import exceptions
from tskcfg._appliers import Applier
from tskcfg._config import Config
from tskcfg._effects import Blocking, Call

logger = logging.getLogger("tskcfg")

Handler = Callable[[Any, Any], Any]
# The built-in appliers run first, always in this order, then the service's handlers.
BUILTIN_ORDER = ("logging", "security", "cache", "database")


@dataclass(frozen=True)
class Step:
    """One applier or handler call for one section, with how to undo and settle it."""

    section: str
    label: str
    forward: Call | Blocking
    backward: Call | Blocking
    commit: Call


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
            commit=Call(applier.commit),
        )
    return Step(
        section=section,
        label=f"the built-in {section} applier",
        forward=Call(forward),
        backward=Call(backward),
        commit=Call(applier.commit),
    )


def handler_step(section: str, handler: Handler, new: Any, old: Any) -> Step:
    name = getattr(handler, "__qualname__", repr(handler))
    return Step(
        section=section,
        label=f"handler {name} for {section!r}",
        forward=Call(lambda: handler(new, old)),
        # A handler undoes itself by being told to go from the new section back to the old one.
        backward=Call(lambda: handler(old, new)),
        commit=Call(_nothing),
    )


def plan(
    old: Config | None,
    new: Config,
    appliers: Mapping[str, Applier],
    handlers: Iterable[tuple[str, Handler]],
) -> list[Step]:
    """The steps that apply `new` over `old`: the sections whose hash changed, built-ins first."""
    old_hashes = old.section_hashes if old is not None else {}
    new_hashes = new.section_hashes
    changed = {
        key
        for key in old_hashes.keys() | new_hashes.keys()
        if old_hashes.get(key) != new_hashes.get(key)
    }

    def sections(name: str) -> tuple[Any, Any]:
        before = old.section(name, None) if old is not None else None
        return new.section(name, None), before

    steps = [applier_step(name, appliers[name], *sections(name)) for name in BUILTIN_ORDER if name in changed]
    steps += [handler_step(name, handler, *sections(name)) for name, handler in handlers if name in changed]
    return steps


Transaction = Generator[Call | Blocking, None, None]


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
