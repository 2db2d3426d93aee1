"""Payload filters: a subscription's `spec.filter`, a CEL expression over `type`, `source`, `data`.

CEL comes from `common-expression-language` (Python bindings of the Rust `cel` interpreter): it
lets `type` be a variable, as the contract names it (cel-go and cel-cpp reserve it), compares
ints with doubles as the CEL spec says (`data.amount > 100` holds for 150.5), and evaluates in
about a microsecond once an event's variables are converted (docs/design.md, "Payload filters").

An expression is compiled once per distinct text (cached), so re-parsing a subscription on each
of its watch events costs nothing; an event's variables are converted once and shared by every
subscription that filters it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import cel

MAX_FILTER_LENGTH = 4096
VARIABLES = frozenset({"type", "source", "data"})
# Names a comprehension macro binds (`data.items.exists(i, i.sku == "A")` binds `i`): the
# library lists them among the expression's variables, so they are not undeclared names.
_BOUND_BY_MACRO = re.compile(r"\.\s*(?:all|exists|exists_one|map|filter)\s*\(\s*([A-Za-z_][A-Za-z0-9_]*)\s*,")


@dataclass(frozen=True)
class PayloadFilter:
    expression: str
    program: cel.Program = field(repr=False, compare=False)


@dataclass(frozen=True)
class FilterError:
    """An evaluation that did not give true or false; the delivery fails with reason FilterError."""

    message: str


FilterVerdict = bool | FilterError


class FilterInput:
    """One event's variables, converted to CEL values at most once, on first use."""

    def __init__(self, type_: str, source: str | None, data: Mapping[str, Any]) -> None:
        self._values = {"type": type_, "source": source or "", "data": data}
        self._context: cel.Context | None = None

    @property
    def context(self) -> cel.Context:
        if self._context is None:
            self._context = cel.Context(dict(self._values))
        return self._context


def compile_filter(expression: str) -> PayloadFilter | str:
    """The compiled filter, or why it does not compile (a message for an InvalidSpec condition)."""
    if len(expression) > MAX_FILTER_LENGTH:
        return f"spec.filter is longer than {MAX_FILTER_LENGTH} characters"
    if not expression.strip():
        return "spec.filter is empty; omit it to deliver every event of the matching types"
    return _compile(expression)


@functools.lru_cache(maxsize=4096)  # distinct expressions; a miss costs ~20 us
def _compile(expression: str) -> PayloadFilter | str:
    try:
        program = cel.compile(expression)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as error:  # ValueError; a Rust panic would be pyo3's PanicException
        return f"spec.filter does not compile: {_first_line(error)}"
    bound = set(_BOUND_BY_MACRO.findall(expression))
    unknown = sorted(set(program.variables()) - VARIABLES - bound)
    if unknown:
        return (
            f"spec.filter refers to {', '.join(repr(name) for name in unknown)}; "
            "a filter can use only type, source and data"
        )
    return PayloadFilter(expression, program)


def evaluate(payload_filter: PayloadFilter, event: FilterInput) -> FilterVerdict:
    """True to deliver, False to skip, or the error (a missing field, a type mismatch, ...)."""
    try:
        result = payload_filter.program.execute(event.context)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as error:  # KeyError, TypeError, OverflowError, ...; a Rust panic too
        return FilterError(f"spec.filter failed on this event: {_describe(error)}")
    if not isinstance(result, bool):
        return FilterError(f"spec.filter gave {type(result).__name__} {_short(repr(result))}, not a bool")
    return result


def _describe(error: BaseException) -> str:
    if isinstance(error, KeyError):
        return f"no such key {_short(str(error))} (guard it with has(), e.g. has(data.x) && data.x > 1)"
    return _first_line(error)


def _first_line(error: BaseException) -> str:
    return _short(str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__)


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
