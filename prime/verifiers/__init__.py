"""Outcome verifiers (PRIME_SPEC §3). Each returns a Verdict; unscorable is explicit."""

from prime.verifiers.code import CodeVerdict, extract_code, humaneval_tests, verify_code
from prime.verifiers.math import Verdict, extract_answer, verify_math

__all__ = ["CodeVerdict", "Verdict", "extract_answer", "extract_code", "humaneval_tests", "verify", "verify_code",
           "verify_math"]


def verify(response: str, row: dict) -> Verdict:
    """The verifier a task row calls for: its `tests` (code) or its `answer` (math)."""
    if row.get("tests"):
        return verify_code(response, row["tests"])
    return verify_math(response, row["answer"])
