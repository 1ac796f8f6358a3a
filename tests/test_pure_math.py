"""The math of PRIME lives in pure modules: they import torch and the standard library's
pure parts only (nothing of the project, no I/O), and name no file, process or network."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PURE = ["advantages", "rewards", "logprobs", "losses", "filtering", "localise"]
ALLOWED = {"__future__", "torch", "torch.nn.functional", "torch.utils.checkpoint", "math", "itertools", "functools", "collections.abc",
           "dataclasses", "typing"}
IO_NAMES = {"open", "print", "input", "exec", "eval", "__import__"}


@pytest.mark.parametrize("module", PURE)
def test_a_pure_module_imports_no_project_code_and_does_no_io(module):
    tree = ast.parse((Path(__file__).resolve().parents[1] / "prime" / "math" / f"{module}.py").read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add("." * node.level + (node.module or ""))
    assert imported <= ALLOWED, imported - ALLOWED
    called = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    assert not called & IO_NAMES, called & IO_NAMES
