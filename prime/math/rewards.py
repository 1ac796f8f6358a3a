"""Implicit process rewards (PRIME_SPEC §1). Pure functions of tensors; imports only torch."""

from __future__ import annotations

import torch


def implicit_rewards(prm_logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor, beta: float) -> torch.Tensor:
    """r_φ(y_t) = β · (log π_φ(y_t|·) − log π_ref(y_t|·)), PRIME Eq. 3.

    prm_logp, ref_logp, mask: (B, T) -> (B, T); 0 outside the response (mask == 0).
    """
    return beta * (prm_logp - ref_logp) * mask


def q_values(rewards: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """q_t = Σ_{s≤t} r_φ(y_s): the running sum, a Q-value by PRIME Prop. 3.1. (B, T) -> (B, T)."""
    return torch.cumsum(rewards * mask, dim=-1) * mask


def batch_norm_rewards(rewards: torch.Tensor, mask: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """PRIME_SPEC §1 normalisation `batch_norm` (both reference code bases, not the paper).

    Divide every token reward by (max over the batch of |reverse cumulative sum of the
    response's token rewards| + eps), so the largest absolute process return is at most 1.
    rewards, mask: (B, T) -> (B, T).
    """
    masked = rewards * mask
    returns = masked.flip(-1).cumsum(-1).flip(-1)  # (B, T): Σ_{s≥t} r_s
    scale = (returns * mask).abs().max() + eps
    return masked / scale


def zero_last_token(rewards: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The rewards with each response's last token set to 0, as veRL's PRIME recipe stores them
    (PRIME_SPEC §11; the paper and PRIME-RL keep it). rewards, mask: (B, T) -> (B, T)."""
    last = mask * (mask.flip(-1).cumsum(-1).flip(-1) == 1)  # (B, T): 1 on each row's last response token
    return rewards * mask * (1 - last)
