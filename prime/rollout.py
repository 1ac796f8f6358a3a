"""Sampling responses and formatting prompts (PRIME_SPEC §7 step 1)."""

from __future__ import annotations

import torch


def format_prompt(tokenizer, question: str) -> str:
    """The text a model sees before its answer: its chat template when it has one
    (SmolLM2-Instruct), else the question and a newline (the tiny model's SFT format)."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True)
    return question + "\n"


def encode_prompt(tokenizer, question: str) -> list[int]:
    return tokenizer(format_prompt(tokenizer, question), add_special_tokens=False)["input_ids"]


@torch.no_grad()
def generate(model, tokenizer, prompt_ids: list[list[int]], max_new_tokens: int, temperature: float = 1.0,
             top_p: float = 1.0, greedy: bool = False, batch_size: int = 256) -> list[list[int]]:
    """Sample one response per prompt; returns response token ids, ending with EOS when the
    model stopped (a response without EOS hit the length limit). Left-padded batches."""
    device = next(model.parameters()).device
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    out: list[list[int]] = []
    for i in range(0, len(prompt_ids), batch_size):
        chunk = prompt_ids[i : i + batch_size]
        T = max(len(p) for p in chunk)
        ids = torch.tensor([[pad] * (T - len(p)) + p for p in chunk], device=device)
        attn = torch.tensor([[0] * (T - len(p)) + [1] * len(p) for p in chunk], device=device)
        kwargs = {"do_sample": False} if greedy else {"do_sample": True, "temperature": temperature, "top_p": top_p, "top_k": 0}
        seqs = model.generate(input_ids=ids, attention_mask=attn, max_new_tokens=max_new_tokens,
                              eos_token_id=eos, pad_token_id=pad, **kwargs)
        for row in seqs[:, T:].tolist():
            out.append(row[: row.index(eos) + 1] if eos in row else row)
    return out
