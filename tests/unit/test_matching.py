"""Event-type globs: '*' matches any run of characters, everything else is literal."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from webhook_operator.domain.matching import MAX_PATTERN_LENGTH, pattern_problem, type_matches

TYPE_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:/-"
event_types = st.text(TYPE_CHARS, min_size=1, max_size=40)
# Characters a regex would read specially, to prove the pattern is not a regex.
tricky_types = st.text(TYPE_CHARS + "+?()[]{}|^$\\\n", min_size=1, max_size=40)


@given(event_types)
def test_a_pattern_without_a_wildcard_matches_itself(event_type: str) -> None:
    assert type_matches([event_type], event_type)


@given(event_types, tricky_types)
def test_a_pattern_without_a_wildcard_matches_only_itself(pattern: str, event_type: str) -> None:
    assume(pattern != event_type)
    assert not type_matches([pattern], event_type)


@given(tricky_types)
def test_a_lone_wildcard_matches_every_type(event_type: str) -> None:
    assert type_matches(["*"], event_type)


@given(st.text(TYPE_CHARS + "\n", max_size=40))
def test_a_prefix_wildcard_matches_every_suffix_dots_included(suffix: str) -> None:
    assert type_matches(["a.*"], "a." + suffix)


@given(tricky_types)
def test_a_prefix_wildcard_matches_nothing_without_the_prefix(event_type: str) -> None:
    assume(not event_type.startswith("a."))
    assert not type_matches(["a.*"], event_type)


@given(st.lists(st.text(TYPE_CHARS + "*", min_size=1, max_size=10), min_size=1, max_size=5), event_types)
def test_a_list_matches_when_any_of_its_patterns_does(patterns: list[str], event_type: str) -> None:
    assert type_matches(patterns, event_type) == any(type_matches([p], event_type) for p in patterns)


@given(tricky_types)
def test_no_patterns_means_every_type(event_type: str) -> None:
    assert type_matches([], event_type)


@pytest.mark.parametrize(
    ("pattern", "event_type", "expected"),
    [
        ("order.*", "order.created", True),
        ("order.*", "order.item.added", True),
        ("order.*", "order.", True),
        ("order.*", "order", False),
        ("order.*", "orderXcreated", False),  # '.' is literal, not "any character"
        ("*.created", "invoice.created", True),
        ("order.*.added", "order.item.added", True),
        ("order.*.added", "order.item.removed", False),
        ("o*r", "orders", False),
        ("invoice.paid", "invoice.paid", True),
        ("invoice.paid", "invoice.paid.late", False),
        ("Invoice.paid", "invoice.paid", False),  # case-sensitive
    ],
)
def test_glob_examples(pattern: str, event_type: str, expected: bool) -> None:
    assert type_matches([pattern], event_type) is expected


@given(st.text(TYPE_CHARS + "*", min_size=1, max_size=MAX_PATTERN_LENGTH))
def test_patterns_of_allowed_characters_are_valid(pattern: str) -> None:
    assert pattern_problem(pattern) is None


@pytest.mark.parametrize("pattern", ["", "a b", "order.[ab]", "order.?", "a\nb", "ä", "x" * 257])
def test_empty_long_or_odd_patterns_are_reported(pattern: str) -> None:
    assert pattern_problem(pattern)


@given(st.text(max_size=300))
def test_pattern_checking_never_raises_and_names_the_pattern_problem(pattern: str) -> None:
    problem = pattern_problem(pattern)
    assert problem is None or "pattern" in problem
