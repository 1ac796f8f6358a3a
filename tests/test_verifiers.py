"""prime.verifiers.verify_math: a table of cases, each with its reason."""

import pytest

from prime.verifiers import extract_answer, verify_math

CASES = [
    ("so \\boxed{45}.", "45", 1.0),  # plain integer
    ("\\boxed{1/2}", "0.5", 1.0),  # fraction equals decimal
    ("\\boxed{\\frac{1}{2}}", "0.5", 1.0),  # LaTeX fraction equals decimal
    ("\\boxed{72.0}", "72", 1.0),  # float with a zero fraction equals the integer
    ("\\boxed{1,000}", "1000", 1.0),  # thousands separator
    ("\\boxed{3} then \\boxed{4}", "4", 1.0),  # the last boxed answer counts
    ("\\boxed{3} then \\boxed{4}", "3", 0.0),  # ... not an earlier one
    ("\\boxed{44}", "45", 0.0),  # wrong number
    ("so the answer is 12.", "12", 1.0),  # fallback: "answer is" line
    ("Answer: $7$", "7", 1.0),  # fallback: "Answer:" line with math delimiters
    ("\\boxed{\\frac{a}{b}}", "\\frac{a}{b}", 1.0),  # symbolic equality
    ("\\boxed{2x+2}", "2(x+1)", 1.0),  # sympy-level equality
]


@pytest.mark.parametrize("response, answer, expected", CASES)
def test_verify_math(response, answer, expected):
    v = verify_math(response, answer)
    assert v.score == expected, v.detail


@pytest.mark.parametrize("response", [
    "I do not know",  # no answer at all
    "\\boxed{12",  # cut off: braces never close
    "",  # empty response
])
def test_unscorable_is_explicit_and_rewards_zero(response):
    v = verify_math(response, "12")
    assert v.score is None and v.detail.startswith("unscorable")
    assert v.reward == 0.0


def test_extract_nested_braces():
    assert extract_answer("\\boxed{\\frac{1}{2}}") == "\\frac{1}{2}"
