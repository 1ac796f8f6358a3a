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


def _group_pairs(sequence_reward, outcome_reward, K):
    """Within each prompt's group, (Δ reward, Δ label, weight |Δ label| on pairs i < j), each (P, K, K)."""
    r = sequence_reward.view(-1, K)  # (P, K)
    o = outcome_reward.view(-1, K).to(r.dtype)
    d_label = o.unsqueeze(-1) - o.unsqueeze(-2)  # label_i − label_j
    d_reward = r.unsqueeze(-1) - r.unsqueeze(-2)
    upper = torch.triu(torch.ones(K, K, dtype=torch.bool, device=r.device), diagonal=1)
    return d_reward, d_label, d_label.abs() * upper


def pairwise_accuracy(sequence_reward: torch.Tensor, outcome_reward: torch.Tensor, K: int) -> torch.Tensor:
    """`reward_model/dpo_acc_before` exactly as PRIME-RL and veRL's recipe compute it
    (`compute_dpo_accuracy`): per prompt group, over pairs i < j with different labels, the
    |Δ label|-weighted fraction where (r_i − r_j > 0) == (label_i − label_j > 0); 0.5 for a group
    without such a pair; then the plain mean over groups (PRIME_SPEC §2, §9).

    A tie r_i == r_j counts as predicting label_i ≤ label_j, as the references' `> 0` tests do.
    (B,), (B,) -> scalar.
    """
    d_reward, d_label, weight = _group_pairs(sequence_reward, outcome_reward, K)
    agree = ((d_reward > 0) == (d_label > 0)).to(weight.dtype)
    total = weight.sum((-1, -2))  # (P,)
    per_group = torch.where(total > 0, (weight * agree).sum((-1, -2)) / total.clamp(min=1e-30), 0.5)
    return per_group.mean()


def pairwise_accuracy_pooled(sequence_reward: torch.Tensor, outcome_reward: torch.Tensor, K: int) -> torch.Tensor:
    """`reward_model/pairwise_acc_pooled`: the same pairs, pooled over the whole batch (each pair
    weighs |Δ label|, whatever its group), a tie counting as half right; 0.5 for a batch without
    such a pair. Less noisy than the group mean when groups hold few pairs. (B,), (B,) -> scalar.
    """
    d_reward, d_label, weight = _group_pairs(sequence_reward, outcome_reward, K)
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
