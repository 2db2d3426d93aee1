"""`webhook-operator demo`, as a user runs it right after installing: a real process, real output."""

from __future__ import annotations

import datetime as dt
import io
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from webhook_operator.demo import examples, flow
from webhook_operator.demo.receiver import BuiltinVerifier, VerificationError
from webhook_operator.demo.tables import evaluate, human_age
from webhook_operator.domain.signing import parse_signing_key, signature

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ARRIVAL = re.compile(
    r"^\[\s*[\d.]+s\]\s+(?P<event>\S+) \((?P<type>[^)]+)\)\s+→ (?P<sub>\S+)\s+attempt (?P<attempt>\d+)"
    r"\s+webhook-id (?P<id>[0-9a-f]{8})…\s+signature verified ✓\s+→ (?P<code>\d{3})",
    re.M,
)
SUBSCRIPTIONS_HEADER = re.compile(r"^NAME\s+URL\s+READY\s+DELIVERED\s+FAILED\s+AGE$", re.M)
EVENTS_HEADER = re.compile(r"^NAME\s+TYPE\s+DELIVERED\s+FAILED\s+PENDING\s+AGE$", re.M)


def run(args: list[str], **env: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    result = subprocess.run(
        args,
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        timeout=60,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONIOENCODING": "utf-8", **env},
        check=False,
    )
    return result, time.monotonic() - started


def table_rows(output: str, header: re.Pattern[str]) -> dict[str, list[str]]:
    """The rows under a `kubectl get` header, by NAME, up to the next blank line."""
    match = header.search(output)
    assert match, output
    rows = {}
    for line in output[match.end() :].strip("\n").split("\n"):
        if not line.strip():
            break
        cells = line.split()
        rows[cells[0]] = cells[1:]
    return rows


@pytest.mark.slow
def test_the_demo_delivers_verifies_retries_and_prints_both_tables():
    result, elapsed = run([str(BIN / "webhook-operator"), "demo"])
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert elapsed < 20, f"the demo took {elapsed:.1f} s"
    assert result.stderr == "", "no kopf or operator log noise by default:\n" + result.stderr
    assert "verifying signatures with standardwebhooks (official library)" in out

    arrivals = [m.groupdict() for m in ARRIVAL.finditer(out)]
    assert any(a["sub"] == "orders-to-crm" and a["code"] == "200" for a in arrivals), out
    assert any(a["sub"] == "invoices-to-billing" and a["code"] == "200" for a in arrivals), out
    retried = [a for a in arrivals if a["event"] == "payment-3001-captured"]
    assert [(a["attempt"], a["code"]) for a in retried] == [("1", "503"), ("2", "503"), ("3", "200")], out
    assert len({a["id"] for a in retried}) == 1, "the same webhook-id on every retry"
    assert "INVALID" not in out

    subs = table_rows(out, SUBSCRIPTIONS_HEADER)
    assert set(subs) == {"orders-to-crm", "invoices-to-billing", "payments-to-ledger"}
    for name, (url, ready, _delivered, failed, _age) in subs.items():
        assert url.startswith("http://127.0.0.1:") and ready == "True" and failed == "0", name
    assert subs["orders-to-crm"][2] == "3"  # two example order events and one generated (--events 3)
    assert subs["payments-to-ledger"][2] == "1"

    events = table_rows(out, EVENTS_HEADER)
    assert {"order-1001-created", "invoice-2001-paid", "product-42-updated", "payment-3001-captured"} <= set(
        events
    )
    assert len(events) == 6
    assert all(cells[1:4] == ["True", "0", "0"] for cells in events.values()), events
    assert events["payment-3001-captured"][0] == "payment.captured"

    describe = out[out.index("$ kubectl describe webhookevent payment-3001-captured") :]
    assert re.search(r"payments-to-ledger\s+Succeeded\s+3\s+200", describe), describe
    assert re.search(r"Delivered\s+True\s+AllDelivered", describe), describe
    assert out.rstrip().endswith("one retried until it succeeded")


@pytest.mark.slow
def test_without_the_repository_or_the_dev_dependencies_it_uses_built_ins():
    """A wheel install: no examples/ next to the package, no `standardwebhooks`, an ASCII terminal."""
    script = (
        "import sys, asyncio\n"
        "sys.modules['standardwebhooks'] = None  # as if not installed: importing it fails\n"
        "from webhook_operator.demo import run_demo\n"
        "sys.exit(asyncio.run(run_demo(events=1, examples=None)))\n"
    )
    result, _ = run([sys.executable, "-c", script], PYTHONIOENCODING="ascii")
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "verifying signatures with webhook_operator.domain.signing (standardwebhooks not installed)" in out
    assert "applying the built-in copy" in out
    assert "signature verified OK" in out
    assert re.search(r"payments-to-ledger\s+attempt 3 .* -> 200", out), out
    assert "order-1001-shipped" not in out, "--events 1 keeps one order event"
    assert table_rows(out, EVENTS_HEADER).keys() == {
        "order-1001-created",
        "invoice-2001-paid",
        "product-42-updated",
        "payment-3001-captured",
    }


def test_without_the_demo_extra_it_says_which_install_adds_it_and_run_still_works():
    """`pip install webhook-operator` alone: no kmock. The demo names the extra; `run` is unaffected."""
    script = (
        "import sys\n"
        "sys.modules['kmock'] = None  # as if not installed: importing it fails\n"
        "from webhook_operator.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    result, _ = run([sys.executable, "-c", script, "demo"])
    assert result.returncode == 2, result.stdout + result.stderr
    assert "pip install 'webhook-operator[demo]'" in result.stderr
    assert "needs kmock" in result.stderr
    assert "Traceback" not in result.stderr
    result, _ = run([sys.executable, "-c", script, "run", "--help"])
    assert result.returncode == 0, result.stderr
    assert "--allow-cidr" in result.stdout


async def test_a_receiver_that_rejects_the_signatures_fails_the_demo_with_a_reason(monkeypatch):
    wrong_key = "whsec_" + "A" * 43 + "="
    monkeypatch.setattr(flow, "make_verifier", lambda _key: BuiltinVerifier(wrong_key))
    out = io.StringIO()
    started = time.monotonic()
    code = await flow.run_demo(events=1, out=out)
    text = out.getvalue()
    assert code == 1, text
    assert "signature INVALID" in text
    assert "demo failed: " in text and "No matching signature found" in text
    assert "order-1001-created was not delivered" in text
    assert time.monotonic() - started < 15


async def test_an_example_naming_a_missing_secret_is_reported_before_anything_runs(tmp_path):
    (tmp_path / "sub.yaml").write_text(
        "apiVersion: webhooks.openplatform.dev/v1alpha1\nkind: WebhookSubscription\n"
        "metadata: {name: lonely, namespace: shop}\n"
        "spec: {url: 'http://localhost:8000/x', signing: {secretRef: {name: nowhere}}}\n"
    )
    out = io.StringIO()
    assert await flow.run_demo(events=0, examples=tmp_path, out=out) == 1
    assert "demo failed: subscription lonely names Secret nowhere, which the examples lack" in out.getvalue()


def test_the_built_in_examples_are_the_repository_examples():
    """The copy a wheel runs must not drift from examples/*.yaml (only the key differs: a fresh one).
    The in-cluster receiver's Deployment and Service are left out: the demo runs its own.
    """
    docs, origin = examples.load_examples(REPO_ROOT / "examples")
    assert origin
    assert {doc["kind"] for doc in docs} - set(flow._PLURALS) == {"Deployment", "Service"}
    from_repo = [examples.as_stored(doc) for doc in docs if doc["kind"] in flow._PLURALS]
    built_in = [examples.as_stored(doc) for doc in examples.builtin_examples()]
    for doc in (*from_repo, *built_in):
        if doc["kind"] == "Secret":
            doc["data"]["signingKey"] = "<key>"
    assert built_in == from_repo


def test_the_built_in_verifier_agrees_with_the_official_library():
    from standardwebhooks.webhooks import Webhook

    key = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    stamp = int(time.time())
    body = b'{"type":"order.created","data":{"orderId":1}}'
    good = signature(parse_signing_key(key, key_name="k"), "msg_1", stamp, body)
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(stamp), "webhook-signature": f"v1,bm90 {good}"}
    Webhook(key).verify(body, headers)
    BuiltinVerifier(key).verify(body, headers)
    for broken in (
        {**headers, "webhook-signature": "v1,bm90"},
        {**headers, "webhook-timestamp": str(stamp - 3600)},
        {**headers, "webhook-id": "msg_2"},
    ):
        with pytest.raises(VerificationError):
            BuiltinVerifier(key).verify(body, broken)


def test_printer_column_paths_and_ages_read_as_kubectl_shows_them():
    obj = {
        "status": {"conditions": [{"type": "Other", "status": "False"}, {"type": "Ready", "status": "True"}]}
    }
    assert evaluate(obj, '.status.conditions[?(@.type=="Ready")].status') == "True"
    assert evaluate(obj, ".status.deliveredCount") is None
    now = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    ages = {5: "5s", 119: "119s", 192: "3m12s", 600: "10m", 3 * 3600 + 60: "3h1m", 50 * 3600: "2d2h"}
    for seconds, shown in ages.items():
        assert human_age(now - dt.timedelta(seconds=seconds), now) == shown
