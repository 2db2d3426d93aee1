"""Subscriptions in memory: the kopf index holds the records, this module derives their state.

Matching an event reads only memory: kopf's index of subscriptions is filled by its watch. The
events come by another watch (engine/event_watch.py), so before the first event of a namespace
is reconciled the index is checked against a LIST of that namespace's subscriptions (`caught_up`):
an operator that restarts never reconciles an event against a half-known set of subscriptions.
"""

from __future__ import annotations

import asyncio
import ssl
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from webhook_operator.domain.deliveries import Target
from webhook_operator.domain.egress import EgressPolicy, parse_ip_literal
from webhook_operator.domain.readiness import Readiness, readiness
from webhook_operator.domain.recovery import RECOVER_SINCE_ANNOTATION
from webhook_operator.domain.signing import SigningKey, SigningKeyError, parse_signing_key
from webhook_operator.domain.specs import SpecProblem, SubscriptionSpec, parse_subscription_spec
from webhook_operator.engine.health_tracker import HealthTracker, SubKey
from webhook_operator.engine.secrets import SecretStore
from webhook_operator.kube import KubeClient, KubeError, resource_path
from webhook_operator.sender import Sender, TLSMaterial, TLSMaterialError

REENABLE_ANNOTATION = "webhooks.openplatform.dev/reenable"
_EGRESS_CACHE_SIZE = 100_000  # URLs; cleared when full (one entry per subscription in practice)
_CATCH_UP_STALL_SECONDS = 2.0  # give up waiting for listed subscriptions after this long without progress
_CATCH_UP_MAX_SECONDS = 60.0  # and after this long in all (a restart indexing many thousands)


@dataclass(frozen=True)
class SubscriptionRecord:
    """What the index keeps of a WebhookSubscription: parsed once per watch event."""

    namespace: str
    name: str
    uid: str
    generation: int
    resource_version: str
    spec: SubscriptionSpec | SpecProblem
    status: Mapping[str, Any]
    reenable_request: str | None
    recover_since_request: str | None = None

    @property
    def key(self) -> SubKey:
        return (self.namespace, self.name)


def record_from_body(body: Mapping[str, Any]) -> SubscriptionRecord:
    metadata = body.get("metadata") or {}
    annotations = metadata.get("annotations") or {}
    status = body.get("status")
    return SubscriptionRecord(
        namespace=str(metadata.get("namespace", "")),
        name=str(metadata.get("name", "")),
        uid=str(metadata.get("uid", "")),
        generation=int(metadata.get("generation") or 1),
        resource_version=str(metadata.get("resourceVersion", "")),
        spec=parse_subscription_spec(body.get("spec")),
        status=status if isinstance(status, Mapping) else {},
        reenable_request=annotations.get(REENABLE_ANNOTATION),
        recover_since_request=annotations.get(RECOVER_SINCE_ANNOTATION),
    )


class IndexStore(Protocol):
    def __iter__(self) -> Any: ...


class SubscriptionIndex(Protocol):
    """The part of kopf's `Index` that is read here (a plain dict of lists serves in unit tests)."""

    def get(self, key: Any, default: Any = None) -> Any: ...


def index_keys(record: SubscriptionRecord) -> dict[tuple[str, ...], SubscriptionRecord]:
    """The kopf index entries of one subscription: by namespace (matching) and by name (lookup)."""
    return {("ns", record.namespace): record, ("name", record.namespace, record.name): record}


@dataclass(frozen=True)
class SubscriptionState:
    """Everything a delivery needs from its subscription, derived from the record and its Secrets."""

    record: SubscriptionRecord
    readiness: Readiness
    keys: tuple[SigningKey, ...] = ()
    tls: ssl.SSLContext | None = None

    @property
    def target(self) -> Target:
        spec = self.record.spec if isinstance(self.record.spec, SubscriptionSpec) else None
        return Target(self.record.name, spec, self.readiness.blocker)


@dataclass(frozen=True)
class _Material:
    keys: tuple[SigningKey, ...]
    tls: ssl.SSLContext | None
    problem: SpecProblem | None


class SubscriptionRegistry:
    def __init__(
        self, secrets: SecretStore, sender: Sender, health: HealthTracker, policy: EgressPolicy
    ) -> None:
        self._secrets = secrets
        self._sender = sender
        self._health = health
        self._policy = policy
        self._index: SubscriptionIndex = {}
        self._material: dict[SubKey, tuple[tuple[object, ...], _Material]] = {}
        self._synced: dict[str, int] = {}  # namespace -> resourceVersion of its last consistent LIST
        self._sync_locks: dict[str, asyncio.Lock] = {}
        self._kube: KubeClient | None = None
        self._egress_by_url: dict[str, str | None] = {}

    def bind(self, index: SubscriptionIndex, kube: KubeClient | None = None) -> None:
        self._index = index
        self._kube = kube

    async def caught_up(self, namespace: str, resource_version: str) -> None:
        """Wait until every subscription created before this version is in the index.

        The event and subscription watches are separate streams: a subscription applied a few
        milliseconds before an event (`kubectl apply -f examples/`) can reach us after it, and the
        event would match nothing. When an event is newer than anything the subscription watch has
        brought, one LIST (shared by every event waiting in that namespace) says which
        subscriptions exist, and we wait briefly for the watch to bring them into the index.
        The LIST asks for a state not older than the event (`resourceVersionMatch=NotOlderThan`),
        which the API server answers from its watch cache, without a round trip to etcd.
        Versions are compared as integers only to skip work; when they are not integers, or the
        LIST fails after the namespace was once checked, matching goes ahead with the index as it
        is. The first check of a namespace must succeed: its failure is raised, and the reconcile
        is retried.

        (The highest version the subscription watch has brought is no safe watermark: kopf
        indexes each object in its own worker, so a later subscription can be indexed before
        an earlier one.)
        """
        if self._kube is None or not resource_version.isdigit():
            return
        wanted = int(resource_version)
        if namespace not in self._synced:
            wanted = max(wanted, 1)  # never checked: check now, whatever the event's version
        if wanted <= self._synced.get(namespace, 0):
            return
        lock = self._sync_locks.setdefault(namespace, asyncio.Lock())
        async with lock:
            if wanted <= self._synced.get(namespace, 0):
                return
            query = f"?resourceVersion={wanted}&resourceVersionMatch=NotOlderThan"
            try:
                listing = await self._kube.get(resource_path("webhooksubscriptions", namespace) + query)
            except KubeError:
                if namespace not in self._synced:
                    raise  # never checked: no matching against an index that may be half-filled
                return
            if listing is None:
                return
            listed_version = str((listing.get("metadata") or {}).get("resourceVersion", ""))
            expected = {
                str(item["metadata"]["name"]): (
                    str(item["metadata"].get("uid", "")),
                    int(item["metadata"].get("generation") or 1),
                )
                for item in listing.get("items") or []
                if isinstance(item, Mapping) and isinstance(item.get("metadata"), Mapping)
            }
            await self._wait_indexed(namespace, expected)
            if listed_version.isdigit():
                self._synced[namespace] = max(self._synced.get(namespace, 0), int(listed_version))

    def synced(self, namespace: str) -> bool:
        """Whether the index has once been checked complete for this namespace."""
        return namespace in self._synced

    async def _wait_indexed(self, namespace: str, expected: Mapping[str, tuple[str, int]]) -> None:
        """Wait while the index still lacks listed subscriptions and is still bringing them.

        A subscription deleted between the LIST and its watch event never arrives; the wait ends
        after a stall without progress. While kopf is indexing thousands after a restart, there is
        progress, and the wait goes on (bounded).
        """
        started = last_progress = time.monotonic()
        missing = self._missing(namespace, expected)
        # kopf fills its index in its own handlers; a short poll is simpler than a hook there.
        while missing:
            now = time.monotonic()
            if now - last_progress > _CATCH_UP_STALL_SECONDS or now - started > _CATCH_UP_MAX_SECONDS:
                return
            await asyncio.sleep(0.005)
            still = self._missing(namespace, expected)
            if still < missing:
                last_progress = time.monotonic()
            missing = still

    def _missing(self, namespace: str, expected: Mapping[str, tuple[str, int]]) -> int:
        # Matching reads the object and its spec, not its status: a subscription whose status alone
        # moved on (a health flush, a Ready condition) needs no wait. Waiting for its newest
        # resourceVersion would hold every new event in the namespace, up to the full catch-up
        # time, whenever the watch is behind while a busy or failing endpoint's health is flushed.
        missing = 0
        for name, (uid, generation) in expected.items():
            record = self.get((namespace, name))
            if record is None or record.uid != uid or record.generation < generation:
                missing += 1
        return missing

    def get(self, key: SubKey) -> SubscriptionRecord | None:
        entries = self._index.get(("name", *key))
        return next(iter(entries), None) if entries is not None else None

    def in_namespace(self, namespace: str) -> list[SubscriptionRecord]:
        entries = self._index.get(("ns", namespace))
        return list(entries) if entries is not None else []

    def forget(self, key: SubKey) -> None:
        self._material.pop(key, None)
        self._secrets.refer(key, frozenset())

    async def state(self, record: SubscriptionRecord) -> SubscriptionState:
        tracked = self._health.ensure(record.key, record.uid, record.status)
        spec = record.spec
        if isinstance(spec, SpecProblem):
            return SubscriptionState(record, readiness(spec))
        material = await self._load_material(record, spec)
        result = readiness(
            spec,
            secret_problem=material.problem,
            egress_problem=self._static_egress_problem(spec) or tracked.egress_refusal,
            disabled=tracked.health.disabled,
        )
        return SubscriptionState(record, result, material.keys, material.tls)

    async def _load_material(self, record: SubscriptionRecord, spec: SubscriptionSpec) -> _Material:
        names = spec.secret_names
        self._secrets.refer(record.key, frozenset((record.namespace, name) for name in names))
        secrets = {name: await self._secrets.get((record.namespace, name)) for name in sorted(names)}
        fingerprint = (
            record.uid,
            record.resource_version,
            *(secrets[name].version for name in sorted(names)),
        )
        cached = self._material.get(record.key)
        if cached is not None and cached[0] == fingerprint:
            return cached[1]
        material = await self._build_material(spec, {name: data.values for name, data in secrets.items()})
        self._material[record.key] = (fingerprint, material)
        return material

    async def _build_material(
        self, spec: SubscriptionSpec, secrets: Mapping[str, Mapping[str, bytes] | None]
    ) -> _Material:
        for name, values in secrets.items():
            if values is None:
                return _Material((), None, SpecProblem("SecretNotFound", f"Secret {name!r} does not exist"))
        keys: tuple[SigningKey, ...] = ()
        if spec.signing_secret is not None:
            try:
                keys = _signing_keys(spec.signing_secret, secrets[spec.signing_secret] or {})
            except SigningKeyError as error:
                return _Material((), None, SpecProblem("InvalidSecret", str(error)))
        tls = None
        if spec.ca_bundle is not None or spec.client_cert_secret is not None:
            try:
                tls = await self._sender.tls_context(_tls_material(spec, secrets))
            except TLSMaterialError as error:
                return _Material(keys, None, SpecProblem("TLSConfigInvalid", str(error)))
        return _Material(keys, tls, None)

    def _static_egress_problem(self, spec: SubscriptionSpec) -> str | None:
        # Read on every delivery; the answer depends only on the URL (the policy is fixed).
        if spec.url not in self._egress_by_url:
            if len(self._egress_by_url) >= _EGRESS_CACHE_SIZE:
                self._egress_by_url.clear()
            literal = parse_ip_literal(urllib.parse.urlsplit(spec.url).hostname or "")
            refusal = self._policy.check(literal) if literal is not None else None
            self._egress_by_url[spec.url] = refusal.message if refusal is not None else None
        return self._egress_by_url[spec.url]


def _signing_keys(secret_name: str, values: Mapping[str, bytes]) -> tuple[SigningKey, ...]:
    if "signingKey" not in values:
        raise SigningKeyError(f"Secret {secret_name!r} has no key 'signingKey'")
    keys = [parse_signing_key(values["signingKey"], key_name=f"{secret_name}/signingKey")]
    if values.get("previousSigningKey"):
        keys.append(
            parse_signing_key(values["previousSigningKey"], key_name=f"{secret_name}/previousSigningKey")
        )
    return tuple(keys)


def _tls_material(spec: SubscriptionSpec, secrets: Mapping[str, Mapping[str, bytes] | None]) -> TLSMaterial:
    ca = cert = key = None
    if spec.ca_bundle is not None:
        values = secrets[spec.ca_bundle.name] or {}
        if spec.ca_bundle.key not in values:
            raise TLSMaterialError(f"Secret {spec.ca_bundle.name!r} has no key {spec.ca_bundle.key!r}")
        ca = values[spec.ca_bundle.key]
    if spec.client_cert_secret is not None:
        values = secrets[spec.client_cert_secret] or {}
        if "tls.crt" not in values or "tls.key" not in values:
            raise TLSMaterialError(f"Secret {spec.client_cert_secret!r} needs keys 'tls.crt' and 'tls.key'")
        cert, key = values["tls.crt"], values["tls.key"]
    return TLSMaterial(ca_pem=ca, cert_pem=cert, key_pem=key)
