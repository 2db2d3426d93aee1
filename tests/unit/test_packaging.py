"""What `pip install webhook-operator` brings: only what `run` needs; the demo's stand-in behind
the `demo` extra, which `dev` (and so `make install`, `make demo`, `make test`) includes."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
DEMO_ONLY = {"kmock", "jsonpatch", "jsonpointer", "attrs", "yarl"}


def names(requirements: list[str]) -> set[str]:
    return {re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0].lower() for requirement in requirements}


def test_the_product_requires_none_of_the_stand_ins_dependencies() -> None:
    assert names(PROJECT["dependencies"]) & DEMO_ONLY == set()


def test_the_demo_extra_has_them_and_dev_includes_it() -> None:
    extras = PROJECT["optional-dependencies"]
    assert names(extras["demo"]) >= DEMO_ONLY
    assert "webhook-operator[demo]" in extras["dev"]


def test_libraries_used_through_private_internals_are_capped() -> None:
    """kopf (a test reads its private matcher) and kmock (the stand-in subclasses its internals)."""
    pinned = [*PROJECT["dependencies"], *PROJECT["optional-dependencies"]["demo"]]
    for name in ("kopf", "kmock"):
        (requirement,) = [r for r in pinned if names([r]) == {name}]
        assert "<" in requirement, requirement
