#!/usr/bin/env bash
# Everything that needs a GPU, in one go, for a machine lent by the `device` tool (15 minutes of
# device time in all). Results go to $OUT (the device tool's folder) or benchmarks/results/gpu/.
# Expects the CUDA build of torch 2.13.0 (README "GPU"); the TRL requirements for the last step.
#   1. the 4-bit numeric-path invariants on CUDA (bf16 compute, NF4 base): rewards exactly 0 at
#      init, grad and no-grad log-probs identical, gradient on every adapter, weights untouched
#      by no-grad forwards, merged sampler ≈ the bf16 4-bit policy (issue 12)
#   2. a 5-step smollm2-135m PRIME run on GSM8K (issue 12)
#   3. scoring throughput and step time against TRL (issue 6)
#   4. the PoC step (tiny, P = 16 × K = 4) and its eval, this tree against 6ad846e, and the
#      smollm2-135m step of 3. (issue 20); on CUDA the 4-bit base stays packed (no dequantise-once,
#      no plain-torch forward: peft + bitsandbytes' kernels), the sampler is the merged copy
#   0. (issue 23, first: the reason to have a GPU) memory against `prime plan`: smollm2-135m with
#      real weights (benchmarks/memory_plan.py, phase by phase), then one PRIME step of a randomly
#      initialised model of Qwen2.5-7B's shape in NF4 (adapter sampler, 16 rows × (256 + 1024)
#      tokens, gradient checkpointing, micro-batch 1): torch.cuda.max_memory_allocated per phase
#      beside the prediction (benchmarks/gpu_step_memory.py; ~15 GB of disk for the random model)
# Each step is allowed to fail without stopping the rest; its log says what ran.
# Not run yet: no device has been lent to this project's tasks so far (issue 20: still not drawn).
set -uo pipefail
out=${OUT:-benchmarks/results/gpu}
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python -c "import torch, bitsandbytes; assert torch.cuda.is_available(); print(torch.__version__, bitsandbytes.__version__)"
date -u +%Y-%m-%dT%H:%M:%SZ > "$out/date.txt"
model=$(prime models build smollm2-135m | tail -1)
timeout 120 python tests/test_numeric_path.py "$model" --device cuda | tail -1 | tee "$out/numeric_path_cuda.json" || echo "numeric path: failed"
timeout 150 python benchmarks/memory_plan.py --models smollm2-135m --device cuda --out "$out/memory_plan_cuda.json" \
    > "$out/memory_plan_cuda.log" 2>&1 || echo "memory plan smollm2: failed"; tail -12 "$out/memory_plan_cuda.log"
timeout 420 python benchmarks/gpu_step_memory.py --config data/configs/qwen2.5-7b.json --device cuda --workdir /tmp/prime-7b \
    --out "$out/qwen7b_step_memory_cuda.json" > "$out/qwen7b_step_memory_cuda.log" 2>&1 || echo "7B step memory: failed"
tail -6 "$out/qwen7b_step_memory_cuda.log"; rm -rf /tmp/prime-7b
timeout 240 prime train --model smollm2-135m --task gsm8k --steps 5 --prompts-per-step 8 --max-new-tokens 256 \
    --eval-every 5 --eval-n 50 --policy-lr 1e-5 --prm-lr 1e-5 --out "$out/smollm2_gsm8k_5steps" > "$out/smollm2_gsm8k.log" 2>&1
tail -3 "$out/smollm2_gsm8k_5steps/metrics.jsonl"
timeout 120 python benchmarks/scoring_throughput.py --repeats 10 --out "$out/scoring_throughput_cuda.json"
timeout 200 python benchmarks/step_time_trl.py --prompts 16 --k 4 --max-new 256 --steps 4 --out "$out/step_time_trl_cuda.json"
prime models build tiny > /dev/null
timeout 150 python benchmarks/step_time_poc.py --eval-repeats 2 --out "$out/step_time_poc_cuda.json" | tail -4
