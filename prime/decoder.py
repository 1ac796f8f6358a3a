"""Llama-family models in plain torch: the sampler's KV-cached decoder (PRIME_SPEC §7.1) and
the roles' whole-sequence forward with a LoRA adapter (§7.4–7.7). Imports only torch.

Why it exists: a transformers forward costs 5–20 ms of CPU per call whatever the model's size
(mask building, cache objects, output classes, hooks), peft adds its dispatch per layer, and
sampling calls the model once per token. On `tiny` (0.9 M parameters) that overhead was ~20×
the arithmetic of a decode step. Here the same arithmetic runs without it:
- `KVDecoder`: a preallocated KV cache, q/k/v and gate/up one matmul each, RoPE from a table,
  attention as two batched matmuls (at one query a row, cheaper than the fused kernel's
  overhead); each distinct prompt prefilled once, its cache rows shared by its repeats;
- `hidden_states`: the base's stacked weights (dequantised once on a CPU) plus the adapter's
  stacked A and block-diagonal scale·B, the causal attention kernel on right-padded batches.
The numbers are transformers' and peft's up to float rounding (tests/test_decoder.py,
tests/test_models.py, tests/test_families.py). Only the families whose block is exactly
Llama's take these paths (`why_not_family`, `why_not` say why another does not); everything
else goes through transformers and peft (prime.rollout.generate, prime.models.Roles).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

FAMILIES = ("llama", "mistral", "qwen2")
"""model_type values whose decoder block is Llama's: RMSNorm, RoPE, (grouped) attention with
optional q/k/v biases (Qwen2), SiLU-gated MLP. Mistral and Qwen2 only without a sliding window."""


def why_not_family(lm) -> str | None:
    """None when the decoder block of `lm` (a transformers CausalLM, peft-wrapped or not) is
    Llama's, else why not."""
    config = getattr(lm, "config", None)
    model_type = getattr(config, "model_type", None)
    if model_type not in FAMILIES:
        return f"model_type {model_type!r} is not one of {FAMILIES}"
    if getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", model_type == "mistral"):
        return "a sliding attention window"
    if getattr(config, "hidden_act", "silu") != "silu" or getattr(config, "mlp_bias", False):
        return f"activation {config.hidden_act!r} / an MLP bias"
    rotary = getattr(lm.get_decoder(), "rotary_emb", None)
    rope = (getattr(config, "rope_parameters", None) or {}).get("rope_type", "default")
    if rotary is None or rope == "dynamic":
        return f"rope type {rope!r} (its frequencies change with the length)"
    return None


def why_not(lm) -> str | None:
    """None when `lm` (a transformers CausalLM, not wrapped by peft) can take the KV-cached
    decoder, else the reason it cannot, for the fallback and the tests."""
    if hasattr(lm, "peft_config") or hasattr(lm, "get_base_model"):
        return "a peft-wrapped model (adapters switch per call): use a merged plain model"
    if (reason := why_not_family(lm)) is not None:
        return reason
    if any(type(getattr(lm.get_decoder().layers[0].self_attn, n, None)) is not torch.nn.Linear
           for n in ("q_proj", "k_proj", "v_proj", "o_proj")):
        return "projections that are not plain nn.Linear (a quantised or adapted model): merge it first"
    return None


PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
GROUPS = (("q_proj", "k_proj", "v_proj"), ("o_proj",), ("gate_proj", "up_proj"), ("down_proj",))
"""projections that read the same input, computed as one matmul (and their adapters as one more)"""


@dataclass(frozen=True)
class Block:
    """One decoder block: its norms, and per group of projections the stacked (out, in) weights
    (the plain ones, or a 4-bit base's dequantised once) and biases."""

    norm1: torch.Tensor
    norm2: torch.Tensor
    weight: dict[tuple[str, ...], torch.Tensor]
    bias: dict[tuple[str, ...], torch.Tensor | None]


@dataclass(frozen=True)
class Base:
    """A Llama-family model's weights as plain tensors: for `hidden_states` the frozen base
    (built once by prime.models.Roles), for `KVDecoder` the merged sampler (built per call)."""

    embed: torch.Tensor  # (V, H)
    blocks: tuple[Block, ...]
    norm: torch.Tensor  # (H,)
    head: torch.Tensor  # (V, H), the LM head's weight
    inv_freq: torch.Tensor
    rope_scale: float
    eps: float
    n_heads: int
    n_kv: int
    head_dim: int


def projection(layer, name: str):
    """The module of projection `name` in a decoder layer (peft's wrapper where it adapts it)."""
    return getattr(layer.self_attn if name in ("q_proj", "k_proj", "v_proj", "o_proj") else layer.mlp, name)


@torch.no_grad()
def base_of(lm, dense_weight=lambda module: module.weight) -> Base:
    """The weights of `lm` (a transformers CausalLM whose projections peft may wrap);
    dense_weight(module) -> the (out, in) weight a projection computes with. Groups of several
    projections are stacked copies; the model's own parameters are never touched."""
    decoder, config = lm.get_decoder(), lm.config
    blocks = []
    for layer in decoder.layers:
        base = {n: getattr(projection(layer, n), "base_layer", projection(layer, n)) for n in PROJECTIONS}
        biases = {g: [base[n].bias for n in g] for g in GROUPS}
        blocks.append(Block(norm1=layer.input_layernorm.weight, norm2=layer.post_attention_layernorm.weight,
                            weight={g: torch.cat([dense_weight(base[n]) for n in g]) if len(g) > 1
                                    else dense_weight(base[g[0]]) for g in GROUPS},
                            bias={g: None if b[0] is None else torch.cat(b) for g, b in biases.items()}))
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return Base(embed=decoder.embed_tokens.weight, blocks=tuple(blocks), norm=decoder.norm.weight,
                head=lm.get_output_embeddings().weight, inv_freq=decoder.rotary_emb.inv_freq.float(),
                rope_scale=float(getattr(decoder.rotary_emb, "attention_scaling", 1.0)), eps=config.rms_norm_eps,
                n_heads=config.num_attention_heads, n_kv=config.num_key_value_heads, head_dim=head_dim)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """LlamaRMSNorm: weight · x / sqrt(mean(x²) + eps), as one op."""
    return F.rms_norm(x, weight.shape, weight, eps)


def rope_table(w: Base, n_positions: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin (n_positions, hd) as LlamaRotaryEmbedding computes them per position, with the
    sign of rotate_half folded into sin (see `rotate`)."""
    freqs = torch.arange(n_positions, device=device).float()[:, None] * w.inv_freq.to(device)[None, :]
    return _cos_sin(freqs, w.rope_scale)


def _cos_sin(freqs: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(…, hd/2) frequencies × positions -> cos, signed sin (…, hd): sin's first half negated."""
    emb = torch.cat((freqs, freqs), dim=-1)
    half = freqs.shape[-1]
    sign = torch.cat((-torch.ones(half, device=freqs.device), torch.ones(half, device=freqs.device)))
    return emb.cos() * scale, emb.sin() * scale * sign


def rotate(x: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor) -> torch.Tensor:
    """RoPE of x (B, h, S, hd): x·cos + rotate_half(x)·sin, where rotate_half(x) = (−x₂, x₁) is
    the halves swapped (a roll) times the sign folded into signed_sin (B, 1, S, hd)."""
    return x * cos + x.roll(x.shape[-1] // 2, dims=-1) * signed_sin


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor, scale: float) -> torch.Tensor:
    """softmax(q·kᵀ·scale + bias)·v, as transformers' eager attention; q (B, nh, S, hd), k and v
    (B, nkv, S', hd) shared by nh / nkv query heads each, bias (B, 1, S, S'). Plain matmuls: at
    decode (S = 1) they cost a fraction of the fused kernel's fixed overhead on a CPU."""
    B, nh, S, hd = q.shape
    groups = nh // k.shape[1]
    q = q.reshape(B, k.shape[1], groups * S, hd)  # query heads of one kv head side by side
    scores = (q @ k.transpose(-1, -2)).view(B, nh, S, -1) * scale + bias  # (B, nh, S, S')
    probs = torch.softmax(scores, dim=-1).view(B, k.shape[1], groups * S, -1)
    return (probs @ v).view(B, nh, S, hd)


class KVDecoder:
    """One batch's decoding state: a preallocated KV cache of `capacity` positions per row."""

    def __init__(self, w: Base, batch: int, capacity: int, device):
        self.w, self.capacity = w, capacity
        shape = (len(w.blocks), batch, w.n_kv, capacity, w.head_dim)  # (L, B, nkv, S, hd)
        self.k = torch.zeros(shape, dtype=w.embed.dtype, device=device)
        self.v = torch.zeros(shape, dtype=w.embed.dtype, device=device)
        self.key_bias = torch.zeros(batch, capacity, dtype=w.embed.dtype, device=device)  # (B, S) -inf: padding
        self.cos, self.sin = rope_table(w, capacity, device)
        self.length = 0

    def prefill(self, ids: torch.Tensor, attn: torch.Tensor, pos: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Run the prompts ids (P, T) (left-padded: attn (P, T) 1 on real tokens, pos (P, T) their
        positions) and fill cache row b from prompt rows[b] (B,). Returns the prompts' last
        logits (P, V). A padding query attends to itself alone, so no score row is all -inf."""
        T = ids.shape[1]
        causal = torch.ones(T, T, dtype=torch.bool, device=ids.device).tril()
        allowed = causal[None] & (attn.bool()[:, None, :] | torch.eye(T, dtype=torch.bool, device=ids.device)[None])
        bias = torch.zeros(allowed.shape, dtype=self.k.dtype, device=ids.device).masked_fill_(~allowed, float("-inf"))
        self.key_bias[:, :T] = torch.zeros_like(attn, dtype=self.k.dtype).masked_fill_(attn == 0, float("-inf"))[rows]
        self.length = T
        return self._run(ids, pos, bias[:, None], rows)

    def step(self, tok: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """Append one token per row, tok (B,) at positions pos (B,); returns the next logits (B, V)."""
        self.length += 1
        return self._run(tok[:, None], pos[:, None], self.key_bias[:, None, None, : self.length], None)

    def keep(self, index: torch.Tensor) -> None:
        """Only rows `index` (b,) go on decoding (rows that stopped leave the batch)."""
        def rows(cache):  # only the positions written so far are copied
            kept = cache.new_empty((cache.shape[0], len(index), *cache.shape[2:]))
            kept[:, :, :, : self.length] = cache[:, index, :, : self.length]
            return kept

        self.k, self.v, self.key_bias = rows(self.k), rows(self.v), self.key_bias[index]

    def _run(self, ids, pos, bias, rows) -> torch.Tensor:
        """ids (N, S) at cache positions length-S..length, bias (N, 1, S, S') added to the scores.
        rows None: N = B, attention over the cache. Else: attention within ids, then the cache
        rows are filled from them."""
        w, (N, S), end = self.w, ids.shape, self.length
        start = end - S
        cos, sin = F.embedding(pos, self.cos)[:, None], F.embedding(pos, self.sin)[:, None]  # (N, 1, S, hd)
        nh, nkv, hd = w.n_heads, w.n_kv, w.head_dim
        x = F.embedding(ids, w.embed)  # (N, S, H)
        qkv_, o_, gate_up_, down_ = GROUPS
        for i, block in enumerate(w.blocks):
            qkv = _project(rms_norm(x, block.norm1, w.eps), block, qkv_, None)  # (N, S, (nh + 2nkv)·hd)
            qk, v = qkv.view(N, S, nh + 2 * nkv, hd).transpose(1, 2).split((nh + nkv, nkv), dim=1)
            q, k = rotate(qk, cos, sin).split((nh, nkv), dim=1)  # q and k heads rotated in one go
            if rows is None:
                self.k[i, :, :, start:end], self.v[i, :, :, start:end] = k, v
                k, v = self.k[i, :, :, :end], self.v[i, :, :, :end]
            else:
                self.k[i, :, :, start:end], self.v[i, :, :, start:end] = k[rows], v[rows]
            out = attention(q, k, v, bias, hd ** -0.5)  # (N, nh, S, hd)
            x = x + _project(out.transpose(1, 2).reshape(N, S, nh * hd), block, o_, None)
            gate, up = _project(rms_norm(x, block.norm2, w.eps), block, gate_up_, None).chunk(2, dim=-1)
            x = x + _project(F.silu(gate) * up, block, down_, None)
        return F.linear(rms_norm(x[:, -1], w.norm, w.eps), w.head)  # (N, V)


# ---------------------------------------------------------------------------- whole sequences, with LoRA


def adapter_of(lm, name: str) -> tuple[dict, ...]:
    """Per block and group, adapter `name`'s LoRA factors stacked: A (g·r, in) and the
    block-diagonal scale·B (out, g·r). Built from the live peft parameters at each call (gradients
    flow to them; optimizer steps and loaded checkpoints show through). Every projection carries
    the adapter (Roles takes this path only then)."""
    out = []
    for layer in lm.get_decoder().layers:
        mods = {n: projection(layer, n) for n in PROJECTIONS}
        out.append({g: (torch.cat([mods[n].lora_A[name].weight for n in g]),
                        torch.block_diag(*[mods[n].lora_B[name].weight * mods[n].scaling[name] for n in g]))
                    for g in GROUPS})
    return tuple(out)


def _project(x: torch.Tensor, block: Block, group: tuple[str, ...], adapter: dict | None) -> torch.Tensor:
    """x·Wᵀ + b for a group of projections, plus the adapter's (x·Aᵀ)·(scale·B)ᵀ. With B = 0 (a
    fresh adapter) the LoRA term is exactly 0: the PRM equals the reference bit for bit before
    its first update."""
    y = F.linear(x, block.weight[group], block.bias[group])
    if adapter is not None:
        A, B = adapter[group]
        y = y + F.linear(F.linear(x, A), B)
    return y


def _block(x: torch.Tensor, block: Block, a: dict | None, base: Base, cos, sin, mask) -> torch.Tensor:
    """One decoder block: attention then MLP, each with its residual."""
    B, T, _ = x.shape
    nh, nkv, hd = base.n_heads, base.n_kv, base.head_dim
    qkv, o, gate_up, down = GROUPS
    h = _project(rms_norm(x, block.norm1, base.eps), block, qkv, a)  # (B, T, (nh + 2nkv)·hd)
    qk, v = h.view(B, T, nh + 2 * nkv, hd).transpose(1, 2).split((nh + nkv, nkv), dim=1)
    q, k = rotate(qk, cos, sin).split((nh, nkv), dim=1)  # q and k heads rotated in one go
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None,
                                         enable_gqa=nkv != nh)  # (B, nh, T, hd)
    x = x + _project(out.transpose(1, 2).reshape(B, T, nh * hd), block, o, a)
    gate, up = _project(rms_norm(x, block.norm2, base.eps), block, gate_up, a).chunk(2, dim=-1)
    return x + _project(F.silu(gate) * up, block, down, a)


def hidden_states(base: Base, adapter: tuple[dict, ...] | None, ids: torch.Tensor, attn: torch.Tensor,
                  recompute: bool = False) -> torch.Tensor:
    """Final hidden states (B, T, H) of base + adapter (None: the base alone) on a padded batch.

    The arithmetic of transformers' Llama forward without its per-call machinery (mask building,
    cache objects, peft's dispatch), q/k/v and gate/up each as one matmul. A right-padded batch
    (every row's tokens first, as prime.models.make_batch pads) needs only the causal mask: no
    real token sees a later padding one. Left padding gets an explicit mask. recompute=True (with
    gradients): gradient checkpointing, each block run again in the backward pass instead of
    keeping its activations (only its input is kept).
    """
    T = ids.shape[1]
    pos = (attn.cumsum(-1) - 1).clamp(min=0)
    cos, sin = _cos_sin(pos[..., None].float() * base.inv_freq.to(ids.device), base.rope_scale)  # (B, T, hd)
    cos, sin = cos[:, None], sin[:, None]  # (B, 1, T, hd)
    right_padded = bool((attn[:, 1:] <= attn[:, :-1]).all())
    mask = None
    if not right_padded:  # causal, real keys only; a padding query sees itself (no all -inf row)
        eye = torch.eye(T, dtype=torch.bool, device=ids.device)
        mask = (torch.ones(T, T, dtype=torch.bool, device=ids.device).tril()[None] & (attn.bool()[:, None, :] | eye))[:, None]
    x = F.embedding(ids, base.embed)  # (B, T, H)
    for i, block in enumerate(base.blocks):
        args = (x, block, adapter[i] if adapter else None, base, cos, sin, mask)
        if recompute and torch.is_grad_enabled():
            x = checkpoint(_block, *args, use_reentrant=False)  # only x is kept; the block runs again in backward
        else:
            x = _block(*args)
    return rms_norm(x, base.norm, base.eps)
