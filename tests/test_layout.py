"""The package layout: each stage imports only from the stages below it.

aliasd's subpackages are ordered (aliasd/__init__.py lists them): base,
zones, resolve, dnssec, replicate, update, answer, listen, service. An
import from a later package into an earlier one would tie a low stage to
the assembly above it, and import cycles follow; names used only for
typing (under ``if TYPE_CHECKING:``) do not count.
"""

from __future__ import annotations

import ast
from pathlib import Path

import aliasd

ORDER = ["base", "zones", "resolve", "dnssec", "replicate", "update", "answer", "listen", "service"]
ROOT = Path(aliasd.__file__).parent


def _runtime_imports(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            node.body = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("aliasd."):
            yield node.lineno, node.module
        elif isinstance(node, ast.Import):
            yield from ((node.lineno, a.name) for a in node.names if a.name.startswith("aliasd."))


def test_every_module_is_in_a_stage_package():
    loose = sorted(p.name for p in ROOT.glob("*.py") if p.name not in ("__init__.py", "__main__.py"))
    assert loose == []
    assert sorted(p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()) == sorted(ORDER)


def test_no_package_imports_one_above_it():
    rank = {name: i for i, name in enumerate(ORDER)}
    upward = []
    for path in sorted(ROOT.rglob("*.py")):
        package = path.relative_to(ROOT).parts[0]
        if package not in rank:
            continue
        for line, module in _runtime_imports(ast.parse(path.read_text(), str(path))):
            other = module.split(".")[1]
            if rank.get(other, -1) > rank[package]:
                upward.append(f"{path.relative_to(ROOT.parent)}:{line}: {package} imports {module}")
    assert upward == []
