"""verify_code: a table of cases with reasons; HumanEval canonical solutions pass, mutants fail."""

from __future__ import annotations

import ast
import gzip
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import ClassVar

import pytest

from prime.tasks import load_task
from prime.verifiers import extract_code, humaneval_tests, verify, verify_code

HUMANEVAL = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "humaneval" / "HumanEval.jsonl.gz"
TESTS = ["assert add(1, 2) == 3", "assert add(-1, 1) == 0", "assert add(2, 2) == 4"]


@pytest.mark.parametrize("response, score, why", [
    ("```python\ndef add(a, b):\n    return a + b\n```", 1.0, "correct"),
    ("```python\ndef add(a, b):\n    return a - b\n```", 0.0, "wrong operator: every test fails"),
    ("```python\ndef add(a, b):\n    return 3\n```", 1 / 3, "a constant passes one test"),
    ("Here:\n```py\ndef add(a, b): return 0\n```\nBetter:\n```python\ndef add(a, b):\n    return a + b\n```", 1.0,
     "the last block counts"),
    ("```python\ndef add(a, b):\n    return a + b", 1.0, "an unclosed final fence still counts"),
    ("```python\ndef add(a, b)\n    return a + b\n```", 0.0, "syntax error: the program fails, every test fails"),
    ("```python\nimport os\nos.remove('/etc/passwd')\n```", 0.0, "hostile: no /etc in the sandbox, the program fails"),
    ("```python\nwhile True: pass\n```", 0.0, "never finishes: timeout, 0"),
    ("def add(a, b):\n    return a + b", None, "no code block: unscorable"),
])
def test_verify_code_table(response, score, why):
    v = verify_code(response, TESTS, timeout_s=2.0)
    if score is None:
        assert v.score is None and v.reward == 0.0 and "unscorable" in v.detail, why
    else:
        assert v.score == pytest.approx(score), (why, v.detail)
        assert v.total == 3 and v.passed == round(score * 3)


def test_details_say_why():
    assert "[timeout]" in verify_code("```python\nwhile True: pass\n```", TESTS, timeout_s=1.0).detail
    assert "SyntaxError" in verify_code("```python\ndef add(:\n```", TESTS).detail
    assert "first failure test 0: AssertionError" in verify_code("```python\ndef add(a, b): return 0\n```", TESTS).detail
    assert verify_code("```python\nx = 1\n```", []).score is None


def test_extract_code():
    assert extract_code("no code") is None
    assert extract_code("```\nx = 1\n```") == "x = 1\n"


def test_verify_dispatches_on_the_row():
    assert verify("```python\ndef add(a, b):\n    return a + b\n```", {"answer": "", "tests": TESTS}).score == 1.0
    assert verify("The answer is \\boxed{4}.", {"answer": "4"}).score == 1.0


def test_code_task_reference_solutions_pass():
    for split in ("train", "test"):
        for row in load_task("code", split):
            assert verify(row["answer"], row).score == 1.0, row["id"]
            assert verify("```python\ndef nothing():\n    pass\n```", row).score == 0.0


def humaneval_rows() -> list[dict]:
    if not HUMANEVAL.exists():
        pytest.skip(f"{HUMANEVAL} not found: ../shared is not beside the project")
    return [json.loads(line) for line in gzip.open(HUMANEVAL, "rt") if line.strip()]


class _FlipFirstOperator(ast.NodeTransformer):
    """A simple mutant: the first comparison or arithmetic operator of the body, inverted."""

    SWAP: ClassVar[dict] = {ast.Lt: ast.GtE, ast.GtE: ast.Lt, ast.Gt: ast.LtE, ast.LtE: ast.Gt, ast.Eq: ast.NotEq, ast.NotEq: ast.Eq,
            ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Add, ast.In: ast.NotIn, ast.NotIn: ast.In}

    def __init__(self):
        self.done = False

    def visit_Compare(self, node):
        if not self.done and type(node.ops[0]) in self.SWAP:
            node.ops[0] = self.SWAP[type(node.ops[0])]()
            self.done = True
        return self.generic_visit(node)

    def visit_BinOp(self, node):
        if not self.done and type(node.op) in self.SWAP:
            node.op = self.SWAP[type(node.op)]()
            self.done = True
        return self.generic_visit(node)


def _humaneval_case(row: dict) -> tuple[str, float, float, float | None]:
    """(task id, canonical score, `return None` stub score, operator mutant score or None)."""
    tests = humaneval_tests(row["test"], row["entry_point"])
    program = row["prompt"] + row["canonical_solution"]
    judge = {"timeout_s": 10.0, "prelude": row["prompt"], "entry_point": row["entry_point"]}  # the prompt is task data
    canonical = verify_code("", tests, program=program, **judge).score
    stub = verify_code("", tests, program=row["prompt"] + "    return None\n", **judge).score
    flip = _FlipFirstOperator()
    tree = flip.visit(ast.parse(program))
    mutant = verify_code("", tests, program=ast.unparse(tree), **judge).score if flip.done else None
    return row["task_id"], canonical, stub, mutant


@pytest.mark.slow
def test_humaneval_canonical_solutions_pass_and_mutants_fail():
    rows = humaneval_rows()
    with ThreadPoolExecutor(4) as pool:  # each case waits on its sandbox child
        cases = list(pool.map(_humaneval_case, rows))
    assert len(cases) == 164
    assert [(t, c) for t, c, _, _ in cases if c != 1.0] == []
    assert [t for t, _, stub, _ in cases if stub == 1.0] == []  # every `return None` stub fails
    mutants = [(t, m) for t, _, _, m in cases if m is not None]
    survivors = [t for t, m in mutants if m == 1.0]
    # Equivalent mutants exist (e.g. `<` flipped where both branches agree): at most 5% survive.
    assert len(mutants) >= 130 and len(survivors) <= 0.05 * len(mutants), survivors
