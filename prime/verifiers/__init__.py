"""Outcome verifiers (PRIME_SPEC §3). Each returns a Verdict; unscorable is explicit."""

from prime.verifiers.math import Verdict, extract_answer, verify_math

__all__ = ["Verdict", "extract_answer", "verify_math"]
