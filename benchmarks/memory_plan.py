"""The memory model of `prime plan` against measured peaks, and the 7B table.

    python benchmarks/memory_plan.py                       # tiny and smollm2-135m on this CPU, then the 7B table
    python benchmarks/memory_plan.py --models tiny --device cuda   # the same on a GPU (gpu_checks.sh)

For each model and setting: the real roles (prime.models.Roles) on this device, a batch of
P × K rows forced to full length (prompt_tokens + max_new_tokens), and each phase measured on
its own: sampling (the sampler in use, EOS disabled so every row decodes max_new_tokens tokens),
no-grad scoring of every row in micro-batches, and one PRM update of a micro-batch (forward and
backward). On a CPU a phase's peak is PeakBytes (the bytes of tensors made in it and alive at
its worst moment); on CUDA torch.cuda.max_memory_allocated after reset_peak_memory_stats, minus
what was allocated before. Persistent bytes are counted from the tensors themselves (weights,
dequantised copies, adapters, their gradients and optimizer states after one step, the sampler).
Writes benchmarks/results/memory_plan.json; BENCHMARKS.md "Memory plan" has the tables.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from dataclasses import asdict, replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from prime.models import LoraSettings, Roles, make_batch, make_optimizer, resolve_model, storage_bytes
from prime.plan import PeakBytes, Setup, Shape, gib, largest_fit, plan
from prime.rollout import generate
from prime.trainer import scored

SETTINGS = {  # model -> the settings measured (PoC-sized, plus a longer and a checkpointed one)
    "tiny": [Setup(prompts_per_step=16, samples_per_prompt=4, prompt_tokens=32, max_new_tokens=96, micro_batch=16),
             Setup(prompts_per_step=8, samples_per_prompt=4, prompt_tokens=32, max_new_tokens=224, micro_batch=8,
                   gradient_checkpointing=True)],
    "smollm2-135m": [Setup(prompts_per_step=4, samples_per_prompt=4, prompt_tokens=64, max_new_tokens=192, micro_batch=8),
                     Setup(prompts_per_step=4, samples_per_prompt=4, prompt_tokens=64, max_new_tokens=448, micro_batch=4,
                           gradient_checkpointing=True)],
}
QWEN_7B = ROOT / "data" / "configs" / "qwen2.5-7b.json"
CARD = 24 * 2**30


@contextlib.contextmanager
def measured(device: torch.device):
    """Yields a dict whose 'peak' is filled with the bytes the block added at its worst moment."""
    out = {}
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        yield out
        torch.cuda.synchronize()
        out["peak"] = torch.cuda.max_memory_allocated() - before
    else:
        with PeakBytes() as tracker:
            yield out
        out["peak"] = tracker.peak


class NoEos:
    """The tokenizer with its EOS out of reach: every row decodes the full length."""

    def __init__(self, tok):
        self.tok = tok

    def __getattr__(self, name):
        return -1 if name == "eos_token_id" else getattr(self.tok, name)


def measure(name: str, setup: Setup, device: torch.device) -> dict:
    """One model and setting: the persistent bytes and each phase's peak, measured."""
    torch.manual_seed(0)
    roles = Roles(resolve_model(name), device=device, lora=LoraSettings(r=setup.lora_r, alpha=2 * setup.lora_r),
                  recompute=setup.gradient_checkpointing)
    tok = roles.tokenizer
    g = torch.Generator().manual_seed(0)
    vocab = len(tok)
    prompts = [torch.randint(3, vocab, (setup.prompt_tokens,), generator=g).tolist() for _ in range(setup.prompts_per_step)]
    rows = [p for p in prompts for _ in range(setup.samples_per_prompt)]
    responses = [torch.randint(3, vocab, (setup.max_new_tokens,), generator=g).tolist() for _ in rows]
    batch = make_batch(rows, responses, tok.pad_token_id)
    mask = batch.response_mask.float().to(device)
    opts = {role: make_optimizer(setup.optimizer, roles.adapter_parameters(role), lr=1e-4) for role in ("policy", "prm")}
    sampler = roles.sampler() if setup.sampler == "merged" else None

    policy = contextlib.nullcontext(sampler) if sampler is not None else roles.role("policy")
    with measured(device) as sample, policy as model:
        generate(model, NoEos(tok), rows, setup.max_new_tokens, batch_size=setup.sample_rows)
    shape = (12, *batch.input_ids.shape)  # the step's (B, T) log-prob, reward and advantage tensors (learn())
    with measured(device) as score:
        step = torch.zeros(shape, device=device)
        scored(roles, "ref", batch, slice(0, len(rows)), setup.micro_batch, setup.micro_batch_tokens)
        del step
    index = torch.arange(setup.micro_rows())
    part = make_batch([rows[i] for i in index], [responses[i] for i in index], tok.pad_token_id)
    with measured(device) as update:
        step = torch.zeros(shape, device=device)
        logp = roles.logprobs("prm", part, grad=True)
        (logp * mask[index]).sum().backward()
        del logp, step
    for role, opt in opts.items():  # one step each, so gradients and optimizer states exist
        for p in roles.adapter_parameters(role):
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        opt.step()
    adapters = [p for role in ("policy", "prm") for p in roles.adapter_parameters(role)]
    states = [t for opt in opts.values() for s in opt.state.values() for t in s.values() if isinstance(t, torch.Tensor)]
    persistent = {
        "base (weights, dequantised copies; adapters excluded)": roles.memory_bytes() - storage_bytes(adapters),
        "adapters": storage_bytes(adapters), "adapter gradients": storage_bytes(p.grad for p in adapters),
        "optimizer states": storage_bytes(states),
        "merged sampler": storage_bytes([*sampler.parameters(), *sampler.buffers()]) if sampler is not None else 0,
    }
    return {"persistent": persistent, "persistent_total": sum(persistent.values()),
            "phases": {"sample": sample["peak"], "score": score["peak"], "update": update["peak"]}}


def compare(model: str, setup: Setup, device: torch.device) -> dict:
    predicted = plan(Shape.of(resolve_model(model), name=model), setup)
    got = measure(model, setup, device)
    rows = {"persistent": (predicted["persistent_total"], got["persistent_total"])}
    rows |= {phase: (predicted["phase_totals"][phase], got["phases"][phase]) for phase in got["phases"]}
    peak_measured = got["persistent_total"] + max(got["phases"].values())
    rows["peak"] = (predicted["peak"], peak_measured)
    return {"model": model, "setup": asdict(setup), "device": device.type,
            "rows": {k: {"predicted": p, "measured": m, "ratio": p / m if m else None} for k, (p, m) in rows.items()},
            "measured": got, "predicted": predicted}


def seven_b_table() -> list[dict]:
    """Qwen2.5-7B's shape, 3k-token responses, K = 4, on one 24 GB card: which settings fit."""
    shape = Shape.of(QWEN_7B, name="Qwen2.5-7B")
    base = Setup(prompts_per_step=64, samples_per_prompt=4, prompt_tokens=512, max_new_tokens=3072, device="cuda",
                 chunk_rows=1024)
    variants = {
        "as the CPU PoC runs (merged sampler, 64 rows decoded at once, micro-batch 4, no checkpointing)":
            replace(base, sampler="merged", sample_rows=64, micro_batch=4),
        "adapter sampler, 64 rows at once, micro-batch 4, no checkpointing":
            replace(base, sampler="adapter", sample_rows=64, micro_batch=4),
        "adapter sampler, 32 rows at once, micro-batch 1, gradient checkpointing":
            replace(base, sampler="adapter", sample_rows=32, micro_batch=1, gradient_checkpointing=True),
        "adapter sampler, 32 rows at once, micro-batch 1, checkpointing, 8-bit AdamW, head chunks of 256":
            replace(base, sampler="adapter", sample_rows=32, micro_batch=1, gradient_checkpointing=True,
                    optimizer="adamw8bit", chunk_rows=256),
    }
    out = []
    for name, setup in variants.items():
        p = plan(shape, setup)
        out.append({"setting": name, "setup": asdict(setup), "persistent": p["persistent_total"],
                    "phases": p["phase_totals"], "peak_phase": p["peak_phase"], "peak": p["peak"],
                    "fits_24GB": p["peak"] + 2**29 <= CARD, "largest_fit_24GB": largest_fit(shape, setup, CARD - 2**29),
                    "components": p["persistent"] | {f"{ph}: {k}": v for ph, parts in p["phases"].items() for k, v in parts.items()}})
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=list(SETTINGS))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "memory_plan.json")
    args = ap.parse_args()
    device = torch.device(args.device)
    results = []
    for model in args.models:
        for setup in SETTINGS[model]:
            setup = replace(setup, device=device.type)
            r = compare(model, setup, device)
            results.append(r)
            print(f"{model} P×K={setup.rows} length={setup.length} micro={setup.micro_batch} "
                  f"checkpointing={setup.gradient_checkpointing}")
            for k, row in r["rows"].items():
                print(f"  {k:<11} predicted {gib(row['predicted']):>10}  measured {gib(row['measured']):>10}  "
                      f"ratio {row['ratio']:.2f}")
    table = seven_b_table()
    for row in table:
        print(f"7B: {row['setting']}: peak {gib(row['peak'])} ({row['peak_phase']}), fits 24 GB: {row['fits_24GB']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"device": device.type, "validation": results, "qwen2.5_7b": table}, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
