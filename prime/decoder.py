"""A plain-torch decoder for Llama-family models: the sampler's fast path (PRIME_SPEC §7.1).

Why it exists: a transformers forward costs 5–20 ms of CPU per call whatever the model's size
(mask building, cache objects, output classes, hooks), and sampling calls it once per token.
On `tiny` (0.9 M parameters) that overhead was ~20× the arithmetic of a decode step. This
decoder does the same arithmetic with a preallocated KV cache and no per-token bookkeeping:
q/k/v and gate/up fused into one matmul each, RoPE read from a table, one scaled-dot-product
attention call per layer. The numbers are those of transformers' eager Llama forward up to
float rounding (tests/test_decoder.py checks logits and greedy tokens against it).

Only the families whose block is exactly Llama's take it (`why_not` says why another does
not); everything else falls back to transformers (prime.rollout.generate).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

FAMILIES = ("llama", "mistral", "qwen2")
"""model_type values whose decoder block is Llama's: RMSNorm, RoPE, (grouped) attention with
optional q/k/v biases (Qwen2), SiLU-gated MLP. Mistral and Qwen2 only without a sliding window."""


def why_not(lm) -> str | None:
    """None when `lm` (a transformers CausalLM, not wrapped by peft) can take this decoder, else
    the reason it cannot, for the fallback's log and the tests."""
    config = getattr(lm, "config", None)
    model_type = getattr(config, "model_type", None)
    if model_type not in FAMILIES:
        return f"model_type {model_type!r} is not one of {FAMILIES}"
    if hasattr(lm, "peft_config") or hasattr(lm, "get_base_model"):
        return "a peft-wrapped model (adapters switch per call): use a merged plain model"
    if getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", model_type == "mistral"):
        return "a sliding attention window"
    if getattr(config, "hidden_act", "silu") != "silu" or getattr(config, "mlp_bias", False):
        return f"activation {config.hidden_act!r} / an MLP bias"
    rotary = getattr(lm.get_decoder(), "rotary_emb", None)
    rope = (getattr(config, "rope_parameters", None) or {}).get("rope_type", "default")
    if rotary is None or rope == "dynamic":
        return f"rope type {rope!r} (its frequencies change with the length)"
    if any(not isinstance(getattr(lm.get_decoder().layers[0].self_attn, n, None), torch.nn.Linear)
           for n in ("q_proj", "k_proj", "v_proj", "o_proj")):
        return "projections that are not plain nn.Linear (a quantised model): merge it first"
    return None


@dataclass(frozen=True)
class Layer:
    norm1: torch.Tensor  # (H,)
    qkv: torch.Tensor  # ((nh + 2·nkv)·hd, H): q, k and v stacked
    qkv_bias: torch.Tensor | None
    o: torch.Tensor  # (H, nh·hd)
    norm2: torch.Tensor  # (H,)
    gate_up: torch.Tensor  # (2·I, H): gate and up stacked
    down: torch.Tensor  # (H, I)


@dataclass(frozen=True)
class Weights:
    """A Llama-family model's weights as plain tensors, read from the model at each call."""

    embed: torch.Tensor  # (V, H)
    layers: tuple[Layer, ...]
    norm: torch.Tensor  # (H,)
    head: torch.Tensor  # (V, H)
    inv_freq: torch.Tensor  # (hd/2,)
    rope_scale: float
    eps: float
    n_heads: int
    n_kv: int
    head_dim: int


@torch.no_grad()
def weights_of(lm) -> Weights:
    """The weights of `lm` (see why_not); q/k/v and gate/up concatenated (copies: the model's own
    parameters are never touched)."""
    decoder, config = lm.get_decoder(), lm.config
    layers = []
    for block in decoder.layers:
        a, m = block.self_attn, block.mlp
        biases = [p.bias for p in (a.q_proj, a.k_proj, a.v_proj)]
        layers.append(Layer(
            norm1=block.input_layernorm.weight, o=a.o_proj.weight, norm2=block.post_attention_layernorm.weight,
            qkv=torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight]),
            qkv_bias=torch.cat(biases) if biases[0] is not None else None,
            gate_up=torch.cat([m.gate_proj.weight, m.up_proj.weight]), down=m.down_proj.weight))
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return Weights(embed=decoder.embed_tokens.weight, layers=tuple(layers), norm=decoder.norm.weight,
                   head=lm.get_output_embeddings().weight, inv_freq=decoder.rotary_emb.inv_freq.float(),
                   rope_scale=float(getattr(decoder.rotary_emb, "attention_scaling", 1.0)), eps=config.rms_norm_eps,
                   n_heads=config.num_attention_heads, n_kv=config.num_key_value_heads, head_dim=head_dim)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """LlamaRMSNorm, in the order transformers computes it."""
    return weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def rope_table(w: Weights, n_positions: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin (n_positions, hd) exactly as LlamaRotaryEmbedding computes them per position."""
    freqs = torch.arange(n_positions, device=device).float()[:, None] * w.inv_freq.to(device)[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos() * w.rope_scale, emb.sin() * w.rope_scale


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x (B, h, S, hd) rotated by RoPE; cos, sin (B, 1, S, hd)."""
    half = x.shape[-1] // 2
    return x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin


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

    def __init__(self, w: Weights, batch: int, capacity: int, device):
        self.w, self.capacity = w, capacity
        shape = (len(w.layers), batch, w.n_kv, capacity, w.head_dim)  # (L, B, nkv, S, hd)
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

    def _run(self, ids, pos, bias, rows) -> torch.Tensor:
        """ids (N, S) at cache positions length-S..length, bias (N, 1, S, S') added to the scores.
        rows None: N = B, attention over the cache. Else: attention within ids, then the cache
        rows are filled from them."""
        w, (N, S), end = self.w, ids.shape, self.length
        start = end - S
        cos, sin = F.embedding(pos, self.cos)[:, None], F.embedding(pos, self.sin)[:, None]  # (N, 1, S, hd)
        nh, nkv, hd = w.n_heads, w.n_kv, w.head_dim
        x = F.embedding(ids, w.embed)  # (N, S, H)
        for i, layer in enumerate(w.layers):
            qkv = F.linear(rms_norm(x, layer.norm1, w.eps), layer.qkv, layer.qkv_bias)  # (N, S, (nh + 2nkv)·hd)
            q, k, v = qkv.view(N, S, nh + 2 * nkv, hd).transpose(1, 2).split((nh, nkv, nkv), dim=1)
            q, k = rotate(q, cos, sin), rotate(k, cos, sin)
            if rows is None:
                self.k[i, :, :, start:end], self.v[i, :, :, start:end] = k, v
                k, v = self.k[i, :, :, :end], self.v[i, :, :, :end]
            else:
                self.k[i, :, :, start:end], self.v[i, :, :, start:end] = k[rows], v[rows]
            out = attention(q, k, v, bias, hd ** -0.5)  # (N, nh, S, hd)
            x = x + F.linear(out.transpose(1, 2).reshape(N, S, nh * hd), layer.o)
            gate, up = F.linear(rms_norm(x, layer.norm2, w.eps), layer.gate_up).chunk(2, dim=-1)
            x = x + F.linear(F.silu(gate) * up, layer.down)
        return F.linear(rms_norm(x[:, -1], w.norm, w.eps), w.head)  # (N, V)
