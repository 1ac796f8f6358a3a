"""prime.plan: the memory model, counted by hand on small cases and checked against measured peaks."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from prime.plan import NF4_BYTES, PeakBytes, Setup, Shape, largest_fit, plan

ROOT = Path(__file__).resolve().parents[1]
QWEN_7B = ROOT / "data" / "configs" / "qwen2.5-7b.json"


def test_peak_bytes_counts_new_storages_until_they_are_freed():
    w = torch.zeros(1000, 1000)  # made before: not counted
    with PeakBytes() as peak:
        a = torch.ones(1000, 1000)  # 4 MB
        view = a.t()  # a view: no new memory
        w.add_(1)  # in place on an old tensor: none either
        b = a * 2  # 4 MB
        del a, view, b
        c = torch.ones(500, 1000)  # 2 MB, after both were freed
    assert peak.peak == 8_000_000
    assert peak.current == 2_000_000
    del c


def test_the_shape_of_a_model_is_read_from_its_config_alone(tiny_dir):
    s = Shape.of(tiny_dir, name="tiny")
    cfg = json.loads((tiny_dir / "config.json").read_text())
    H, I, L, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"], cfg["vocab_size"]
    assert (s.layers, s.hidden, s.intermediate, s.vocab) == (L, H, I, V)
    # q, k, v, o (H × H each, 4 kv heads = 4 heads) and gate, up, down (H × I each), per layer
    assert s.quantised == L * (4 * H * H + 3 * H * I)
    assert s.other == V * H + (2 * L + 1) * H  # tied embeddings once, two norms a layer and the final norm
    assert s.lora_per_rank == L * (4 * (H + H) + 3 * (H + I))


def test_the_plan_counts_each_component_by_hand(tiny_dir):
    s = Shape.of(tiny_dir, name="tiny")
    u = Setup(prompts_per_step=4, samples_per_prompt=4, prompt_tokens=16, max_new_tokens=48, lora_r=8, device="cpu")
    p = plan(s, u)
    lora = 2 * s.lora_per_rank * 8
    assert p["persistent"]["base: 4-bit projections"] == s.quantised * NF4_BYTES
    assert p["persistent"]["base: projections dequantised once (CPU)"] == 4 * s.quantised
    assert p["persistent"]["adapters (policy + PRM)"] == 4 * lora == p["persistent"]["adapter gradients"]
    assert p["persistent"]["optimizer states"] == 8 * lora
    assert p["persistent"]["merged sampler (fp32 copy)"] == 4 * (s.quantised + s.other)
    assert p["phases"]["sample"]["KV cache"] == 2 * s.layers * 16 * s.kv_heads * s.head_dim * 64 * 4
    on_gpu = plan(s, replace(u, device="cuda", sampler="adapter", optimizer="adamw8bit"))
    assert on_gpu["persistent"]["base: projections dequantised once (CPU)"] == 0
    assert on_gpu["persistent"]["merged sampler (fp32 copy)"] == 0
    assert on_gpu["persistent"]["optimizer states"] < p["persistent"]["optimizer states"] / 3.5
    assert on_gpu["phases"]["sample"]["KV cache"] == p["phases"]["sample"]["KV cache"] / 2  # bf16
    assert p["peak"] == p["persistent_total"] + max(p["phase_totals"].values())
    checkpointed = plan(s, replace(u, gradient_checkpointing=True, max_new_tokens=480))
    assert checkpointed["phase_totals"]["update"] < plan(s, replace(u, max_new_tokens=480))["phase_totals"]["update"]


def _benchmark():
    spec = importlib.util.spec_from_file_location("memory_plan", ROOT / "benchmarks" / "memory_plan.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("checkpointing", [False, True])
def test_the_plan_is_within_15_percent_of_the_measured_peak_on_tiny(tiny_dir, checkpointing):
    """The real roles on this CPU, a batch forced to full length, each phase measured with
    PeakBytes (benchmarks/memory_plan.py): the predicted peak within 15% of the measured one."""
    u = Setup(prompts_per_step=8, samples_per_prompt=4, prompt_tokens=32, max_new_tokens=160, micro_batch=8,
              gradient_checkpointing=checkpointing)
    result = _benchmark().compare("tiny", u, torch.device("cpu"))
    assert result["rows"]["persistent"]["ratio"] == pytest.approx(1.0, abs=0.01)
    assert 0.85 <= result["rows"]["peak"]["ratio"] <= 1.15, result["rows"]


def test_a_7b_run_fits_24_gb_only_with_the_levers():
    s = Shape.of(QWEN_7B)
    assert 7.5e9 < s.quantised + s.other < 7.7e9  # Qwen2.5-7B: 7.61 B parameters
    u = Setup(prompts_per_step=64, samples_per_prompt=4, prompt_tokens=512, max_new_tokens=3072, device="cuda",
              sample_rows=64, micro_batch=4)
    card = 24 * 2**30
    assert plan(s, replace(u, sampler="merged"))["peak"] > card  # the merged fp32 copy alone is ~30 GB
    assert plan(s, replace(u, sampler="adapter"))["peak"] > card  # activations of 4 × 3.5k tokens
    levers = replace(u, sampler="adapter", sample_rows=32, micro_batch=1, gradient_checkpointing=True)
    assert plan(s, levers)["peak"] < card - 2**30
    fit = largest_fit(s, levers, card)
    assert fit["sample_rows"] >= 32 and fit["micro_batch_rows"] >= 1


def test_prime_plan_prints_the_table_and_json(tiny_dir):
    out = subprocess.run([sys.executable, "-m", "prime", "plan", "--model", str(QWEN_7B), "--device", "cuda",
                          "--max-new-tokens", "3072", "--prompt-tokens", "512", "--gradient-checkpointing",
                          "--micro-batch", "1", "--sample-rows", "32"], check=False, capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert "KV cache" in out.stdout and "sampler=adapter" in out.stdout and "fits" in out.stdout
    as_json = subprocess.run([sys.executable, "-m", "prime", "plan", "--model", str(tiny_dir), "--json"],
                             check=False, capture_output=True, text=True, cwd=ROOT)
    result = json.loads(as_json.stdout)
    assert result["fits"] and result["peak"] == result["persistent_total"] + max(result["phase_totals"].values())


def test_budgets_parse_and_a_bad_one_is_a_clear_error():
    from prime.errors import UserError
    from prime.plan import budget_bytes

    assert budget_bytes("24GiB") == 24 * 2**30 and budget_bytes("80 GB") == 80e9 and budget_bytes("16") == 16 * 2**30
    for bad in ("lots", "-3GiB", "0", "nanGB"):
        with pytest.raises(UserError, match="--budget"):
            budget_bytes(bad)


@pytest.mark.parametrize("content", [None, "{not json", '{"hidden_size": 3}', '{"model_type": "no-such-family"}'])
def test_a_bad_model_config_is_a_clear_error(tmp_path, content):
    from prime.errors import UserError

    path = tmp_path / "config.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(UserError, match="not a model config"):
        Shape.of(path)


def test_the_gpu_script_runs_here_on_a_small_shape(tmp_path, tiny_dir):
    """benchmarks/gpu_step_memory.py (gpu_checks.sh's 7B step) end to end on this CPU, on a 2-layer
    model of Qwen2's family: a random model written, loaded in 4 bits, every phase measured."""
    out = tmp_path / "result.json"
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_step_memory.py"), "--config",
                          str(ROOT / "tests" / "data" / "qwen2_micro.json"), "--device", "cpu", "--prompt-tokens", "16",
                          "--max-new-tokens", "32", "--sampler", "adapter", "--workdir", str(tmp_path / "work"),
                          "--out", str(out)], check=False, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(out.read_text())
    assert set(result["rows"]) == {"persistent", "sample", "score", "update", "peak"}
    assert all(row["measured"] > 0 and row["predicted"] > 0 for row in result["rows"].values())
    assert result["predicted"]["shape"]["kv_heads"] == 2 and result["setup"]["sampler"] == "adapter"
