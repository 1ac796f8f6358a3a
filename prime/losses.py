"""PRM cross-entropy and its pairwise accuracy (PRIME_SPEC §2), PPO clipped loss (§6).
Pure functions; imports only torch."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def prm_ce_loss(sequence_reward: torch.Tensor, outcome_reward: torch.Tensor) -> torch.Tensor:
    """L_CE(φ) = −mean[ r_o·log σ(r_φ(y)) + (1 − r_o)·log(1 − σ(r_φ(y))) ] (PRIME Alg. 1 l. 8).

    sequence_reward: (B,) r_φ(y) = β Σ_t log(π_φ/π_ref); outcome_reward: (B,) in [0, 1]
    (soft labels for code). Computed from logits, so it is stable for large |r_φ(y)|.
    """
    return F.binary_cross_entropy_with_logits(sequence_reward, outcome_reward.to(sequence_reward.dtype))


def pairwise_accuracy(sequence_reward: torch.Tensor, outcome_reward: torch.Tensor, K: int) -> torch.Tensor:
    """Within each prompt's K responses, over pairs with different labels, the |Δ label|-weighted
    fraction the PRM orders like the labels; 0.5 for a batch without such a pair (§2).

    A tie in r_φ counts as half right. (B,), (B,) -> scalar.
    """
    r = sequence_reward.view(-1, K)  # (P, K)
    o = outcome_reward.view(-1, K).to(r.dtype)
    d_label = o.unsqueeze(-1) - o.unsqueeze(-2)  # (P, K, K): label_i − label_j
    d_reward = r.unsqueeze(-1) - r.unsqueeze(-2)
    upper = torch.triu(torch.ones(K, K, dtype=torch.bool, device=r.device), diagonal=1)
    weight = d_label.abs() * upper
    agree = torch.where(d_reward * d_label > 0, 1.0, torch.where(d_reward == 0, 0.5, 0.0))
    total = weight.sum()
    if total == 0:
        return torch.tensor(0.5)
    return (weight * agree).sum() / total


def ppo_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
             clip_eps: float = 0.2) -> tuple[torch.Tensor, dict[str, float]]:
    """PPO clipped surrogate per token, averaged over response tokens (PRIME Eq. 6).

    ratio = exp(log π_θ − log π_θ_old); L = mean_t max(−A·ratio, −A·clip(ratio, 1−ε, 1+ε)).
    All (B, T). Returns (loss, {pg_clipfrac, ppo_kl}).
    """
    n = mask.sum().clamp(min=1)
    log_ratio = (logp - old_logp) * mask
    ratio = torch.exp(log_ratio)
    pg_loss1 = -advantages * ratio
    pg_loss2 = -advantages * torch.clamp(ratio, 1 - clip_eps, 1 + clip_eps)
    loss = (torch.maximum(pg_loss1, pg_loss2) * mask).sum() / n
    with torch.no_grad():
        clipfrac = ((pg_loss2 > pg_loss1).float() * mask).sum() / n
        approx_kl = (-log_ratio * mask).sum() / n  # k1 estimator of KL(old || new), as veRL logs ppo_kl
    return loss, {"pg_clipfrac": clipfrac.item(), "ppo_kl": approx_kl.item()}
