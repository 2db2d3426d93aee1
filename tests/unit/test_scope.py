"""The namespaces an operator serves: kopf's pattern semantics, checked against kopf itself."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kopf._cogs.structs.references import NamespaceName, match_namespace

from webhook_operator.domain.scope import NamespaceScope, ScopeError

SCOPE = NamespaceScope.parse(["team-*,!team-skip*"])


@pytest.mark.parametrize(
    ("namespace", "served"),
    [("team-a", True), ("team-b", True), ("team-skip1", False), ("other", False), ("team-", True)],
)
def test_a_glob_with_an_exclusion_serves_what_it_names(namespace: str, served: bool) -> None:
    assert SCOPE.includes(namespace) is served


def test_no_value_serves_every_namespace_and_needs_no_names() -> None:
    scope = NamespaceScope.parse([])
    assert scope.cluster_wide
    assert scope.includes("anything")
    assert scope.exact_names is None


def test_exact_names_need_no_namespace_watch_and_patterns_do() -> None:
    assert NamespaceScope.parse(["shop", "billing"]).exact_names == {"shop", "billing"}
    assert NamespaceScope.parse(["shop", "team-*"]).exact_names is None
    assert NamespaceScope.parse(["!kube-*"]).exact_names is None


def test_a_leading_exclusion_starts_from_every_namespace() -> None:
    scope = NamespaceScope.parse(["!kube-*"])
    assert scope.includes("shop")
    assert not scope.includes("kube-system")


def test_any_of_several_values_serves_a_namespace() -> None:
    scope = NamespaceScope.parse(["shop", "team-?"])
    assert scope.includes("shop")
    assert scope.includes("team-a")
    assert not scope.includes("team-ab")


def test_a_later_inclusive_glob_restores_only_what_the_first_matched() -> None:
    # kopf's documented example.
    scope = NamespaceScope.parse(["myapp-*, !*-pr-*, *pr-123"])
    assert scope.includes("myapp-test")
    assert scope.includes("myapp-pr-123")
    assert not scope.includes("myapp-pr-456")
    assert not scope.includes("otherapp-pr-123")


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("", "empty --namespace"),
        ("a,,b", "empty glob"),
        ("!", "empty glob"),
        ("Team-*", "can never match"),
        ("team_a", "can never match"),
        ("team/a", "can never match"),
        ("[ab]*", "can never match"),
        ("team-", "not a namespace name"),
        ("x" * 64, "can never match"),
    ],
)
def test_a_value_that_can_never_match_is_refused_with_what_is_wrong(value: str, says: str) -> None:
    with pytest.raises(ScopeError, match=says):
        NamespaceScope.parse([value])


_glob = st.from_regex(r"!?[a-c*?-]{1,4}", fullmatch=True).filter(lambda g: g.strip("!") not in ("",))
_pattern = st.lists(_glob, min_size=1, max_size=3).map(",".join)
_name = st.from_regex(r"[a-c]([a-c-]{0,4}[a-c])?", fullmatch=True)


@settings(max_examples=400, deadline=None)
@given(patterns=st.lists(_pattern, min_size=1, max_size=2), namespace=_name)
def test_the_engine_serves_exactly_what_kopf_serves(patterns: list[str], namespace: str) -> None:
    """kopf's own matcher is the judge: its watches and the engine's must never disagree."""
    try:
        scope = NamespaceScope.parse(patterns)
    except ScopeError:
        return  # refused at start-up: kopf never sees it
    expected = any(match_namespace(NamespaceName(namespace), pattern) for pattern in patterns)
    assert scope.includes(namespace) is expected
