"""The engine's memory: the event store, the waiting index, the Secret store's references."""

from __future__ import annotations

from typing import Any

from webhook_operator.domain.keys import EventKey, SecretKey, SubscriptionKey
from webhook_operator.engine.events import EventStore, Finished
from webhook_operator.engine.secrets import SecretStore
from webhook_operator.engine.waiting import WaitingIndex
from webhook_operator.kube import KubeClient
from webhook_operator.metrics import Metrics

KEY = EventKey("shop", "e1")


def body(version: str, name: str = "e1") -> dict[str, Any]:
    return {"metadata": {"namespace": "shop", "name": name, "resourceVersion": version}, "spec": {}}


def test_the_event_store_keys_events_and_skips_stale_echoes() -> None:
    store = EventStore()
    assert store.observe("ADDED", body("5")) == KEY
    assert isinstance(store.observe("MODIFIED", body("6")), EventKey)
    assert store.observe("MODIFIED", body("6")) is None, "the same version again needs no reconcile"
    assert store.observe("MODIFIED", body("4")) is None, "an older version is stale"
    assert store.body(KEY) == body("6")


def test_a_finished_event_keeps_only_a_tombstone_and_a_deletion_forgets_it() -> None:
    store = EventStore()
    store.observe("ADDED", body("5"))
    store.finish(KEY, Finished("uid-1", "7", None))
    assert (store.body(KEY), store.open_count, store.finished_count) == (None, 0, 1)
    assert store.observe("MODIFIED", body("7")) is None, "our own write's echo"
    assert store.keys("shop") == [KEY] and store.keys("other") == []
    assert store.observe("DELETED", body("8")) == KEY
    assert store.finished(KEY) is None and store.keys() == []


def test_the_waiting_index_finds_events_by_subscription_and_counts_pending() -> None:
    metrics = Metrics()
    index = WaitingIndex(metrics)
    a, b = SubscriptionKey("shop", "a"), SubscriptionKey("shop", "b")
    index.set(KEY, {a, b}, 2)
    index.set(EventKey("shop", "e2"), {a}, 1)
    assert sorted(index.waiting(a)) == [KEY, EventKey("shop", "e2")]

    def pending(sub: SubscriptionKey) -> float | None:
        labels = {"namespace": sub.namespace, "subscription": sub.name}
        return metrics.registry.get_sample_value("webhook_deliveries_pending", labels)

    assert (pending(a), pending(b)) == (2, 1)  # events with an open delivery, per subscription
    index.set(KEY, {b}, 1)
    assert list(index.waiting(a)) == [EventKey("shop", "e2")]
    assert (pending(a), pending(b)) == (1, 1)
    index.forget(KEY)
    index.forget(EventKey("shop", "e2"))
    assert (index.event_count, index.pending_event_count, list(index.waiting(b))) == (0, 0, [])
    assert (pending(a), pending(b)) == (None, None)  # no series left behind


def test_the_secret_store_keeps_only_referenced_secrets_and_tells_their_owners() -> None:
    store = SecretStore(KubeClient(relogin=None))
    owner = SubscriptionKey("shop", "crm")
    secret = {"metadata": {"namespace": "shop", "name": "key", "resourceVersion": "1"}, "data": {}}
    assert store.observe("ADDED", secret) is None, "nobody names it: dropped on sight"
    store.refer(owner, frozenset({SecretKey("shop", "key")}))
    assert store.observe("ADDED", secret) == SecretKey("shop", "key")
    assert store.owners_of(SecretKey("shop", "key")) == [owner]
    store.refer(owner, frozenset())
    assert store.owners_of(SecretKey("shop", "key")) == []
    assert (
        store.observe("MODIFIED", {**secret, "metadata": {**secret["metadata"], "resourceVersion": "2"}})
        is None
    )
