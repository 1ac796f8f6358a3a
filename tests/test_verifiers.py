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


INTEGER_PAIRS = [
    ("12", "12"),  # equal
    ("0012", "12"),  # leading zeros
    ("-0", "0"),  # signed zero
    ("+7", "7"),  # explicit plus sign
    ("-15", "15"),  # sign matters
    ("123456789012345678901234567890", "123456789012345678901234567890"),  # beyond float precision
    ("123456789012345678901234567891", "123456789012345678901234567890"),  # differ in the last digit only
    ("3", "4"),  # plainly different
]


@pytest.mark.parametrize("extracted, answer", INTEGER_PAIRS)
def test_integer_shortcut_agrees_with_math_verify(extracted, answer):
    """Two plain integers skip math-verify's parse (prime.verifiers.math._compare): the verdict
    must be the one math-verify gives."""
    from prime.verifiers.math import _compare, _compare_parsed

    assert _compare.__wrapped__(extracted, answer) == _compare_parsed(extracted, answer)


def test_integer_shortcut_agrees_on_random_integers():
    import random

    from prime.verifiers.math import _compare, _compare_parsed

    rng = random.Random(0)
    for _ in range(200):
        a = rng.randint(-10**6, 10**6)
        b = a if rng.random() < 0.5 else a + rng.randint(-3, 3)
        pair = (f"{'0' * rng.randint(0, 2)}{a}" if a >= 0 else str(a), str(b))
        assert _compare.__wrapped__(*pair) == _compare_parsed(*pair), pair
