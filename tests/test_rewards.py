"""prime.math.rewards: implicit process rewards (PRIME Eq. 3) and Q-values (Prop. 3.1)."""

import torch

from prime.math.rewards import implicit_rewards, q_values, zero_last_token


def test_implicit_rewards_hand_case():
    # β = 0.05; prm − ref = (1.0, −2.0, 0.5) on the response, prompt position masked out.
    prm = torch.tensor([[9.0, -1.0, -3.0, -0.5]])
    ref = torch.tensor([[1.0, -2.0, -1.0, -1.0]])
    mask = torch.tensor([[0.0, 1.0, 1.0, 1.0]])
    r = implicit_rewards(prm, ref, mask, beta=0.05)
    torch.testing.assert_close(r, torch.tensor([[0.0, 0.05, -0.10, 0.025]]))
    # q = running sums 0.05, −0.05, −0.025
    torch.testing.assert_close(q_values(r, mask), torch.tensor([[0.0, 0.05, -0.05, -0.025]]))


def test_q_values_fast_against_slow():
    torch.manual_seed(0)
    r, mask = torch.randn(5, 11), (torch.rand(5, 11) > 0.3).float()
    slow = torch.zeros(5, 11)
    for b in range(5):
        acc = 0.0
        for t in range(11):
            acc += float(r[b, t] * mask[b, t])
            slow[b, t] = acc * mask[b, t]
    torch.testing.assert_close(q_values(r, mask), slow)


def test_equal_models_give_exactly_zero():
    logp = torch.randn(3, 7)
    assert (implicit_rewards(logp, logp.clone(), torch.ones(3, 7), 0.05) == 0).all()


def test_zero_last_token_hand_case():
    # rows of length 3 and 1 (right padded): only each row's last response token becomes 0
    r = torch.tensor([[0.1, 0.2, 0.3, 0.9], [0.5, 0.9, 0.9, 0.9]])
    mask = torch.tensor([[1.0, 1, 1, 0], [1, 0, 0, 0]])
    assert torch.equal(zero_last_token(r, mask), torch.tensor([[0.1, 0.2, 0.0, 0.0], [0.0, 0, 0, 0]]))
    left = torch.tensor([[0.0, 1, 1, 1]])  # left padding: the last token is the row's last column
    assert torch.equal(zero_last_token(torch.ones(1, 4), left), torch.tensor([[0.0, 1, 1, 0]]))
