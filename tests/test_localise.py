"""The arith process check and where token scores put the blame (prime.tasks.arith, prime.math.localise)."""

import pytest

from prime.math.localise import localisation_rates, localise, token_lines
from prime.tasks import load_task
from prime.tasks.arith import first_wrong_line, worked_lines

PROMPT = "Start with 5. Multiply by 3. Subtract 4. What is the result?"
RIGHT = "Multiply by 3: 5 * 3 = 15\nSubtract 4: 15 - 4 = 11\nThe answer is \\boxed{11}."


def test_worked_lines_reproduce_every_reference_solution():
    for split in ("train", "test"):
        for row in load_task("arith", split)[:500]:
            assert "\n".join(worked_lines(row["prompt"])) == row["solution"]


@pytest.mark.parametrize("response, expected", [
    (RIGHT, None),                                                                   # right
    ("Multiply by 3: 5 * 3 = 15\nSubtract 4: 15 - 4 = 11", None),                   # right, unfinished
    ("Multiply by 3: 5 * 3 = 16\nSubtract 4: 16 - 4 = 12\nThe answer is \\boxed{12}.", 0),  # wrong result
    ("Multiply by 3: 5 * 3 = 15\nSubtract 4: 15 - 4 = 12\nThe answer is \\boxed{12}.", 1),  # carried error later
    ("Multiply by 3: 5 * 3 = 15\nAdd 4: 15 + 4 = 19\nThe answer is \\boxed{19}.", 1),      # wrong operation
    ("Multiply by 3: 5 * 3 = 15\nThe answer is \\boxed{15}.", 1),                         # skipped step
    ("Multiply by 3: 5 * 3 = 15\nSubtract 4: 15 - 4 = 11\nThe answer is \\boxed{12}.", 2),  # wrong answer line
    (RIGHT + "\nAdd 1: 11 + 1 = 12", 3),                                             # a line after the answer
])
def test_first_wrong_line(response, expected):
    assert first_wrong_line(PROMPT, response) == expected


def test_not_arith_is_not_checked():
    assert worked_lines("What is 2 + 2?") is None
    assert first_wrong_line("What is 2 + 2?", "5") is None


def test_token_lines():
    assert token_lines(["a", "\n", "b", "\nc", "d\n", "e"]) == [0, 0, 1, 1, 2, 3]
    assert token_lines([]) == []


def test_localise_by_hand():
    tokens = ["x", "=", "1", "\n", "y", "=", "9", "\n", "z"]  # lines 0, 1, 2 (4, 4, 1 tokens)
    scores = [0.0, -0.1, 0.0, 0.0, 0.0, 0.0, -0.3, 0.05, 0.0]
    r = localise(scores, tokens, first_wrong=1)
    assert r == {"line_hit": 1.0, "line_chance": 1 / 3, "token_hit": 1.0, "token_chance": 4 / 9}
    # the line sum decides the line, the single token the token: they can disagree
    scores = [-0.2, -0.2, 0.0, 0.0, 0.0, 0.0, -0.3, 0.0, 0.0]
    r = localise(scores, tokens, first_wrong=1)
    assert r["line_hit"] == 0.0 and r["token_hit"] == 1.0
    assert localise(scores, tokens, first_wrong=5) is None  # no token on that line
    with pytest.raises(ValueError):
        localise([0.0], tokens, 0)


def test_localisation_rates():
    hit = {"line_hit": 1.0, "line_chance": 0.5, "token_hit": 0.0, "token_chance": 0.25}
    miss = {"line_hit": 0.0, "line_chance": 0.25, "token_hit": 1.0, "token_chance": 0.25}
    assert localisation_rates([hit, None, miss]) == {"line_hit": 0.5, "line_chance": 0.375, "token_hit": 0.5,
                                                     "token_chance": 0.25, "n": 2}
    assert localisation_rates([None])["line_hit"] is None
