"""Where do token rewards put the blame? Pure functions over one response's tokens and scores.

A response's lines are its steps. Given the index of its first wrong line (for arith,
prime.tasks.arith.first_wrong_line), `localise` says whether the most negative line (by the
sum of its tokens' scores, a step reward as in EurusPRM) and the most negative single token
lie on that line, beside the rates a blind guess would reach: one line in n, and the line's
share of the tokens.
"""

from __future__ import annotations

from collections.abc import Sequence


def token_lines(tokens: Sequence[str]) -> list[int]:
    """The line (0-based) of every token: the line its first character is on, i.e. the number of
    "\n" in the text before it. A token that ends a line with its newline belongs to that line,
    as in the per-line step view (prime.score.line_steps)."""
    out, line = [], 0
    for t in tokens:
        out.append(line)
        line += t.count("\n")
    return out


def localise(scores: Sequence[float], tokens: Sequence[str], first_wrong: int) -> dict | None:
    """Hit or miss of the most negative line and token against `first_wrong`, and chance rates.

    scores: one number per token (a process reward, or a log-prob: lower is more blamed).
    Returns None when the first wrong line has no token (e.g. the response stops before it).
    """
    if len(scores) != len(tokens):
        raise ValueError(f"{len(scores)} scores for {len(tokens)} tokens")
    lines = token_lines(tokens)
    sums: dict[int, float] = {}
    for line, s in zip(lines, scores):
        sums[line] = sums.get(line, 0.0) + float(s)
    if first_wrong not in sums:
        return None
    worst_line = min(sums, key=lambda k: (sums[k], k))  # ties: the earliest line
    worst_token = min(range(len(scores)), key=lambda i: (scores[i], i))
    on_line = sum(1 for line in lines if line == first_wrong)
    return {"line_hit": float(worst_line == first_wrong), "line_chance": 1 / len(sums),
            "token_hit": float(lines[worst_token] == first_wrong), "token_chance": on_line / len(lines)}


def localisation_rates(results: Sequence[dict | None]) -> dict[str, float | None]:
    """Means over the responses that could be localised (None entries skipped)."""
    done = [r for r in results if r is not None]
    keys = ("line_hit", "line_chance", "token_hit", "token_chance")
    return {k: (sum(r[k] for r in done) / len(done) if done else None) for k in keys} | {"n": len(done)}
