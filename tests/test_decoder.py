"""prime.decoder: the sampler's plain-torch decoder computes what transformers computes.

Every family of tests/test_families.py either takes the decoder (its logits and greedy tokens
equal transformers' own forward's) or says why not and falls back; sampled responses equal the
transformers loop's for the same seed; a left-padded batch with repeated prompts (the K samples
of a group share one prefill) decodes as if each row ran alone.
"""

from __future__ import annotations

import pytest
import torch
from test_families import FAMILIES, family_dirs  # noqa: F401 - the fixture

from prime import decoder
from prime.models import load_base, load_tokenizer
from prime.rollout import encode_prompt, generate
from prime.tasks import load_task


def hf_loop(monkeypatch):
    """generate() with the fast path off: transformers' forward at every token."""
    monkeypatch.setattr(decoder, "why_not", lambda model: "off for this test")


def prompts(tok, n: int, repeat: int = 1) -> list[list[int]]:
    rows = load_task("arith", "test")[:n]
    return [encode_prompt(tok, r["prompt"]) for r in rows for _ in range(repeat)]


@pytest.mark.parametrize("family", FAMILIES)
def test_family_takes_the_decoder_or_says_why_not(family, family_dirs, monkeypatch):  # noqa: F811
    model = load_base(family_dirs[family], "none", torch.device("cpu"))
    tok = load_tokenizer(family_dirs[family])
    reason = decoder.why_not(model)
    if family in ("llama", "qwen2", "mistral"):
        assert reason is None
    else:
        assert reason, f"{family} has no Llama block (qk-norm, soft-capping, fused projections) yet took the decoder"
    batch = prompts(tok, 6, repeat=2)
    ours = generate(model, tok, batch, 24, greedy=True)
    hf_loop(monkeypatch)
    assert ours == generate(model, tok, batch, 24, greedy=True)


@pytest.mark.parametrize("family", ("llama", "qwen2", "mistral"))
def test_logits_equal_transformers_forward(family, family_dirs):  # noqa: F811
    """Prefill and every decode step against the model's own forward over the whole prefix,
    left padding and repeated prompts included."""
    model = load_base(family_dirs[family], "none", torch.device("cpu"))
    tok = load_tokenizer(family_dirs[family])
    batch = prompts(tok, 4, repeat=2)
    T = max(map(len, batch))
    ids = torch.tensor([[tok.pad_token_id] * (T - len(p)) + p for p in batch])
    attn = (torch.arange(T)[None] >= torch.tensor([T - len(p) for p in batch])[:, None]).long()
    distinct = list(dict.fromkeys(map(tuple, batch)))
    rows = torch.tensor([distinct.index(tuple(p)) for p in batch])
    state = decoder.KVDecoder(decoder.base_of(model), len(batch), T + 8, torch.device("cpu"))
    pos = (attn.cumsum(-1) - 1).clamp(min=0)
    first = torch.tensor([batch.index(list(d)) for d in distinct])  # prefill each distinct prompt once
    logits = state.prefill(ids[first], attn[first], pos[first], rows)[rows]
    generator = torch.Generator().manual_seed(0)
    p = pos[:, -1]
    with torch.no_grad():
        for _ in range(8):
            full = model(input_ids=ids, attention_mask=attn, position_ids=(attn.cumsum(-1) - 1).clamp(min=0)).logits[:, -1]
            torch.testing.assert_close(logits, full, rtol=0, atol=2e-5)
            tok_next = torch.randint(2, model.config.vocab_size, (len(batch),), generator=generator)
            ids, attn = torch.cat([ids, tok_next[:, None]], 1), torch.cat([attn, torch.ones_like(attn[:, :1])], 1)
            p = p + 1
            logits = state.step(tok_next, p)


def test_sampling_equals_the_transformers_loop(tiny_dir, monkeypatch):
    """The same seed draws the same responses: both paths draw one token per row per step in
    the same order, from logits equal up to float rounding."""
    model, tok = load_base(tiny_dir, "none", torch.device("cpu")), load_tokenizer(tiny_dir)
    batch = prompts(tok, 16, repeat=4)
    torch.manual_seed(3)
    ours = generate(model, tok, batch, 100)
    hf_loop(monkeypatch)
    torch.manual_seed(3)
    assert ours == generate(model, tok, batch, 100)


def test_a_row_decodes_as_if_alone(tiny_dir):
    """Left padding and shared prefills change nothing: each row's greedy response in a mixed
    batch equals its response decoded alone."""
    model, tok = load_base(tiny_dir, "none", torch.device("cpu")), load_tokenizer(tiny_dir)
    batch = prompts(tok, 5, repeat=3)
    together = generate(model, tok, batch, 100, greedy=True)
    assert together == [generate(model, tok, [p], 100, greedy=True)[0] for p in batch]


def test_peft_and_quantised_models_fall_back(micro_model_dir):
    from prime.models import LoraSettings, Roles

    roles = Roles(micro_model_dir, lora=LoraSettings(r=4, alpha=8), device=torch.device("cpu"))
    assert "peft" in decoder.why_not(roles.models["policy"])
    assert decoder.why_not(roles.causal_lm(roles.models["ref"]))  # adapters injected, 4-bit layers
    assert decoder.why_not(roles.sampler()) is None  # the merged sampler takes it
