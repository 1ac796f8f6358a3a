"""Implicit-reward scoring throughput on smollm2-135m in 4-bit: our path against a naive one.

    python benchmarks/scoring_throughput.py [--batch 16] [--length 256] [--repeats 5]

Both paths compute r_t = β·(log π_prm − log π_ref) for a batch of 16 sequences × 256 tokens
(a 64-token prompt and a 192-token response; random token ids, fixed seed: throughput does
not depend on the text), with the same PRM adapter (LoRA B set to small random values so the
rewards are not all 0) and the same 4-bit NF4 weights:
- ours:  prime's Roles, one shared 4-bit base carrying the PRM adapter (the reference is the
         base with the adapter off); the LM head runs only on response positions, a chunk of
         rows at a time, and takes log-softmax at the target only (prime.math.logprobs). On a CPU
         it keeps the 4-bit weights dequantised once and computes a Llama-family model through
         its plain-torch path (prime.decoder), as training does.
- naive: two separately loaded 4-bit models (PRM = base + LoRA, reference = base), each a
         plain forward over all positions, then the full (B, T, V) log_softmax and a gather.
- ours_unquantised: our path over the unquantised (fp32) base, to show what 4-bit costs in
         time on the CPU (naive's bitsandbytes layers dequantise the weights on every matmul;
         ours once).
The paths alternate in one process (a warm-up call each, then --repeats rounds of ours,
naive); we report the median time, tokens per second (B × T tokens through both models),
the weights each path holds (parameter + buffer bytes of its distinct models) and the peak
of anonymous memory above the level before the call (RssAnon sampled every 2 ms), and
check that both paths give the same rewards.

FLOP/s: the forward FLOPs each path performs (2 × multiply-adds of every linear layer on
every token it processes, the LoRA matrices, the causal attention products QKᵀ and AV,
and the LM head on the positions it scores), divided by its median time, against this
machine's measured fp32 matrix-multiply peak (best of torch.mm on square and model-shaped
matrices with the same threads). fp32 is the compute dtype here: on the CPU bitsandbytes
dequantises the 4-bit weights to fp32 (ARCHITECTURE.md).
Results: benchmarks/results/scoring_throughput.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import threading
import time
from pathlib import Path

import torch

OUT = Path(__file__).resolve().parent / "results" / "scoring_throughput.json"
PROMPT = 64
BETA = 0.05


def rss_anon_mib() -> float:
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("RssAnon")) / 1024


class PeakMemory:
    """Peak RssAnon above the level at entry, sampled every 2 ms by a thread (CPU);
    torch's peak allocated bytes on CUDA."""

    def __init__(self, device: torch.device):
        self.device = device

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.start = torch.cuda.memory_allocated() / 2**20
            return self
        self.start = self.peak = rss_anon_mib()
        self.done = threading.Event()

        def sample():
            while not self.done.is_set():
                self.peak = max(self.peak, rss_anon_mib())
                time.sleep(0.002)

        self.thread = threading.Thread(target=sample, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.mib = torch.cuda.max_memory_allocated() / 2**20 - self.start
        else:
            self.done.set()
            self.thread.join()
            self.mib = max(self.peak, rss_anon_mib()) - self.start


def matmul_peak_flops(device: torch.device, dtype: torch.dtype, repeats: int = 5) -> dict:
    """Best achieved FLOP/s of torch.mm on a few shapes (square and this model's projections)."""
    shapes = [(2048, 2048, 2048), (4096, 576, 1536), (4096, 1536, 576), (4096, 576, 576)]
    out = {}
    for m, k, n in shapes:
        a = torch.randn(m, k, device=device, dtype=dtype)
        b = torch.randn(k, n, device=device, dtype=dtype)
        torch.mm(a, b)
        best = float("inf")
        for _ in range(repeats):
            sync(device)
            t = time.perf_counter()
            torch.mm(a, b)
            sync(device)
            best = min(best, time.perf_counter() - t)
        out[f"{m}x{k}x{n}"] = 2 * m * k * n / best
    return out


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def forward_flops(config, lora_r: int, lora_targets: list[str], batch: int, length: int,
                  head_positions: int, lora: bool) -> float:
    """Forward FLOPs (2 per multiply-add) of one pass of a Llama-style model over batch × length
    tokens, with the LM head applied at head_positions positions in total."""
    d, m, L = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    kv = config.num_key_value_heads * (d // config.num_attention_heads)
    shapes = {"q_proj": (d, d), "k_proj": (d, kv), "v_proj": (d, kv), "o_proj": (d, d),
              "gate_proj": (d, m), "up_proj": (d, m), "down_proj": (m, d)}
    per_token = sum(i * o for i, o in shapes.values())
    if lora:
        per_token += sum(lora_r * (i + o) for name, (i, o) in shapes.items() if name in lora_targets)
    tokens = batch * length
    attention = 2 * d * length * (length + 1) / 2 * batch  # QKᵀ and AV, causal: position t sees t+1 keys
    return 2 * (L * (per_token * tokens + attention) + head_positions * d * config.vocab_size)


def naive_logprobs(model, ids: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
    """log π(y_t | y_<t) for every position 1..T-1 the plain way: all logits, full log_softmax."""
    logits = model(input_ids=ids, attention_mask=attn, use_cache=False).logits  # (B, T, V)
    logp = torch.log_softmax(logits.float(), dim=-1)  # (B, T, V)
    out = torch.zeros(ids.shape, dtype=torch.float32, device=ids.device)
    out[:, 1:] = logp[:, :-1].gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--length", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()

    from peft import get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict
    from peft.tuners.lora import LoraLayer

    from prime.math.rewards import implicit_rewards
    from prime.models import Batch, LoraSettings, Roles, load_base, resolve_model

    torch.set_grad_enabled(False)
    torch.manual_seed(0)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    path = resolve_model(args.model)
    lora = LoraSettings()

    roles = Roles(path, quant="4bit", layout="shared", lora=lora, device=device)
    for module in roles.shared.modules():  # a PRM that is not the reference (B = 0 at init)
        if isinstance(module, LoraLayer):
            torch.nn.init.normal_(module.lora_B["prm"].weight, std=0.02)
    # the same path over an unquantised base: what the 4-bit weights cost in time
    roles_fp = Roles(path, quant="none", layout="shared", lora=lora, device=device)
    set_peft_model_state_dict(roles_fp.shared, get_peft_model_state_dict(roles.shared, adapter_name="prm"), adapter_name="prm")
    naive_prm = get_peft_model(load_base(path, "4bit", device), roles.shared.peft_config["prm"], adapter_name="prm")
    set_peft_model_state_dict(naive_prm, get_peft_model_state_dict(roles.shared, adapter_name="prm"), adapter_name="prm")
    naive_ref = load_base(path, "4bit", device)

    B, T, V = args.batch, args.length, roles.models["ref"].config.vocab_size
    ids = torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(0)).to(device)
    attn = torch.ones_like(ids)
    resp = torch.zeros_like(ids)
    resp[:, PROMPT:] = 1
    batch = Batch(ids, attn, resp)
    mask = resp.bool()

    def ours():
        return implicit_rewards(roles.logprobs("prm", batch), roles.logprobs("ref", batch), resp, BETA)

    def naive():
        prm, ref = naive_logprobs(naive_prm, ids, attn), naive_logprobs(naive_ref, ids, attn)
        return BETA * (prm - ref) * resp

    def ours_unquantised():
        return implicit_rewards(roles_fp.logprobs("prm", batch), roles_fp.logprobs("ref", batch), resp, BETA)

    paths = {"ours": ours, "naive": naive, "ours_unquantised": ours_unquantised}
    rewards = {name: fn() for name, fn in paths.items()}  # warm-up, and the agreement check
    times = {name: [] for name in paths}
    peaks = {name: [] for name in paths}
    for _ in range(args.repeats):
        for name, fn in paths.items():
            with PeakMemory(device) as mem:
                sync(device)
                t = time.perf_counter()
                fn()
                sync(device)
                times[name].append(time.perf_counter() - t)
            peaks[name].append(mem.mib)

    def weight_mib(models) -> float:
        seen = {id(m): m for m in models}.values()
        return sum(t.numel() * t.element_size() for m in seen for t in [*m.parameters(), *m.buffers()]) / 2**20

    config = roles.models["ref"].config
    targets = list(roles.targets)
    n_resp = int(mask.sum())
    flops = {
        # ours: the LM head on response positions only (position t's state predicts token t+1)
        "ours": forward_flops(config, lora.r, targets, B, T, n_resp, lora=True)
        + forward_flops(config, lora.r, targets, B, T, n_resp, lora=False),
        "naive": forward_flops(config, lora.r, targets, B, T, B * T, lora=True)
        + forward_flops(config, lora.r, targets, B, T, B * T, lora=False),
    }
    flops["ours_unquantised"] = flops["ours"]
    compute_dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    peak = matmul_peak_flops(device, compute_dtype)
    peak_best = max(peak.values())
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}"
        + (f", {torch.cuda.get_device_name()}" if device.type == "cuda" else ""),
        "device": device.type, "model": args.model, "quant": "4bit NF4, double quantisation",
        "compute_dtype": str(compute_dtype).removeprefix("torch."),
        "batch": B, "length": T, "prompt_tokens": PROMPT, "response_tokens": n_resp, "repeats": args.repeats,
        "max_abs_reward_diff_ours_vs_naive": float((rewards["ours"] - rewards["naive"])[mask].abs().max()),
        "mean_abs_reward_diff_4bit_vs_unquantised": float((rewards["ours"] - rewards["ours_unquantised"])[mask].abs().mean()),
        "mean_abs_reward": float(rewards["ours"][mask].abs().mean()),
        "matmul_peak_flops": peak, "matmul_peak_flops_best": peak_best,
        "paths": {},
    }
    for name in paths:
        median = statistics.median(times[name])
        result["paths"][name] = {
            "times_s": times[name], "median_s": median, "tokens_per_s": B * T / median,
            # ours: Roles.memory_bytes, which counts the weights it keeps dequantised on a CPU
            "weights_mib": {"ours": roles.memory_bytes() / 2**20, "naive": weight_mib([naive_prm, naive_ref]),
                            "ours_unquantised": roles_fp.memory_bytes() / 2**20}[name],
            "peak_transient_mib": max(peaks[name]),
            "forward_flops": flops[name], "achieved_flops": flops[name] / median,
            "fraction_of_matmul_peak": flops[name] / median / peak_best,
        }
    o, n = result["paths"]["ours"], result["paths"]["naive"]
    result["speedup_ours_over_naive"] = n["median_s"] / o["median_s"]
    result["peak_memory_ours_over_naive"] = (o["weights_mib"] + o["peak_transient_mib"]) / (n["weights_mib"] + n["peak_transient_mib"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "paths"}, indent=1))
    for name, r in result["paths"].items():
        print(f"{name:16s} {r['median_s']:.2f} s  {r['tokens_per_s']:.0f} tok/s  weights {r['weights_mib']:.0f} MiB  "
              f"transient {r['peak_transient_mib']:.0f} MiB  {r['achieved_flops'] / 1e9:.1f} GFLOP/s "
              f"({100 * r['fraction_of_matmul_peak']:.0f}% of peak)")


if __name__ == "__main__":
    main()
