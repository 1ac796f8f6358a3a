"""prime.rollout: the KV-cached sampler agrees with transformers' generate()."""

import torch

from prime.models import load_base, load_tokenizer
from prime.rollout import _next_token, encode_prompt, generate
from prime.tasks import load_task


def test_greedy_matches_hf_generate(tiny_dir):
    model, tok = load_base(tiny_dir, "none", torch.device("cpu")), load_tokenizer(tiny_dir)
    prompts = [encode_prompt(tok, r["prompt"]) for r in load_task("arith", "test")[:12]]
    ours = generate(model, tok, prompts, 100, greedy=True)
    for p, o in zip(prompts, ours):
        ref = model.generate(input_ids=torch.tensor([p]), attention_mask=torch.ones(1, len(p), dtype=torch.long),
                             max_new_tokens=100, do_sample=False, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
        ref = ref[0, len(p):].tolist()
        assert o == (ref[: ref.index(tok.eos_token_id) + 1] if tok.eos_token_id in ref else ref)


def test_sampling_follows_the_distribution():
    torch.manual_seed(0)
    logits = torch.log(torch.tensor([[0.1, 0.2, 0.7]])).repeat(20000, 1)
    counts = torch.bincount(_next_token(logits, 1.0, 1.0, False), minlength=3) / 20000
    torch.testing.assert_close(counts, torch.tensor([0.1, 0.2, 0.7]), atol=0.015, rtol=0)
    # top_p = 0.6: the most likely token (0.7) alone reaches it
    assert (_next_token(logits[:100], 1.0, 0.6, False) == 2).all()


def test_sampling_never_draws_an_impossible_token():
    """Inverse-CDF sampling: tokens of probability 0 (masked logits, nucleus-truncated ones) are
    never drawn, whatever the uniform draw, and every row draws from its own distribution."""
    torch.manual_seed(0)
    logits = torch.full((4000, 6), float("-inf"))
    logits[:, 2], logits[:, 4] = 0.0, 1.0  # only 2 and 4 possible, 4 with e/(1+e) ≈ 0.731
    logits[:2000, 4] = float("-inf")  # the first half: only 2
    tok = _next_token(logits, 1.0, 1.0, False)
    assert set(tok[:2000].tolist()) == {2}
    assert set(tok[2000:].tolist()) <= {2, 4}
    assert abs((tok[2000:] == 4).float().mean().item() - 0.7311) < 0.03
    assert set(_next_token(logits[2000:], 1.0, 0.5, False).tolist()) == {4}  # top_p 0.5: the likelier alone
