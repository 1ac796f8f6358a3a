#!/usr/bin/env bash
# Issue 6 item 5: the scoring and step benchmarks with smollm2-135m in 4-bit on CUDA, in one go,
# for a machine lent by the `device` tool (15 minutes of device time in all). Results go to
# $OUT (the device tool's folder) or benchmarks/results/gpu/. Expects the CUDA build of
# torch 2.13.0 and the TRL requirements installed (see README "GPU" and "Benchmarks").
# Not run yet: no device has been lent to this project's benchmark task so far.
set -euo pipefail
out=${OUT:-benchmarks/results/gpu}
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python -c "import torch, bitsandbytes; assert torch.cuda.is_available(); print(torch.__version__, bitsandbytes.__version__)"
timeout 200 python benchmarks/scoring_throughput.py --repeats 10 --out "$out/scoring_throughput_cuda.json"
timeout 300 python benchmarks/step_time_trl.py --prompts 16 --k 4 --max-new 256 --steps 4 --out "$out/step_time_trl_cuda.json"
