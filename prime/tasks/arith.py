"""The `arith` task: seeded multi-step integer problems, one worked step per line.

A problem chains 3 to 6 operations on a start value:

    prompt:   "Start with 7. Add 5. Multiply by 3. Subtract 4. What is the result?"
    solution: "Add 5: 7 + 5 = 12\nMultiply by 3: 12 * 3 = 36\nSubtract 4: 36 - 4 = 32\nThe answer is \\boxed{32}."

Each step restates its instruction before computing it, as a person would when working
through a list; it also lets a small model find its place in the prompt by matching text.

Values stay in 0..99 (a subtraction that would go below 0 becomes an addition, a
product above 99 becomes an addition), so the task is hard for a tiny model because of
the carries and the chain of steps, not because of the size of the numbers.
"""

from __future__ import annotations

import random

MIN_STEPS, MAX_STEPS = 3, 6
MAX_VALUE = 99
SPLITS = {"train": (12_000, 1), "val": (500, 2), "test": (500, 3)}  # size, seed


def make_problem(rng: random.Random) -> dict:
    """One problem: prompt text, worked solution (one step per line), integer answer."""
    value = rng.randint(2, 9)
    n_steps = rng.randint(MIN_STEPS, MAX_STEPS)
    words, lines = [f"Start with {value}."], []
    for _ in range(n_steps):
        op = rng.choice("+-*")
        arg = rng.randint(2, 3) if op == "*" else rng.randint(1, 9)
        if op == "*" and value * arg > MAX_VALUE:
            op = "+"
        if op == "-" and value - arg < 0:
            op = "+"
        new = {"+": value + arg, "-": value - arg, "*": value * arg}[op]
        if new > MAX_VALUE:
            op, new = "-", value - arg
        instruction = {"+": f"Add {arg}", "-": f"Subtract {arg}", "*": f"Multiply by {arg}"}[op]
        words.append(instruction + ".")
        lines.append(f"{instruction}: {value} {op} {arg} = {new}")
        value = new
    words.append("What is the result?")
    lines.append(f"The answer is \\boxed{{{value}}}.")
    return {"prompt": " ".join(words), "solution": "\n".join(lines), "answer": str(value)}


def generate(n: int, seed: int, split: str = "train") -> list[dict]:
    """`n` problems, identical for the same (n, seed); ids are `arith-<split>-<index>`."""
    rng = random.Random(seed)
    return [{"id": f"arith-{split}-{i}", **make_problem(rng)} for i in range(n)]


def generate_splits() -> dict[str, list[dict]]:
    """The committed files' content. Test and validation prompts never occur in train."""
    out = {name: generate(n, seed, name) for name, (n, seed) in SPLITS.items()}
    held_out = {r["prompt"] for name in ("val", "test") for r in out[name]}
    out["train"] = [r for r in out["train"] if r["prompt"] not in held_out]
    return out


# ---------------------------------------------------------------------------- the process check

INSTRUCTION = {"Add": "+", "Subtract": "-", "Multiply by": "*"}


def worked_lines(prompt: str) -> list[str] | None:
    """The correct worked solution of an arith prompt, one line per step plus the answer line;
    None if the prompt is not in the task's form."""
    import re

    m = re.fullmatch(r"Start with (\d+)\. (.*)What is the result\?", prompt.strip())
    if not m:
        return None
    value, lines = int(m.group(1)), []
    for instruction, arg in re.findall(r"(Add|Subtract|Multiply by) (\d+)\.", m.group(2)):
        op, arg = INSTRUCTION[instruction], int(arg)
        new = {"+": value + arg, "-": value - arg, "*": value * arg}[op]
        lines.append(f"{instruction} {arg}: {value} {op} {arg} = {new}")
        value = new
    return lines + [f"The answer is \\boxed{{{value}}}."]


def first_wrong_line(prompt: str, response: str) -> int | None:
    """Index (0-based, in response.split("\\n")) of the response's first line that is not the
    correct step at that position: a wrong operand, operation or result, a skipped or repeated
    step, a wrong answer line, or any line after the answer. None when every line is right
    (a correct response, or a right but unfinished one) or the prompt is not arith's."""
    expected = worked_lines(prompt)
    if expected is None:
        return None
    for i, line in enumerate(response.split("\n")):
        if i >= len(expected) or line.strip() != expected[i]:
            return i
    return None
