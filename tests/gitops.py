"""The two judges GitOps tools use for our kinds, run from Python over real objects.

- ``kstatus``: the rules of kubernetes-sigs/cli-utils pkg/kstatus/status (``Compute`` in
  status.go, ``checkGenericProperties`` / ``checkGeneration`` in generic.go), which Flux's
  health checks and `kubectl`-style waiters apply to any custom resource. Transcribed rule by
  rule, in their order; our kinds have no legacy rules, so only the generic ones and the last
  `Ready` fallback apply.
- ``argocd_health``: the Lua health checks we ship under deploy/argocd, run by a real Lua VM
  (lupa) the way Argo CD runs them: the object as the global ``obj``, the script's return
  value as the verdict.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ARGOCD_DIR = ROOT / "deploy" / "argocd" / "webhooks.openplatform.dev"


@dataclass(frozen=True)
class Verdict:
    status: str
    message: str


def kstatus(obj: Mapping[str, Any]) -> Verdict:
    """kstatus ``Compute`` for a custom resource without legacy rules."""
    metadata = obj.get("metadata") or {}
    if metadata.get("deletionTimestamp"):
        return Verdict("Terminating", "Resource scheduled for deletion")
    status = obj.get("status") or {}
    generation = metadata.get("generation")
    observed = status.get("observedGeneration")
    # checkGeneration: only when both are present.
    if generation is not None and observed is not None and observed != generation:
        kind = obj.get("kind")
        return Verdict(
            "InProgress", f"{kind} generation is {generation}, but latest observed generation is {observed}"
        )
    conditions = status.get("conditions") or []
    # checkGenericProperties: the first Reconciling=True or Stalled=True in list order decides.
    for condition in conditions:
        if condition.get("type") == "Reconciling" and condition.get("status") == "True":
            return Verdict("InProgress", condition.get("message", ""))
        if condition.get("type") == "Stalled" and condition.get("status") == "True":
            return Verdict("Failed", condition.get("message", ""))
    # checkReadyCondition: the fallback for resources that only have Ready.
    for condition in conditions:
        if condition.get("type") != "Ready":
            continue
        if condition.get("status") == "True":
            return Verdict("Current", "Resource is Ready")
        if condition.get("status") in ("False", "Unknown"):
            return Verdict("InProgress", condition.get("message", ""))
    return Verdict("Current", "Resource is current")


def argocd_health(obj: Mapping[str, Any]) -> Verdict:
    """Runs deploy/argocd/<group>/<kind>/health.lua on ``obj`` and returns (status, message)."""
    import lupa

    script = (ARGOCD_DIR / str(obj["kind"]) / "health.lua").read_text()
    lua = lupa.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(_plain(obj), recursive=True)
    # Argo CD compiles the script as a chunk and calls it; `return hs` is its result.
    result = lua.execute(script)
    assert result is not None, "health.lua returned nothing"
    health = dict(result.items())
    assert set(health) <= {"status", "message"}, health
    assert health["status"] in {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}
    return Verdict(str(health["status"]), str(health.get("message") or ""))


def _plain(value: Any) -> Any:
    """JSON-shaped values (Mappings to dicts) for lupa's recursive table conversion."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
