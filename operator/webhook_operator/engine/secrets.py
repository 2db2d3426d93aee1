"""The Secrets that subscriptions name, kept in memory and fed by the watch.

Only referenced Secrets are kept (and only after a subscription names them): the watch shows
every Secret in the watched namespaces, the rest are dropped on sight. A Secret named for the
first time is read once through the API, so a subscription never waits for a watch event.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from webhook_operator.domain.keys import SecretKey, SubscriptionKey
from webhook_operator.kube import KubeClient, resource_path


@dataclass(frozen=True)
class SecretData:
    """A Secret's decoded data; None `values` means the Secret does not exist."""

    values: Mapping[str, bytes] | None = field(repr=False)
    secret_type: str = ""
    version: int = 0  # bumps on every change we observe, to invalidate derived state


class SecretStore:
    def __init__(self, kube: KubeClient) -> None:
        self._kube = kube
        self._data: dict[SecretKey, SecretData] = {}
        self._resource_versions: dict[SecretKey, str] = {}
        self._fetching: dict[SecretKey, asyncio.Future[SecretData]] = {}
        self._owners: dict[SubscriptionKey, frozenset[SecretKey]] = {}
        self._referenced: Counter[SecretKey] = Counter()
        self._version = 0

    def refer(self, owner: SubscriptionKey, keys: frozenset[SecretKey]) -> None:
        """Record which Secrets `owner` (a subscription) names; unnamed Secrets are forgotten."""
        old = self._owners.get(owner, frozenset())
        if keys == old:
            return
        if keys:
            self._owners[owner] = keys
        else:
            self._owners.pop(owner, None)
        self._referenced.update(keys - old)
        for key in old - keys:
            self._referenced[key] -= 1
            if self._referenced[key] <= 0:
                del self._referenced[key]
                self._data.pop(key, None)
                self._resource_versions.pop(key, None)

    def owners_of(self, key: SecretKey) -> list[SubscriptionKey]:
        return [owner for owner, keys in self._owners.items() if key in keys]

    async def get(self, key: SecretKey) -> SecretData:
        if (known := self._data.get(key)) is not None:
            return known
        if (pending := self._fetching.get(key)) is not None:
            return await pending
        future: asyncio.Future[SecretData] = asyncio.get_running_loop().create_future()
        self._fetching[key] = future
        try:
            body = await self._kube.get(resource_path("secrets", *key))
            data = self._store(key, body) if key not in self._data else self._data[key]
            future.set_result(data)
            return data
        except BaseException as error:
            future.set_exception(error)
            future.exception()  # mark retrieved: concurrent waiters get it, nobody else
            raise
        finally:
            del self._fetching[key]

    def observe(self, event_type: str, body: Mapping[str, Any]) -> SecretKey | None:
        """A watch event; returns the key when a referenced Secret changed."""
        metadata = body.get("metadata") or {}
        key = SecretKey(str(metadata.get("namespace", "")), str(metadata.get("name", "")))
        if key not in self._referenced:
            return None
        if event_type == "DELETED":
            self._store(key, None)
            return key
        resource_version = str(metadata.get("resourceVersion", ""))
        if resource_version and self._resource_versions.get(key) == resource_version:
            return None
        self._store(key, body)
        return key

    def _store(self, key: SecretKey, body: Mapping[str, Any] | None) -> SecretData:
        self._version += 1
        if body is None:
            data = SecretData(None, version=self._version)
            self._resource_versions.pop(key, None)
        else:
            data = SecretData(_decode(body.get("data") or {}), str(body.get("type", "")), self._version)
            self._resource_versions[key] = str((body.get("metadata") or {}).get("resourceVersion", ""))
        if key in self._referenced:
            self._data[key] = data
        return data


def _decode(data: Mapping[str, Any]) -> dict[str, bytes]:
    decoded: dict[str, bytes] = {}
    for name, value in data.items():
        try:
            decoded[name] = base64.b64decode(str(value), validate=True)
        except (binascii.Error, ValueError):
            decoded[name] = b""  # reported as an invalid key where it is used, never echoed
    return decoded
