"""Carries out a subscription's `recover-since` request over the events of its namespace.

Finished events keep no body in memory (engine/events.py), so a recovery reads the namespace's
events with one paginated LIST: a recovery is rare and asked for by a person, and the LIST costs
nothing on the delivery path. Each event with a Failed delivery to the subscription gets one
status write, guarded by its resourceVersion like every event status write; the event's own
reconciler then attempts the delivery as usual.
"""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

from webhook_operator.domain.clock import parse_time, utcnow
from webhook_operator.domain.deliveries import Delivery
from webhook_operator.domain.event_status import render_status, summarize
from webhook_operator.domain.recovery import RecoveryRequest, recover_failed
from webhook_operator.engine.events import EventKey
from webhook_operator.kube import ConflictError, KubeClient, NotFoundError, resource_path
from webhook_operator.logs import log
from webhook_operator.metrics import Metrics

_PAGE = 500
_WRITE_ATTEMPTS = 5


class Recovery:
    def __init__(
        self,
        kube: KubeClient,
        metrics: Metrics,
        on_recovered: Callable[[EventKey, Mapping[str, Any]], None],
    ) -> None:
        self._kube = kube
        self._metrics = metrics
        self._on_recovered = on_recovered

    async def run(self, namespace: str, subscription: str, request: RecoveryRequest) -> int:
        """Put back every Failed delivery to the subscription of events created at or after
        `request.since`; returns how many. A KubeError ends it (the reconcile is retried, and
        events already put back are Pending, so they are not counted twice)."""
        assert request.since is not None
        recovered = 0
        continue_token = ""
        while True:
            query = {"limit": str(_PAGE)}
            if continue_token:
                query["continue"] = continue_token
            listing = await self._kube.get(
                resource_path("webhookevents", namespace) + "?" + urllib.parse.urlencode(query)
            )
            if listing is None:
                return recovered
            for item in listing.get("items") or []:
                created = parse_time((item.get("metadata") or {}).get("creationTimestamp"))
                if created is not None and created >= request.since:
                    recovered += await self._recover_one(item, subscription)
            continue_token = str((listing.get("metadata") or {}).get("continue") or "")
            if not continue_token:
                break
        if recovered:
            self._metrics.recovered.labels(namespace, subscription).inc(recovered)
            log(
                logging.INFO,
                "failed deliveries recovered",
                subscription=f"{namespace}/{subscription}",
                since=request.value,
                recovered=recovered,
            )
        return recovered

    async def _recover_one(self, body: Mapping[str, Any], subscription: str) -> int:
        metadata = body.get("metadata") or {}
        key = (str(metadata.get("namespace", "")), str(metadata.get("name", "")))
        for _ in range(_WRITE_ATTEMPTS):
            status = body.get("status")
            if not isinstance(status, Mapping) or not isinstance(status.get("deliveries"), list):
                return 0
            parsed = (Delivery.from_status(raw) for raw in status["deliveries"])
            deliveries, recovered = recover_failed((d for d in parsed if d is not None), subscription)
            if not recovered:
                return 0
            redelivered = status.get("redelivered")
            new_status = render_status(
                status,
                deliveries,
                summarize(deliveries),
                now=utcnow(),
                generation=int((body.get("metadata") or {}).get("generation") or 1),
                redelivered=redelivered if isinstance(redelivered, str) else None,
            )
            try:
                fresh = await self._kube.json_patch(
                    resource_path("webhookevents", *key, subresource="status"),
                    [
                        {
                            "op": "test",
                            "path": "/metadata/resourceVersion",
                            "value": metadata.get("resourceVersion"),
                        },
                        {"op": "add", "path": "/status", "value": new_status},
                    ],
                )
            except ConflictError:
                latest = await self._kube.get(resource_path("webhookevents", *key))
                if latest is None:
                    return 0
                body, metadata = latest, latest.get("metadata") or {}
                continue
            except NotFoundError:
                return 0
            self._metrics.api_writes.labels("event-status").inc()
            self._on_recovered(key, fresh)
            return recovered
        log(logging.WARNING, "event kept changing; not recovered", event=f"{key[0]}/{key[1]}")
        return 0
