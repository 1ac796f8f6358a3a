"""The merged sampler: a plain full-precision copy of the policy (the 4-bit base dequantised plus
the LoRA delta), refreshed from the adapter each time it is used; and the choice between it and
sampling through the 4-bit base with the adapter unmerged (config `sampler`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from prime.models.roles import Roles

def choose_sampler(requested: str, device: torch.device, copy_bytes: int, device_bytes: int | None = None) -> str:
    """Config `sampler`: merged or adapter as asked; auto resolves to merged on a CPU (its 4-bit
    weights are dequantised once already, and the plain copy samples several times faster) or where
    the full-precision copy takes at most a tenth of the GPU's memory (a 135M model: 0.5 GB), and to
    adapter otherwise (a 7B policy's fp32 copy alone is ~30 GB)."""
    if requested != "auto":
        return requested
    if device.type != "cuda":
        return "merged"
    total = device_bytes if device_bytes is not None else torch.cuda.get_device_properties(device).total_memory
    return "merged" if copy_bytes <= total / 10 else "adapter"


def merged_state_dict(roles: Roles, role: str = "policy") -> dict[str, torch.Tensor]:
    """Full-precision weights of `role`: the 4-bit base dequantised (exactly the values its
    matmuls use) plus the adapter's LoRA delta B·A·scale, named as in a plain model."""
    import bitsandbytes as bnb
    from peft.tuners.lora import LoraLayer

    lm = roles.causal_lm(roles.models[role])
    state = {}
    with torch.no_grad():
        for name, module in lm.named_modules():
            if not isinstance(module, LoraLayer):
                continue
            base = module.get_base_layer()
            w = base.weight
            if getattr(getattr(w, "quant_state", None), "packing_format_for_cpu", False):
                raise RuntimeError(f"{name}: bitsandbytes repacked this 4-bit weight for its CPU kernel; "
                                   "load the base with prime.models.load_base (one_numeric_path)")
            if base in roles.dequantised:  # already dequantised once: the same values
                w = roles.dequantised[base]
            elif hasattr(w, "quant_state"):
                w = bnb.functional.dequantize_4bit(w.data, w.quant_state)
            w = w.detach().float()
            if role in module.lora_A:
                w = w + module.get_delta_weight(role).float()
            state[f"{name}.weight"] = w
            if base.bias is not None:
                state[f"{name}.bias"] = base.bias.detach().float()
        for name, p in lm.named_parameters():
            if "lora_" not in name and ".base_layer." not in name:
                state[name] = p.detach().float()
    return state


def sampler_bytes(roles: Roles) -> int:
    """Bytes of the merged sampler's full-precision copy (fp32, every parameter of the model)."""
    return 4 * sum(p.numel() if not hasattr(p, "quant_state") else p.quant_state.shape.numel()
                   for n, p in roles.causal_lm(roles.models["ref"]).named_parameters() if "lora_" not in n)


@dataclass
class MergedSampler:
    """A plain full-precision copy of the policy for sampling, refreshed from the adapter on every
    use (cheap next to generation). Sampling through peft + bitsandbytes costs a dequantisation
    per layer per token; the copy samples the same distribution (tests/test_memory_levers.py), and
    the PPO ratio uses log-probs recomputed by the real 4-bit policy (PRIME_SPEC §6)."""

    model: torch.nn.Module | None = None

    def refreshed(self, roles: Roles):
        from transformers import AutoModelForCausalLM

        if self.model is None:
            config = roles.causal_lm(roles.models["ref"]).config
            self.model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).to(roles.device).eval()
            self.model.requires_grad_(False)
        missing, unexpected = self.model.load_state_dict(merged_state_dict(roles, "policy"), strict=False)
        if unexpected or [k for k in missing if "lm_head" not in k]:
            raise RuntimeError(f"sampler weights do not fit: missing {missing[:3]}, unexpected {unexpected[:3]}")
        self.model.tie_weights()
        return self.model
