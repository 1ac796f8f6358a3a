"""Sampling responses and formatting prompts (PRIME_SPEC §7 step 1)."""

from __future__ import annotations

import functools

import torch

from prime import decoder


def format_prompt(tokenizer, question: str, system: str | None = None) -> str:
    """The text a model sees before its answer: its chat template when it has one
    (SmolLM2-Instruct, Qwen), else the question and a newline (the tiny model's SFT format),
    after the system message and a blank line when there is one."""
    if getattr(tokenizer, "chat_template", None):
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": question}]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return (f"{system}\n\n" if system else "") + question + "\n"


# format_prompt's plain branch as a chat template, for engines that always apply one (veRL:
# `prime export verl` hands it to a model without a template). The two must render the same
# text: tests/test_export_verl.py checks it token for token through apply_chat_template.
PLAIN_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{% if message['content'] %}{{ message['content'] + '\\n\\n' }}{% endif %}"
    "{% elif message['role'] == 'user' %}{{ message['content'] + '\\n' }}"
    "{% else %}{{ raise_exception('this template formats system and user messages only') }}"
    "{% endif %}{% endfor %}"
)


def encode_prompt(tokenizer, question: str, system: str | None = None) -> list[int]:
    return tokenizer(format_prompt(tokenizer, question, system), add_special_tokens=False)["input_ids"]


def _next_token(logits: torch.Tensor, temperature: float, top_p: float, greedy: bool,
                u: torch.Tensor | None = None) -> torch.Tensor:
    """Pick one token per row from last-position logits (B, V) -> (B,). Plain softmax sampling
    at `temperature`, nucleus truncation only when top_p < 1 (PRIME samples at 1.0 / 1.0).

    One uniform draw per row (`u` (B, 1) in (0, 1], drawn here when not given), inverted
    through the row's cumulative distribution in float64: exactly the categorical
    distribution, at a tenth of torch.multinomial's cost on a CPU (which draws an exponential
    for every vocabulary entry)."""
    if greedy:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p < 1.0:
        sorted_p, idx = probs.sort(-1, descending=True)
        outside = sorted_p.cumsum(-1) - sorted_p > top_p  # keep the smallest prefix reaching top_p
        probs = torch.zeros_like(probs).scatter(-1, idx, sorted_p.masked_fill(outside, 0.0))
    cdf = probs.double().cumsum(-1)  # (B, V)
    u = _uniforms(probs.shape[0], probs.device) if u is None else u
    # the first entry whose cumulative probability reaches u·total: never a zero-probability one
    return torch.searchsorted(cdf, u * cdf[:, -1:]).squeeze(-1).clamp_(max=probs.shape[-1] - 1)


def _uniforms(n: int, device) -> torch.Tensor:
    """(n, 1) uniform draws in (0, 1], float64: one token's worth of randomness for n rows."""
    return 1.0 - torch.rand(n, 1, dtype=torch.float64, device=device)


@torch.no_grad()
def generate(model, tokenizer, prompt_ids: list[list[int]], max_new_tokens: int, temperature: float = 1.0,
             top_p: float = 1.0, greedy: bool = False, batch_size: int = 512) -> list[list[int]]:
    """Sample one response per prompt; returns response token ids, ending with EOS when the
    model stopped (a response without EOS hit the length limit).

    A KV-cached loop over left-padded batches of `batch_size` rows (an eval of 300 problems in
    one batch: a second, smaller batch would cost as many sequential steps as the first), one
    token per row per step. Every step draws one uniform per row of the batch, stopped rows
    included, so a seed gives the same responses on either path:
    - a Llama-family plain model (the merged sampler) decodes with prime.decoder: no
      transformers call per token, each distinct prompt prefilled once and its cache shared by
      its repeats (the K samples of a group), rows leaving the batch as they stop;
    - any other model goes through its own transformers forward (HF's generate() would spend
      most of its time in per-token bookkeeping, and we need none of its options).
    """
    device = next(model.parameters()).device
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    sample = functools.partial(_next_token, temperature=temperature, top_p=top_p, greedy=greedy)
    fast = decoder.why_not(model) is None
    weights = decoder.base_of(model) if fast else None
    out: list[list[int]] = []
    for i in range(0, len(prompt_ids), batch_size):
        chunk = prompt_ids[i : i + batch_size]
        if fast:
            out += _fast_decode(weights, chunk, max_new_tokens, eos, pad, device, sample, greedy)
            continue
        logits, step = _hf_prefill(model, chunk, pad, device)
        done = torch.zeros(len(chunk), dtype=torch.bool, device=device)
        steps = []
        for _ in range(max_new_tokens):
            tok = torch.where(done, pad, sample(logits, u=None if greedy else _uniforms(len(chunk), device)))
            steps.append(tok)
            done = done | (tok == eos)
            if done.all():
                break
            logits = step(tok)
        for row in torch.stack(steps, dim=1).tolist():
            out.append(row[: row.index(eos) + 1] if eos in row else row)
    return out


def _fast_decode(weights, chunk, max_new_tokens, eos, pad, device, sample, greedy) -> list[list[int]]:
    """prime.decoder's loop: once half of the running rows has stopped, their cache rows are
    dropped and later steps compute only the others (each drop copies the cache). Each step
    still draws a uniform for every row of the chunk and hands each running row its own, so
    which rows share a step changes nothing."""
    logits, state, pos = _fast_prefill(weights, chunk, max_new_tokens, pad, device)
    rows = torch.arange(len(chunk), device=device)  # (b,) the chunk row of each running row
    tokens = torch.full((len(chunk), max_new_tokens), pad, dtype=torch.long, device=device)
    running = torch.ones(len(chunk), dtype=torch.bool, device=device)
    for t in range(max_new_tokens):
        u = None if greedy else _uniforms(len(chunk), device)[rows]  # each running row its own draw
        tok = torch.where(running, sample(logits, u=u), pad)
        tokens[rows, t] = tok
        running = running & (tok != eos)
        n = int(running.sum())
        if n == 0:
            break
        if n <= 0.5 * len(rows):
            keep = running.nonzero().squeeze(1)
            state.keep(keep)
            rows, pos, tok, running = rows[keep], pos[keep], tok[keep], running[keep]
        pos = pos + 1
        logits = state.step(tok, pos)
    return [r[: r.index(eos) + 1] if eos in r else r for r in tokens.tolist()]  # rows without EOS ran every step


def _fast_prefill(weights, chunk, max_new_tokens, pad, device):
    """prime.decoder: prefill each distinct prompt once, its cache shared by its repeats.
    Returns the first logits (B, V), the decoder state and each row's last position (B,)."""
    index = {}  # distinct prompt -> its row in the prefill
    rows = torch.tensor([index.setdefault(tuple(p), len(index)) for p in chunk], device=device)  # (B,) row -> its prompt
    distinct = list(index)
    ids, attn, pos = _left_padded([list(p) for p in distinct], pad, device)
    state = decoder.KVDecoder(weights, len(chunk), ids.shape[1] + max_new_tokens, device)
    logits = state.prefill(ids, attn, pos, rows)[rows]  # (B, V)
    return logits, state, pos[rows, -1]


def _left_padded(chunk: list[list[int]], pad: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    T = max(len(p) for p in chunk)
    ids = torch.tensor([[pad] * (T - len(p)) + p for p in chunk], device=device)  # (B, T)
    attn = torch.tensor([[0] * (T - len(p)) + [1] * len(p) for p in chunk], device=device)  # (B, T)
    return ids, attn, (attn.cumsum(-1) - 1).clamp(min=0)


def _hf_prefill(model, chunk, pad, device):
    """The model's own transformers forward with a DynamicCache (any family, peft or not)."""
    from transformers import DynamicCache

    ids, attn, pos = _left_padded(chunk, pad, device)
    cache = DynamicCache()
    logits = model(input_ids=ids, attention_mask=attn, position_ids=pos, past_key_values=cache,
                   use_cache=True, logits_to_keep=1).logits[:, -1]  # (B, V)

    def step(tok):
        nonlocal attn, pos
        attn = torch.cat([attn, torch.ones_like(attn[:, :1])], dim=-1)
        pos = pos[:, -1:] + 1
        return model(input_ids=tok[:, None], attention_mask=attn, position_ids=pos, past_key_values=cache,
                     use_cache=True).logits[:, -1]

    return logits, step
