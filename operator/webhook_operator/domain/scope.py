"""Which namespaces this operator serves: the one definition every watch uses.

`--namespace` takes what kopf takes, so kopf's watches (subscriptions, Secrets) and the
engine's own WebhookEvent watch serve the same namespaces:

- no `--namespace` at all: every namespace (cluster-wide watches);
- each value is a pattern of comma-separated globs (`*` any characters, `?` one); a glob
  starting with `!` excludes; a pattern whose first glob excludes starts from `*`;
- globs are read left to right: the first inclusive glob makes the initial match, `!glob`
  removes a match, and a later inclusive glob only restores what the initial match had;
- a namespace is served when any of the values matches it.

So `team-*,!team-skip*` serves `team-a` and `team-b` but not `team-skip1` or `other`.
Exact names need no namespace watch; any glob or exclusion needs one (list and watch on
namespaces), so namespaces created later are served as they appear.

With shards (`--shard-index/--shard-count`, domain/shards.py) a process serves only the
namespaces of its shard among those: the patterns say what is watched (what kopf watches too),
`serves` what is handled.

Patterns are checked up front: a glob that could never match a namespace name (a Kubernetes
namespace is a DNS-1123 label: lowercase letters, digits and `-`, at most 63 characters) is a
typo, refused with a message that names it rather than accepted and matching nothing.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from dataclasses import dataclass

from webhook_operator.domain.shards import Shard

_GLOB = re.compile(r"[a-z0-9*?-]{1,63}")
_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


class ScopeError(ValueError):
    """A `--namespace` value that cannot mean any namespace."""


@dataclass(frozen=True)
class NamespaceScope:
    """The parsed `--namespace` values (empty means every namespace) and this process's shard."""

    patterns: tuple[str, ...] = ()
    shard: Shard = Shard()

    @classmethod
    def parse(cls, values: Iterable[str], *, shard: Shard | None = None) -> NamespaceScope:
        patterns = tuple(value.strip() for value in values)
        for pattern in patterns:
            _check(pattern)
        return cls(patterns, shard or Shard())

    @property
    def cluster_wide(self) -> bool:
        return not self.patterns

    @property
    def exact_names(self) -> frozenset[str] | None:
        """The namespaces when every value is a plain name (no watch on namespaces needed)."""
        if self.cluster_wide or any(not _NAME.fullmatch(pattern) for pattern in self.patterns):
            return None
        return frozenset(self.patterns)

    def includes(self, namespace: str) -> bool:
        """Matched by the patterns (kopf's semantics): watched, whatever the shard."""
        return self.cluster_wide or any(_matches(namespace, pattern) for pattern in self.patterns)

    def serves(self, namespace: str) -> bool:
        """Handled by this process: matched by the patterns and owned by its shard."""
        return self.shard.owns(namespace) and self.includes(namespace)

    def __str__(self) -> str:
        patterns = " ".join(self.patterns) if self.patterns else "*"
        return patterns if self.shard.is_whole else f"{patterns} (shard {self.shard})"


def _globs(pattern: str) -> list[str]:
    globs = [glob.strip() for glob in pattern.split(",")]
    return ["*", *globs] if globs[0].startswith("!") else globs


def _matches(namespace: str, pattern: str) -> bool:
    # fnmatchcase: namespace names are lowercase, and the match must not depend on the OS.
    globs = _globs(pattern)
    matched = initial = fnmatch.fnmatchcase(namespace, globs[0])
    for glob in globs[1:]:
        if glob.startswith("!"):
            matched = matched and not fnmatch.fnmatchcase(namespace, glob[1:])
        else:
            matched = matched or (initial and fnmatch.fnmatchcase(namespace, glob))
    return matched


def _check(pattern: str) -> None:
    if not pattern:
        raise ScopeError("an empty --namespace value matches no namespace")
    for glob in (part.strip() for part in pattern.split(",")):
        bare = glob[1:] if glob.startswith("!") else glob
        if not bare:
            raise ScopeError(f"--namespace {pattern!r} has an empty glob (two commas, or a lone '!')")
        if not _GLOB.fullmatch(bare):
            raise ScopeError(
                f"--namespace {pattern!r}: {glob!r} can never match a namespace name "
                "(lowercase letters, digits and '-', with '*' and '?' as wildcards and a leading "
                "'!' to exclude; at most 63 characters)"
            )
        if not any(wildcard in bare for wildcard in "*?") and not _NAME.fullmatch(bare):
            raise ScopeError(
                f"--namespace {pattern!r}: {bare!r} is not a namespace name "
                "(it must start and end with a letter or digit)"
            )
