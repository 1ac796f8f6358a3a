"""Loading a base: the tokenizer, the 4-bit NF4 base (one numeric path on every CPU, dequantised once
on a CPU), and the LoRA adapters' settings and targets for each model family."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import torch

from prime.errors import UserError
from prime.models.cache import _first_line


@dataclass
class LoraSettings:
    """LoRA adapter shape, shared by the policy and PRM adapters."""

    r: int = 16
    """adapter rank"""
    alpha: int = 32
    """LoRA scaling numerator (scale = alpha / r)"""
    dropout: float = 0.0
    """0: log-probs must be deterministic, for the rewards and for PPO ratios"""
    targets: tuple[str, ...] = ()
    """module names that get adapters; empty: every projection of the model family's blocks
    (LORA_TARGETS, or every linear layer but the LM head for a family not in that table)"""


LLAMA_STYLE = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
LORA_TARGETS = {  # config.model_type -> every projection of its decoder block (read from transformers' modeling code)
    "llama": LLAMA_STYLE, "mistral": LLAMA_STYLE, "qwen2": LLAMA_STYLE, "qwen3": LLAMA_STYLE,
    "gemma": LLAMA_STYLE, "gemma2": LLAMA_STYLE, "gemma3_text": LLAMA_STYLE, "olmo2": LLAMA_STYLE,
    "phi3": ("qkv_proj", "o_proj", "gate_up_proj", "down_proj"),  # fused q/k/v and gate/up
}


def lora_targets(model) -> tuple[str, ...]:
    """The module names LoRA adapts in `model` (a transformers CausalLM, quantised or not).

    Known families come from LORA_TARGETS; others get every linear layer inside the decoder
    (what peft calls "all-linear"). A model with none (GPT-2's Conv1D projections, say) cannot
    carry the policy and PRM adapters on a 4-bit base: a UserError names its architecture.
    """
    import bitsandbytes as bnb

    model_type = getattr(model.config, "model_type", "?")
    linear = (torch.nn.Linear, bnb.nn.Linear4bit)
    head = model.get_output_embeddings()
    names = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, linear) and m is not head}
    wanted = LORA_TARGETS.get(model_type)
    if wanted and set(wanted) <= names:
        return wanted
    if names:
        return tuple(sorted(names))
    arch = ", ".join(getattr(model.config, "architectures", None) or [type(model).__name__])
    raise UserError(f"cannot adapt {arch} (model_type {model_type!r}): it has no linear projections for LoRA on a "
                    f"4-bit base; supported families: {', '.join(sorted(LORA_TARGETS))} and others built of nn.Linear")


def output_head(lm):
    """The LM head as (N, H) -> (N, V) logits, exactly as the model's own forward makes them:
    Gemma 2 caps its final logits (tanh(x / c) · c) after the head, so we do too."""
    head = lm.get_output_embeddings()
    cap = getattr(lm.config, "final_logit_softcapping", None)
    if not cap:
        return head
    return lambda h: torch.tanh(head(h) / cap) * cap


def load_tokenizer(model_dir: Path):
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(model_dir)
    except Exception as e:  # noqa: BLE001 - a corrupt tokenizer.json raises many types
        raise UserError(f"cannot load the tokenizer in {model_dir} ({type(e).__name__}: {_first_line(e)}); "
                        "rebuild the model (`prime models build NAME --force`)") from None
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_base(model_dir: Path, quant: str = "4bit", device: torch.device | None = None):
    """The frozen base: 4-bit NF4 with double quantisation (bitsandbytes), or unquantised.

    Compute dtype bf16 on CUDA, fp32 on the CPU (ARCHITECTURE.md).
    """
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    device = device or default_device()
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    if quant not in ("4bit", "none"):
        raise UserError(f"unknown --quant {quant!r}; choose 4bit or none")
    require_causal_lm(model_dir)
    kwargs = {"dtype": dtype, "device_map": {"": device}}
    if quant == "4bit":
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype,
        )
    try:
        model = AutoModelForCausalLM.from_pretrained(model_dir, **kwargs)
    except Exception as e:  # noqa: BLE001 - any failure here means the files are bad (safetensors, json, shapes)
        raise UserError(f"cannot load model from {model_dir} ({type(e).__name__}: {_first_line(e)}); "
                        f"rebuild it (`prime models build NAME --force`) or re-download it") from None
    model.requires_grad_(False)
    model.eval()
    if quant == "4bit":
        one_numeric_path(model)
    return model


def one_numeric_path(model) -> int:
    """Keep every 4-bit layer on the one kernel that also computes gradients; returns how many.

    bitsandbytes ≥ 0.48 (`Linear4bit.forward`) repacks a layer's NF4 bytes into a CPU-specific
    layout the first time the layer runs in eval mode on an input that needs no grad, when the
    CPU has AVX512-BF16 (Sapphire Rapids and later: most cloud x86), and from then on computes
    that layer with a bf16 gemv kernel that has no backward. On such a machine the reference
    and old-policy log-probs (no grad) would differ from the PPO and PRM forwards (grad), so the
    first ratio is not 1 and rewards are not 0 at init; gradients stop at every repacked layer;
    and the merged sampler would dequantise the repacked bytes as if they were NF4. Turning the
    per-layer switch off at load keeps one layout and one kernel (the dequantise + matmul of
    `gemm_4bit`) on every CPU and GPU, with and without grad. Cost: on such CPUs no-grad
    forwards lose that kernel's speed; the engine is correct first.
    """
    import bitsandbytes as bnb

    n = 0
    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False
            n += 1
    return n


DENSE_BUDGET_BYTES = 4 << 30
"""dequantise_once keeps at most this many bytes of dequantised weights (smollm2-135m: 0.5 GiB)"""


def dequantise_once(model, budget_bytes: int = DENSE_BUDGET_BYTES) -> dict:
    """On a CPU, compute every 4-bit layer with its weights dequantised once; returns
    {layer: its dequantised (out, in) weight} ({} when skipped).

    bitsandbytes' CPU matmul (`gemm_4bit`, the one kernel one_numeric_path keeps) dequantises
    the NF4 weights on every call, then runs `F.linear`; its backward dequantises them again.
    Keeping the dequantised matrix (exactly the values those calls compute: a test checks the
    bits) removes that work from every forward and backward: the same numbers, ~4 bytes a
    weight more memory. The 4-bit weights stay where they are (adapters, the merged sampler
    and checkpoints read them). Skipped on a GPU (bitsandbytes' CUDA kernels are the point
    there) and when the copy would exceed `budget_bytes`.
    """
    import bitsandbytes as bnb

    layers = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    if not layers or layers[0].weight.device.type != "cpu":
        return {}
    dtype = layers[0].compute_dtype or torch.float32
    dense_bytes = sum(m.weight.quant_state.shape.numel() for m in layers) * torch.finfo(dtype).bits // 8
    if dense_bytes > budget_bytes:
        return {}
    dense = {}
    for m in layers:
        with torch.no_grad():
            dense[m] = bnb.functional.dequantize_4bit(m.weight.data, m.weight.quant_state).to(dtype)
        m.forward = functools.partial(_dense_linear, weight=dense[m], bias=m.bias)
    return dense


def _dense_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Linear4bit.forward with its weights already dequantised (compute dtype in, input dtype out)."""
    return torch.nn.functional.linear(x.to(weight.dtype), weight, None if bias is None else bias.to(weight.dtype)).to(x.dtype)


def require_causal_lm(model_dir: Path) -> None:
    """PRIME's three roles are decoder-only LMs: refuse anything else by name, before loading."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    try:
        config = AutoConfig.from_pretrained(model_dir)
    except Exception as e:  # noqa: BLE001 - a bad config.json raises many types; load_base reports it
        raise UserError(f"cannot read {model_dir}/config.json ({type(e).__name__}: {_first_line(e)}); "
                        "is it a Hugging Face model directory?") from None
    if config.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        arch = ", ".join(config.architectures or [type(config).__name__])
        raise UserError(f"cannot adapt {arch} (model_type {config.model_type!r}) in {model_dir}: it is not a causal "
                        "(decoder-only) language model, which the policy, PRM and reference must be; "
                        "use a Llama, Qwen2/3, Mistral, Gemma 2, Phi-3 or other causal LM")


def model_config(source):
    """A transformers config from a model directory or a bare config.json (keys starting with _
    are comments)."""
    import json

    from transformers import AutoConfig

    path = Path(source)
    try:
        if path.suffix == ".json":
            d = {k: v for k, v in json.loads(path.read_text()).items() if not k.startswith("_")}
            return AutoConfig.for_model(d.pop("model_type"), **d)
        return AutoConfig.from_pretrained(path)
    except (OSError, ValueError, KeyError, TypeError) as e:  # missing file, bad JSON, no or unknown model_type
        raise UserError(f"{path}: not a model config ({type(e).__name__}: {_first_line(e)}); expected a model "
                        "directory or a config.json with model_type, hidden_size, num_hidden_layers, ...") from None


def meta_model(config):
    """The CausalLM of a config on the meta device: every parameter's shape, no memory."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)
