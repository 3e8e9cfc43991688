"""Dependencies point one way: handlers/flows/cli/simulator -> actions -> core. Read from the
source (every import statement, at module level or inside a function), so a lazy import that
runs backwards fails too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGE = ROOT / "remediators"
# What each package may never import (beyond the standard library and third parties).
FORBIDDEN = {
    "core": ("remediators.actions", "remediators.handlers", "remediators.flows",
             "remediators.cli", "remediators.simulator", "aws_cdk", "constructs", "stacks"),
    "actions": ("remediators.handlers", "remediators.flows", "remediators.cli",
                "remediators.simulator", "aws_cdk", "constructs", "stacks"),
    "handlers": ("remediators.cli", "remediators.simulator", "aws_cdk", "constructs", "stacks"),
    "flows": ("remediators.handlers", "remediators.cli", "remediators.simulator", "aws_cdk",
              "constructs", "stacks"),
    "simulator": ("remediators.cli",),
}  # fmt: skip


def imports_of(path: Path) -> set[str]:
    """The modules `path` imports, by their full dotted name."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def offenders(package: str) -> list[str]:
    """`file: module` for each import of `package` that its FORBIDDEN list names."""
    found = []
    for path in sorted((PACKAGE / package).rglob("*.py")):
        for name in sorted(imports_of(path)):
            if any(
                name == banned or name.startswith(f"{banned}.") for banned in FORBIDDEN[package]
            ):
                found.append(f"{path.relative_to(ROOT)}: {name}")
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_imports_point_one_way(package: str) -> None:
    assert offenders(package) == []


def test_the_check_sees_a_backward_import(tmp_path: Path) -> None:
    # Given a core-like module that imports an action inside a function
    module = tmp_path / "late.py"
    module.write_text("def f():\n    from remediators.actions import waf_block_ips\n")

    # Then the import is found, by its full name
    assert "remediators.actions.waf_block_ips" in imports_of(module)
