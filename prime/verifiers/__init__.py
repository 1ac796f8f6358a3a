"""Outcome verifiers (PRIME_SPEC §3). Each returns a Verdict; unscorable is explicit."""

from prime.verifiers.code import CodeVerdict, extract_code, humaneval_tests, verify_code
from prime.verifiers.math import Verdict, extract_answer, verify_math

__all__ = ["CodeVerdict", "Verdict", "extract_answer", "extract_code", "humaneval_tests", "verify", "verify_code",
           "verify_math"]


CODE_FIELDS = ("tests", "io", "prelude", "entry_point")  # what a code row gives its verifier


def verify(response: str, row: dict) -> Verdict:
    """The verifier a task row calls for: its `tests` or `io` cases (code) or its `answer` (math)."""
    if row.get("tests") or row.get("io"):
        return verify_code(response, row.get("tests"), prelude=row.get("prelude") or "",
                           entry_point=row.get("entry_point"), io=row.get("io"))
    return verify_math(response, row["answer"])
