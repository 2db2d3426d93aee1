"""The command line: `webhook-operator run`, `demo`, and the cluster verbs of webhook_operator.commands."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from webhook_operator import __version__
from webhook_operator.commands import register as register_commands
from webhook_operator.config import (
    ALLOW_CIDRS_ENV,
    LeaderElection,
    OperatorConfig,
    allowed_cidrs,
    pod_namespace,
)
from webhook_operator.domain.circuit import DEFAULT_THRESHOLD
from webhook_operator.domain.egress import EgressConfigError, EgressPolicy
from webhook_operator.domain.health import DisableRules
from webhook_operator.domain.scope import NamespaceScope, ScopeError
from webhook_operator.domain.shards import Shard


def build_parser(prog: str = "webhook-operator") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Kubernetes-native webhook delivery (kopf operator)."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser(
        "run", help="run the operator against the current kubeconfig or in-cluster account"
    )
    run.add_argument(
        "--namespace",
        "-n",
        action="append",
        default=[],
        metavar="NS",
        help=(
            "serve only these namespaces (repeatable): a name, or kopf's patterns: globs with * and ?, "
            "!glob to exclude, comma-combined ('team-*,!team-skip*'); namespaces created later are "
            "served as they appear. Default: all namespaces"
        ),
    )
    run.add_argument(
        "--allow-cidr",
        action="append",
        default=[],
        metavar="CIDR",
        help=f"let deliveries reach this otherwise refused range (repeatable); also ${ALLOW_CIDRS_ENV}",
    )
    run.add_argument("--metrics-port", type=int, metavar="PORT", help="serve Prometheus metrics at /metrics")
    run.add_argument("--health-port", type=int, metavar="PORT", help="serve the liveness probe at /healthz")
    run.add_argument("--log-format", choices=("text", "json"), default="text")
    run.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info")
    run.add_argument(
        "--event-ttl",
        type=int,
        metavar="SECONDS",
        help="delete finished events after this long unless they set ttlSecondsAfterFinished",
    )
    run.add_argument(
        "--disable-after-failures",
        type=int,
        default=1000,
        metavar="N",
        help="disable an endpoint after N failed attempts in a row (default 1000)",
    )
    run.add_argument(
        "--disable-after-seconds",
        type=float,
        default=86400.0,
        metavar="SECONDS",
        help="disable an endpoint that has failed for this long without a success (default 24 h)",
    )
    run.add_argument(
        "--circuit-after-failures",
        type=int,
        default=DEFAULT_THRESHOLD,
        metavar="N",
        help=(
            "after N transient failures in a row, hold an endpoint's deliveries and send one probe "
            f"at a time until one succeeds (default {DEFAULT_THRESHOLD}; 0: never)"
        ),
    )
    run.add_argument("--workers", type=int, default=64, help="events reconciled concurrently (default 64)")
    run.add_argument(
        "--leader-elect",
        action="store_true",
        help="deliver only while holding a coordination.k8s.io Lease; other replicas stand by",
    )
    run.add_argument(
        "--leader-election-id",
        default="webhook-operator",
        metavar="NAME",
        help="the Lease's name (default webhook-operator; a shard appends -shard-<I>)",
    )
    run.add_argument(
        "--leader-election-namespace",
        metavar="NS",
        help="the Lease's namespace (default: the pod's own namespace, else default)",
    )
    run.add_argument(
        "--shard-index", type=int, default=0, metavar="I", help="serve only namespaces of shard I (from 0)"
    )
    run.add_argument(
        "--shard-count",
        type=int,
        default=1,
        metavar="N",
        help="split namespaces over N shards by FNV-1a of their name (default 1: no sharding)",
    )

    demo = commands.add_parser("demo", help="the whole flow on this machine, no cluster needed")
    demo.add_argument("--events", type=int, default=3, help="order events to send (default 3)")
    demo.add_argument(
        "--log-level",
        choices=("warning", "info", "debug"),
        default=None,
        help="also show the operator's and kopf's own logs at this level",
    )
    register_commands(commands)
    return parser


class UsageError(Exception):
    """A flag value that cannot work: printed as `webhook-operator: <message>`, exit code 2."""


def _shard(args: argparse.Namespace) -> Shard:
    try:
        return Shard(args.shard_index, args.shard_count)
    except ValueError as error:
        raise UsageError(f"{error} (--shard-index, --shard-count)") from None


def config_from_args(args: argparse.Namespace) -> OperatorConfig:
    try:
        egress = EgressPolicy.from_cidrs(allowed_cidrs(args.allow_cidr))
        scope = NamespaceScope.parse(args.namespace, shard=_shard(args))
    except (EgressConfigError, ScopeError) as error:
        raise UsageError(str(error)) from None
    for name in ("metrics_port", "health_port"):
        port = getattr(args, name)
        if port is not None and not 0 < port < 65536:
            raise UsageError(f"--{name.replace('_', '-')} must be between 1 and 65535")
    election = None
    if args.leader_elect:
        from webhook_operator.leader import default_identity

        election = LeaderElection(
            namespace=args.leader_election_namespace or pod_namespace(),
            name=scope.shard.lease_name(args.leader_election_id),
            identity=default_identity(),
        )
    return OperatorConfig(
        scope=scope,
        leader_election=election,
        egress=egress,
        metrics_port=args.metrics_port,
        health_port=args.health_port,
        log_format=args.log_format,
        event_workers=max(1, args.workers),
        default_ttl_seconds=args.event_ttl,
        disable_rules=DisableRules(args.disable_after_failures, args.disable_after_seconds),
        circuit_threshold=max(0, args.circuit_after_failures),
    )


# What `webhook-operator demo` needs beyond `run`: the `demo` extra.
DEMO_EXTRA_MODULES = ("kmock", "jsonpatch", "jsonpointer", "attrs", "yarl")
DEMO_INSTALL_HINT = "pip install 'webhook-operator[demo]'"


def run_demo_command(args: argparse.Namespace) -> int:
    try:
        from webhook_operator.demo import run_demo
    except ModuleNotFoundError as error:
        if error.name not in DEMO_EXTRA_MODULES:
            raise
        print(
            f"webhook-operator demo: needs {error.name}, which comes with the demo extra: "
            f"{DEMO_INSTALL_HINT} (from a checkout: pip install '.[demo]')",
            file=sys.stderr,
        )
        return 2
    return asyncio.run(run_demo(events=args.events, log_level=args.log_level))


def main(argv: Sequence[str] | None = None, prog: str = "webhook-operator") -> int:
    args = build_parser(prog).parse_args(argv)
    if (handler := getattr(args, "handler", None)) is not None:
        return int(handler(args))
    if args.command == "demo":
        return run_demo_command(args)

    try:
        config = config_from_args(args)
    except UsageError as error:
        print(f"webhook-operator: {error}", file=sys.stderr)
        return 2
    from webhook_operator import logs
    from webhook_operator.main import LeadershipLost, StartRefused, run_operator

    logs.configure(config.log_format, getattr(logging, args.log_level.upper()))
    try:
        asyncio.run(run_operator(config))
    except StartRefused as error:
        print(f"webhook-operator: {error}", file=sys.stderr)
        return 2
    except LeadershipLost as error:
        # As controller-runtime does: exit, and rejoin as a standby when restarted (by the kubelet).
        print(f"webhook-operator: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
