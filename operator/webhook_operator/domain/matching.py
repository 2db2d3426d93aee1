"""Which events a subscription wants: glob patterns over event types.

The pattern language is deliberately small: `*` matches any run of characters (dots included,
so `order.*` matches `order.created` and `order.item.added`); every other character is literal.
No character classes, so no pattern can be malformed in surprising ways.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

MAX_PATTERN_LENGTH = 256
_ALLOWED = re.compile(r"[A-Za-z0-9._:/\-*]+")


def pattern_problem(pattern: str) -> str | None:
    """Why `pattern` is not a valid event-type glob, or None when it is."""
    if not pattern:
        return "an empty event type pattern matches nothing; omit eventTypes to receive all types"
    if len(pattern) > MAX_PATTERN_LENGTH:
        return f"event type pattern is longer than {MAX_PATTERN_LENGTH} characters"
    if not _ALLOWED.fullmatch(pattern):
        return (
            f"event type pattern {pattern[:64]!r} has characters outside letters, digits, "
            "'.', '_', ':', '/', '-' and the wildcard '*'"
        )
    return None


@functools.lru_cache(maxsize=4096)
def _compile(pattern: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")), re.DOTALL)


def type_matches(patterns: Sequence[str], event_type: str) -> bool:
    """True when `event_type` matches any pattern; no patterns means every type."""
    if not patterns:
        return True
    return any(pattern == "*" or _compile(pattern).fullmatch(event_type) for pattern in patterns)
