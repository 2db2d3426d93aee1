"""WebhookSource, pure: its spec, what counts as a change, and the events changes become.

An object's *fingerprint* is what a change must alter to be announced: its uid and a hash of
everything outside `metadata` and `status`. A status-only update, a label or annotation edit
and a resync (the same object again) leave it unchanged, so they emit nothing. The source
records the fingerprint it last emitted per object name (status.observedObjects); after a
restart, a re-LIST compared against that record emits exactly the changes made meanwhile.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from webhook_operator.domain.specs import DEFAULT_MAX_DATA_BYTES, SpecProblem

Change = Literal["Added", "Modified", "Deleted"]
CHANGES: tuple[Change, ...] = ("Added", "Modified", "Deleted")
DEFAULT_MAX_EVENTS_PER_SECOND = 10.0
MAX_OBSERVED_OBJECTS = 1000  # bounds status.observedObjects (~40 bytes an entry)
_FORBIDDEN_KINDS = frozenset({("", "Secret")})  # (group, kind): never a source, whatever RBAC says
_PROJECTED_METADATA = (
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "labels",
)


@dataclass(frozen=True)
class SourceSpec:
    api_version: str
    kind: str
    label_selector: str  # as the API's `labelSelector` query parameter takes it
    on: frozenset[Change]
    type_prefix: str
    max_events_per_second: float

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def version(self) -> str:
        return self.api_version.rpartition("/")[2]


def parse_source_spec(spec: object) -> SourceSpec | SpecProblem:
    if not isinstance(spec, Mapping):
        return SpecProblem("InvalidSpec", "spec must be an object")
    resource = spec.get("resource")
    if not isinstance(resource, Mapping):
        return SpecProblem("InvalidSpec", "spec.resource must be an object with apiVersion and kind")
    api_version, kind = str(resource.get("apiVersion") or ""), str(resource.get("kind") or "")
    if not api_version or not kind:
        return SpecProblem("InvalidSpec", "spec.resource needs both apiVersion and kind")
    selector = label_selector(spec.get("selector"))
    if isinstance(selector, SpecProblem):
        return selector
    on_raw = spec.get("on") or list(CHANGES)
    if not isinstance(on_raw, list) or any(item not in CHANGES for item in on_raw):
        return SpecProblem("InvalidSpec", f"spec.on may list only {', '.join(CHANGES)}")
    rate = spec.get("maxEventsPerSecond", DEFAULT_MAX_EVENTS_PER_SECOND)
    if not isinstance(rate, int | float) or isinstance(rate, bool) or not 0 < rate <= 1000:
        return SpecProblem("InvalidSpec", "spec.maxEventsPerSecond must be a number in (0, 1000]")
    prefix = spec.get("typePrefix")
    return SourceSpec(
        api_version=api_version,
        kind=kind,
        label_selector=selector,
        on=frozenset(on_raw),
        type_prefix=str(prefix) if prefix is not None else f"{kind.lower()}.",
        max_events_per_second=float(rate),
    )


def forbidden_kind(spec: SourceSpec) -> str | None:
    """Why this kind can never be a source, or None."""
    if (spec.group, spec.kind) in _FORBIDDEN_KINDS:
        return f"{spec.kind} objects can never be a source: their data would leave the cluster in webhooks"
    return None


def label_selector(selector: object) -> str | SpecProblem:
    """A metav1.LabelSelector as the `labelSelector` query string ("" selects everything)."""
    if selector is None:
        return ""
    if not isinstance(selector, Mapping):
        return SpecProblem("InvalidSpec", "spec.selector must be a label selector object")
    terms = [f"{key}={value}" for key, value in sorted((selector.get("matchLabels") or {}).items())]
    for expression in selector.get("matchExpressions") or []:
        key, operator = str(expression.get("key", "")), str(expression.get("operator", ""))
        values = ",".join(str(value) for value in expression.get("values") or [])
        if operator == "In":
            terms.append(f"{key} in ({values})")
        elif operator == "NotIn":
            terms.append(f"{key} notin ({values})")
        elif operator == "Exists":
            terms.append(key)
        elif operator == "DoesNotExist":
            terms.append(f"!{key}")
        else:
            return SpecProblem("InvalidSpec", f"spec.selector: unknown operator {operator!r}")
    return ",".join(terms)


def event_type(spec: SourceSpec, change: Change) -> str:
    return f"{spec.type_prefix}{change.lower()}"


def fingerprint(obj: Mapping[str, Any]) -> str:
    """`<uid prefix>:<content hash>`; equal fingerprints mean nothing worth announcing changed."""
    uid = str((obj.get("metadata") or {}).get("uid", ""))[:8]
    content = {key: value for key, value in obj.items() if key not in ("metadata", "status")}
    digest = hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":")).encode())
    return f"{uid}:{digest.hexdigest()[:16]}"


def classify(emitted: str | None, current: str | None) -> list[Change]:
    """The changes that take what was last emitted for an object to its current fingerprint
    (None: absent). A different uid is a new object under the same name: deleted, then added."""
    if emitted == current:
        return []
    if current is None:
        return ["Deleted"]
    if emitted is None:
        return ["Added"]
    if emitted.split(":")[0] != current.split(":")[0]:
        return ["Deleted", "Added"]
    return ["Modified"]


def event_data(obj: Mapping[str, Any], *, max_bytes: int = DEFAULT_MAX_DATA_BYTES) -> dict[str, Any]:
    """The object without metadata.managedFields; over `max_bytes` serialized, its projection:
    apiVersion, kind, a few metadata fields and `"truncated": true` (never a failed source)."""
    metadata = {key: value for key, value in (obj.get("metadata") or {}).items() if key != "managedFields"}
    data = {**obj, "metadata": metadata}
    if len(json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()) <= max_bytes:
        return data
    projected = {key: metadata[key] for key in _PROJECTED_METADATA if key in metadata}
    return {
        "apiVersion": obj.get("apiVersion"),
        "kind": obj.get("kind"),
        "metadata": projected,
        "truncated": True,
    }


def event_name(source: str, object_name: str, change: Change, version: str) -> str:
    """Deterministic, so a retried create answers 409 AlreadyExists instead of a duplicate.
    `version`: the object's resourceVersion, or for a deletion seen by a re-LIST, its fingerprint."""
    digest = hashlib.sha256(f"{object_name}/{change}/{version}".encode()).hexdigest()[:12]
    return f"{source[:200]}-{change.lower()[0]}-{digest}"


def object_path(spec: SourceSpec, plural: str, namespace: str, name: str) -> str:
    """The object's API path, the events' spec.source."""
    base = f"/apis/{spec.api_version}" if spec.group else f"/api/{spec.version}"
    return f"{base}/namespaces/{namespace}/{plural}/{name}"


class Pending:
    """States not yet emitted, one per object name: a newer state replaces an older one.

    The rate cap's buffer (a mutable one, unlike the values above: it lives as long as its
    source). Coalescing loses nothing a receiver needs: the event for an object is computed
    from its latest state against what was last emitted (`classify`), so an object added and
    changed before its turn is announced once, as added, in its latest state; one added and
    deleted before its turn, not at all.
    """

    def __init__(self) -> None:
        self.latest: dict[str, tuple[bool, Mapping[str, Any]]] = {}
        self.coalesced = 0  # states replaced before they were emitted

    def put(self, name: str, present: bool, body: Mapping[str, Any]) -> None:
        if name in self.latest:
            self.coalesced += 1
            del self.latest[name]  # to the back of the line, as a fresh change
        self.latest[name] = (present, body)

    def take(self) -> tuple[str, bool, Mapping[str, Any]]:
        name = next(iter(self.latest))
        present, body = self.latest.pop(name)
        return name, present, body
