"""Shards: FNV-1a 32-bit against published test vectors, and a split with no overlap and no gap."""

from __future__ import annotations

import fnv_hash_fast
import pytest
from hypothesis import given
from hypothesis import strategies as st

from webhook_operator.domain.scope import NamespaceScope
from webhook_operator.domain.shards import Shard, fnv1a_32, shard_of


@pytest.mark.parametrize(
    ("data", "expected"),
    [  # from the FNV reference test suite (draft-eastlake-fnv, fnv-test-vectors)
        (b"", 0x811C9DC5),
        (b"a", 0xE40C292C),
        (b"b", 0xE70C2DE5),
        (b"foobar", 0xBF9CF968),
    ],
)
def test_fnv1a_32_matches_the_reference_vectors(data: bytes, expected: int) -> None:
    assert fnv1a_32(data) == expected


@given(st.binary(max_size=300))
def test_fnv1a_32_agrees_with_an_independent_implementation(data: bytes) -> None:
    assert fnv1a_32(data) == fnv_hash_fast.fnv1a_32(data)


def test_a_namespace_belongs_to_its_hash_modulo_the_count() -> None:
    assert shard_of("foobar", 7) == 0xBF9CF968 % 7
    assert Shard(0xBF9CF968 % 7, 7).owns("foobar")


namespace_names = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?", fullmatch=True)


@given(namespace_names, st.integers(1, 16))
def test_every_namespace_has_exactly_one_shard(namespace: str, count: int) -> None:
    owners = [index for index in range(count) if Shard(index, count).owns(namespace)]
    assert len(owners) == 1


def test_one_shard_serves_everything_under_the_plain_lease_name() -> None:
    whole = Shard()
    assert whole.owns("anything")
    assert whole.lease_name("webhook-operator") == "webhook-operator"
    assert Shard(2, 3).lease_name("webhook-operator") == "webhook-operator-shard-2"


@pytest.mark.parametrize(("index", "count"), [(0, 0), (-1, 2), (2, 2)])
def test_an_impossible_shard_is_refused(index: int, count: int) -> None:
    with pytest.raises(ValueError, match="shard"):
        Shard(index, count)


def test_a_shard_serves_the_namespaces_of_its_patterns_that_it_owns() -> None:
    names = [f"team-{i}" for i in range(40)] + ["team-skip1", "other"]
    scopes = [NamespaceScope.parse(["team-*,!team-skip*"], shard=Shard(i, 3)) for i in range(3)]
    for name in names:
        owners = [i for i, scope in enumerate(scopes) if scope.serves(name)]
        expected = [shard_of(name, 3)] if scopes[0].includes(name) else []
        assert owners == expected, name
        # What is watched does not depend on the shard: kopf gets the same patterns everywhere.
        assert len({scope.includes(name) for scope in scopes}) == 1
    assert str(scopes[1]) == "team-*,!team-skip* (shard 1/3)"
