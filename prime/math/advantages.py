"""RLOO advantages of PRIME (paper Eq. 5) and whitening. Pure functions; imports only torch.

Axes: P prompts, K samples each, B = P·K responses (grouped prompt-major: row b belongs to
prompt b // K), T tokens.
"""

from __future__ import annotations

import itertools

import torch


def rloo_baseline(values: torch.Tensor, K: int) -> torch.Tensor:
    """Leave-one-out mean: for each response, the mean of the other K−1 in its group.

    values: (B,) -> (B,).
    """
    grouped = values.view(-1, K)  # (P, K)
    return ((grouped.sum(-1, keepdim=True) - grouped) / (K - 1)).reshape(-1)


def discounted_returns(rewards: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0) -> torch.Tensor:
    """Σ_{s≥t} γ^{s−t} r_s over response tokens. rewards, mask: (B, T) -> (B, T)."""
    masked = rewards * mask
    if gamma == 1.0:
        return masked.flip(-1).cumsum(-1).flip(-1) * mask
    out = torch.zeros_like(masked)
    running = torch.zeros(masked.shape[0], dtype=masked.dtype, device=masked.device)
    for t in reversed(range(masked.shape[1])):
        running = masked[:, t] + gamma * running
        out[:, t] = running
    return out * mask


def outcome_advantages(outcome_reward: torch.Tensor, mask: torch.Tensor, K: int) -> torch.Tensor:
    """First term of Eq. 5: r_o(y_i) − mean_{j≠i} r_o(y_j), on every token of response i.

    The reward sits on the last token and is summed backwards with γ = 1, so each token of
    response i gets the same value. outcome_reward: (B,), mask: (B, T) -> (B, T).
    """
    return ((outcome_reward - rloo_baseline(outcome_reward, K)).unsqueeze(-1) * mask)


def process_advantages(process_reward: torch.Tensor, mask: torch.Tensor, K: int, gamma: float = 1.0,
                       baseline: str = "paper") -> torch.Tensor:
    """Second term of Eq. 5: Σ_{s≥t} γ^{s−t} [ r_φ(y_i^s) − mean_{j≠i} r̄_φ(y_j) ].

    r̄_φ(y_j) = Σ_s r_φ(y_j^s) / T_j, response j's mean token reward.
    baseline="code": the authors' code, r·K/(K−1) − Σ_{all j} r̄_φ(y_j)/(K−1) per token
    (PRIME_SPEC §5), which differs from the paper's form for token rewards.
    process_reward, mask: (B, T) -> (B, T).
    """
    lengths = mask.sum(-1).clamp(min=1)  # (B,)
    mean_reward = (process_reward * mask).sum(-1) / lengths  # (B,) r̄_φ(y_j)
    if baseline == "paper":
        shaped = process_reward - rloo_baseline(mean_reward, K).unsqueeze(-1)
    elif baseline == "code":
        group_sum = mean_reward.view(-1, K).sum(-1).repeat_interleave(K)  # (B,)
        shaped = process_reward * K / (K - 1) - (group_sum / (K - 1)).unsqueeze(-1)
    else:
        raise ValueError(f"unknown process baseline {baseline!r}; expected 'paper' or 'code'")
    return discounted_returns(shaped, mask, gamma)


def whiten(values: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(A − mean) / sqrt(var + eps) over all response tokens of the batch, unbiased variance;
    the mean is not added back (PRIME_SPEC §5). values, mask: (B, T) -> (B, T)."""
    n = mask.sum()
    mean = (values * mask).sum() / n
    var = (((values - mean) * mask) ** 2).sum() / (n - 1)
    return (values - mean) * torch.rsqrt(var + eps) * mask


def process_share(returns: torch.Tensor, outcome_term: torch.Tensor, mask: torch.Tensor) -> float:
    """How much of the update is the dense reward's: Var(process term) / Var(returns) over the
    response tokens, the process term being returns − outcome term (Eq. 5). 0: the update is
    RLOO's; 1: the outcome term is constant. returns, outcome_term, mask: (B, T) -> float."""
    tokens = mask.bool()
    total = returns[tokens].var()
    return ((returns - outcome_term)[tokens].var() / total).item() if total > 0 else 0.0


# ---------------------------------------------------------------------------- process credit forms
# The paper's credit (process_advantages above) gives token t the sum of the future token rewards.
# Two bounded alternatives from later work act on line-level rewards: a response's lines are its
# steps, and a line's reward is the sum of its tokens' rewards, placed on the line's last token.

def line_rewards(rewards: torch.Tensor, line_end: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Each line's summed token rewards on its last token, 0 elsewhere.

    line_end: (B, T), 1 on the last response token of every line (a response's last token ends
    its last line). rewards, line_end, mask: (B, T) -> (B, T).
    """
    ends = line_end * mask
    segment = (ends.cumsum(-1) - ends).long()  # (B, T): the line each token is on
    sums = torch.zeros_like(rewards).scatter_add_(1, segment, rewards * mask)  # (B, T): line sums by line index
    return sums.gather(1, segment) * ends


def min_credit(rewards: torch.Tensor, line_end: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """PURE's min-form credit (arXiv 2504.15275): a token of line k gets min_{j ≥ k} of the line
    rewards, the worst step still ahead, instead of their sum. (B, T) -> (B, T)."""
    ends = line_end * mask
    segment = (ends.cumsum(-1) - ends).long()  # (B, T)
    sums = torch.zeros_like(rewards).scatter_add_(1, segment, rewards * mask)  # (B, T): line k's reward at index k
    n_lines = ends.sum(-1, keepdim=True)  # (B, 1)
    index = torch.arange(rewards.shape[1], device=rewards.device).unsqueeze(0)  # (1, T)
    lines = torch.where(index < n_lines, sums, torch.full_like(sums, float("inf")))
    future_min = lines.flip(-1).cummin(-1).values.flip(-1)  # (B, T): min over lines j ≥ k
    return torch.where(mask > 0, future_min.gather(1, segment), torch.zeros_like(rewards))  # padding: 0, not inf


def process_advantages_min(process_reward: torch.Tensor, line_end: torch.Tensor, mask: torch.Tensor,
                           K: int) -> torch.Tensor:
    """Min-form process advantage: min_credit minus the leave-one-out mean of the other K−1
    responses' credit at their first token (their worst line). (B, T) -> (B, T)."""
    credit = min_credit(process_reward, line_end, mask)
    first = credit.gather(1, mask.argmax(-1, keepdim=True)).squeeze(-1)  # (B,): at each response's first token
    return (credit - rloo_baseline(first, K).unsqueeze(-1)) * mask


def clipped_line_rewards(rewards: torch.Tensor, line_end: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Gao et al.'s clip (arXiv 2410.15115) on line rewards: min(line reward, 0), so a process
    reward can only blame, and repeating a step cannot earn credit. (B, T) -> (B, T)."""
    return line_rewards(rewards, line_end, mask).clamp(max=0.0)


def line_ends(token_lines_per_row: list[list[int]], mask: torch.Tensor) -> torch.Tensor:
    """(B, T) 1 on the last token of every line of each response, from each response's line
    index per token (prime.math.localise.token_lines), laid out where mask is 1 (row by row)."""
    flat = []
    for lines in token_lines_per_row:
        flat += [float(a != b) for a, b in itertools.pairwise(lines)] + ([1.0] if lines else [])
    out = torch.zeros_like(mask)
    out[mask.bool()] = torch.tensor(flat, dtype=mask.dtype, device=mask.device)
    return out
