"""Online prompt filtering by sample accuracy (PRIME_SPEC §4). Pure; imports only torch."""

from __future__ import annotations

import torch

KEPT, TOO_EASY, TOO_HARD, TRUNCATED = "kept", "too_easy", "too_hard", "truncated"
SURPLUS = "surplus"  # kept by the filter after the step already had P prompts: put back, sampled again later


def filter_decisions(prompt_acc: torch.Tensor, low: float = 0.2, high: float = 0.8,
                     truncated: torch.Tensor | None = None) -> list[str]:
    """A decision per prompt: kept when low ≤ acc ≤ high (inclusive), too_easy above,
    too_hard below; `truncated` (P,) bool, when given, overrides with "truncated".

    prompt_acc: (P,) mean outcome reward of each prompt's K samples. The bounds are
    compared with a 1e-6 tolerance, so 4/5 in float32 (0.800000012) still counts as 0.8.
    """
    tol = 1e-6
    out = []
    for p, acc in enumerate(prompt_acc.tolist()):
        if truncated is not None and bool(truncated[p]):
            out.append(TRUNCATED)
        elif acc > high + tol:
            out.append(TOO_EASY)
        elif acc < low - tol:
            out.append(TOO_HARD)
        else:
            out.append(KEPT)
    return out
