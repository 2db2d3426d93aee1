"""WebhookSources: which ones run, and why the others may not (Stalled, with the reason).

kopf reports every change of a WebhookSource (main.py); a new spec generation (re)starts its
runner (engine/source_runner.py), and the runner's own status writes, which leave the
generation alone, change nothing. Before a runner starts, the source must name a kind that
exists, is namespaced, is not a Secret, and that this operator's account may list and watch in
the source's namespace (a SelfSubjectAccessReview each, so the message names what an admin has
to grant). A refused source is checked again every `RECHECK_SECONDS`: granting the permission
is enough, no edit of the source is needed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from webhook_operator.domain.conditions import Condition, upsert_condition
from webhook_operator.domain.sources import SourceSpec, forbidden_kind, parse_source_spec
from webhook_operator.domain.specs import SpecProblem
from webhook_operator.engine.source_runner import SourceRef, SourceRunner
from webhook_operator.kube import KubeClient, KubeError, NotFoundError, resource_path
from webhook_operator.logs import log
from webhook_operator.metrics import Metrics

RECHECK_SECONDS = 30.0
AGGREGATE_LABEL = "webhooks.openplatform.dev/aggregate-to-sources"
SourceKey = tuple[str, str]


class SourceManager:
    def __init__(
        self, kube: KubeClient, metrics: Metrics, *, max_data_bytes: int, now: Callable[[], dt.datetime]
    ) -> None:
        self._kube = kube
        self._metrics = metrics
        self._max_data_bytes = max_data_bytes
        self._now = now
        self._running: dict[SourceKey, tuple[int, asyncio.Task[None]]] = {}

    def observed(self, event_type: str, body: Mapping[str, Any]) -> None:
        metadata = body.get("metadata") or {}
        key = (str(metadata.get("namespace", "")), str(metadata.get("name", "")))
        generation = int(metadata.get("generation") or 0)
        current = self._running.get(key)
        if event_type == "DELETED":
            if current is not None:
                current[1].cancel()
                del self._running[key]
            return
        if current is not None and current[0] == generation:
            # Our own status write, or a resync. A runner that ended (refused, or an unexpected
            # error, logged) waits for a new spec: restarting it on its own status writes would
            # loop.
            return
        if current is not None:
            current[1].cancel()
        task = asyncio.create_task(self._serve(key, dict(body)), name=f"source {key[0]}/{key[1]}")
        self._running[key] = (generation, task)

    async def stop(self) -> None:
        tasks = [task for _, task in self._running.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._running = {}

    async def _serve(self, key: SourceKey, body: dict[str, Any]) -> None:
        metadata = body["metadata"]
        ref = SourceRef(key[0], key[1], str(metadata.get("uid", "")), int(metadata.get("generation") or 0))
        status = body.get("status") or {}
        try:
            while True:
                spec = parse_source_spec(body.get("spec"))
                if isinstance(spec, SpecProblem):
                    await self._stall(ref, status, spec.reason, spec.message)
                    return  # only a new spec can fix it, and that restarts this task
                allowed = await self._plural_if_allowed(spec, key[0])
                if isinstance(allowed, str):
                    break
                await self._stall(ref, status, allowed.reason, allowed.message)
                if allowed.final:
                    return
                await asyncio.sleep(RECHECK_SECONDS)
            runner = SourceRunner(
                self._kube, self._metrics, ref, spec, allowed, status,
                max_data_bytes=self._max_data_bytes, now=self._now,
            )  # fmt: skip
            await runner.run()
        except asyncio.CancelledError:
            raise
        except Exception as error:  # logged, never silently lost; the next spec change restarts it
            logging.getLogger("webhook_operator").error(
                "source %s/%s stopped", key[0], key[1], exc_info=(type(error), error, error.__traceback__)
            )

    async def _plural_if_allowed(self, spec: SourceSpec, namespace: str) -> str | Refusal:
        """The kind's resource (plural) when this source may run, else why not."""
        forbidden = forbidden_kind(spec)
        if forbidden is not None:
            return Refusal("Forbidden", forbidden, final=True)
        found = await self._discover(spec)
        if isinstance(found, str):
            return Refusal("UnknownKind", found, final=False)
        plural, namespaced = found
        if not namespaced:
            message = f"{spec.kind} is cluster-scoped; a source watches only its own namespace"
            return Refusal("ClusterScoped", message, final=True)
        missing = [
            verb for verb in ("list", "watch") if not await self._allowed(verb, spec.group, plural, namespace)
        ]
        if missing:
            group = spec.group or '""'
            return Refusal(
                "Forbidden",
                f"the operator may not {' or '.join(missing)} {plural} (apiGroup {group}) in namespace "
                f'{namespace}: an admin grants it with a ClusterRole labelled {AGGREGATE_LABEL}: "true"',
                final=False,
            )
        return plural

    async def _discover(self, spec: SourceSpec) -> tuple[str, bool] | str:
        """(plural, namespaced) of the kind from API discovery, or why it is not served."""
        path = f"/apis/{spec.api_version}" if spec.group else f"/api/{spec.version}"
        try:
            listing = await self._kube.get(path)
        except KubeError as error:
            return f"could not read API discovery for {spec.api_version}: {error}"
        for resource in (listing or {}).get("resources") or []:
            if resource.get("kind") == spec.kind and "/" not in str(resource.get("name", "")):
                return str(resource["name"]), bool(resource.get("namespaced"))
        return f"the API server serves no kind {spec.kind} in {spec.api_version}"

    async def _allowed(self, verb: str, group: str, plural: str, namespace: str) -> bool:
        review = await self._kube.create(
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            {
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SelfSubjectAccessReview",
                "spec": {
                    "resourceAttributes": {
                        "verb": verb, "group": group, "resource": plural, "namespace": namespace,
                    }
                },
            },
        )  # fmt: skip
        return bool((review.get("status") or {}).get("allowed"))

    async def _stall(self, ref: SourceRef, status: Mapping[str, Any], reason: str, message: str) -> None:
        log(
            logging.WARNING,
            "source stalled",
            source=f"{ref.namespace}/{ref.name}",
            reason=reason,
            detail=message,
        )
        conditions: list[dict[str, Any]] = list(status.get("conditions") or [])
        now = self._now()
        for condition in (
            Condition("Ready", "False", reason, message),
            Condition("Reconciling", "False", reason, ""),
            Condition("Stalled", "True", reason, message),
        ):
            conditions = upsert_condition(conditions, condition, now=now, generation=ref.generation)
        path = resource_path("webhooksources", ref.namespace, ref.name, "status")
        try:
            await self._kube.merge_patch(
                path, {"status": {"observedGeneration": ref.generation, "conditions": conditions}}
            )
        except NotFoundError:
            return


@dataclass(frozen=True)
class Refusal:
    reason: str
    message: str
    final: bool  # only a new spec can change it (else: checked again, an admin may grant it)
