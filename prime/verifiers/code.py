"""Code outcome verifier (PRIME_SPEC §3): the last fenced python block, run against the tests in
the sandbox (prime.sandbox); the score is the fraction of tests that pass (a soft label)."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

from prime.sandbox import run_python
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


def verify_code(response: str, tests: list[str], timeout_s: float = 5.0, program: str | None = None) -> CodeVerdict:
    """Run the response's code, then each test snippet, in one sandboxed child.

    `program` overrides extraction (e.g. a HumanEval prompt + completion). A response without a
    code block is unscorable; a program that fails to run, times out or hits a limit scores 0
    with the reason in `detail`.
    """
    if not tests:
        return CodeVerdict(None, "unscorable: the problem has no tests", 0, 0)
    code = program if program is not None else extract_code(response)
    if code is None:
        return CodeVerdict(None, "unscorable: no ```python block in the response", 0, len(tests))
    result = run_python(code, list(tests), timeout_s=timeout_s)
    by_test = {r["test"]: r for r in result.results}
    passed = sum(1 for i in range(len(tests)) if by_test.get(i, {}).get("ok"))
    if -1 in by_test:
        detail = f"0/{len(tests)} passed; {by_test[-1]['detail']}"
    else:
        failed = [f"test {i}: {by_test[i]['detail'] if i in by_test else 'did not run'}"
                  for i in range(len(tests)) if not by_test.get(i, {}).get("ok")]
        detail = f"{passed}/{len(tests)} passed" + (f"; first failure {failed[0]}" if failed else "")
    if result.reason != "ok":
        detail += f" [{result.reason}]"
    return CodeVerdict(passed / len(tests), detail, passed, len(tests))


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
