"""Adapter persistence and optimizers: both adapters saved in peft's format under a checkpoint
directory, with the PRM's logit scale beside them, and loaded back into running roles; the
optimizer of an adapter's parameters (torch AdamW or bitsandbytes' 8-bit AdamW)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from prime.errors import UserError

if TYPE_CHECKING:
    from prime.models.roles import Roles

PRM_HEAD_FILE = "prm_head.json"


def prm_logit_scale_of(ckpt_dir: Path) -> float:
    """The logit scale a checkpoint's PRM was trained with (1 when the checkpoint predates it)."""
    path = Path(ckpt_dir) / "prm" / PRM_HEAD_FILE
    if not path.is_file():
        return 1.0
    try:
        scale = float(json.loads(path.read_text())["logit_scale"])
    except (ValueError, KeyError, TypeError) as e:
        raise UserError(f"{path}: unreadable ({e}); expected {{\"logit_scale\": <number>}}") from None
    if not (math.isfinite(scale) and scale > 0):
        raise UserError(f"{path}: logit_scale {scale} must be a finite number > 0")
    return scale


def save_adapters(roles: Roles, out_dir: Path) -> None:
    """Save both adapters (peft format) under out_dir/policy and out_dir/prm."""
    for role in ("policy", "prm"):
        roles.models[role].save_pretrained(out_dir / "_tmp", selected_adapters=[role])
        src = out_dir / "_tmp" / role if (out_dir / "_tmp" / role).is_dir() else out_dir / "_tmp"
        shutil.rmtree(out_dir / role, ignore_errors=True)
        src.rename(out_dir / role)
        shutil.rmtree(out_dir / "_tmp", ignore_errors=True)
    (out_dir / "prm" / PRM_HEAD_FILE).write_text(json.dumps({"logit_scale": roles.prm_logit_scale}))


def load_adapters(roles: Roles, ckpt_dir: Path, which: tuple[str, ...] = ("policy", "prm")) -> None:
    """Load adapter weights saved by save_adapters into the running adapters."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    for role in which:
        path = ckpt_dir / role / "adapter_model.safetensors"
        if not path.is_file():
            raise UserError(f"checkpoint {ckpt_dir} has no {role} adapter ({path} missing); pick another step")
        result = set_peft_model_state_dict(roles.models[role], load_file(path), adapter_name=role)
        if getattr(result, "unexpected_keys", None):
            raise UserError(f"{path}: adapter does not fit model {roles.model_dir} (unexpected {result.unexpected_keys[:3]})")
        if role == "prm":
            roles.prm_logit_scale = prm_logit_scale_of(ckpt_dir)


def make_optimizer(kind: str, params: list, lr: float, weight_decay: float = 0.01):
    """Config `optimizer` over one adapter's parameters: torch's AdamW, or bitsandbytes' 8-bit
    AdamW (states in 8 bits: 2 bytes a parameter instead of 8), paged on CUDA only. The same
    defaults as torch.optim.AdamW (betas 0.9/0.999, eps 1e-8, weight decay 0.01)."""
    if kind == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    import bitsandbytes as bnb

    if kind == "paged_adamw8bit":
        if not torch.cuda.is_available():
            raise UserError("--optimizer paged_adamw8bit needs CUDA (paged memory); on a CPU use adamw or adamw8bit")
        return bnb.optim.PagedAdamW8bit(params, lr=lr, weight_decay=weight_decay)
    return bnb.optim.AdamW8bit(params, lr=lr, weight_decay=weight_decay)
