"""One PRIME step's memory on a model of any shape, weights random (memory does not depend on
their values), against `prime plan`'s prediction, phase by phase.

    python benchmarks/gpu_step_memory.py --config data/configs/qwen2.5-7b.json --device cuda   # gpu_checks.sh
    python benchmarks/gpu_step_memory.py --config tests/data/qwen2_micro.json --device cpu     # the same code, small

Writes a randomly initialised model of the config's shape (bf16 on CUDA) with tiny's tokenizer
(token ids below 320 are all a forced-length batch needs) into --workdir, then runs
benchmarks/memory_plan.py's `compare` on it: the real Roles (NF4 base, two adapters), sampling
--max-new-tokens tokens for every row (EOS out of reach), no-grad scoring, and a PRM update with
the settings given; on CUDA each phase's torch.cuda.max_memory_allocated beside the prediction.
"""

from __future__ import annotations

import argparse
import gc
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from memory_plan import compare

from prime.models import model_config, resolve_model, write_manifest
from prime.plan import Setup, gib


def random_model(config_path: Path, out: Path, device: torch.device) -> Path:
    """A model directory of the config's shape with random weights and tiny's tokenizer."""
    from transformers import AutoModelForCausalLM

    config = model_config(config_path)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.save_pretrained(out, max_shard_size="4GB")
    del model
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()  # the bf16 copy is gone before the roles load the 4-bit one
    tiny = resolve_model("tiny")
    for f in tiny.iterdir():
        if f.name.startswith(("tokenizer", "special_tokens")):
            shutil.copy(f, out / f.name)
    write_manifest(out, kind="random weights of a config's shape", config=str(config_path))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=Path, required=True)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--workdir", type=Path, default=None, help="where the random model is written (default: a temp dir)")
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--prompt-tokens", type=int, default=256)
    ap.add_argument("--max-new-tokens", type=int, default=1024)
    ap.add_argument("--micro-batch", type=int, default=1)
    ap.add_argument("--sampler", default="adapter")
    ap.add_argument("--no-checkpointing", action="store_true")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    device = torch.device(args.device)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="prime-random-"))
    t0 = time.time()
    model_dir = random_model(args.config, work / args.config.stem, device)
    setup = Setup(prompts_per_step=args.prompts, samples_per_prompt=args.k, prompt_tokens=args.prompt_tokens,
                  max_new_tokens=args.max_new_tokens, micro_batch=args.micro_batch, sample_rows=args.prompts * args.k,
                  device=device.type, sampler=args.sampler, gradient_checkpointing=not args.no_checkpointing)
    result = compare(str(model_dir), setup, device)
    result["seconds"] = time.time() - t0
    result["config"] = str(args.config)
    for k, row in result["rows"].items():
        print(f"{k:<11} predicted {gib(row['predicted']):>10}  measured {gib(row['measured']):>10}  ratio {row['ratio']:.2f}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=1, default=str))
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
