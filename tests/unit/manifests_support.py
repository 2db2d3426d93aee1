"""Helpers for the manifest tests: our CRDs as a validator, a CEL checker, the Helm chart rendered.

No API server is available in the normal test run, so this module stands in
for the parts of them the tests need, and each stand-in says where it falls short:

- ``structural_errors``: the Kubernetes rules for structural schemas (what
  ``kubectl apply -f crds/`` would reject), checked on the CRD's openAPIV3Schema.
- ``cel_compile_errors`` / ``cel_evaluate``: x-kubernetes-validations rules parsed and run by
  the ``cel`` module of the common-expression-language package (cel-rust). It parses and
  evaluates but does not type-check, so on top of parsing we check that every function a
  rule calls is a CEL standard function or one of the Kubernetes extension functions we
  declare (with Python stand-ins for evaluation), that it uses no variable but
  ``self``/``oldSelf`` and its macros' own, and that every ``self.a.b`` it names exists in
  the schema (the type check an API server does).
- ``validate_custom_resource``: an object checked against our CRD the way the API server
  would: defaults applied, the openAPIV3Schema (x-kubernetes-* keys turned into plain JSON
  Schema: unknown fields rejected as ``kubectl apply``'s strict field validation does), then
  the CEL rules.
- ``render_chart``: renders deploy/helm/webhook-operator with Helm's own engine (the Go SDK,
  through the helm-python-sdk package), as ``helm template`` would.
"""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cel
import jsonschema
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parents[2]
CRD_DIR = ROOT / "crds"
DEPLOY_DIR = ROOT / "deploy"
CHART_DIR = DEPLOY_DIR / "helm" / "webhook-operator"
EXAMPLES_DIR = ROOT / "examples"
GROUP = "webhooks.openplatform.dev"

# Kubernetes versions the built-in kinds are validated against (kubernetes-validate ships the
# schemas): the oldest we support (CEL's lowerAscii and the URL library need 1.27+; 1.30 is the
# oldest release still maintained upstream when this was written) and the newest it knows.
K8S_MIN_VERSION = "1.30"


# ---------------------------------------------------------------------------------------------
# Loading


def load_yaml_docs(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def crd_files() -> list[Path]:
    return sorted(CRD_DIR.glob("*.yaml"))


def load_crds() -> dict[str, dict[str, Any]]:
    """Our CRDs by kind."""
    crds: dict[str, dict[str, Any]] = {}
    for path in crd_files():
        for doc in load_yaml_docs(path):
            crds[doc["spec"]["names"]["kind"]] = doc
    return crds


def served_version(crd: dict[str, Any]) -> dict[str, Any]:
    (version,) = [v for v in crd["spec"]["versions"] if v["storage"]]
    return version


def crd_schema(crd: dict[str, Any]) -> dict[str, Any]:
    return served_version(crd)["schema"]["openAPIV3Schema"]


def kubectl() -> str | None:
    return shutil.which("kubectl")


def kustomize_build(path: Path) -> list[dict[str, Any]]:
    """`kubectl kustomize PATH` (kustomize is built into kubectl). Callers skip without kubectl."""
    exe = kubectl()
    assert exe is not None
    out = subprocess.run([exe, "kustomize", str(path)], check=True, capture_output=True, text=True).stdout
    return [d for d in yaml.safe_load_all(out) if d is not None]


# ---------------------------------------------------------------------------------------------
# Walking schemas


def walk_schema(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node with a readable path (properties by name, [] for items, {} for values)."""
    yield path, schema
    for name, sub in schema.get("properties", {}).items():
        yield from walk_schema(sub, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from walk_schema(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from walk_schema(schema["additionalProperties"], f"{path}{{}}")


_FORBIDDEN_KEYWORDS = {
    "$ref", "$schema", "definitions", "dependencies", "patternProperties", "additionalItems", "id",
    "$id",
}  # fmt: skip
_JUNCTORS = ("allOf", "anyOf", "oneOf", "not")
_FORBIDDEN_IN_JUNCTORS = {"description", "type", "default", "additionalProperties", "nullable"}
_SCALAR_TYPES = {"string", "integer", "number", "boolean"}


def structural_errors(root: dict[str, Any]) -> list[str]:
    """Violations of the structural schema rules an apiextensions.k8s.io/v1 API server enforces.

    https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#specifying-a-structural-schema
    """
    errors: list[str] = []
    if root.get("type") != "object":
        errors.append("<root>: type must be object")

    def check(node: dict[str, Any], path: str, in_junctor: bool) -> None:
        where = path or "<root>"
        for key in _FORBIDDEN_KEYWORDS & node.keys():
            errors.append(f"{where}: {key} is not allowed in a CRD schema")
        untyped_ok = node.get("x-kubernetes-int-or-string") or node.get(
            "x-kubernetes-preserve-unknown-fields"
        )
        if not in_junctor and path and not node.get("type") and not untyped_ok:
            errors.append(f"{where}: type must not be empty for a specified field")
        if in_junctor:
            for key in _FORBIDDEN_IN_JUNCTORS & node.keys():
                errors.append(f"{where}: {key} must not be set inside allOf/anyOf/oneOf/not")
        if "properties" in node and "additionalProperties" in node:
            errors.append(f"{where}: properties and additionalProperties are mutually exclusive")
        if node.get("additionalProperties") is False:
            errors.append(f"{where}: additionalProperties: false is not allowed (use no properties instead)")
        if node.get("uniqueItems") is True:
            errors.append(f"{where}: uniqueItems: true is not allowed")
        if node.get("x-kubernetes-preserve-unknown-fields") is False:
            errors.append(f"{where}: x-kubernetes-preserve-unknown-fields must be true or absent")
        if node.get("type") == "array":
            if not isinstance(node.get("items"), dict):
                errors.append(f"{where}: an array needs a single items schema")
        elif "items" in node and not in_junctor:
            errors.append(f"{where}: items is only allowed on arrays")
        if node.get("type") not in (None, "object") and (
            "properties" in node or "additionalProperties" in node
        ):
            errors.append(f"{where}: properties/additionalProperties are only allowed on objects")
        if node.get("type") in _SCALAR_TYPES and node.get("x-kubernetes-preserve-unknown-fields"):
            errors.append(f"{where}: x-kubernetes-preserve-unknown-fields on a scalar")
        if node.get("x-kubernetes-embedded-resource") and node.get("type") != "object":
            errors.append(f"{where}: x-kubernetes-embedded-resource needs type object")
        list_type = node.get("x-kubernetes-list-type")
        if list_type is not None:
            if node.get("type") != "array" or list_type not in ("atomic", "set", "map"):
                errors.append(f"{where}: bad x-kubernetes-list-type {list_type!r}")
            if list_type == "map":
                items = node.get("items") or {}
                keys = node.get("x-kubernetes-list-map-keys") or []
                if items.get("type") != "object" or not keys:
                    errors.append(f"{where}: a map list needs object items and x-kubernetes-list-map-keys")
                for key in keys:
                    prop = items.get("properties", {}).get(key)
                    if prop is None or prop.get("type") not in _SCALAR_TYPES:
                        errors.append(f"{where}: list map key {key!r} must be a scalar property")
                    elif key not in items.get("required", []) and "default" not in prop:
                        errors.append(f"{where}: list map key {key!r} must be required or defaulted")
        elif "x-kubernetes-list-map-keys" in node:
            errors.append(f"{where}: x-kubernetes-list-map-keys needs x-kubernetes-list-type: map")
        for name in node.get("required", []):
            if "properties" in node and name not in node["properties"]:
                errors.append(f"{where}: required field {name!r} is not in properties")
        for name, sub in node.get("properties", {}).items():
            check(sub, f"{path}.{name}", in_junctor)
        if isinstance(node.get("items"), dict):
            check(node["items"], f"{path}[]", in_junctor)
        if isinstance(node.get("additionalProperties"), dict):
            check(node["additionalProperties"], f"{path}{{}}", in_junctor)
        for junctor in _JUNCTORS:
            subs = node.get(junctor)
            for sub in subs if isinstance(subs, list) else [subs] if isinstance(subs, dict) else []:
                check(sub, f"{path}.{junctor}", True)
                # Every field a junctor mentions must also be specified outside of it.
                for name in sub.get("properties", {}):
                    if name not in node.get("properties", {}):
                        errors.append(f"{where}: {name!r} is used in {junctor} but not specified outside it")

    check(root, "", False)
    # Rule 4: the root metadata may only restrict name and generateName; anything else
    # (a description included) is rejected by the API server.
    metadata = root.get("properties", {}).get("metadata")
    if metadata is not None:
        extra = set(metadata) - {"type", "properties"}
        extra |= {f"properties.{k}" for k in metadata.get("properties", {})} - {
            "properties.name",
            "properties.generateName",
        }
        if metadata.get("type") != "object" or extra:
            errors.append(
                f".metadata: only type: object and name/generateName are allowed, got {sorted(extra)}"
            )
    return errors


# ---------------------------------------------------------------------------------------------
# CEL (x-kubernetes-validations)

# Functions and operators of the CEL standard definitions, as the cel module reports them in
# Program.references() (macros such as has/all/exists are expanded and do not show up).
CEL_STANDARD_FUNCTIONS = frozenset(
    {
        "_==_", "_!=_", "_<_", "_<=_", "_>_", "_>=_", "_+_", "_-_", "_*_", "_/_", "_%_", "-_", "!_",
        "_&&_", "_||_", "_?_:_", "_[_]", "@in", "@not_strictly_false",
        "size", "contains", "startsWith", "endsWith", "matches", "int", "uint", "double", "string",
        "bytes", "bool", "type", "dyn", "duration", "timestamp",
    }
)  # fmt: skip


def _k8s_url_host(value: str) -> str:
    return urllib.parse.urlsplit(value).hostname or ""


def _k8s_is_url(value: str) -> bool:
    # Kubernetes' isURL is Go's url.ParseRequestURI succeeding: an absolute URL (with a scheme)
    # or an absolute path, without spaces.
    if any(c.isspace() for c in value):
        return False
    return bool(urllib.parse.urlsplit(value).scheme) or value.startswith("/")


# Kubernetes CEL extension functions our rules use. The cel module does not know them, so they
# are declared here for the compile check, with Python stand-ins (close to, not exactly, the
# Go implementations) so that rules can be evaluated in tests. The real ones are in the
# Kubernetes strings extension (lowerAscii) and URL library (isURL, url, getHost), both
# available in CRD validation rules since Kubernetes 1.27.
# url(x) returns the string itself here and getHost parses it: enough for `url(s).getHost()`.
K8S_EXTENSION_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "lowerAscii": lambda s: "".join(c.lower() if c.isascii() else c for c in s),
    "isURL": _k8s_is_url,
    "url": lambda s: s,
    "getHost": _k8s_url_host,
}

_MACRO_VAR = re.compile(r"\.(?:all|exists|exists_one|map|filter)\(\s*([A-Za-z_]\w*)\s*,")
_SELF_PATH = re.compile(r"\b(self|oldSelf)((?:\.[A-Za-z_]\w*)+)(\s*\()?")
_HAS_PATH = re.compile(r"has\(\s*(self|oldSelf)((?:\.[A-Za-z_]\w*)+)\s*\)")


def _schema_child(node: dict[str, Any], name: str) -> dict[str, Any] | None:
    props = node.get("properties", {})
    if name in props:
        return props[name]
    if isinstance(node.get("additionalProperties"), dict):
        return node["additionalProperties"]
    return None


def cel_compile_errors(rule: str, node: dict[str, Any]) -> list[str]:
    """What an API server would reject when compiling ``rule`` on schema ``node``, as far as
    we can tell without Kubernetes' own type checker (see the module docstring)."""
    try:
        program = cel.compile(rule)
    except ValueError as e:
        return [f"does not parse: {e}"]
    refs = program.references()
    errors = []
    unknown = set(refs["functions"]) - CEL_STANDARD_FUNCTIONS - K8S_EXTENSION_FUNCTIONS.keys()
    if unknown:
        errors.append(f"unknown functions {sorted(unknown)}")
    allowed_vars = {"self", "oldSelf", *_MACRO_VAR.findall(rule)}
    stray = set(refs["variables"]) - allowed_vars
    if stray:
        errors.append(f"unknown variables {sorted(stray)}")
    for match in _SELF_PATH.finditer(rule):
        segments = match.group(2).lstrip(".").split(".")
        if match.group(3):  # the last segment is a method call (self.startsWith(...))
            segments = segments[:-1]
        current: dict[str, Any] | None = node
        for segment in segments:
            current = _schema_child(current, segment) if current is not None else None
            if current is None:
                errors.append(f"{match.group(0).strip()}: no field {segment!r} in the schema")
                break
    return errors


def cel_evaluate(rule: str, self_value: Any, old_self: Any = None) -> Any:
    context = cel.Context()
    for name, function in K8S_EXTENSION_FUNCTIONS.items():
        context.add_function(name, function)
    context.add_variable("self", self_value)
    if old_self is not None:
        context.add_variable("oldSelf", old_self)
    return cel.evaluate(rule, context)


def is_transition_rule(rule: str) -> bool:
    return re.search(r"\boldSelf\b", rule) is not None


def validation_rules(schema: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(path, schema node, rule) for every x-kubernetes-validations rule."""
    for path, node in walk_schema(schema):
        for rule in node.get("x-kubernetes-validations", []):
            yield path, node, rule


# ---------------------------------------------------------------------------------------------
# Validating custom resources against our CRDs


def to_json_schema(node: dict[str, Any], root: bool = True) -> dict[str, Any]:
    """An openAPIV3Schema as plain JSON Schema: x-kubernetes-* keys dropped, and objects with
    properties closed (additionalProperties: false) unless they preserve unknown fields, which is
    what `kubectl apply`'s default strict field validation reports as unknown fields."""
    out = {k: v for k, v in node.items() if not k.startswith("x-kubernetes-")}
    out.pop("default", None)
    if "properties" in node:
        out["properties"] = {k: to_json_schema(v, root=False) for k, v in node["properties"].items()}
        if not node.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    if isinstance(node.get("items"), dict):
        out["items"] = to_json_schema(node["items"], root=False)
    if isinstance(node.get("additionalProperties"), dict):
        out["additionalProperties"] = to_json_schema(node["additionalProperties"], root=False)
    if root:
        # The API server checks metadata itself (ObjectMeta), not through the CRD schema.
        out["properties"]["metadata"] = {"type": "object"}
    return out


def apply_defaults(node: dict[str, Any], value: Any) -> Any:
    """Structural defaulting as the API server does it: a missing field with a default gets it
    (then its own nested defaults), recursively, in objects that exist."""
    value = copy.deepcopy(value)
    if isinstance(value, dict) and "properties" in node:
        for name, sub in node["properties"].items():
            if name not in value and "default" in sub:
                value[name] = copy.deepcopy(sub["default"])
            if name in value:
                value[name] = apply_defaults(sub, value[name])
    elif isinstance(value, dict) and isinstance(node.get("additionalProperties"), dict):
        value = {k: apply_defaults(node["additionalProperties"], v) for k, v in value.items()}
    elif isinstance(value, list) and isinstance(node.get("items"), dict):
        value = [apply_defaults(node["items"], v) for v in value]
    return value


def _cel_errors(node: dict[str, Any], value: Any, old: Any, path: str) -> list[str]:
    errors = []
    for rule in node.get("x-kubernetes-validations", []):
        transition = is_transition_rule(rule["rule"])
        if transition and old is None:
            continue  # transition rules only run on updates, when there is an old value
        result = cel_evaluate(rule["rule"], value, old if transition else None)
        if result is not True:
            errors.append(f"{path or '<root>'}: {rule.get('message', rule['rule'])}")
    if isinstance(value, dict):
        for name, sub_value in value.items():
            sub = _schema_child(node, name)
            if sub is not None:
                old_sub = old.get(name) if isinstance(old, dict) else None
                errors += _cel_errors(sub, sub_value, old_sub, f"{path}.{name}")
    elif isinstance(value, list) and isinstance(node.get("items"), dict):
        # Correlating old list items needs list-type map keys; none of our rules live there.
        for i, item in enumerate(value):
            errors += _cel_errors(node["items"], item, None, f"{path}[{i}]")
    return errors


def validate_custom_resource(obj: dict[str, Any], old: dict[str, Any] | None = None) -> list[str]:
    """Errors the API server would report for creating ``obj`` (or updating ``old`` to it)."""
    crds = load_crds()
    api_version = f"{GROUP}/{served_version(next(iter(crds.values())))['name']}"
    if obj.get("apiVersion") != api_version or obj.get("kind") not in crds:
        return [f"not one of our kinds: {obj.get('apiVersion')}/{obj.get('kind')}"]
    schema = crd_schema(crds[obj["kind"]])
    obj = apply_defaults(schema, obj)
    old = apply_defaults(schema, old) if old is not None else None
    validator = jsonschema.Draft7Validator(to_json_schema(schema))
    errors = [
        f".{'.'.join(str(p) for p in e.absolute_path)}: {e.message}" for e in validator.iter_errors(obj)
    ]
    if errors:
        return errors  # as the API server: CEL runs only on schema-valid objects
    return _cel_errors(schema, obj, old, "")


# ---------------------------------------------------------------------------------------------
# The Helm chart, rendered by Helm's own engine


def render_chart_manifests(
    values: dict[str, Any] | None = None,
    release_namespace: str = "webhook-operator",
    release_name: str = "webhook-operator",
) -> dict[str, str]:
    """``helm template``: each template's rendered text, by its path in the chart.

    Helm's Go SDK does the work (through helm-python-sdk): the same template engine, value
    coalescing and values.schema.json check as the helm binary, which no registry this project
    installs from packages.
    - ``{{ EXPR }}`` with optional ``{{-`` / ``-}}`` whitespace trimming, as in Go templates;
    - ``{{ if EXPR }}`` / ``{{ else }}`` / ``{{ end }}`` and ``{{ range EXPR }}`` … ``{{ end }}``
      (inside range, ``.`` is the item); Go's truthiness (false, 0, "", empty list/map are false);
    - operands ``.Values.a.b``, ``.Release.Namespace``, ``.Release.Name``, ``.Chart.Name``,
      ``.Chart.AppVersion``, ``.``, "strings" and integers;
    - pipelines ``X | f ARGS`` (X becomes f's last argument) with f in quote, toYaml, nindent,
      indent, join, default, int, until (0 to N-1) and lt (Go's `lt A B`: A < B).
    """
    import helm_python

    with helm_python.Chart.load(str(CHART_DIR)) as chart:
        rendered: dict[str, str] = chart.render(values or {}, name=release_name, namespace=release_namespace)
    return rendered


def render_chart(
    values: dict[str, Any] | None = None,
    release_namespace: str = "webhook-operator",
    release_name: str = "webhook-operator",
) -> list[dict[str, Any]]:
    """The chart's objects as `helm template` renders them (values.yaml merged with ``values``)."""
    manifests = render_chart_manifests(values, release_namespace, release_name)
    objects: list[dict[str, Any]] = []
    for path in sorted(manifests):
        if path.endswith(".yaml"):
            objects += [d for d in yaml.safe_load_all(manifests[path]) if d is not None]
    return objects


K8S_LATEST = ".".join(kubernetes_validate.latest_version().split(".")[:2])
VERSIONS = [K8S_MIN_VERSION, K8S_LATEST]
NAMESPACE = "webhook-operator"
IMAGE = "ghcr.io/openplatform/webhook-operator:0.1.0"
LABELS = {"app.kubernetes.io/name": "webhook-operator", "app.kubernetes.io/part-of": "webhook-operator"}


def validate(obj: dict[str, Any]) -> None:
    """Fails unless an API server would accept ``obj`` (as far as a schema can tell)."""
    if obj["apiVersion"].startswith(f"{GROUP}/"):
        assert validate_custom_resource(obj) == [], object_key(obj)
    elif obj["kind"] == "ServiceMonitor":
        check_service_monitor(obj)
    elif obj["kind"] == "PrometheusRule":
        check_prometheus_rule(obj)
    else:
        for version in VERSIONS:
            kubernetes_validate.validate(obj, version, strict=True)


def check_prometheus_rule(obj: dict[str, Any]) -> None:
    # No schema for it either: the shape Prometheus reads, and labels that say where to look.
    assert set(obj) == {"apiVersion", "kind", "metadata", "spec"}
    assert set(obj["spec"]) == {"groups"}
    for group in obj["spec"]["groups"]:
        assert set(group) == {"name", "rules"}
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}
            assert re.fullmatch(r"\d+[smh]", rule["for"])
            assert rule["labels"]["severity"] in {"warning", "critical"}
            assert "summary" in rule["annotations"]


def check_service_monitor(obj: dict[str, Any]) -> None:
    # kubernetes-validate has no schema for the Prometheus Operator's CRDs: check the fields
    # that make it work instead (the selector and port are checked against the Service below).
    assert obj["apiVersion"] == "monitoring.coreos.com/v1"
    assert obj["kind"] == "ServiceMonitor"
    assert set(obj) == {"apiVersion", "kind", "metadata", "spec"}
    assert set(obj["spec"]) == {"selector", "endpoints"}
    assert obj["spec"]["selector"]["matchLabels"]
    for endpoint in obj["spec"]["endpoints"]:
        assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout", "scheme", "honorLabels"}
        assert re.fullmatch(r"\d+[smh]", endpoint["interval"])


def by_key(objects: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    keyed = {object_key(o): o for o in objects}
    assert len(keyed) == len(objects), "duplicate objects"
    return keyed


def only(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, (kind, name, [object_key(o) for o in found])
    return found[0]


def without_namespace_and_crds(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] not in ("Namespace", "CustomResourceDefinition")]


def operator_container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (container,) = only(objects, "Deployment", "webhook-operator")["spec"]["template"]["spec"]["containers"]
    return container


def object_key(obj: dict[str, Any]) -> tuple[str, str, str]:
    return (obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
