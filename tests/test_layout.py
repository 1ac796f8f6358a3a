"""The promises the layout makes (README "Layout"), checked in the source: only plain data crosses
the sandbox boundary, and only prime.models loads models through transformers, peft and bitsandbytes."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PRIME = Path(__file__).resolve().parents[1] / "prime"
SANDBOX = PRIME / "sandbox"
SERIALISERS = {"pickle", "cPickle", "dill", "shelve", "copyreg", "marshal"}


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text())


def _imports(tree: ast.Module) -> set[str]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module.split(".")[0] if not node.level else "." + node.module)
    return out


def _calls(tree: ast.Module, obj: str, attr: str) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
            and n.func.attr == attr and isinstance(n.func.value, ast.Name) and n.func.value.id == obj]


def test_every_message_across_the_sandbox_pipe_is_plain_data():
    """The runner writes the pipe only with plaindata.dumps and reads it only with plaindata.loads;
    the child likewise; neither side imports a serialiser that can carry objects (marshal only
    compiles the child's own trusted source into bytecode, never reads anything back)."""
    runner, child, harness = (_tree(SANDBOX / f) for f in ("__init__.py", "child.py", "harness.py"))
    sends = [c for c in ast.walk(runner) if isinstance(c, ast.Call) and isinstance(c.func, ast.Attribute)
             and c.func.attr == "_send"]
    assert sends and all(isinstance(c.args[0], ast.Call) and ast.unparse(c.args[0].func) == "plaindata.dumps"
                         for c in sends)
    assert _calls(runner, "plaindata", "loads")
    assert not _calls(runner, "marshal", "loads") and not _calls(runner, "marshal", "load")
    assert [ast.unparse(c.func) for c in _calls(runner, "marshal", "dumps")] == ["marshal.dumps"]  # bytecode only
    assert _calls(child, "plaindata", "dumps")
    for tree in (child, harness):
        assert not _imports(tree) & SERIALISERS
    assert _imports(runner) & SERIALISERS == {"marshal"}
    assert _imports(child) <= {"posix", "sys", "_json", "plaindata", "__future__"}  # nothing of the host's packages


@pytest.mark.parametrize("package", ["transformers", "peft", "bitsandbytes"])
def test_only_prime_models_builds_models_with(package):
    """prime.models is where models are built and loaded; elsewhere in prime/ the package appears
    only for a type or a cache object (rollout's DynamicCache, score's tokenizer type) or in
    tiny.py, which trains the tiny model from scratch."""
    allowed = {"rollout.py", "score.py", "tiny.py"}
    users = {p.relative_to(PRIME).as_posix() for p in PRIME.rglob("*.py") if package in _imports(_tree(p))}
    assert {u for u in users if not u.startswith("models/")} <= allowed, users
