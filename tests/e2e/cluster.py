"""Talking to the real cluster: a probe for the skip decision, kubectl, and the repository's YAML.

Everything the tests do to the cluster goes through `kubectl`, as a user would; only the probe
uses the `kubernetes` client, because it must give up after a few seconds.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[2]
CRDS = REPO / "crds"
EXAMPLES = REPO / "examples"
GROUP = "webhooks.openplatform.dev"

PROBE_TIMEOUT_SECONDS = 3.0
HOW_TO_GET_ONE = "The e2e tier needs one; `make e2e-kind` creates one where Docker exists"


@dataclass(frozen=True)
class ClusterInfo:
    server: str
    context: str
    version: str


def kubeconfig_location() -> str:
    return os.environ.get("KUBECONFIG") or "~/.kube/config"


def probe_cluster(timeout: float = PROBE_TIMEOUT_SECONDS) -> ClusterInfo | str:
    """Ask the API server of the current kubeconfig context for its version.

    Returns the cluster on success, or why there is none (a sentence for a skip reason). One
    attempt, no urllib3 retries, so an unreachable address costs `timeout` seconds at most.
    """
    from kubernetes import client, config

    where = kubeconfig_location()
    configuration = client.Configuration()
    try:
        _, active = config.list_kube_config_contexts()
        config.load_kube_config(client_configuration=configuration)
    except Exception as error:  # no file, no context, a broken file: all mean "no cluster here"
        return (
            f"no Kubernetes cluster reachable through KUBECONFIG ({where}): {_short(error)}. {HOW_TO_GET_ONE}"
        )
    configuration.retries = 0
    context = (active or {}).get("name", "?")
    try:
        with client.ApiClient(configuration) as api:
            version = client.VersionApi(api).get_code(_request_timeout=timeout)
    except client.ApiException as error:
        return (
            f"the Kubernetes API server at {configuration.host} (context {context}, KUBECONFIG {where}) "
            f"answered HTTP {error.status} {error.reason} to GET /version. {HOW_TO_GET_ONE}"
        )
    except Exception as error:
        return (
            f"no Kubernetes cluster reachable through KUBECONFIG ({where}, context {context}, "
            f"server {configuration.host}): {_short(error)}. {HOW_TO_GET_ONE}"
        )
    return ClusterInfo(server=configuration.host, context=context, version=version.git_version)


def _short(error: BaseException, limit: int = 200) -> str:
    import urllib3

    if isinstance(error, urllib3.exceptions.MaxRetryError) and error.reason is not None:
        error = error.reason  # the connection error itself, not urllib3's wrapper
    text = " ".join(f"{type(error).__name__}: {error}".split())
    text = text.rstrip(".")
    return text if len(text) <= limit else text[: limit - 3] + "..."


class KubectlError(AssertionError):
    """A kubectl command failed; the message has the command line, its exit code and its output."""

    def __init__(self, result: subprocess.CompletedProcess[str]) -> None:
        self.result = result
        super().__init__(
            f"`{' '.join(result.args)}` exited {result.returncode}\n"
            f"stdout: {result.stdout.strip()}\nstderr: {result.stderr.strip()}"
        )


@dataclass(frozen=True)
class Kubectl:
    """kubectl with a discovery cache of the session's own (see `forget_discovery`)."""

    binary: str
    cache_dir: Path

    def __call__(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 180.0
    ) -> subprocess.CompletedProcess[str]:
        command = [self.binary, f"--cache-dir={self.cache_dir}", *args]
        result = subprocess.run(
            command, input=input, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise KubectlError(result)
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self("get", "-o", "json", *args).stdout)

    def apply(
        self, objects: Iterable[dict[str, Any]], *extra: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """`kubectl apply -f -` of `objects`, sent as a stream of JSON documents.

        Not YAML: PyYAML writes strings such as "00340434161234567890" or "08" (the tracking
        number in examples/) unquoted, and kubectl's YAML reader then takes them for numbers.
        Nor JSON documents between `---` lines: kubectl sees the leading `{`, reads JSON, and
        stops after the first document. A plain JSON stream keeps every value's type.
        """
        return self("apply", "-f", "-", *extra, input=json_stream(objects), check=check)

    def wait(self, *args: str, timeout: int = 90) -> subprocess.CompletedProcess[str]:
        return self("wait", f"--timeout={timeout}s", *args, timeout=timeout + 30)

    def forget_discovery(self) -> None:
        """Drop cached discovery and OpenAPI, so new CRDs (short names, categories) are seen."""
        shutil.rmtree(self.cache_dir, ignore_errors=True)
        self.cache_dir.mkdir(parents=True, exist_ok=True)


def json_stream(objects: Iterable[dict[str, Any]]) -> str:
    return "\n".join(json.dumps(obj) for obj in objects) + "\n"


def eventually(
    probe: Callable[[], T | None], *, timeout: float = 60.0, interval: float = 1.0, what: str
) -> T:
    """Call `probe` until it returns something truthy; fail naming `what` and the last value."""
    deadline = time.monotonic() + timeout
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")
        time.sleep(interval)


def load_yaml_documents(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as stream:
        return [doc for doc in yaml.safe_load_all(stream) if doc]


def crd_names() -> list[str]:
    return sorted(
        doc["metadata"]["name"] for path in sorted(CRDS.glob("*.yaml")) for doc in load_yaml_documents(path)
    )


def crd_schema(plural: str) -> dict[str, Any]:
    """The v1alpha1 openAPIV3Schema of our CRD `plural`, as the files in crds/ define it."""
    (doc,) = load_yaml_documents(CRDS / f"{plural}.yaml")
    (version,) = [v for v in doc["spec"]["versions"] if v["name"] == "v1alpha1"]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def example_documents() -> list[dict[str, Any]]:
    """Every object of examples/*.yaml, in the order `kubectl apply -f examples/` would take them."""
    return [doc for path in sorted(EXAMPLES.glob("*.yaml")) for doc in load_yaml_documents(path)]


def example_signing_key() -> str:
    """The `whsec_` key of examples/10-signing-secret.yaml (from `data` or `stringData`)."""
    (secret,) = [doc for doc in example_documents() if doc["kind"] == "Secret"]
    if "signingKey" in secret.get("stringData", {}):
        return str(secret["stringData"]["signingKey"])
    return base64.b64decode(secret["data"]["signingKey"]).decode()


def normalized(text: str) -> str:
    """Whitespace collapsed, so text wrapped by kubectl compares with the CRD's own."""
    return " ".join(text.split())


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    for item in obj.get("status", {}).get("conditions", []):
        if item.get("type") == type_:
            return dict(item)
    return None
