"""One numeric path for the 4-bit base on every machine (prime.models.one_numeric_path).

bitsandbytes repacks a 4-bit weight for a bf16 CPU kernel (no backward) the first time a layer
runs without grad, on CPUs with AVX512-BF16 only. These tests assert the invariants that break
when that happens, both with this machine's own CPU flags and with AVX512-BF16 support
simulated (bitsandbytes asked "does this CPU have it?" answers yes), so they fail on a
machine without the instruction set too whenever the engine lets the repacking happen.

The simulated check runs in a child process: code that does repack would then call a kernel
this CPU may not have (SIGILL), which must fail the test, not kill the test session.

    python tests/test_numeric_path.py MODEL_DIR [--simulate-avx512bf16] [--device cuda]   # by hand
    (benchmarks/gpu_checks.sh runs it on a GPU: bf16 compute, NF4 base)
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ["Start with 5. Multiply by 3. Multiply by 3. What is the result?", "Start with 2. Add 1. What is the result?"]
RESPONSES = ["5 * 3 = 15\n15 * 3 = 45\nThe answer is \\boxed{45}.", "2 + 1 = 3\nThe answer is \\boxed{3}."]


pytestmark = pytest.mark.slow  # loads models in 4-bit several ways, one in a subprocess


def simulate_avx512bf16() -> None:
    """Make bitsandbytes believe this CPU has AVX512-BF16 (for layers created after this call)."""
    import bitsandbytes.nn.modules as bnb_modules

    bnb_modules.has_avx512bf16 = lambda: True


def weight_snapshot(model) -> dict[str, tuple]:
    """Bytes, dtype, shape and quant-state layout of every 4-bit weight."""
    import bitsandbytes as bnb

    out = {}
    for name, m in model.named_modules():
        if isinstance(m, bnb.nn.Linear4bit):
            qs = m.weight.quant_state
            out[name] = (m.weight.data.clone(), m.weight.dtype, tuple(m.weight.shape),
                         bool(getattr(qs, "packing_format_for_cpu", False)), bool(qs.nested), tuple(qs.shape))
    return out


def cpu_description() -> str:
    """The CPU's model name and the flags that choose bitsandbytes' and MKL's kernels (for failure messages)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    flags = sorted({f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "avx512_fp16") if f" {f}" in info})
    return f"{model} [{' '.join(flags)}] x{torch.get_num_threads()} threads"


def check_invariants(model_dir: Path, device: str = "cpu") -> dict:
    """Every invariant of the shared 4-bit path, as a dict of named booleans and numbers."""
    from peft.tuners.lora import LoraLayer

    from prime.models import LoraSettings, Roles, make_batch
    from prime.rollout import encode_prompt

    torch.manual_seed(0)
    roles = Roles(model_dir, quant="4bit", device=torch.device(device), lora=LoraSettings(r=4, alpha=8))
    tok = roles.tokenizer
    batch = make_batch([encode_prompt(tok, p) for p in PROMPTS],
                       [tok(r, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for r in RESPONSES],
                       tok.pad_token_id)
    mask = batch.response_mask.bool().to(roles.device)
    before = weight_snapshot(roles.shared)
    result = {"n_4bit_layers": len(before)}

    # no-grad forwards of every role (what the trainer does for reference and old log-probs)
    ref0 = roles.logprobs("ref", batch)
    prm0 = roles.logprobs("prm", batch)
    policy0 = roles.logprobs("policy", batch)
    after = weight_snapshot(roles.shared)
    result["layout_and_bytes_unchanged"] = all(
        torch.equal(before[n][0], after[n][0]) and before[n][1:] == after[n][1:] for n in before)
    result["rewards_exactly_zero_at_init"] = bool(torch.equal(prm0, ref0))
    result["max_reward_abs_at_init"] = (prm0 - ref0)[mask].abs().max().item()
    # the same forwards again: a machine whose float kernels are not bit-reproducible run to run
    # (first call, thread count) shows it here, and the invariants are then judged against that noise
    ref1, prm1, policy1 = (roles.logprobs(r, batch) for r in ("ref", "prm", "policy"))
    result["run_to_run_max_diff"] = max((a - b)[mask].abs().max().item()
                                        for a, b in ((ref0, ref1), (prm0, prm1), (policy0, policy1)))
    result["cpu"] = cpu_description()

    # the first PPO ratio: the grad forward equals the no-grad forward bit for bit
    policy_grad = roles.logprobs("policy", batch, grad=True)
    result["first_ratio_exactly_one"] = bool(torch.equal(policy_grad.detach(), policy0))
    result["max_ratio_log_diff"] = (policy_grad.detach() - policy0)[mask].abs().max().item()

    # gradient on both LoRA matrices of every adapted projection (B perturbed first: at init
    # B = 0, so A's gradient is exactly zero by construction)
    with torch.no_grad():
        for p in roles.adapter_parameters("prm") + roles.adapter_parameters("policy"):
            p.add_(0.05 * torch.randn_like(p))
    lora_layers = [(n, m) for n, m in roles.shared.named_modules() if isinstance(m, LoraLayer)]
    missing = []
    for role in ("prm", "policy"):
        roles.shared.zero_grad(set_to_none=True)
        roles.logprobs(role, batch, grad=True)[mask].sum().backward()
        for name, m in lora_layers:
            for mat in (m.lora_A[role].weight, m.lora_B[role].weight):
                if mat.grad is None or mat.grad.abs().sum() == 0:
                    missing.append(f"{role}:{name}")
    result["adapted_projections"] = len(lora_layers)
    result["projections_without_gradient"] = sorted(set(missing))

    # the merged full-precision sampler equals the 4-bit policy, after no-grad forwards have run
    roles.logprobs("ref", batch)
    policy = roles.logprobs("policy", batch)
    sampler = roles.sampler()
    with torch.no_grad():
        logits = sampler(input_ids=batch.input_ids.to(roles.device), attention_mask=batch.attention_mask.to(roles.device)).logits
    logp = torch.log_softmax(logits[:, :-1].float(), -1).gather(-1, batch.input_ids[:, 1:, None].to(roles.device))[..., 0]
    m = mask[:, 1:]
    result["sampler_max_abs_diff"] = (logp[m] - policy[:, 1:][m]).abs().max().item()
    result["layout_and_bytes_unchanged_at_end"] = all(
        torch.equal(before[n][0], w[0]) and before[n][1:] == w[1:] for n, w in weight_snapshot(roles.shared).items())
    return result


def assert_invariants(r: dict, sampler_tol: float = 1e-4) -> None:
    """sampler_tol: fp32 sampler against the 4-bit policy; on a GPU the policy computes in bf16."""
    assert r["n_4bit_layers"] > 0
    assert r["layout_and_bytes_unchanged"], "a no-grad forward changed a 4-bit weight's bytes or layout"
    # exact on a machine with bit-reproducible kernels; elsewhere no larger than the same forward's own
    # run-to-run difference (a repacked or otherwise different kernel differs by 1e-3 and more)
    noise = r["run_to_run_max_diff"]
    where = f"on {r['cpu']}; the same forward twice differs by {noise}"
    assert noise < 1e-5, f"this machine's forwards are not reproducible: {where}"
    assert r["rewards_exactly_zero_at_init"] or r["max_reward_abs_at_init"] <= noise, (
        f"PRM and reference log-probs differ by {r['max_reward_abs_at_init']} before any update, {where}")
    assert r["first_ratio_exactly_one"] or r["max_ratio_log_diff"] <= noise, (
        f"grad and no-grad log-probs differ by up to {r['max_ratio_log_diff']}, {where}")
    assert r["projections_without_gradient"] == [], (
        f"{len(r['projections_without_gradient'])} adapter(s) of {r['adapted_projections']} projections got no gradient: "
        f"{r['projections_without_gradient'][:4]}")
    assert r["sampler_max_abs_diff"] < sampler_tol, f"sampler and 4-bit policy differ by {r['sampler_max_abs_diff']} nats"
    assert r["layout_and_bytes_unchanged_at_end"]


def test_load_turns_off_the_cpu_repacking(micro_model_dir, monkeypatch):
    """With AVX512-BF16 support simulated, every 4-bit layer still refuses to repack."""
    import bitsandbytes as bnb
    import bitsandbytes.nn.modules as bnb_modules

    from prime.models import LoraSettings, Roles

    monkeypatch.setattr(bnb_modules, "has_avx512bf16", lambda: True)
    for layout in ("shared", "separate"):
        roles = Roles(micro_model_dir, quant="4bit", layout=layout, device=torch.device("cpu"), lora=LoraSettings(r=4, alpha=8))
        layers = [m for model in roles.models.values() for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
        assert layers and not any(m.support_avx512bf16_for_cpu for m in layers), layout


def test_invariants_with_this_cpu(micro_model_dir):
    assert_invariants(check_invariants(micro_model_dir))


def test_invariants_with_avx512bf16_simulated(micro_model_dir):
    proc = subprocess.run([sys.executable, __file__, str(micro_model_dir), "--simulate-avx512bf16"],
                          check=False, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr[-2000:]}"
    assert_invariants(json.loads(proc.stdout.strip().splitlines()[-1]))


def test_sampler_refuses_repacked_weights(micro_model_dir):
    """If something repacks a weight anyway, the sampler says so instead of sampling garbage."""
    import bitsandbytes as bnb
    from bitsandbytes.functional import _convert_weight_packed_for_cpu

    from prime.models import LoraSettings, Roles

    roles = Roles(micro_model_dir, quant="4bit", device=torch.device("cpu"), lora=LoraSettings(r=4, alpha=8))
    layer = next(m for m in roles.shared.modules() if isinstance(m, bnb.nn.Linear4bit))
    layer.weight.data, layer.weight.quant_state = _convert_weight_packed_for_cpu(layer.weight.data, layer.weight.quant_state)
    with pytest.raises(RuntimeError, match="repacked"):
        roles.merged_state_dict("policy")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    if "--simulate-avx512bf16" in sys.argv:
        simulate_avx512bf16()
    device = sys.argv[sys.argv.index("--device") + 1] if "--device" in sys.argv else "cpu"
    result = check_invariants(Path(sys.argv[1]), device)
    print(json.dumps(result))
    if device != "cpu":
        assert_invariants(result, sampler_tol=0.1)
