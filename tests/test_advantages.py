"""Advantages (PRIME Eq. 5), whitening, batch_norm, PRM loss, pairwise accuracy, PPO loss,
filtering: fast against slow loops, and hand-computed cases."""

import math

import pytest
import torch

from prime.math.advantages import discounted_returns, outcome_advantages, process_advantages, rloo_baseline, whiten
from prime.math.filtering import filter_decisions
from prime.math.losses import pairwise_accuracy, pairwise_accuracy_pooled, ppo_loss, prm_ce_loss
from prime.math.rewards import batch_norm_rewards


def random_batch(P=3, K=4, T=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, T + 1, (P * K,), generator=g)
    mask = (torch.arange(T).unsqueeze(0) < lengths.unsqueeze(1)).float()  # (B, T)
    return torch.randn(P * K, T, generator=g) * mask, mask, (torch.rand(P * K, generator=g) > 0.5).float()


# ---- slow references: the formulas of PRIME_SPEC, written as loops

def slow_advantages(r, mask, o, K, gamma=1.0, baseline="paper"):
    B, T = r.shape
    A = torch.zeros(B, T)
    for i in range(B):
        group = range((i // K) * K, (i // K) * K + K)
        others = [j for j in group if j != i]
        A_out = o[i] - sum(o[j] for j in others) / (K - 1)
        means = {j: sum(r[j, s] for s in range(T) if mask[j, s]) / max(1, mask[j].sum()) for j in group}
        for t in range(T):
            if not mask[i, t]:
                continue
            total = 0.0
            for s in range(t, T):
                if mask[i, s]:
                    if baseline == "paper":
                        shaped = r[i, s] - sum(means[j] for j in others) / (K - 1)
                    else:
                        shaped = r[i, s] * K / (K - 1) - sum(means[j] for j in group) / (K - 1)
                    total += gamma ** (s - t) * shaped
            A[i, t] = A_out + total
    return A


@pytest.mark.parametrize("baseline", ["paper", "code"])
@pytest.mark.parametrize("gamma", [1.0, 0.9])
def test_advantages_fast_against_slow(baseline, gamma):
    for seed in range(3):
        r, mask, o = random_batch(seed=seed)
        fast = outcome_advantages(o, mask, 4) + process_advantages(r, mask, 4, gamma, baseline)
        torch.testing.assert_close(fast, slow_advantages(r, mask, o, 4, gamma, baseline), atol=1e-5, rtol=1e-5)


def test_outcome_advantage_hand_case():
    # one prompt, K = 4, labels (1, 0, 0, 1): baselines (1/3, 2/3, 2/3, 1/3) -> A = (2/3, −2/3, −2/3, 2/3)
    o = torch.tensor([1.0, 0.0, 0.0, 1.0])
    torch.testing.assert_close(rloo_baseline(o, 4), torch.tensor([1 / 3, 2 / 3, 2 / 3, 1 / 3]))
    A = outcome_advantages(o, torch.ones(4, 2), 4)
    torch.testing.assert_close(A[:, 0], torch.tensor([2 / 3, -2 / 3, -2 / 3, 2 / 3]))


def test_process_advantage_hand_case():
    # K = 2, one prompt. Response 0: rewards (0.2, 0.4), mean 0.3. Response 1: (0.1,), mean 0.1.
    # Response 0's tokens subtract the other's mean 0.1: shaped (0.1, 0.3) -> returns (0.4, 0.3).
    # Response 1 subtracts 0.3: shaped (−0.2,) -> return −0.2.
    r = torch.tensor([[0.2, 0.4], [0.1, 0.0]])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    torch.testing.assert_close(process_advantages(r, mask, 2), torch.tensor([[0.4, 0.3], [-0.2, 0.0]]))


def test_discounted_returns_hand_case():
    # γ = 0.5, rewards (1, 2, 4): returns (1 + 0.5·2 + 0.25·4, 2 + 0.5·4, 4) = (3, 4, 4)
    torch.testing.assert_close(discounted_returns(torch.tensor([[1.0, 2.0, 4.0]]), torch.ones(1, 3), 0.5),
                               torch.tensor([[3.0, 4.0, 4.0]]))


def test_whiten_against_slow():
    A, mask, _ = random_batch(seed=4)
    vals = [A[b, t].item() for b in range(A.shape[0]) for t in range(A.shape[1]) if mask[b, t]]
    mean = sum(vals) / len(vals)
    var = sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)
    w = whiten(A, mask)
    for b in range(A.shape[0]):
        for t in range(A.shape[1]):
            expected = (A[b, t].item() - mean) / math.sqrt(var + 1e-8) if mask[b, t] else 0.0
            assert w[b, t].item() == pytest.approx(expected, abs=1e-5)


def test_batch_norm_hand_case():
    # returns of row 0: (1 + (−3), −3) = (−2, −3); row 1: (0.5,). max |return| = 3 -> divide by 3 + 1e-6
    r = torch.tensor([[1.0, -3.0], [0.5, 0.0]])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    torch.testing.assert_close(batch_norm_rewards(r, mask), r * mask / (3 + 1e-6))


def test_prm_ce_loss_hand_case():
    # r_φ = 0 -> σ = 0.5 -> loss ln 2 whatever the label; r_φ = ln 3 -> σ = 0.75, label 1 -> −ln 0.75
    assert prm_ce_loss(torch.zeros(3), torch.tensor([1.0, 0.0, 0.5])).item() == pytest.approx(math.log(2))
    assert prm_ce_loss(torch.tensor([math.log(3)]), torch.tensor([1.0])).item() == pytest.approx(-math.log(0.75), abs=1e-6)


def slow_pairwise_pooled(r, o, K):
    num = den = 0.0
    for p in range(len(r) // K):
        for i in range(K):
            for j in range(i + 1, K):
                a, b = p * K + i, p * K + j
                w = abs(o[a] - o[b])
                if w == 0:
                    continue
                right = 0.5 if r[a] == r[b] else float((r[a] - r[b]) * (o[a] - o[b]) > 0)
                num, den = num + w * right, den + w
    return 0.5 if den == 0 else num / den


def slow_dpo_accuracy(r, o, K):
    """PRIME-RL's / veRL's compute_dpo_accuracy, loop by loop: a weighted accuracy per group
    (0.5 without a pair of different labels), then the mean over groups."""
    per_group = []
    for p in range(len(r) // K):
        num = den = 0.0
        for i in range(K):
            for j in range(i + 1, K):
                a, b = p * K + i, p * K + j
                w = abs(o[a] - o[b])
                num += w * float((r[a] - r[b] > 0) == (o[a] - o[b] > 0))
                den += w
        per_group.append(0.5 if den == 0 else num / den)
    return sum(per_group) / len(per_group)


def test_pairwise_accuracy_fast_against_slow():
    g = torch.Generator().manual_seed(0)
    for K in (2, 4, 8):
        for _ in range(5):
            r = torch.randn(3 * K, generator=g)
            r[1] = r[0]  # a tie
            o = torch.randint(0, 3, (3 * K,), generator=g).float() / 2  # soft labels 0, 0.5, 1
            assert pairwise_accuracy(r, o, K).item() == pytest.approx(slow_dpo_accuracy(r.tolist(), o.tolist(), K))
            assert pairwise_accuracy_pooled(r, o, K).item() == pytest.approx(slow_pairwise_pooled(r.tolist(), o.tolist(), K))
    assert pairwise_accuracy(torch.randn(4), torch.ones(4), 4).item() == 0.5  # no pair with different labels
    assert pairwise_accuracy_pooled(torch.randn(4), torch.ones(4), 4).item() == 0.5


def test_pairwise_accuracy_is_a_mean_over_groups_hand_case():
    # Group 1: labels 1,0,0,0, rewards ordered right for all 3 pairs -> 1.0.
    # Group 2: labels 1,1,1,0, only the pair (y1, y4) ordered right of 3 -> 1/3.
    # References: mean over groups (1 + 1/3) / 2 = 2/3. Pooled: 4 of 6 pairs, 2/3 too...
    o = torch.tensor([1.0, 0, 0, 0, 1, 1, 1, 0])
    r = torch.tensor([3.0, 0, 1, 2, 5, -1, -2, 0])
    assert pairwise_accuracy(r, o, 4).item() == pytest.approx(2 / 3)
    # ...but add a group with soft labels 1,1,1,0.5 (3 pairs of weight 0.5), all ordered wrong:
    # group mean (1 + 1/3 + 0) / 3 = 4/9; pooled (3 + 1 + 0) / (3 + 3 + 1.5) = 8/15.
    o3, r3 = torch.cat([o, torch.tensor([1.0, 1, 1, 0.5])]), torch.cat([r, torch.tensor([0.0, 0.5, 0.5, 1])])
    assert pairwise_accuracy(r3, o3, 4).item() == pytest.approx(4 / 9)
    assert pairwise_accuracy_pooled(r3, o3, 4).item() == pytest.approx(8 / 15)
    # Ties (every reward 0, as at step 0): the references count a tie as "label_i ≤ label_j".
    assert pairwise_accuracy(torch.zeros(4), torch.tensor([0.0, 1, 1, 1]), 4).item() == 1.0
    assert pairwise_accuracy(torch.zeros(4), torch.tensor([1.0, 0, 0, 0]), 4).item() == 0.0
    assert pairwise_accuracy_pooled(torch.zeros(4), torch.tensor([1.0, 0, 0, 0]), 4).item() == 0.5


def test_ppo_loss_hand_case():
    # A = 1: ratio 1.5 is clipped to 1.2 -> max(−1.5, −1.2) = −1.2. A = −1: ratio 0.5 clipped to 0.8
    # -> max(0.5, 0.8) = 0.8. Mean over the two tokens: (−1.2 + 0.8) / 2 = −0.2; both clipped.
    logp = torch.log(torch.tensor([[1.5, 0.5]]))
    loss, stats = ppo_loss(logp, torch.zeros(1, 2), torch.tensor([[1.0, -1.0]]), torch.ones(1, 2))
    assert loss.item() == pytest.approx(-0.2, abs=1e-6)
    assert stats["pg_clipfrac"] == 1.0


def test_ppo_loss_fast_against_slow():
    A, mask, _ = random_batch(seed=5)
    logp, old = torch.randn_like(A) * 0.3, torch.randn_like(A) * 0.3
    loss, _ = ppo_loss(logp, old, A, mask)
    terms = [max(-A[b, t] * math.exp(logp[b, t] - old[b, t]), -A[b, t] * min(max(math.exp(logp[b, t] - old[b, t]), 0.8), 1.2))
             for b in range(A.shape[0]) for t in range(A.shape[1]) if mask[b, t]]
    assert loss.item() == pytest.approx(float(sum(terms) / len(terms)), abs=1e-5)


def test_filter_inclusive_bounds():
    acc = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0, 0.2, 0.8]).float()  # 0.2 and 0.8 in float32: still kept
    assert filter_decisions(acc) == ["too_hard", "kept", "kept", "kept", "too_easy", "kept", "kept"]
    assert filter_decisions(acc[:2], truncated=torch.tensor([False, True])) == ["too_hard", "truncated"]
