"""The trusted side of the code verifier: tests run here, never in the sandbox (PRIME_SPEC §3).

Assert-style tests (HumanEval's `check(candidate)`, our `data/code` rows) are executed in this
process with `candidate` (and every function name the program defines that the task's own
prelude does not) bound to a proxy: calling it sends the arguments to the sandboxed program
(prime.sandbox.CallSession) and returns what the program returned, as plain data
(prime.sandbox.plaindata). So a test compares values made of built-in types with Python's own `==`;
the program cannot reach the test list, the runner, the results or the reference solution,
and cannot forge a pass. stdin/stdout tests (APPS, CodeContests, TACO) run the program as a
script in a fresh sandbox per case and compare its output here.

The task's prelude (HumanEval's prompt: helpers such as `poly` or `encode_cyclic` that tests
use) is task data, trusted, and runs here; its definitions win over the program's, except the
entry point, which is always the program's.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass, field

from prime.sandbox import DEFAULT_LIMITS, CallFailed, CallSession, Limits, SandboxEnded, run_io
from prime.sandbox.plaindata import PlainDataError


@dataclass
class TestOutcome:
    ok: bool
    detail: str


@dataclass
class Report:
    """Per-test outcomes and how the program's run ended (ok, timeout, memory limit, …)."""

    outcomes: list[TestOutcome] = field(default_factory=list)
    reason: str = "ok"
    program_error: str = ""

    @property
    def passed(self) -> int:
        return sum(o.ok for o in self.outcomes)


class Proxy:
    """Stands for one of the program's functions inside the trusted test code."""

    def __init__(self, session: CallSession, name: str):
        self._session, self.__name__ = session, name

    def __call__(self, *args, **kwargs):
        try:
            return self._session.call(self.__name__, args, kwargs)
        except CallFailed as e:
            # re-raised as the built-in exception it was, so a test may expect e.g. ValueError
            kind = getattr(builtins, e.error, None)
            if isinstance(kind, type) and issubclass(kind, Exception) and e.error != "NotPlainData":
                raise kind(e.message)
            raise ProgramError(f"{e.error}: {e.message}" if e.message else e.error) from None

    def __repr__(self):
        return f"<the program's {self.__name__}>"


class ProgramError(Exception):
    """The program's function failed in a way that has no built-in exception type."""


def _why(e: BaseException) -> str:
    text = str(e)
    return f"{type(e).__name__}: {text}"[:300] if text else type(e).__name__


def run_assert_tests(program: str, tests: list[str], prelude: str = "", entry_point: str | None = None,
                     limits: Limits = DEFAULT_LIMITS) -> Report:
    """Each test snippet, run here against the sandboxed program; one sandbox for all of them."""
    base: dict = {"__name__": "tests"}
    if prelude:
        exec(compile(prelude, "<prelude>", "exec"), base)  # noqa: S102 - task data, trusted
    with CallSession(program, limits) as session:
        if not session.ready:
            error = session.load_error or session.reason()
            return Report([TestOutcome(False, f"program: {error}") for _ in tests], session.reason(), error)
        proxies = {n: Proxy(session, n) for n in session.names if n not in base}
        if entry_point:
            proxies[entry_point] = proxies["candidate"] = Proxy(session, entry_point)
        outcomes: list[TestOutcome] = []
        for i, test in enumerate(tests):
            namespace = {**base, **proxies}
            try:
                exec(compile(test, f"<test {i}>", "exec"), namespace)  # noqa: S102 - task data, trusted
                outcomes.append(TestOutcome(True, "ok"))
            except SandboxEnded as e:
                outcomes += [TestOutcome(False, f"the program's run ended: {e.reason}")] * (len(tests) - i)
                break
            except PlainDataError as e:
                outcomes.append(TestOutcome(False, f"argument not plain data: {e}"))
            except Exception as e:  # noqa: BLE001 - a failing test, whatever it raised
                outcomes.append(TestOutcome(False, _why(e)))
        return Report(outcomes, session.reason())


def normalise_output(text: str) -> str:
    """Output as judges compare it: trailing whitespace of each line and trailing blank lines dropped."""
    return "\n".join(line.rstrip() for line in text.strip("\n").splitlines()).rstrip()


def run_io_tests(program: str, cases: list[dict], limits: Limits = DEFAULT_LIMITS) -> Report:
    """Each {input, output} case: the program as a script in a fresh sandbox; stdout compared here."""
    outcomes, reason = [], "ok"
    for case in cases:
        run = run_io(program, str(case.get("input", "")), limits)
        if run.reason != "ok":
            reason = run.reason
            last = run.stderr.strip().splitlines()[-1:] or [""]
            outcomes.append(TestOutcome(False, f"{run.reason}{': ' + last[0][:200] if last[0] else ''}"))
        elif normalise_output(run.stdout) == normalise_output(str(case.get("output", ""))):
            outcomes.append(TestOutcome(True, "ok"))
        else:
            outcomes.append(TestOutcome(False, f"wrong output: {normalise_output(run.stdout)[:80]!r}"))
    return Report(outcomes, reason)
