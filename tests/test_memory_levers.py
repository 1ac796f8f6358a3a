"""The memory levers a large model needs (issue 23): the sampler without a full-precision copy
and its automatic choice, gradient checkpointing, micro-batches by a token budget, 8-bit
optimizer states. Each must leave the numbers as they were, or say exactly how they differ."""

from __future__ import annotations

import pytest
import torch

from prime.models import Batch, LoraSettings, Roles, choose_sampler, make_batch, make_optimizer
from prime.plan import PeakBytes
from prime.rollout import encode_prompt, generate
from prime.trainer import micro_batches

GiB = 1 << 30
PROMPTS = ["What is 3 + 4?", "Compute 12 - 5 * 2.", "What is 7 * 8 - 6?", "Compute (9 + 1) * 3."]


def _moved(roles: Roles, scale: float = 0.05) -> Roles:
    """Both adapters moved off zero, so the LoRA terms are not trivially 0."""
    torch.manual_seed(1)
    with torch.no_grad():
        for role in ("policy", "prm"):
            for p in roles.adapter_parameters(role):
                p.add_(scale * torch.randn_like(p))
    return roles


def _batch(roles: Roles) -> Batch:
    tok = roles.tokenizer
    prompts = [encode_prompt(tok, p) for p in PROMPTS]
    responses = [tok(f"{n} + {n} = {2 * n}\n{n} * 3 = {3 * n}\nAnswer: {n}", add_special_tokens=False)["input_ids"]
                 + [tok.eos_token_id] for n in (3, 14, 159, 2653)]
    return make_batch(prompts, responses, tok.pad_token_id)


def test_the_sampler_is_chosen_by_device_and_copy_size_and_can_be_overridden():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert choose_sampler("auto", cpu, 30 * GiB) == "merged"  # a CPU dequantises its weights anyway
    assert choose_sampler("auto", cuda, GiB // 2, device_bytes=24 * GiB) == "merged"  # smollm2-135m: 0.5 GB
    assert choose_sampler("auto", cuda, 30 * GiB, device_bytes=24 * GiB) == "adapter"  # a 7B policy in fp32
    assert choose_sampler("auto", cuda, int(2.4 * GiB), device_bytes=24 * GiB) == "merged"  # a tenth: still merged
    assert choose_sampler("auto", cuda, int(2.5 * GiB), device_bytes=24 * GiB) == "adapter"
    assert choose_sampler("adapter", cpu, 1) == "adapter"
    assert choose_sampler("merged", cuda, 30 * GiB, device_bytes=24 * GiB) == "merged"


def test_the_adapter_sampler_samples_what_the_merged_one_samples(micro_model_dir):
    """Sampling through the 4-bit base with the policy adapter unmerged (no full-precision copy)
    and through the merged copy: the same next-token distributions, and with one seed the same
    tokens, greedy and sampled."""
    roles = _moved(Roles(micro_model_dir, device=torch.device("cpu"), lora=LoraSettings(r=4, alpha=8)))
    batch = _batch(roles)
    with torch.no_grad(), roles.role("policy") as peft_model:
        adapter_logits = peft_model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        merged_logits = roles.sampler()(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    real = batch.attention_mask.bool()
    torch.testing.assert_close(torch.log_softmax(adapter_logits, -1)[real], torch.log_softmax(merged_logits, -1)[real],
                               atol=1e-4, rtol=1e-4)
    tok = roles.tokenizer
    prompts = [encode_prompt(tok, p) for p in PROMPTS for _ in range(4)]
    for greedy in (True, False):
        torch.manual_seed(0)
        merged = generate(roles.sampler(), tok, prompts, 40, greedy=greedy)
        with roles.role("policy") as peft_model:
            torch.manual_seed(0)
            unmerged = generate(peft_model, tok, prompts, 40, greedy=greedy)
        assert merged == unmerged


@pytest.mark.parametrize("dequantise", [True, False], ids=["plain-path", "transformers-path"])
def test_gradient_checkpointing_gives_the_same_logprobs_and_gradients_in_less_memory(micro_model_dir, dequantise):
    """recompute=True (config gradient_checkpointing) on the plain path and on peft + transformers:
    log-probs and every adapter gradient bit for bit as without it; the tensors alive at the peak
    of a forward and backward pass fewer."""
    runs = {}
    for recompute in (False, True):
        torch.manual_seed(0)
        roles = _moved(Roles(micro_model_dir, device=torch.device("cpu"), lora=LoraSettings(r=4, alpha=8),
                             dequantise=dequantise, recompute=recompute))
        assert (roles.plain is not None) == dequantise
        batch = _batch(roles)
        with PeakBytes() as peak:
            logp = roles.logprobs("policy", batch, grad=True)
            (logp * batch.response_mask).sum().backward()
        grads = [p.grad.clone() for p in roles.adapter_parameters("policy")]
        assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)
        runs[recompute] = logp.detach(), grads, peak.peak
    (logp, grads, kept), (logp_r, grads_r, recomputed) = runs[False], runs[True]
    assert torch.equal(logp, logp_r)
    assert all(torch.equal(a, b) for a, b in zip(grads, grads_r))
    assert recomputed < kept


def test_micro_batches_close_at_the_token_budget():
    lengths = [3, 10, 4, 9, 5, 2]
    attn = torch.zeros(len(lengths), 10, dtype=torch.long)
    for b, n in enumerate(lengths):
        attn[b, :n] = 1
    batch = Batch(attn.clone(), attn, torch.zeros_like(attn))
    rows = slice(0, len(lengths))
    as_lists = lambda parts: [p.tolist() for p in parts]
    # shortest first: rows 5 (2), 0 (3), 2 (4), 4 (5), 3 (9), 1 (10)
    assert as_lists(micro_batches(batch, rows, 4)) == [[5, 0, 2, 4], [3, 1]]
    assert as_lists(micro_batches(batch, rows, 4, tokens=0)) == as_lists(micro_batches(batch, rows, 4))
    # 12 tokens: [2, 3, 4] → 3 rows × 4 = 12; adding 5 would make 4 × 5 = 20; [5] + 9 → 2 × 9 = 18 > 12
    assert as_lists(micro_batches(batch, rows, 4, tokens=12)) == [[5, 0, 2], [4], [3], [1]]
    assert as_lists(micro_batches(batch, rows, 4, tokens=1)) == [[5], [0], [2], [4], [3], [1]]  # each row alone
    assert as_lists(micro_batches(batch, slice(2, 5), 8, tokens=100)) == [[2, 4, 3]]


def test_eight_bit_optimizer_states_take_a_quarter_and_paged_ones_need_cuda():
    from prime.errors import UserError

    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(64, 512)) for _ in range(2)]
    sizes = {}
    for kind in ("adamw", "adamw8bit"):
        copies = [torch.nn.Parameter(p.detach().clone()) for p in params]
        opt = make_optimizer(kind, copies, lr=1e-3)
        for p in copies:
            p.grad = torch.ones_like(p)
        opt.step()
        assert all(not torch.equal(a, b) for a, b in zip(copies, params))  # it stepped
        sizes[kind] = sum(t.numel() * t.element_size() for s in opt.state.values() for t in s.values()
                          if isinstance(t, torch.Tensor))
    assert sizes["adamw8bit"] < 0.3 * sizes["adamw"]
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="needs CUDA"):
            make_optimizer("paged_adamw8bit", params, lr=1e-3)
