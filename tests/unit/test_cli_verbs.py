"""The CLI verbs' offline paths: short help, `gen-secret -o yaml` and refusals before any request.

Each runs with KUBECONFIG pointing at a file that does not exist: whatever they print, they
printed without a cluster. The cluster paths are in tests/e2e/test_publishing.py."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from webhook_operator import cli, launcher


@pytest.fixture(autouse=True)
def _no_cluster(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-such-kubeconfig"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)


def test_kubectl_webhooks_without_arguments_prints_a_short_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert launcher.kubectl_main([]) == 0
    shown = capsys.readouterr().out
    for verb in ("publish TYPE", "replay", "gen-secret NAME"):
        assert f"kubectl webhooks {verb}" in shown


def test_the_plugin_names_itself_in_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        launcher.kubectl_main(["replay"])
    assert exited.value.code == 2
    assert "usage: kubectl webhooks replay" in capsys.readouterr().err


def test_gen_secret_prints_a_symmetric_key_manifest_without_a_cluster(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["gen-secret", "crm-key", "-n", "shop", "-o", "yaml"]) == 0
    manifest = yaml.safe_load(capsys.readouterr().out)
    assert manifest["kind"] == "Secret"
    assert manifest["metadata"] == {"name": "crm-key", "namespace": "shop"}
    key = manifest["stringData"]["signingKey"]
    assert key.startswith("whsec_")
    assert len(base64.b64decode(key.removeprefix("whsec_"))) == 32


def test_gen_secret_asymmetric_manifest_holds_a_seed_and_its_public_key(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert launcher.kubectl_main(["gen-secret", "ed", "--asymmetric", "-o", "yaml"]) == 0
    captured = capsys.readouterr()
    manifest = yaml.safe_load(captured.out)
    assert "namespace" not in manifest["metadata"], "no -n: left to `kubectl apply -n`"
    seed = base64.b64decode(manifest["stringData"]["signingKey"].removeprefix("whsk_"))
    public = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()
    expected = "whpk_" + base64.b64encode(public).decode()
    assert manifest["metadata"]["annotations"]["webhooks.openplatform.dev/public-key"] == expected
    assert expected in captured.err


def test_two_generated_keys_differ(capsys: pytest.CaptureFixture[str]) -> None:
    keys = []
    for _ in range(2):
        cli.main(["gen-secret", "k", "-o", "yaml"])
        keys.append(yaml.safe_load(capsys.readouterr().out)["stringData"]["signingKey"])
    assert keys[0] != keys[1]


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        (["publish", "order.created", "--data", "[]"], "must be a JSON object"),
        (["publish", "order created"], "not a valid event type"),
        (["publish", "a.b", "--wait", "--timeout", "0"], "--timeout must be more than 0"),
        (["replay", "--subscription", "s", "--since", "soon"], "not a duration"),
        (["replay", "--event", "e", "--since", "1h"], "--since applies to --subscription only"),
    ],
)
def test_bad_input_exits_2_before_looking_for_a_cluster(
    arguments: list[str], problem: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        launcher.kubectl_main(arguments)
    assert exited.value.code == 2
    assert problem in capsys.readouterr().err


def test_without_a_cluster_configuration_the_verbs_exit_4_and_say_so(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        launcher.kubectl_main(["publish", "order.created", "-n", "shop"])
    assert exited.value.code == 4
    assert "no usable cluster configuration" in capsys.readouterr().err
