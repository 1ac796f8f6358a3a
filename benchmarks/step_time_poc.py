"""PoC step time and eval time: this tree against an older commit loaded from git, in one run.

    python benchmarks/step_time_poc.py [--old 6ad846e] [--steps 8] [--eval-n 300] [--threads 2]

The PoC setting (README, "A PoC that shows PRIME"; notebook 03 and `make demo-data` run it):
`tiny` on `arith`, P = 16 kept prompts × K = 4, policy lr 5e-4, PRM lr 1e-4, no reward
normalisation, the sharpened-reference PRM (prm_sharpen 1), seed 0, no eval during training.
Each side runs in a child process of its own (the old one from `git archive <old>`, its own
`prime` package first on sys.path), one after the other, never at the same time, with the same
torch thread count. Per side:
- an `--steps`-step run; the step time is the median of `timing_s/step` over steps 3..N, and
  each phase (`timing_s/gen`, `verify`, `prm`, `ref`, `update_actor`) likewise;
- then the policy of the last checkpoint (the same weights on both sides when the records are
  the same) evaluated on `--eval-n` test problems as the trainer does (greedy and one sample
  each): the median of `--eval-repeats` timed calls after one warm-up call.
It also compares the two runs' records: metrics other than times, and every rollout row.
Results: benchmarks/results/step_time_poc.json (or --out); nothing else may run meanwhile.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "step_time_poc.json"
PHASES = ("gen", "verify", "prm", "ref", "adv", "update_actor", "step")
POC = dict(model="tiny", task="arith", algo="prime", prompts_per_step=16, samples_per_prompt=4, policy_lr=5e-4,
           prm_lr=1e-4, reward_norm="none", prm_sharpen=1.0, seed=0, eval_every=0)

CHILD = r"""
import json, statistics, sys, time
from pathlib import Path
import torch
import prime
from prime.config import TrainConfig
from prime.models import LoraSettings, Roles, resolve_model
from prime.records import read_metrics
from prime.tasks import load_task
from prime.trainer import evaluate, train

args = json.loads(sys.argv[1])
torch.set_num_threads(args["threads"])
cfg = TrainConfig(out=args["out"], steps=args["steps"], checkpoint_every=args["steps"], **args["poc"])
t = time.perf_counter()
train(cfg, progress=False)
run_s = time.perf_counter() - t
roles = Roles(resolve_model(cfg.model), lora=LoraSettings(r=cfg.lora_r, alpha=2 * cfg.lora_r),
              device=torch.device("cpu"), prm_logit_scale=1.0 + cfg.prm_sharpen)
roles.load_adapters(Path(cfg.out) / "checkpoints" / f"step_{cfg.steps:06d}")
rows = load_task(cfg.task, "test")[: args["eval_n"]]
warm = evaluate(roles, rows, cfg)
times = []
for _ in range(args["eval_repeats"]):
    t = time.perf_counter()
    result = evaluate(roles, rows, cfg)
    times.append(time.perf_counter() - t)
print("RESULT " + json.dumps({"prime": str(Path(prime.__file__).parent), "run_s": run_s, "eval": result,
                              "eval_s": times, "metrics": read_metrics(Path(cfg.out))}))
"""


def old_tree(commit: str, into: Path) -> Path:
    """The old commit's files, from git (not the working tree)."""
    data = subprocess.run(["git", "-C", str(ROOT), "archive", commit], check=True, capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(data)) as tar:
        tar.extractall(into, filter="data")
    return into


def run_side(tree: Path, out: Path, args) -> dict:
    payload = {"out": str(out), "steps": args.steps, "threads": args.threads, "eval_n": args.eval_n,
               "eval_repeats": args.eval_repeats, "poc": POC}
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": str(args.threads)}
    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(payload)], cwd=tree, env=env, capture_output=True,
                          text=True)
    line = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT ")), None)
    if proc.returncode or line is None:
        sys.exit(f"{tree}: the child failed:\n{proc.stderr[-3000:]}")
    result = json.loads(line.removeprefix("RESULT "))
    if Path(result["prime"]).resolve() != (tree / "prime").resolve():
        sys.exit(f"the child imported prime from {result['prime']}, not {tree}")
    return result


def phase_medians(metrics: list[dict], first: int) -> dict:
    steps = [m for m in metrics if m.get("step", 0) >= first and "timing_s/step" in m]
    return {p: statistics.median(m.get(f"timing_s/{p}", 0.0) for m in steps) for p in PHASES}


def compare_records(a: Path, b: Path) -> dict:
    """Are two runs' records the same? Metrics other than times and every rollout row."""
    import pandas as pd

    def metrics(run):
        return [{k: v for k, v in m.items() if not k.startswith(("timing_s/", "time/"))}
                for m in (json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines())]

    ma, mb = metrics(a), metrics(b)
    first_metric = next((m["step"] for m, n in zip(ma, mb) if m != n), None)
    first_rollout = None
    for path in sorted((a / "rollouts").glob("step_*.parquet")):
        x, y = pd.read_parquet(path), pd.read_parquet(b / "rollouts" / path.name)
        same = x.shape == y.shape and all(
            x[c].apply(lambda v: json.dumps(v.tolist() if hasattr(v, "tolist") else v)).equals(
                y[c].apply(lambda v: json.dumps(v.tolist() if hasattr(v, "tolist") else v))) for c in x.columns)
        if not same:
            first_rollout = int(path.stem.removeprefix("step_"))
            break
    return {"metrics_equal": first_metric is None, "first_metric_step_differing": first_metric,
            "rollouts_equal": first_rollout is None, "first_rollout_step_differing": first_rollout}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", default="6ad846e", help="the commit to compare against")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--first-step", type=int, default=3, help="steps before this one are warm-up")
    ap.add_argument("--eval-n", type=int, default=300)
    ap.add_argument("--eval-repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sides", nargs="+", default=["old", "new"], choices=("old", "new"))
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "prime"], capture_output=True, text=True).stdout)
    result = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
              "threads": args.threads, "setting": POC, "steps": args.steps, "median_of_steps": f"{args.first_step}..{args.steps}",
              "eval_n": args.eval_n, "old": args.old, "new": commit + ("+dirty" if dirty else ""),
              "command": " ".join(["python benchmarks/step_time_poc.py", *sys.argv[1:]]), "sides": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        trees = {"old": old_tree(args.old, tmp / "old"), "new": ROOT}
        for side in args.sides:
            r = run_side(trees[side], tmp / f"run_{side}", args)
            result["sides"][side] = {
                "phases_median_s": phase_medians(r["metrics"], args.first_step),
                "step_s": [m["timing_s/step"] for m in r["metrics"] if "timing_s/step" in m],
                "draws": [m.get("filter/draws") for m in r["metrics"]],
                "response_length_mean": [m.get("response_length/mean") for m in r["metrics"]],
                "run_s": r["run_s"], "eval_s": r["eval_s"], "eval_median_s": statistics.median(r["eval_s"]),
                "eval": r["eval"]}
            print(side, json.dumps({k: v for k, v in result["sides"][side].items() if k != "eval"}), flush=True)
        if len(args.sides) == 2:
            result["records"] = compare_records(tmp / "run_old", tmp / "run_new")
            o, n = result["sides"]["old"], result["sides"]["new"]
            result["step_ratio_new_over_old"] = n["phases_median_s"]["step"] / o["phases_median_s"]["step"]
            result["eval_ratio_new_over_old"] = n["eval_median_s"] / o["eval_median_s"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k not in ("sides", "setting")}, indent=1))


if __name__ == "__main__":
    main()
