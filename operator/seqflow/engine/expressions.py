"""CEL expressions (`when` conditions, forEach items), compiled once per distinct text and
evaluated purely.

CEL comes from `common-expression-language` (the Rust `cel` interpreter behind a Python binding:
measured here, about 60 µs a compile and 10 to 20 µs an evaluation; a maintained implementation
of the spec). The variables a condition sees are `input` (the step's input),
`run` (name, namespace, labels) and `steps` (earlier steps by id: their phase, and their output
where the run keeps it).
"""

from __future__ import annotations

import functools
from typing import Any

import cel


class ConditionError(ValueError):
    """An expression that does not compile, cannot be evaluated (a missing field, an index out
    of range, a division by zero, a type mismatch) or does not evaluate to a boolean."""


@functools.lru_cache(maxsize=1024)
def compiled(expression: str, *, field: str = "when") -> Any:
    """The compiled program of `expression` (cached: Workflows repeat their expressions)."""
    try:
        return cel.compile(expression)
    except ValueError as error:
        raise ConditionError(f"{field} {expression!r} does not compile: {_first_line(error)}") from None


def holds(expression: str, variables: dict[str, Any], *, field: str = "when") -> bool:
    """Whether `expression` is true for `variables`."""
    value = evaluated(expression, variables, field=field)
    if not isinstance(value, bool):
        raise ConditionError(f"{field} {expression!r} gave {value!r}, not true or false")
    return value


def evaluated(expression: str, variables: dict[str, Any], *, field: str) -> Any:
    """The value of `expression` for `variables`; `field` names it in errors."""
    try:
        return compiled(expression, field=field).execute(variables)
    except KeyError as error:  # a field or step that is not there
        raise ConditionError(
            f"{field} {expression!r} failed: no field {error.args[0]!r} (test for it with has())"
        ) from None
    except (LookupError, ArithmeticError, ValueError, TypeError, RuntimeError) as error:
        raise ConditionError(f"{field} {expression!r} failed: {_first_line(error)}") from None


def _first_line(error: Exception) -> str:
    return str(error).splitlines()[0]
