"""The operator's settings: command-line flags and environment, as one frozen value."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import kopf

from webhook_operator.domain.circuit import DEFAULT_THRESHOLD
from webhook_operator.domain.egress import EgressPolicy
from webhook_operator.domain.health import DisableRules
from webhook_operator.domain.leadership import Timings
from webhook_operator.domain.scope import NamespaceScope
from webhook_operator.domain.specs import DEFAULT_MAX_DATA_BYTES

ALLOW_CIDRS_ENV = "WEBHOOK_OPERATOR_ALLOW_CIDRS"
POD_NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


@dataclass(frozen=True)
class LeaderElection:
    """`--leader-elect`: only the holder of the Lease `namespace/name` delivers."""

    namespace: str
    name: str
    identity: str
    timings: Timings = Timings()


@dataclass(frozen=True)
class OperatorConfig:
    scope: NamespaceScope = NamespaceScope()  # the namespaces served; empty: all of them
    egress: EgressPolicy = EgressPolicy()
    metrics_port: int | None = None
    health_port: int | None = None
    log_format: str = "text"
    event_workers: int = 64
    subscription_workers: int = 4
    default_ttl_seconds: int | None = None  # for events without spec.ttlSecondsAfterFinished
    max_data_bytes: int = DEFAULT_MAX_DATA_BYTES
    max_deliveries_per_event: int = 1000
    disable_rules: DisableRules = DisableRules()
    circuit_threshold: int = DEFAULT_THRESHOLD  # transient failures in a row that open a circuit; 0: never
    health_flush_seconds: float = 5.0
    in_flight_report_seconds: float = 2.0  # attempts running longer show as InFlight in status
    slot_wait_seconds: float = 0.5  # how long a delivery waits for a maxInFlight slot before deferring
    shutdown_grace_seconds: float = 10.0
    leader_election: LeaderElection | None = None  # None: deliver at once, alone
    # Set by the demo, the tests and the benchmark; None: log in from kubeconfig or the pod.
    connection: kopf.ConnectionInfo | None = field(default=None, repr=False)


def allowed_cidrs(flags: Sequence[str], environ: dict[str, str] | None = None) -> list[str]:
    """`--allow-cidr` flags plus the comma-separated environment variable."""
    environ = dict(os.environ) if environ is None else environ
    from_env = [part.strip() for part in environ.get(ALLOW_CIDRS_ENV, "").split(",") if part.strip()]
    return [*flags, *from_env]


def pod_namespace(path: str = POD_NAMESPACE_FILE) -> str:
    """The namespace the operator's pod runs in (its service account's), else `default`."""
    try:
        return Path(path).read_text(encoding="utf-8").strip() or "default"
    except OSError:
        return "default"
