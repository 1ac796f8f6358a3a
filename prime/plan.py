"""How much memory a PRIME run needs, from the model's config alone (no weights): `prime plan`.

The model counts the bytes of every tensor the run keeps or makes, read from the code that makes
them (the numbers a CUDA device reports as torch.cuda.max_memory_allocated; the CUDA context and
the allocator's slack come on top). Persistent, for the whole run:
- base: the 4-bit NF4 projections (½ byte a weight + double-quantised statistics), every other
  weight (embeddings, an untied head, norms, biases) in the compute dtype (bf16 on CUDA, fp32 on a
  CPU); on a CPU also the projections dequantised once (fp32: models.dequantise_once);
- adapters: policy and PRM LoRA in fp32, their gradients (kept between steps), optimizer states
  (AdamW: 8 bytes a parameter; 8-bit AdamW: 2 and a statistic per 256);
- the merged sampler's fp32 copy of the whole model, when the sampler is merged.
The peak of each phase on top of that:
- sample: the KV cache of `sample_rows` rows × (prompt + response) positions, the decode step's
  logits and sampling buffers;
- score (no gradient: reference, old policy, PRM scoring): one micro-batch's largest layer
  working set and one chunk of LM-head logits;
- update (PRM and policy): the activations a micro-batch keeps for its backward pass, per layer
  per token as listed in `saved_per_token` (or, with gradient checkpointing, each layer's input
  and one layer recomputed), plus the fp32 logits of its response tokens (one chunk's when
  recomputed), plus the backward pass's transient.
`benchmarks/memory_plan.py` checks it against the measured peaks (PeakBytes) of tiny and
smollm2-135m on a CPU.
"""

from __future__ import annotations

import json
import math
import weakref
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

NF4_BYTES = 0.5 + 1 / 64 + 4 / (64 * 256)
"""a 4-bit weight: half a byte, an 8-bit absmax per block of 64, an fp32 absmax per 256 blocks"""
ADAM8_BYTES = 2 + 2 * 4 / 256
"""bitsandbytes' 8-bit AdamW: two 1-byte states, each with an fp32 absmax per block of 256"""


@dataclass(frozen=True)
class Shape:
    """What memory depends on in a decoder-only model, read from its config."""

    name: str
    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    quantised: int
    """weights of the decoder's linear projections (what bitsandbytes stores in 4 bits)"""
    other: int
    """every other weight: embeddings, an untied LM head, norms, biases"""
    lora_per_rank: int
    """LoRA parameters of one adapter per unit of rank: Σ (in + out) over the adapted projections"""

    @classmethod
    def of(cls, config, name: str = "") -> Shape:
        """From a transformers config (or a model directory / config.json path), on the meta
        device (prime.models.meta_model): the model is built without memory, only its parameter
        shapes are read."""
        from prime.models import LLAMA_STYLE, LORA_TARGETS, meta_model, model_config

        if isinstance(config, (str, Path)):
            name = name or (Path(config).stem if Path(config).suffix == ".json" else Path(config).name)
            config = model_config(config)
        model = meta_model(config)
        targets = LORA_TARGETS.get(config.model_type, LLAMA_STYLE)
        quantised, lora, seen = 0, 0, set()
        for mod_name, m in model.get_decoder().named_modules():
            if isinstance(m, torch.nn.Linear):
                quantised += m.weight.numel()
                if mod_name.rsplit(".", 1)[-1] in targets:
                    lora += m.in_features + m.out_features
        total = 0
        for p in model.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                total += p.numel()
        heads = config.num_attention_heads
        return cls(name=name or config.model_type, layers=config.num_hidden_layers, hidden=config.hidden_size,
                   intermediate=config.intermediate_size, heads=heads,
                   kv_heads=getattr(config, "num_key_value_heads", None) or heads,
                   head_dim=getattr(config, "head_dim", None) or config.hidden_size // heads,
                   vocab=config.vocab_size, quantised=quantised, other=total - quantised, lora_per_rank=lora)


@dataclass(frozen=True)
class Setup:
    """The run settings memory depends on (TrainConfig's names where they exist)."""

    prompts_per_step: int = 8
    samples_per_prompt: int = 4
    prompt_tokens: int = 64
    max_new_tokens: int = 128
    lora_r: int = 16
    micro_batch: int = 16
    micro_batch_tokens: int = 0
    sample_rows: int = 512
    chunk_rows: int = 1024
    """response tokens per LM-head chunk (Roles.logprobs' chunk_rows)"""
    device: str = "cpu"
    """cpu (fp32, 4-bit layers dequantised once, the plain path) or cuda (bf16, packed NF4, peft)"""
    sampler: str = "merged"
    gradient_checkpointing: bool = False
    optimizer: str = "adamw"

    @property
    def compute_bytes(self) -> int:
        return 2 if self.device == "cuda" else 4

    @property
    def rows(self) -> int:
        return self.prompts_per_step * self.samples_per_prompt

    @property
    def length(self) -> int:
        return self.prompt_tokens + self.max_new_tokens

    def micro_rows(self) -> int:
        """Rows of the largest micro-batch (every row at full length: the worst case)."""
        rows = min(self.micro_batch, self.rows)
        if self.micro_batch_tokens:
            rows = max(1, min(rows, self.micro_batch_tokens // self.length))
        return rows


def saved_per_token(s: Shape, u: Setup) -> float:
    """Bytes one layer keeps for its backward pass per token, LoRA on every projection.

    Read from the code (prime.decoder._block on a CPU, transformers + peft on CUDA):
    - each RMSNorm keeps its input and its output (the projections' input): 2H, and on CUDA the
      input is kept as its fp32 upcast (transformers computes the norm in fp32);
    - attention keeps q and k after RoPE, v, its output and the output reshaped for o_proj; the plain
      path keeps the whole fused q/k/v projection (v is a view of it), peft keeps v alone;
    - the MLP keeps gate and up (silu and the product read them), silu(gate) and the product: 4I;
    - LoRA keeps each A output (r per projection); on CUDA peft also casts each projection's
      input to the adapter's fp32 (q, k, v, gate, up: H each; o: nh·hd; down: I).
    """
    b = u.compute_bytes
    H, I, r = s.hidden, s.intermediate, u.lora_r
    q, kv = s.heads * s.head_dim, s.kv_heads * s.head_dim
    if u.device == "cuda":
        norms = 2 * (4 * H + 2 * H)
        attention = (q + kv + kv + q + q) * b
        lora = 7 * r * 4 + 4 * (5 * H + q + I)
    else:
        norms = 4 * H * b
        attention = ((q + 2 * kv) + (q + kv) + q + q) * b
        lora = 7 * r * b
    return norms + attention + 4 * I * b + lora + gqa_scores_per_token(s, u)


def gqa_scores_per_token(s: Shape, u: Setup) -> float:
    """On a CPU, grouped-query attention (fewer key/value heads than query heads) takes torch's
    math kernel, which keeps the attention probabilities: nh × T fp32 a token. Flash-style kernels
    (CUDA; a CPU without GQA) keep none."""
    return s.heads * u.length * 4 if u.device == "cpu" and s.kv_heads != s.heads else 0


def stacked_bytes(s: Shape) -> float:
    """prime.decoder.base_of stacks q/k/v and gate/up into one matrix each (fp32), every time the
    merged sampler decodes."""
    return 4 * s.layers * s.hidden * ((s.heads + 2 * s.kv_heads) * s.head_dim + 2 * s.intermediate)


def working_per_token(s: Shape, u: Setup) -> float:
    """Bytes a layer holds at once per token beyond its input, without gradients: the MLP's
    gate/up output (2I), silu(gate) and the product (2I), the residual stream, the normed input
    and the norm's temporaries (4H)."""
    return (4 * s.intermediate + 4 * s.hidden) * u.compute_bytes


def plan(s: Shape, u: Setup) -> dict:
    """Bytes by component and phase; the peak phase and its total."""
    b = u.compute_bytes
    lora = 2 * s.lora_per_rank * u.lora_r  # both adapters
    persistent = {
        "base: 4-bit projections": s.quantised * NF4_BYTES,
        "base: other weights": s.other * b,
        "base: projections dequantised once (CPU)": s.quantised * 4 if u.device == "cpu" else 0,
        "adapters (policy + PRM)": lora * 4,
        "adapter gradients": lora * 4,
        "optimizer states": lora * (8 if u.optimizer == "adamw" else ADAM8_BYTES),
        "merged sampler (fp32 copy)": (s.quantised + s.other) * 4 if u.sampler == "merged" else 0,
    }
    rows = min(u.sample_rows, u.rows)
    kv_bytes = 4 if u.sampler == "merged" else b
    cache = 2 * s.layers * rows * s.kv_heads * s.head_dim * u.length * kv_bytes
    # the merged copy decodes with prime.decoder: each distinct prompt prefilled once, a preallocated
    # cache; the adapter path runs transformers on every row, its cache growing a layer at a time
    prefill_rows = min(rows, u.prompts_per_step) if u.sampler == "merged" else rows
    sample = {"KV cache": cache,
              "q/k/v and gate/up stacked for the decoder (merged sampler)": stacked_bytes(s) if u.sampler == "merged" else 0,
              "one layer's keys or values copied (attention over the cache; growing it)": cache / (2 * s.layers),
              "decode step: logits, probabilities, cumulative (float64)": rows * s.vocab * (4 + 4 + 8),
              "prefill (one layer's working set)": prefill_rows * u.prompt_tokens * working_per_token(s, u)}
    m = u.micro_rows()
    tokens = m * u.length
    resp = m * u.max_new_tokens
    chunk = min(u.chunk_rows, resp)
    step_tensors = 12 * u.rows * u.length * 4  # the step's (B, T) log-prob, reward and advantage tensors
    # without gradients the layers and then the head run one after the other: the larger of one
    # layer's working set and one chunk of logits (in the compute dtype, plus their fp32 upcast)
    head_chunk = chunk * s.vocab * (b + (4 if b != 4 else 0))
    layer = tokens * (working_per_token(s, u) + gqa_scores_per_token(s, u))
    score = {"hidden states": tokens * s.hidden * b, "one layer or one chunk of logits, the larger": max(layer, head_chunk),
             "step tensors": step_tensors}
    # the LM head: a chunk's fp32 logits are what logsumexp keeps; its backward adds their gradient
    head_backward = chunk * s.vocab * 4
    if u.gradient_checkpointing:  # a chunk recomputed in backward: its logits, exp and gather's gradients at once
        activations = s.layers * tokens * s.hidden * b + tokens * saved_per_token(s, u)
        logits = resp * s.hidden * b + chunk * s.vocab * 4 + 2 * head_backward
    else:
        activations = s.layers * tokens * saved_per_token(s, u)
        logits = resp * s.vocab * 4 + head_backward
    update = {"activations kept for backward": activations, "LM-head logits kept for backward": logits,
              "backward transient (gradients of one layer's MLP and residual)":
                  tokens * (2 * s.intermediate + 2 * s.hidden) * b,
              "step tensors": step_tensors}
    phases = {"sample": sample, "score": score, "update": update}
    totals = {name: sum(parts.values()) for name, parts in phases.items()}
    peak = max(totals, key=totals.get)
    base = sum(persistent.values())
    return {"shape": asdict(s), "setup": asdict(u), "persistent": persistent, "phases": phases,
            "persistent_total": base, "phase_totals": totals, "peak_phase": peak, "peak": base + totals[peak]}


def largest_fit(s: Shape, u: Setup, budget: float) -> dict:
    """Within `budget` bytes: the most rows sampled at once and the most tokens in a micro-batch
    (every row at full length), each searched with the other phase's setting as given."""
    def fits(v: Setup) -> bool:
        return plan(s, v)["peak"] <= budget

    rows = 0
    for n in (2**i for i in range(20)):
        if n > u.rows or not fits(replace(u, sample_rows=n, micro_batch=1, micro_batch_tokens=0)):
            break
        rows = n
    micro = 0
    for n in range(1, u.rows + 1):
        if not fits(replace(u, sample_rows=1, micro_batch=n, micro_batch_tokens=0)):
            break
        micro = n
    return {"sample_rows": rows, "micro_batch_rows": micro, "micro_batch_tokens": micro * u.length}


class PeakBytes(TorchDispatchMode):
    """The bytes of tensors made inside the block and alive at its worst moment (`peak`), as
    torch.cuda.max_memory_allocated counts them after reset_peak_memory_stats, on any device: each
    new storage is counted until it is freed. Tensors that existed before are not counted."""

    def __init__(self):
        super().__init__()
        self.live: dict[int, int] = {}
        self.current = self.peak = 0

    def _free(self, key: int) -> None:
        self.current -= self.live.pop(key, 0)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {t.untyped_storage().data_ptr() for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)}
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.device.type != "meta":
                storage = t.untyped_storage()
                key = id(storage)
                # a view or an in-place result shares an input's storage: nothing new was allocated
                if key not in self.live and storage.nbytes() and storage.data_ptr() not in inputs:
                    self.live[key] = storage.nbytes()
                    self.current += storage.nbytes()
                    weakref.finalize(storage, self._free, key)
        self.peak = max(self.peak, self.current)
        return out


def gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**28 else f"{n / 2**20:.1f} MiB"


def table(result: dict) -> str:
    """The plan as text: components, phases, the peak."""
    lines = [f"{result['shape']['name']} on {result['setup']['device']}: "
             + ", ".join(f"{k}={v}" for k, v in result["setup"].items() if k != "device")]
    lines.append("persistent")
    lines += [f"  {k:<76} {gib(v):>10}" for k, v in result["persistent"].items() if v]
    lines.append(f"  {'total':<76} {gib(result['persistent_total']):>10}")
    for phase, parts in result["phases"].items():
        lines.append(f"{phase} (on top)")
        lines += [f"  {k:<76} {gib(v):>10}" for k, v in parts.items() if v]
    extra = "; CUDA adds its context, ~0.5 GiB, and allocator slack" if result["setup"]["device"] == "cuda" else ""
    lines.append(f"peak: {result['peak_phase']}, {gib(result['peak'])} (tensors only{extra})")
    return "\n".join(lines)


def budget_bytes(text: str) -> float:
    """'24GiB', '24GB', '24' (GiB) -> bytes."""
    from prime.errors import UserError

    t = text.strip().lower().replace(" ", "")
    number, scale = t, 2**30
    for unit, size in (("gib", 2**30), ("gb", 1e9), ("mib", 2**20), ("mb", 1e6)):
        if t.endswith(unit):
            number, scale = t[: -len(unit)], size
            break
    try:
        value = float(number)
    except ValueError:
        value = float("nan")
    if not (math.isfinite(value) and value > 0):
        raise UserError(f"--budget {text!r}: expected a positive size such as 24GiB, 80GB or 512MiB")
    return value * scale


def as_json(result: dict) -> str:
    return json.dumps(result, indent=1, default=lambda x: x if not isinstance(x, float) or math.isfinite(x) else None)
