"""Shards: which namespaces one operator process serves when the work is split over several.

A namespace belongs to shard `fnv1a_32(name) % count`, so every event and subscription of a
namespace lands on the same shard (matching never crosses namespaces), the split needs no
coordination, and any tool can compute it. FNV-1a is small, fast and well specified
(draft-eastlake-fnv), with published test vectors; no cryptographic strength is needed.
"""

from __future__ import annotations

from dataclasses import dataclass

FNV_OFFSET_BASIS = 0x811C9DC5
FNV_PRIME = 0x01000193


def fnv1a_32(data: bytes) -> int:
    value = FNV_OFFSET_BASIS
    for byte in data:
        value = ((value ^ byte) * FNV_PRIME) & 0xFFFFFFFF
    return value


def shard_of(namespace: str, count: int) -> int:
    return fnv1a_32(namespace.encode()) % count


@dataclass(frozen=True)
class Shard:
    """This process's shard: `index` of `count` (the default, 0 of 1, serves every namespace)."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError(f"the shard count must be at least 1, not {self.count}")
        if not 0 <= self.index < self.count:
            raise ValueError(f"the shard index must be from 0 to {self.count - 1}, not {self.index}")

    @property
    def is_whole(self) -> bool:
        return self.count == 1

    def owns(self, namespace: str) -> bool:
        return self.is_whole or shard_of(namespace, self.count) == self.index

    def lease_name(self, election_id: str) -> str:
        """Each shard elects its own leader; an unsharded operator uses the id as it is."""
        return election_id if self.is_whole else f"{election_id}-shard-{self.index}"

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"
