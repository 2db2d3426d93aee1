"""The benchmark's side of the API server: log in, make namespaces, create and patch resources.

The same client the operator uses for its writes (`webhook_operator.kube.KubeClient`: one
aiohttp session, retries on 429/5xx/connection errors), so the producer is as fast as the
operator's own edge, against the stand-in or a real cluster alike.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import kopf

from webhook_operator.domain.api import GROUP_VERSION
from webhook_operator.kube import KubeClient, KubeError, resource_path

WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})


def connection_from_kubeconfig(path: str) -> kopf.ConnectionInfo:
    """Credentials from a kubeconfig file, as kopf's own `login_via_client` reads them.

    Not kopf's function itself: that one tries the in-cluster account first and reads only
    $KUBECONFIG, and the benchmark must use exactly the file it was given.
    """
    import kubernetes.client
    import kubernetes.config

    configuration = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=path, client_configuration=configuration
    )
    header = configuration.get_api_key_with_prefix("BearerToken") or configuration.get_api_key_with_prefix(
        "authorization"
    )
    parts = header.split(" ", 1) if header else []
    scheme, token = (
        (None, None) if not parts else (None, parts[0]) if len(parts) == 1 else (parts[0], parts[1])
    )
    return kopf.ConnectionInfo(
        server=configuration.host,
        ca_path=configuration.ssl_ca_cert,
        insecure=not configuration.verify_ssl,
        username=configuration.username or None,
        password=configuration.password or None,
        scheme=scheme,
        token=token,
        certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file,
    )


class Cluster:
    def __init__(self, connection: kopf.ConnectionInfo, *, standin: bool) -> None:
        self.connection = connection
        self.standin = standin  # True: the stand-in, which also answers /_bench/counts
        self.kube = KubeClient()

    async def __aenter__(self) -> Cluster:
        await self.kube.use(self.connection)
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.kube.aclose()

    async def create_namespace(self, prefix: str) -> str:
        body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"generateName": prefix}}
        created = await self.kube.create("/api/v1/namespaces", body)
        return str(created["metadata"]["name"])

    async def ensure_namespace(self, name: str) -> None:
        body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        try:
            await self.kube.create("/api/v1/namespaces", body)
        except KubeError as error:
            if error.status != 409:
                raise

    async def delete_namespace(self, name: str) -> None:
        await self.kube.delete(f"/api/v1/namespaces/{name}")

    async def check_crds(self) -> None:
        """A real cluster must have the CRDs installed (`kubectl apply -k crds/`)."""
        for plural in ("webhooksubscriptions", "webhookevents"):
            crd = (
                f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{plural}.webhooks.openplatform.dev"
            )
            if await self.kube.get(crd) is None:
                raise SystemExit(
                    f"benchmark: the CRD {plural}.webhooks.openplatform.dev is not installed; "
                    "run `kubectl apply -k crds/` first"
                )

    async def create(
        self,
        plural: str,
        namespace: str,
        name: str,
        spec: Mapping[str, Any],
        labels: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        kind = {"webhookevents": "WebhookEvent", "webhooksubscriptions": "WebhookSubscription"}[plural]
        metadata: dict[str, Any] = {"name": name}
        if labels:
            metadata["labels"] = dict(labels)
        body = {"apiVersion": GROUP_VERSION, "kind": kind, "metadata": metadata, "spec": dict(spec)}
        return await self.kube.create(resource_path(plural, namespace), body)

    async def patch_status(
        self, plural: str, namespace: str, name: str, status: Mapping[str, Any]
    ) -> dict[str, Any]:
        path = resource_path(plural, namespace, name, subresource="status")
        return await self.kube.merge_patch(path, {"status": dict(status)})

    async def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        return await self.kube.get(resource_path(plural, namespace, name))

    async def list(
        self, plural: str, namespace: str, label_selector: str | None = None
    ) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        token = ""
        while True:
            query = "?limit=500" + (f"&labelSelector={label_selector}" if label_selector else "")
            query += f"&continue={token}" if token else ""
            page = await self.kube.get(resource_path(plural, namespace) + query) or {}
            items.extend(page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue") or ""
            if not token:
                return items

    async def delete(self, plural: str, namespace: str, name: str) -> None:
        await self.kube.delete(resource_path(plural, namespace, name))

    async def added_written(self, prefix: str) -> dict[str, float] | None:
        """When the stand-in wrote the ADDED watch event of each event named prefix... to a watch
        (time.monotonic(); forgotten once told). None on a real cluster."""
        if not self.standin:
            return None
        answer = await self.kube.get(f"/_bench/added?prefix={prefix}")
        return {name: float(at) for name, at in (answer or {}).items()}

    async def write_counts(self) -> dict[str, int] | None:
        """Writes served so far, by "verb resource[/subresource]" (the stand-in only; else None)."""
        if not self.standin:
            return None
        answer = await self.kube.get("/_bench/counts") or {}
        counts: dict[str, int] = {}
        for verb, plural, sub, n in answer.get("counts", []):
            if verb in WRITE_VERBS:
                what = f"{verb} {plural}{'/' + sub if sub else ''}"
                counts[what] = counts.get(what, 0) + n
        return counts


async def run_concurrently(jobs: Iterable[Callable[[], Awaitable[Any]]], concurrency: int) -> float:
    """Run the jobs with `concurrency` workers; returns the elapsed wall time in seconds."""
    iterator = iter(jobs)
    started = time.monotonic()

    async def worker() -> None:
        for job in iterator:
            await job()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.monotonic() - started
