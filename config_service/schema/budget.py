"""The step budget: a bound on the keyword evaluations one validation may spend.

`$ref`s let a small schema name a subschema many times over (ten `$defs` each an `anyOf` of
two `$ref`s to the next reach 2^10 paths): without a bound one push could hold the server for
minutes, whatever the regular expressions run on. Each validation gets a budget in proportion
to the size of the document; every keyword evaluation spends from it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


class ValidationTooCostly(Exception):
    """Validating one document took more keyword evaluations than its budget allows."""


# Keyword evaluations left for the validation running on this thread (None: no limit).
_steps = threading.local()
STEPS_PER_VALUE = 200  # keyword evaluations a document's value may cost, on average ...
MIN_STEPS = 1_000_000  # ... and what any document may cost (a second or two at most)

# A reference costs as much as some twenty plain keywords (the resolver looks it up anew).
REFERENCE_STEPS = 20


def spend(steps: int) -> None:
    """Take `steps` from this thread's budget; ValidationTooCostly when it has fewer left."""
    remaining = getattr(_steps, "remaining", None)
    if remaining is not None:
        if remaining < steps:
            raise ValidationTooCostly
        _steps.remaining = remaining - steps


def counted(keyword: Any, steps: int | Callable[[Any, Any], int]) -> Any:
    """A jsonschema keyword function that spends `steps` each time it is evaluated, or
    `steps(value, instance)` for a keyword whose work grows with its value or its instance
    (`enum` compares with every entry, `uniqueItems` may compare every pair)."""
    if callable(steps):
        cost = steps

        def evaluate_costed(validator: Any, value: Any, instance: Any, schema: Any) -> Any:
            spend(cost(value, instance))
            return keyword(validator, value, instance, schema)

        return evaluate_costed

    def evaluate(validator: Any, value: Any, instance: Any, schema: Any) -> Any:
        spend(steps)
        return keyword(validator, value, instance, schema)

    return evaluate


def list_steps(value: Any, instance: Any) -> int:
    """`enum` and `required`: a step for each entry of the keyword's list."""
    return 1 + len(value) if isinstance(value, list) else 1


def dependent_required_steps(value: Any, instance: Any) -> int:
    if not isinstance(value, dict):
        return 1
    return 1 + sum(len(names) for names in value.values() if isinstance(names, list))


def unique_items_steps(value: Any, instance: Any) -> int:
    """Items of one sortable kind are sorted and compared with their neighbours; any other mix
    is compared pair by pair (jsonschema's `uniq`)."""
    if value is not True or not isinstance(instance, list):
        return 1
    count = len(instance)
    kinds = {type(item) for item in instance}
    if kinds <= {str} or kinds <= {int, float}:
        return 1 + count
    return 1 + count * count // 2


def step_budget(instance: Any) -> int:
    """The steps validating `instance` may take: in proportion to its values, at least MIN_STEPS."""
    values = 0
    pending = [instance]
    while pending:
        item = pending.pop()
        values += 1
        if isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return max(MIN_STEPS, STEPS_PER_VALUE * values)


@contextmanager
def budget_for(instance: Any) -> Iterator[None]:
    """Validations on this thread inside the block spend from the budget of `instance`."""
    _steps.remaining = step_budget(instance)
    try:
        yield
    finally:
        _steps.remaining = None
