"""Math outcome verifier (PRIME_SPEC §3): last \\boxed{} answer, equivalence by math-verify."""

from __future__ import annotations

import functools
import logging
import re
import threading
from dataclasses import dataclass

from math_verify import parse, verify

# math-verify warns on every call made without its signal-based timeout; we disable that
# timeout off the main thread (signals only work there, e.g. inside the Gradio server).
logging.getLogger("math_verify").setLevel(logging.ERROR)

_ANSWER_LINE = re.compile(r"(?:answer is|answer:)\s*(.+?)\s*$", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class Verdict:
    """Outcome of verifying one response.

    score: 1.0 / 0.0 for math (a pass rate for code); None when unscorable.
    detail: why, for a human: the extracted answer and the comparison, or the error.
    """

    score: float | None
    detail: str

    @property
    def reward(self) -> float:
        """The outcome reward: an unscorable answer counts as 0 (as in the authors' code)."""
        return 0.0 if self.score is None else self.score


def _last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} (or \\fbox{...}), braces matched; None if absent."""
    start = max(text.rfind("\\boxed{"), text.rfind("\\fbox{"))
    if start < 0:
        return None
    i = text.index("{", start) + 1
    depth, j = 1, i
    while j < len(text):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i:j].strip()
        j += 1
    return None  # unbalanced braces: the answer was cut off


def extract_answer(response: str) -> str | None:
    """The final answer: the last \\boxed{}, else a final "answer is …" / "Answer: …" line."""
    boxed = _last_boxed(response)
    if boxed is not None:
        return boxed
    found = _ANSWER_LINE.findall(response)
    if not found:
        return None
    return found[-1].rstrip(".").strip().strip("$").strip() or None


def _timeout() -> int | None:
    return 5 if threading.current_thread() is threading.main_thread() else None


def verify_math(response: str, answer: str) -> Verdict:
    """Score 1.0 if the response's final answer equals `answer` mathematically, else 0.0.

    Numbers, fractions, LaTeX and sympy-level equality via math-verify, with its float
    tolerance. No answer found, or an answer math-verify cannot parse: unscorable (None).
    """
    extracted = extract_answer(response)
    if extracted is None:
        return Verdict(None, "unscorable: no \\boxed{} answer or 'answer is' line found")
    return _compare(extracted, answer)


_INTEGER = re.compile(r"[+-]?\d+")


@functools.lru_cache(maxsize=1 << 16)
def _compare(extracted: str, answer: str) -> Verdict:
    """The verdict on one extracted answer against one reference, remembered: a group's K
    samples share a reference and often an answer, and math-verify's parse costs ~1 ms. Two
    plain integers compare as integers, which is what math-verify concludes for them (a test
    checks both agree)."""
    if _INTEGER.fullmatch(extracted) and _INTEGER.fullmatch(answer):
        ok = int(extracted) == int(answer)
        return Verdict(1.0 if ok else 0.0, f"extracted {extracted!r} {'==' if ok else '!='} reference {answer!r}")
    return _compare_parsed(extracted, answer)


def _compare_parsed(extracted: str, answer: str) -> Verdict:
    gold = parse(f"\\boxed{{{answer}}}", parsing_timeout=_timeout())
    if not gold:
        return Verdict(None, f"unscorable: reference answer {answer!r} cannot be parsed")
    pred = parse(f"\\boxed{{{extracted}}}", parsing_timeout=_timeout())
    if not pred:
        return Verdict(None, f"unscorable: extracted answer {extracted!r} cannot be parsed")
    try:
        ok = verify(gold, pred, timeout_seconds=_timeout())
    except Exception as e:  # noqa: BLE001 - math-verify raises anything on pathological input; never crash a run
        return Verdict(None, f"unscorable: verifier error {type(e).__name__}: {e}")
    return Verdict(1.0 if ok else 0.0, f"extracted {extracted!r} {'==' if ok else '!='} reference {answer!r}")
