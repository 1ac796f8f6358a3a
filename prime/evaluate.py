"""Accuracy of a model on a task split, greedy or sampled (pass@1)."""

from __future__ import annotations

import torch

from prime.rollout import encode_prompt, generate
from prime.verifiers import verify


def accuracy(model, tokenizer, rows: list[dict], max_new_tokens: int, greedy: bool, seed: int = 0,
             temperature: float = 1.0, batch_size: int = 512) -> dict:
    """Mean outcome reward over `rows`: pass@1 with one sample each (or greedy), decoding
    `batch_size` rows at a time (config sample_rows: the KV cache grows with it).

    Returns {"acc", "n", "unscorable"}; unscorable answers count as 0 (PRIME_SPEC §3).
    """
    torch.manual_seed(seed)
    prompts = [encode_prompt(tokenizer, r["prompt"], r.get("system")) for r in rows]
    responses = generate(model, tokenizer, prompts, max_new_tokens, temperature=temperature, greedy=greedy,
                         batch_size=batch_size)
    verdicts = [verify(tokenizer.decode(ids, skip_special_tokens=True), r) for ids, r in zip(responses, rows)]
    return {"acc": sum(v.reward for v in verdicts) / len(rows), "n": len(rows),
            "unscorable": sum(v.score is None for v in verdicts)}
