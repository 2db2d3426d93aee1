"""`webhook-operator run` flags for leader election and shards: defaults, names, bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from webhook_operator.cli import UsageError, build_parser, config_from_args
from webhook_operator.config import OperatorConfig, pod_namespace
from webhook_operator.domain.shards import Shard


def configured(*flags: str) -> OperatorConfig:
    return config_from_args(build_parser().parse_args(["run", *flags]))


def test_without_flags_the_operator_delivers_alone_and_serves_every_namespace() -> None:
    config = configured()
    assert config.leader_election is None
    assert config.scope.shard == Shard(0, 1)


def test_leader_election_defaults_to_the_webhook_operator_lease_and_a_unique_identity() -> None:
    first, second = configured("--leader-elect"), configured("--leader-elect")
    assert first.leader_election is not None and second.leader_election is not None
    assert first.leader_election.name == "webhook-operator"
    assert first.leader_election.namespace == pod_namespace()
    assert first.leader_election.identity != second.leader_election.identity
    timings = first.leader_election.timings
    assert (timings.lease_duration, timings.renew_deadline, timings.retry_period) == (15, 10, 2)


def test_each_shard_elects_its_own_leader() -> None:
    config = configured(
        "--leader-elect", "--leader-election-id", "hooks", "--leader-election-namespace", "ops",
        "--shard-index", "2", "--shard-count", "3",
    )  # fmt: skip
    assert config.leader_election is not None
    assert (config.leader_election.namespace, config.leader_election.name) == ("ops", "hooks-shard-2")
    assert config.scope.shard == Shard(2, 3)


@pytest.mark.parametrize(("index", "count"), [("3", "3"), ("-1", "2"), ("0", "0")])
def test_an_impossible_shard_exits_with_a_message(index: str, count: str) -> None:
    with pytest.raises(UsageError, match=r"shard .*\(--shard-index, --shard-count\)"):
        configured("--shard-index", index, "--shard-count", count)


def test_the_pod_namespace_comes_from_the_service_account_else_default(tmp_path: Path) -> None:
    file = tmp_path / "namespace"
    file.write_text("platform-webhooks\n")
    assert pod_namespace(str(file)) == "platform-webhooks"
    assert pod_namespace(str(tmp_path / "missing")) == "default"
