"""Publish WebhookEvents from Python: one safe call, sync or async.

```python
from webhook_operator.client import Publisher

with Publisher(namespace="shop") as publisher:
    event = publisher.publish("order.created", {"orderId": 1001}, key="order-1001-created")
    print(event.name, event.uid)          # uid: the webhook-id receivers see
    status = publisher.wait(event.name, timeout=60)
    print(status.outcome)                 # Delivered, Failed (or WaitTimeoutError)
```

With `key`, the object name is derived from the key, so publishing the same key again (a retry
after a timeout, a redelivered job) finds the first event instead of creating a second one.
Every input is checked before any request (InvalidEventError). `AsyncPublisher` has the same
methods as coroutines. This package imports neither kopf nor the operator's engine.
"""

from webhook_operator.client.checks import MAX_DATA_BYTES, name_for_key
from webhook_operator.client.errors import (
    AlreadyExistsError,
    ApiError,
    ClientError,
    ConfigError,
    InvalidEventError,
    KeyConflictError,
    NotFoundError,
    WaitTimeoutError,
)
from webhook_operator.client.publisher import AsyncPublisher, Publisher
from webhook_operator.client.status import DeliveryStatus, EventStatus, PublishedEvent

__all__ = [
    "MAX_DATA_BYTES",
    "AlreadyExistsError",
    "ApiError",
    "AsyncPublisher",
    "ClientError",
    "ConfigError",
    "DeliveryStatus",
    "EventStatus",
    "InvalidEventError",
    "KeyConflictError",
    "NotFoundError",
    "PublishedEvent",
    "Publisher",
    "WaitTimeoutError",
    "name_for_key",
]
