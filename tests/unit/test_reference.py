"""docs/reference.md names everything users meet: a field added to a CRD, a reason to the code, a
flag to the command line or a metric to the registry fails here until the reference says what it is."""

from __future__ import annotations

import argparse
import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from webhook_operator import cli
from webhook_operator.config import ALLOW_CIDRS_ENV
from webhook_operator.domain import api
from webhook_operator.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = (ROOT / "docs" / "reference.md").read_text(encoding="utf-8")
PACKAGE = ROOT / "operator" / "webhook_operator"
# Fields every Kubernetes object has, documented by Kubernetes itself.
OBJECT_FIELDS = {"apiVersion", "kind", "metadata"}


def section(text: str, heading: str) -> str:
    """The text under `heading` (a whole heading line, e.g. "### Ready"), up to the next heading
    of the same or a higher level."""
    level = len(heading) - len(heading.lstrip("#"))
    lines = text.splitlines()
    try:
        start = lines.index(heading)
    except ValueError:
        pytest.fail(f"docs/reference.md has no heading {heading!r}")
    end = next(
        (
            i
            for i in range(start + 1, len(lines))
            if (m := re.match(r"^(#+) ", lines[i])) and len(m.group(1)) <= level
        ),
        len(lines),
    )
    return "\n".join(lines[start:end])


def named(text: str, name: str) -> bool:
    """`name` appears in backticks (alone, or first in a `flag VALUE` cell)."""
    return re.search(rf"`{re.escape(name)}(?:[ =][^`]*)?`", text) is not None


def schema_fields(schema: dict[str, object], path: str = "") -> Iterator[str]:
    properties = schema.get("properties")
    if isinstance(properties, dict):
        for key, sub in properties.items():
            field = f"{path}.{key}" if path else key
            yield field
            yield from schema_fields(sub, field)
    items = schema.get("items")
    if schema.get("type") == "array" and isinstance(items, dict):
        yield from schema_fields(items, f"{path}[]")


def crd_fields(kind: str) -> list[str]:
    for path in sorted((ROOT / "crds").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text(encoding="utf-8"))
        if crd["spec"]["names"]["kind"] == kind:
            fields: list[str] = []
            for version in crd["spec"]["versions"]:
                fields += schema_fields(version["schema"]["openAPIV3Schema"])
            return [f for f in dict.fromkeys(fields) if f.split(".")[0] not in OBJECT_FIELDS]
    raise AssertionError(f"no CRD for {kind} in crds/")


@pytest.mark.parametrize("kind", list(api.Kind))
def test_every_crd_field_is_in_the_section_of_its_kind(kind: api.Kind) -> None:
    fields = crd_fields(kind)
    assert len(fields) > 10
    text = section(REFERENCE, f"## {kind}")
    missing = [field for field in fields if not named(text, field)]
    assert not missing, f"docs/reference.md, section {kind}, lacks {missing}"


def test_kinds_plurals_group_and_annotations_are_named() -> None:
    names = [api.GROUP, api.VERSION, *api.Kind, *api.Plural, *api.Annotation, *api.ConditionType]
    assert not [name for name in names if not named(REFERENCE, name)]


@pytest.mark.parametrize(
    ("heading", "reasons"),
    [
        ("### Ready", api.READY_REASONS),
        ("### Delivered", api.DELIVERED_REASONS),
        ("### Failed", api.FAILED_REASONS),
        ("### Delivery reasons", (*api.WAITING_REASONS, *api.OTHER_DELIVERY_FAILURE_REASONS)),
        ("### Endpoint disabled", api.DISABLED_REASONS),
        ("## Kubernetes Events", tuple(api.EventReason)),
    ],
)
def test_each_reason_is_explained_where_it_is_used(heading: str, reasons: tuple[str, ...]) -> None:
    text = section(REFERENCE, heading)
    assert not [reason for reason in reasons if not named(text, reason)], heading


def test_every_reason_of_the_code_is_in_one_of_the_groups_the_reference_explains() -> None:
    grouped = {
        *api.READY_REASONS,
        *api.DELIVERED_REASONS,
        *api.FAILED_REASONS,
        *api.WAITING_REASONS,
        *api.OTHER_DELIVERY_FAILURE_REASONS,
        *api.DISABLED_REASONS,
        *api.STALLED_REASONS,
        *api.SOURCE_REASONS,
    }
    assert set(api.Reason) - grouped == set()


# Where the code writes a reason: these calls' arguments (by position) and any `reason=` keyword.
REASON_ARGUMENTS = {"SpecProblem": 0, "Blocker": 0, "Disabled": 0, "Condition": 2, "record": 1}


def literal_reasons() -> Iterator[tuple[str, int, str]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        if {"demo", "testing"} & set(path.relative_to(PACKAGE).parts):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            function = (
                node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            )
            values = [k.value for k in node.keywords if k.arg == "reason"]
            position = REASON_ARGUMENTS.get(function)
            if position is not None and len(node.args) > position:
                values.append(node.args[position])
            for value in values:
                if isinstance(value, ast.Constant) and isinstance(value.value, str):
                    yield str(path.relative_to(ROOT)), node.lineno, value.value


def test_reasons_written_as_literals_are_ones_the_api_module_names() -> None:
    known = {*api.Reason, *api.EventReason}
    unknown = [found for found in literal_reasons() if found[2] not in known]
    assert not unknown, f"add these to domain/api.py (and docs/reference.md): {unknown}"


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = cli.build_parser()
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return {name: sub for action in actions for name, sub in action.choices.items()}


def test_every_subcommand_and_flag_is_in_the_reference() -> None:
    commands = subcommands()
    assert {"run", "demo"} <= commands.keys()
    missing = []
    for name, parser in commands.items():
        text = section(REFERENCE, f"### `webhook-operator {name}`")
        for action in parser._actions:
            missing += [
                f"{name} {option}"
                for option in action.option_strings
                if option not in ("-h", "--help") and not named(text, option)
            ]
    assert not missing, f"docs/reference.md lacks {missing}"


def test_environment_variables_are_in_the_reference() -> None:
    from webhook_operator.demo.console import LOG_ENV

    assert named(section(REFERENCE, "### `webhook-operator run`"), ALLOW_CIDRS_ENV)
    assert named(section(REFERENCE, "### `webhook-operator demo`"), LOG_ENV)


def test_every_metric_and_its_labels_are_in_the_reference() -> None:
    text = section(REFERENCE, "## Metrics")
    metrics = [m for m in vars(Metrics()).values() if isinstance(m, MetricWrapperBase)]
    assert len(metrics) >= 10
    for metric in metrics:
        (family,) = metric.describe()
        name = family.name + ("_total" if family.type == "counter" else "")
        row = next((line for line in text.splitlines() if line.startswith(f"| `{name}` |")), None)
        assert row is not None, f"docs/reference.md lacks the metric {name}"
        assert f"| {family.type} |" in row, row
        assert not [label for label in metric._labelnames if f"`{label}`" not in row], row


def test_the_docs_and_code_stand_alone_without_the_workspace_folder() -> None:
    """Readers of the repository alone must find the contract: nothing points outside it."""
    places = ["README.md", "SECURITY.md", "docs", "operator", "crds", "deploy", "examples"]
    files = [
        p
        for place in places
        for p in ([ROOT / place] if (ROOT / place).is_file() else (ROOT / place).rglob("*"))
    ]
    outside = [
        str(path.relative_to(ROOT))
        for path in files
        if path.is_file()
        and "node_modules" not in path.parts
        and path.suffix in {".md", ".py", ".yaml", ".yml", ".lua", ".tpl", ".txt", ""}
        and "shared/" in path.read_text(encoding="utf-8", errors="replace")
    ]
    assert not outside
