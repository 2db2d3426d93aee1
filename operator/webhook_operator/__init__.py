"""webhook-operator: Kubernetes-native webhook delivery.

`WebhookSubscription` and `WebhookEvent` resources in, signed and retried HTTP deliveries out,
with everything that happened recorded as status conditions.
"""

__version__ = "0.1.0"
