"""prime.math.logprobs: fast (chunked, response rows only) against slow (full log-softmax)."""

import pytest
import torch

from prime.math.logprobs import selective_log_softmax, token_logprobs


def slow_token_logprobs(hidden, head, input_ids, response_mask):
    """The obvious version: full (B, T, V) log-softmax, then a loop over positions."""
    logp = torch.log_softmax(head(hidden).float(), dim=-1)  # (B, T, V)
    out = torch.zeros(input_ids.shape)
    for b in range(input_ids.shape[0]):
        for t in range(1, input_ids.shape[1]):
            if response_mask[b, t]:
                out[b, t] = logp[b, t - 1, input_ids[b, t]]
    return out


def test_selective_log_softmax_matches_full():
    torch.manual_seed(0)
    logits, targets = torch.randn(37, 101) * 3, torch.randint(0, 101, (37,))
    full = torch.log_softmax(logits, -1)[torch.arange(37), targets]
    torch.testing.assert_close(selective_log_softmax(logits, targets), full)


def test_selective_log_softmax_hand_case():
    # logits (0, ln 3): softmax = (1/4, 3/4), so log p(1) = ln 0.75
    logits = torch.tensor([[0.0, torch.log(torch.tensor(3.0)).item()]])
    assert selective_log_softmax(logits, torch.tensor([1])).item() == pytest.approx(torch.log(torch.tensor(0.75)).item(), abs=1e-6)


@pytest.mark.parametrize("chunk_rows", [1, 3, 1024])
def test_token_logprobs_fast_against_slow(chunk_rows):
    torch.manual_seed(1)
    B, T, H, V = 4, 9, 8, 13
    hidden, head = torch.randn(B, T, H), torch.nn.Linear(H, V)
    ids = torch.randint(0, V, (B, T))
    mask = (torch.rand(B, T) > 0.4).long()
    mask[:, 0] = 0
    with torch.no_grad():
        fast = token_logprobs(hidden, head, ids, mask, chunk_rows=chunk_rows)
        slow = slow_token_logprobs(hidden, head, ids, mask)
    torch.testing.assert_close(fast, slow)
    assert (fast[mask == 0] == 0).all()


def test_token_logprobs_rejects_position_zero():
    mask = torch.ones(1, 3, dtype=torch.long)
    with pytest.raises(ValueError, match="position 0"):
        token_logprobs(torch.zeros(1, 3, 2), torch.nn.Linear(2, 4), torch.zeros(1, 3, dtype=torch.long), mask)


def test_token_logprobs_does_not_mutate_inputs():
    hidden, ids = torch.randn(2, 5, 4), torch.randint(0, 6, (2, 5))
    mask = torch.tensor([[0, 0, 1, 1, 1], [0, 1, 1, 0, 0]])
    before = (hidden.clone(), ids.clone(), mask.clone())
    token_logprobs(hidden, torch.nn.Linear(4, 6), ids, mask)
    for a, b in zip(before, (hidden, ids, mask)):
        assert torch.equal(a, b)
