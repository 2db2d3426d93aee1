"""The WebhookEvent watch over the namespaces this operator serves.

kopf watches subscriptions and Secrets, not events. kopf hands each watched object to a worker
task of its own, yielding the event loop once per new object; with the delivery workers busy,
one loop iteration took tens of milliseconds, so kopf accepted only some tens of new objects
per second and every new event waited behind the status echoes of retries (seconds of watch
lag under a retry storm, docs/performance.md). Here one reflector per served namespace (or one
for the whole cluster) decodes each line and hands the body to the engine.

Which namespaces those are is the `NamespaceScope` kopf gets too (domain/scope.py), so the two
can never disagree: every namespace (one cluster-wide watch), a list of exact names (one watch
each), or patterns, where a watch on namespaces starts a reflector for each namespace that
matches, including those created later, and stops it (forgetting its events) when the
namespace is deleted. With shards, only the shard's namespaces are watched (a cluster-wide
watch brings every namespace's events; the engine drops other shards' at intake).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from webhook_operator.domain.api import GROUP_VERSION, Plural
from webhook_operator.domain.keys import EventKey
from webhook_operator.domain.scope import NamespaceScope
from webhook_operator.engine.reflector import ObjectName, Observe, Reflector
from webhook_operator.kube import KubeClient, resource_path
from webhook_operator.logs import log

PLURAL = Plural.EVENTS
NAMESPACES = "/api/v1/namespaces"


class EventWatch:
    def __init__(
        self,
        kube: KubeClient,
        scope: NamespaceScope,
        *,
        observe: Observe,
        known: Callable[[str | None], Iterable[EventKey]],
        on_listed: Callable[[str | None], None] = lambda namespace: None,
    ) -> None:
        """`observe(type, body)` gets every change; `known(namespace)` the keys already seen in
        a namespace (None: all namespaces), so a re-LIST can tell which of them were deleted;
        `on_listed(namespace)` hears when a LIST of the namespace's events is complete."""
        self._kube = kube
        self._scope = scope
        self._observe = observe
        self._known = known
        self._on_listed = on_listed
        self._watches: dict[str | None, asyncio.Task[None]] = {}
        self._namespace_watch: asyncio.Task[None] | None = None
        self._stopped: list[asyncio.Task[None]] = []

    @property
    def served(self) -> frozenset[str | None]:
        """The namespaces watched now (None: the whole cluster)."""
        return frozenset(self._watches)

    def start(self) -> None:
        exact = self._scope.exact_names
        if self._scope.cluster_wide:
            self._serve(None)
        elif exact is not None:
            for namespace in sorted(exact):
                if self._scope.serves(namespace):  # other shards' namespaces are not watched
                    self._serve(namespace)
        else:
            namespaces = Reflector(
                self._kube,
                NAMESPACES,
                what="namespaces",
                observe=self._namespace_changed,
                known=lambda: [("", namespace) for namespace in self._watches if namespace],
            )
            self._namespace_watch = asyncio.create_task(namespaces.run(), name="namespace watch")

    async def stop(self) -> None:
        tasks = [*self._watches.values(), *self._stopped]
        if self._namespace_watch is not None:
            tasks.append(self._namespace_watch)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._watches, self._stopped, self._namespace_watch = {}, [], None

    def _namespace_changed(self, event_type: str, body: Mapping[str, Any]) -> None:
        name = str((body.get("metadata") or {}).get("name", ""))
        if event_type == "DELETED":
            self._unserve(name)
        elif name not in self._watches and self._scope.serves(name):
            self._serve(name)

    def _serve(self, namespace: str | None) -> None:
        def known() -> list[ObjectName]:
            return list(self._known(namespace))

        reflector = Reflector(
            self._kube, _collection(namespace), what=f"{PLURAL} in {namespace or '*'}",
            observe=self._observe, known=known, on_listed=lambda: self._on_listed(namespace),
        )  # fmt: skip
        self._watches[namespace] = asyncio.create_task(
            reflector.run(), name=f"event watch {namespace or '*'}"
        )
        if namespace is not None and self._scope.exact_names is None:
            log(logging.INFO, "serving namespace", namespace=namespace)

    def _unserve(self, namespace: str) -> None:
        task = self._watches.pop(namespace, None)
        if task is None:
            return
        task.cancel()
        self._stopped = [*(t for t in self._stopped if not t.done()), task]
        for key in list(self._known(namespace)):  # its events went with it
            self._observe("DELETED", {"metadata": {"namespace": key[0], "name": key[1]}})
        log(logging.INFO, "namespace deleted; no longer served", namespace=namespace)


def _collection(namespace: str | None) -> str:
    return f"/apis/{GROUP_VERSION}/{PLURAL}" if namespace is None else resource_path(PLURAL, namespace)


class AccessRefused(Exception):
    """The operator's account may not do what its `--namespace` values need."""


async def check_access(kube: KubeClient, scope: NamespaceScope) -> None:
    """Refuse to start when patterns need a namespace watch the account may not run.

    kopf, lacking that permission, would fall back to the exact names among the patterns and
    warn once; events in every other matching namespace would then wait unserved. A
    SelfSubjectAccessReview (allowed to every authenticated account) names what is missing.
    """
    if scope.cluster_wide or scope.exact_names is not None:
        return
    missing = []
    for verb in ("list", "watch"):
        review = await kube.create(
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            {
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SelfSubjectAccessReview",
                "spec": {"resourceAttributes": {"verb": verb, "resource": "namespaces"}},
            },
        )
        if not (review.get("status") or {}).get("allowed"):
            missing.append(verb)
    if missing:
        raise AccessRefused(
            f"--namespace {scope} has patterns, which are resolved by watching namespaces, but this "
            f"account may not {' or '.join(missing)} namespaces (cluster scope): grant "
            f"{', '.join(missing)} on namespaces (a ClusterRole), or name the namespaces exactly"
        )
