"""Code outcome verifier (PRIME_SPEC §3): the last fenced python block, run in the kernel
sandbox (prime.sandbox) and judged by tests that run outside it (prime.sandbox.harness); the score is
the fraction of tests that pass (a soft label). Score and detail come from the same outcomes."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

from prime.sandbox import Limits
from prime.sandbox.harness import run_assert_tests, run_io_tests
from prime.verifiers.math import Verdict

_FENCE = re.compile(r"```[ \t]*(?:python|py|python3)?[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL | re.IGNORECASE)


@dataclass(frozen=True)
class CodeVerdict(Verdict):
    """A Verdict with the test counts: score = passed / total (None when unscorable)."""

    passed: int = 0
    total: int = 0


def extract_code(response: str) -> str | None:
    """The last fenced code block (```python … ```; an unclosed final fence counts), or None."""
    blocks = _FENCE.findall(response)
    return blocks[-1] if blocks else None


def verify_code(response: str, tests: list[str] | None = None, timeout_s: float = 5.0, program: str | None = None,
                prelude: str = "", entry_point: str | None = None, io: list[dict] | None = None,
                limits: Limits | None = None) -> CodeVerdict:
    """Judge the response's program by assert-style `tests` or by stdin/stdout `io` cases.

    `program` overrides extraction (e.g. a HumanEval prompt + completion); `prelude` is the
    task's own trusted code the tests may use (HumanEval's prompt); `entry_point` the function
    the tests call `candidate`. A response without a code block is unscorable; a program that
    fails to load, times out or hits a limit scores what it passed before, with the reason.
    """
    tests, io = list(tests or []), list(io or [])
    total = len(tests) or len(io)
    if not total:
        return CodeVerdict(None, "unscorable: the problem has no tests", 0, 0)
    code = program if program is not None else extract_code(response)
    if code is None:
        return CodeVerdict(None, "unscorable: no ```python block in the response", 0, total)
    limits = limits or Limits(timeout_s=timeout_s)
    if tests:
        report = run_assert_tests(code, tests, prelude=prelude, entry_point=entry_point, limits=limits)
    else:
        report = run_io_tests(code, io, limits=limits)
    passed = report.passed
    if report.program_error:
        detail = f"0/{total} passed; program: {report.program_error}"
    else:
        failed = [f"test {i}: {o.detail}" for i, o in enumerate(report.outcomes) if not o.ok]
        detail = f"{passed}/{total} passed" + (f"; first failure {failed[0]}" if failed else "")
    if report.reason != "ok":
        detail += f" [{report.reason}]"
    return CodeVerdict(passed / total, detail, passed, total)


def humaneval_tests(test: str, entry_point: str) -> list[str]:
    """HumanEval's `check(candidate)` as separate test snippets, one per top-level assert, so
    the score is a pass rate. A check with other statements (loops, setup) stays one test."""
    module = ast.parse(test)
    check = next((n for n in module.body if isinstance(n, ast.FunctionDef) and n.name == "check"), None)
    whole = [f"{test}\ncheck({entry_point})\n"]
    if check is None or not all(isinstance(s, ast.Assert) for s in check.body):
        return whole
    prelude = ast.unparse(ast.Module(body=[n for n in module.body if n is not check], type_ignores=[]))
    return [f"{prelude}\ncandidate = {entry_point}\n{ast.unparse(s)}\n" for s in check.body]
