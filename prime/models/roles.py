"""The three roles of PRIME over one 4-bit base: switching between them and their log-probs.

    policy    = base + adapter "policy"
    PRM       = base + adapter "prm"
    reference = base with adapters disabled

LoRA's B matrices start at zero, so both adapters equal the reference at step 0 and every
implicit reward is exactly 0 before the first PRM update (PRIME_SPEC §1). `layout="separate"`
loads three independent copies instead (as the reference implementations do), and
`quant="none"` keeps the base in full precision; both exist to check the shared 4-bit path."""

from __future__ import annotations

import contextlib
import functools
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from prime import decoder
from prime.errors import UserError
from prime.models.adapters import load_adapters, save_adapters
from prime.models.batch import Batch
from prime.models.loading import (
    LoraSettings,
    _dense_linear,
    default_device,
    dequantise_once,
    load_base,
    load_tokenizer,
    lora_targets,
)
from prime.models.sampler import MergedSampler, merged_state_dict, sampler_bytes
from prime.models.scoring import causal_lm_logprobs, recompute_layers

ROLES = ("policy", "prm", "ref")


def storage_bytes(tensors) -> int:
    """Bytes of the distinct storages behind `tensors` (views and tied weights counted once; None skipped)."""
    seen, total = set(), 0
    for t in tensors:
        if t is not None and t.untyped_storage().data_ptr() not in seen:
            seen.add(t.untyped_storage().data_ptr())
            total += t.untyped_storage().nbytes()
    return total


@dataclass
class Roles:
    """The three roles of PRIME over one base (layout "shared") or three copies ("separate")."""

    model_dir: Path
    quant: str = "4bit"
    layout: str = "shared"
    lora: LoraSettings = field(default_factory=LoraSettings)
    device: torch.device | None = None
    prm_logit_scale: float = 1.0
    """the PRM's logits are multiplied by this (1 + config prm_sharpen); saved with its adapter"""
    dequantise: bool = True
    """on a CPU, 4-bit weights dequantised once (dequantise_once: the same numbers, faster, ~4
    bytes a weight more memory); False keeps only the packed 4-bit weights"""
    recompute: bool = False
    """gradient checkpointing (config gradient_checkpointing): with gradients, each decoder layer
    and each chunk of LM-head logits is computed again in the backward pass instead of kept"""
    merged: MergedSampler = field(default_factory=MergedSampler, init=False, repr=False)
    """the merged full-precision copy of the policy, built on first use (sampler())"""

    def __post_init__(self):
        from peft import LoraConfig, get_peft_model

        self.device = self.device or default_device()
        if self.layout not in ("shared", "separate"):
            raise UserError(f"unknown --layout {self.layout!r}; choose shared or separate")
        self.tokenizer = load_tokenizer(self.model_dir)
        bases = [load_base(self.model_dir, self.quant, self.device) for _ in range(1 if self.layout == "shared" else 3)]
        dense = [dequantise_once(base) if self.dequantise else {} for base in bases]
        self.targets = tuple(self.lora.targets) or lora_targets(bases[0])
        cfg = LoraConfig(r=self.lora.r, lora_alpha=self.lora.alpha, lora_dropout=self.lora.dropout,
                         target_modules=list(self.targets), bias="none")
        if self.layout == "shared":
            self.shared = get_peft_model(bases[0], cfg, adapter_name="policy")
            self.shared.add_adapter("prm", cfg)
            self.models = {"policy": self.shared, "prm": self.shared, "ref": self.shared}
        else:
            self.shared = None
            self.models = {"policy": get_peft_model(bases[0], cfg, adapter_name="policy"),
                           "prm": get_peft_model(bases[1], cfg, adapter_name="prm"), "ref": bases[2]}
        self._lora_params = [p for m in self.models.values() for n, p in m.named_parameters() if "lora_" in n]
        self.plain = self._plain_path(dense[0])
        self.dequantised = {layer: w for d in dense for layer, w in d.items()}
        """{4-bit layer: its weights dequantised once} (views into `plain` where it exists)"""
        for p in self._lora_params:
            p.requires_grad_(True)
        self.context_length = getattr(self.models["ref"].config, "max_position_embeddings", None)
        if self.recompute and self.plain is None:
            for model in {id(m): m for m in self.models.values()}.values():
                recompute_layers(self.causal_lm(model))

    def _plain_path(self, dense: dict):
        """The frozen base as plain tensors for prime.decoder.hidden_states, or None where the
        roles compute through peft and transformers instead: another family, three separate
        copies, dropout in the adapters, adapters on only some projections, or 4-bit weights not
        dequantised (a GPU, a large model). The dequantised weights are then re-pointed at their rows
        of the stacked ones (`dense` and the layers updated), so they are held once."""
        import bitsandbytes as bnb

        lm = self.causal_lm(self.shared) if self.shared is not None else None
        if lm is None or self.lora.dropout or decoder.why_not_family(lm) or set(self.targets) != set(decoder.PROJECTIONS):
            return None
        layers = [getattr(m, "base_layer", m) for m in lm.modules() if hasattr(m, "base_layer")]
        if any(isinstance(m, bnb.nn.Linear4bit) and m not in dense for m in layers):
            return None
        base = decoder.base_of(lm, lambda m: dense.get(m, m.weight))
        # the dequantised weights now live stacked in `base`: each 4-bit layer computes with its
        # rows of them (the same numbers), so no second copy stays in memory
        for layer, block in zip(lm.get_decoder().layers, base.blocks):
            for group in decoder.GROUPS:
                start = 0
                for name in group:
                    m = decoder.projection(layer, name).base_layer
                    rows = m.out_features
                    if m in dense:
                        dense[m] = block.weight[group][start : start + rows]
                        m.forward = functools.partial(_dense_linear, weight=dense[m], bias=m.bias)
                    start += rows
        return base

    # -- switching
    @contextlib.contextmanager
    def role(self, role: str):
        """Within the block, the model of `role` computes: its adapter on, the other one off."""
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; expected one of {ROLES}")
        model = self.models[role]
        try:
            if self.layout == "shared" and role == "ref":
                with self.shared.disable_adapter():
                    yield model
            else:
                if self.layout == "shared":
                    self.shared.set_adapter(role)
                yield model
        finally:
            # peft's set_adapter / disable_adapter freeze adapters as a side effect; both must
            # stay trainable (each has its own optimizer; only the active one is in the graph).
            for p in self._lora_params:
                p.requires_grad_(True)

    def causal_lm(self, model):
        """The transformers CausalLM inside a (possibly peft-wrapped) model."""
        return model.get_base_model() if hasattr(model, "get_base_model") else model

    def reset_prm(self) -> None:
        """The PRM back to its start: every lora_B of the prm adapter 0 (so it equals the
        reference: process rewards exactly 0) and no logit scale (ARCHITECTURE.md)."""
        with torch.no_grad():
            for n, p in self.models["prm"].named_parameters():
                if "lora_B" in n and ".prm." in n:
                    p.zero_()
        self.prm_logit_scale = 1.0

    def adapter_parameters(self, role: str) -> list[torch.nn.Parameter]:
        if role == "ref":
            return []
        return [p for n, p in self.models[role].named_parameters() if "lora_" in n and f".{role}." in n]

    # -- log-probs
    def logprobs(self, role: str, batch: Batch, grad: bool = False, chunk_rows: int = 1024) -> torch.Tensor:
        """log π_role(y_t | x, y_<t) on response tokens, (B, T), 0 elsewhere.

        Position ids follow the attention mask, so left and right padding agree. The LM head
        runs only on response positions, a chunk of rows at a time (prime.math.logprobs).
        """
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; expected one of {ROLES}")
        scale = self.prm_logit_scale if role == "prm" else 1.0
        if self.plain is None:
            with self.role(role) as model, torch.set_grad_enabled(grad):
                return causal_lm_logprobs(self.causal_lm(model), batch, self.device, chunk_rows, scale,
                                          recompute=self.recompute)
        # a Llama-family base in plain tensors: the same arithmetic without peft's and transformers'
        # per-call machinery (prime.decoder.hidden_states); the adapter's live parameters
        lm = self.causal_lm(self.shared)
        adapter = None if role == "ref" else decoder.adapter_of(lm, role)
        with torch.set_grad_enabled(grad):
            return causal_lm_logprobs(lm, batch, self.device, chunk_rows, scale,
                                      lambda ids, attn: decoder.hidden_states(self.plain, adapter, ids, attn, self.recompute),
                                      self.recompute)

    # -- the merged sampler (prime.models.sampler) and adapter persistence (prime.models.adapters)
    def merged_state_dict(self, role: str = "policy") -> dict[str, torch.Tensor]:
        return merged_state_dict(self, role)

    def sampler_bytes(self) -> int:
        return sampler_bytes(self)

    def sampler(self):
        """The merged sampler, refreshed from the current policy adapter (prime.models.sampler)."""
        return self.merged.refreshed(self)

    def save_adapters(self, out_dir: Path) -> None:
        save_adapters(self, out_dir)

    def load_adapters(self, ckpt_dir: Path, roles: tuple[str, ...] = ("policy", "prm")) -> None:
        load_adapters(self, ckpt_dir, roles)

    def memory_bytes(self) -> int:
        """Bytes held by parameters and buffers of all distinct models and by the weights
        dequantised once (the roles' footprint)."""
        return storage_bytes([t for m in self.models.values() for t in [*m.parameters(), *m.buffers()]]
                             + [*self.dequantised.values()])

    def describe(self) -> dict:
        return {"model_dir": str(self.model_dir), "quant": self.quant, "layout": self.layout,
                "lora": asdict(self.lora) | {"targets": list(self.targets)}, "device": str(self.device),
                "model_type": getattr(self.causal_lm(self.models["ref"]).config, "model_type", None),
                "forward": "plain" if self.plain is not None else "transformers"}
