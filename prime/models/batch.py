"""A padded batch of prompt + response token ids."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Batch:
    """Prompt+response token ids, padded. All (B, T)."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    response_mask: torch.Tensor


def make_batch(prompts: list[list[int]], responses: list[list[int]], pad_id: int, padding_side: str = "right") -> Batch:
    """Concatenate prompt and response ids per row and pad to (B, T) on either side."""
    rows = [p + r for p, r in zip(prompts, responses)]
    T = max(len(r) for r in rows)
    ids = torch.full((len(rows), T), pad_id, dtype=torch.long)
    attn = torch.zeros((len(rows), T), dtype=torch.long)
    resp = torch.zeros((len(rows), T), dtype=torch.long)
    for b, (p, r) in enumerate(zip(prompts, responses)):
        n = len(p) + len(r)
        start = 0 if padding_side == "right" else T - n
        ids[b, start : start + n] = torch.tensor(p + r)
        attn[b, start : start + n] = 1
        resp[b, start + len(p) : start + n] = 1
    return Batch(ids, attn, resp)
