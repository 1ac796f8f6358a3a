"""Per-token log-probabilities, computed a chunk of rows at a time. Imports only torch."""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch


def selective_log_softmax(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[target] without keeping the (N, V) log-softmax around.

    logits: (N, V), targets: (N,) -> (N,). Computed in fp32 whatever the logits' dtype,
    because bf16 log-probs lose the small differences that implicit rewards are made of.
    """
    logits = logits.float()
    return logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)


def token_logprobs(
    hidden: torch.Tensor,
    head: Callable[[torch.Tensor], torch.Tensor],
    input_ids: torch.Tensor,
    response_mask: torch.Tensor,
    chunk_rows: int = 1024,
    recompute: bool = False,
) -> torch.Tensor:
    """log π(y_t | x, y_<t) for every response token of a padded batch.

    hidden: (B, T, H) final hidden states; head maps (N, H) -> (N, V) logits.
    input_ids: (B, T); response_mask: (B, T), 1 on response tokens (never on position 0).
    Returns (B, T): entry [b, t] is the log-prob of input_ids[b, t] given the prefix, for
    response tokens, and 0 elsewhere. Only response positions go through the head, in
    chunks of `chunk_rows`, so neither the full (B, T, V) logits nor their log-softmax
    are ever materialised. With gradients, each chunk's fp32 logits stay alive for the backward
    pass (4·V bytes a response token); recompute=True keeps only the chunk's states and computes
    its logits again in the backward pass (one chunk's logits alive at a time, the same numbers).
    """
    if response_mask[:, 0].any():
        raise ValueError("response_mask marks position 0, which has no prefix to predict it from")
    b_idx, t_idx = response_mask.nonzero(as_tuple=True)  # (N,), (N,)
    states = hidden[b_idx, t_idx - 1]  # (N, H): the state before each response token
    targets = input_ids[b_idx, t_idx]  # (N,)
    def piece(h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return selective_log_softmax(head(h), y)

    if recompute and torch.is_grad_enabled():
        from torch.utils.checkpoint import checkpoint

        piece = functools.partial(checkpoint, piece, use_reentrant=False)
    pieces = [piece(states[i : i + chunk_rows], targets[i : i + chunk_rows]) for i in range(0, states.shape[0], chunk_rows)]
    flat = torch.cat(pieces) if pieces else hidden.new_zeros(0, dtype=torch.float32)
    out = torch.zeros(input_ids.shape, dtype=torch.float32, device=hidden.device)  # (B, T)
    return out.index_put((b_idx, t_idx), flat)
