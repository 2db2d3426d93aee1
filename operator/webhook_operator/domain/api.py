"""The names of the operator's API surface, in one place: what users write in manifests, read in
status and see in `kubectl describe`. Changing one is a breaking change for every user's
GitOps repository; docs/reference.md documents each (tests/unit/test_reference.py checks that).

Enum members are `str`s, so they compare, serialize and format as their plain values.
"""

from __future__ import annotations

import enum

GROUP = "webhooks.openplatform.dev"
VERSION = "v1alpha1"
GROUP_VERSION = f"{GROUP}/{VERSION}"


class Kind(enum.StrEnum):
    SUBSCRIPTION = "WebhookSubscription"
    EVENT = "WebhookEvent"


class Plural(enum.StrEnum):
    SUBSCRIPTIONS = "webhooksubscriptions"
    EVENTS = "webhookevents"


class Annotation(enum.StrEnum):
    # On a WebhookEvent: a new value puts its failed deliveries back to Pending.
    REDELIVER = f"{GROUP}/redeliver"
    # On a WebhookSubscription: a new value re-enables a disabled endpoint.
    REENABLE = f"{GROUP}/reenable"
    # On a WebhookSubscription: an RFC 3339 time; a new value puts back to Pending its failed
    # deliveries of events created since then.
    RECOVER_SINCE = f"{GROUP}/recover-since"


class ConditionType(enum.StrEnum):
    READY = "Ready"  # WebhookSubscription
    DELIVERED = "Delivered"  # WebhookEvent
    FAILED = "Failed"  # WebhookEvent
    # Both kinds: the kstatus pair GitOps tools read (domain/progress.py).
    RECONCILING = "Reconciling"
    STALLED = "Stalled"


class Reason(enum.StrEnum):
    """Every reason the operator writes: in conditions, in `status.deliveries[].reason`, in
    `status.endpointDisabled.reason`. The tuples below say which goes where."""

    # A subscription's Ready condition; all but Active also hold its deliveries back.
    ACTIVE = "Active"
    PAUSED = "Paused"
    INVALID_SPEC = "InvalidSpec"
    SECRET_NOT_FOUND = "SecretNotFound"  # noqa: S105  (a reason, not a secret)
    INVALID_SECRET = "InvalidSecret"  # noqa: S105
    TLS_CONFIG_INVALID = "TLSConfigInvalid"
    EGRESS_DENIED = "EgressDenied"
    ENDPOINT_DISABLED = "EndpointDisabled"
    # An event's Delivered condition.
    NO_SUBSCRIPTIONS = "NoSubscriptions"
    ALL_DELIVERED = "AllDelivered"
    DELIVERY_FAILED = "DeliveryFailed"
    IN_PROGRESS = "InProgress"
    # An event's Failed condition (and the failed delivery's own reason).
    NO_FAILURES = "NoFailures"
    ATTEMPTS_EXHAUSTED = "AttemptsExhausted"
    PERMANENT_ERROR = "PermanentError"
    GONE = "Gone"
    SUBSCRIPTION_DELETED = "SubscriptionDeleted"
    ENDPOINT_FAILING = "EndpointFailing"
    # An event whose own spec is unusable: both of its conditions.
    INVALID_EVENT = "InvalidEvent"
    PAYLOAD_TOO_LARGE = "PayloadTooLarge"
    TOO_MANY_SUBSCRIPTIONS = "TooManySubscriptions"
    # A delivery waiting for a reason of the operator's own, or put back by the annotation.
    MAX_IN_FLIGHT = "MaxInFlight"
    REDELIVERED = "Redelivered"
    RECOVERED = "Recovered"
    # A delivery failed because the subscription's filter failed on the event (the event's
    # Failed condition reads PermanentError).
    FILTER_ERROR = "FilterError"
    # An event's Stalled condition once a delivery failed for good and nothing is open.
    FAILED = "Failed"
    # A WebhookSource's Ready, Reconciling and Stalled conditions (docs/sources.md).
    WATCHING = "Watching"
    LISTING = "Listing"
    EMIT_FAILED = "EmitFailed"
    TOO_MANY_OBJECTS = "TooManyObjects"
    FORBIDDEN = "Forbidden"
    # Why an endpoint was disabled (`status.endpointDisabled.reason`; also Gone).
    SUSTAINED_FAILURE = "SustainedFailure"


READY_REASONS = (
    Reason.ACTIVE,
    Reason.PAUSED,
    Reason.INVALID_SPEC,
    Reason.SECRET_NOT_FOUND,
    Reason.INVALID_SECRET,
    Reason.TLS_CONFIG_INVALID,
    Reason.EGRESS_DENIED,
    Reason.ENDPOINT_DISABLED,
)
EVENT_SPEC_REASONS = (Reason.INVALID_EVENT, Reason.PAYLOAD_TOO_LARGE, Reason.TOO_MANY_SUBSCRIPTIONS)
DELIVERED_REASONS = (
    Reason.NO_SUBSCRIPTIONS,
    Reason.ALL_DELIVERED,
    Reason.DELIVERY_FAILED,
    Reason.IN_PROGRESS,
    *EVENT_SPEC_REASONS,
)
# A failed delivery's reason, which the Failed condition repeats (any other: PermanentError).
DELIVERY_FAILURE_REASONS = (
    Reason.ATTEMPTS_EXHAUSTED,
    Reason.PERMANENT_ERROR,
    Reason.GONE,
    Reason.EGRESS_DENIED,
    Reason.SUBSCRIPTION_DELETED,
    Reason.ENDPOINT_FAILING,
)
FAILED_REASONS = (Reason.NO_FAILURES, *DELIVERY_FAILURE_REASONS, *EVENT_SPEC_REASONS)
# `status.deliveries[].reason` of a delivery still open: what it waits on.
WAITING_REASONS = (
    Reason.PAUSED,
    Reason.INVALID_SPEC,
    Reason.SECRET_NOT_FOUND,
    Reason.INVALID_SECRET,
    Reason.TLS_CONFIG_INVALID,
    Reason.ENDPOINT_DISABLED,
    Reason.ENDPOINT_FAILING,
    Reason.MAX_IN_FLIGHT,
    Reason.REDELIVERED,
    Reason.RECOVERED,
)
# `status.deliveries[].reason` of a Failed delivery that the Failed condition does not repeat.
OTHER_DELIVERY_FAILURE_REASONS = (Reason.FILTER_ERROR,)
DISABLED_REASONS = (Reason.GONE, Reason.SUSTAINED_FAILURE)
# An event's Stalled condition; otherwise Reconciling and Stalled repeat the reasons above.
STALLED_REASONS = (Reason.FAILED,)
SOURCE_REASONS = (
    Reason.WATCHING,
    Reason.LISTING,
    Reason.EMIT_FAILED,
    Reason.TOO_MANY_OBJECTS,
    Reason.FORBIDDEN,
    Reason.INVALID_SPEC,
)


class EventReason(enum.StrEnum):
    """Reasons of the Kubernetes Events the operator records (`kubectl describe`, `kubectl events`).

    On a subscription it also records the Ready reasons it turns to (see READY_REASONS)."""

    DELIVERED = "Delivered"  # an event delivered after retries
    DELIVERY_FAILED = "DeliveryFailed"
    READY = "Ready"  # a subscription Ready again
    ENDPOINT_REENABLED = "EndpointReenabled"
    DELIVERIES_RECOVERED = "DeliveriesRecovered"  # a recover-since value acted on
    RECOVER_SINCE_INVALID = "RecoverSinceInvalid"  # a recover-since value that is not a time
