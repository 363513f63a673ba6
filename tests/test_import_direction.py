"""The one-way package flow of ARCHITECTURE.md, checked on the source (imports inside functions count too)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "rldiff": {"envs", "policies", "rewards", "examples"},
    "envs": {"policies", "rewards", "examples"},
    "policies": {"envs", "rewards", "examples"},
    "rewards": {"envs", "policies", "examples"},
}
RLDIFF_THIRD_PARTY = {"torch", "tensordict", "numpy", "safetensors"}


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_forbidden_imports_are_detected(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from rewards.trackers import X\nimport envs.core\n")
    assert {"rewards", "envs"} <= imported_roots(bad)


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_one_way_flow(package):
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"package {package}/ has no Python files"
    offenders = {str(f.relative_to(ROOT)): sorted(imported_roots(f) & FORBIDDEN[package]) for f in files}
    offenders = {k: v for k, v in offenders.items() if v}
    assert not offenders, f"{package}/ must not import {sorted(FORBIDDEN[package])}: {offenders}"


def test_rldiff_needs_only_torch_tensordict_numpy():
    import sys

    stdlib = set(sys.stdlib_module_names)
    for f in sorted((ROOT / "rldiff").rglob("*.py")):
        extra = imported_roots(f) - stdlib - RLDIFF_THIRD_PARTY - {"rldiff", "__future__"}
        assert not extra, f"{f.relative_to(ROOT)} imports {sorted(extra)} (rldiff/ may use torch, tensordict, numpy, safetensors only)"
