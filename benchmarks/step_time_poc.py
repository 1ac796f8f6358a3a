"""PoC step time and eval time: this tree against an older commit loaded from git, in one run.

    python benchmarks/step_time_poc.py [--old 6ad846e] [--steps 8] [--eval-n 300] [--threads 2]
    python benchmarks/step_time_poc.py --parallel 2 --threads 1   # the study's setting: 2 runs at once

The PoC setting (README, "A PoC that shows PRIME"; notebook 03 and `make demo-data` run it):
`tiny` on `arith`, P = 16 kept prompts × K = 4, policy lr 5e-4, PRM lr 1e-4, no reward
normalisation, the sharpened-reference PRM (prm_sharpen 1), seed 0, no eval during training.
Each side runs in a child process of its own (the old one from `git archive <old>`, its own
`prime` package first on sys.path), one after the other, never at the same time, with the same
torch thread count. Per side:
- an `--steps`-step run; the step time is the median of `timing_s/step` over steps 3..N, and
  each phase (`timing_s/gen`, `verify`, `prm`, `ref`, `update_actor`) likewise, and sampling
  per draw (the two runs' random streams differ, so they draw more or less often; the ratio
  is also given with the new step re-costed at the old run's mean number of draws);
- then the policy of the last checkpoint (the same weights on both sides when the records are
  the same) evaluated on `--eval-n` test problems as the trainer does (greedy and one sample
  each): the median of `--eval-repeats` timed calls after one warm-up call.
It also compares the two runs' records: metrics other than times, and every rollout row.
`--parallel N` runs N copies of each side at once (the study's way: sample_efficiency.py
trains two runs at a time, one thread each); each copy's medians are reported.
The FLOP floor per phase: the forward and backward FLOPs the phase cannot avoid on the run's
own rollouts (no padding, each prompt prefilled once per group, the LM head on response
positions only, frozen base weights get no gradient), divided by this machine's measured fp32
matmul peak at the same thread count (benchmarks/scoring_throughput.matmul_peak_flops).
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
sys.path.insert(0, str(ROOT / "benchmarks"))
OUT = ROOT / "benchmarks" / "results" / "step_time_poc.json"
PHASES = ("gen", "verify", "prm", "ref", "adv", "update_actor", "step")
POC = {"model": "tiny", "task": "arith", "algo": "prime", "prompts_per_step": 16, "samples_per_prompt": 4, "policy_lr": 5e-4,
           "prm_lr": 1e-4, "reward_norm": "none", "prm_sharpen": 1.0, "seed": 0, "eval_every": 0}

CHILD = r"""
import json, statistics, sys, time
from pathlib import Path
import torch
import prime
from prime.config import TrainConfig
from prime.models import LoraSettings, Roles, default_device, resolve_model
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
              device=default_device(), prm_logit_scale=1.0 + cfg.prm_sharpen)
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


def run_side(tree: Path, out: Path, args) -> list[dict]:
    """Run `--parallel` copies of one side at once (out_0, out_1, ...); their results."""
    procs = []
    for i in range(args.parallel):
        payload = {"out": f"{out}_{i}", "steps": args.steps, "threads": args.threads, "eval_n": args.eval_n,
                   "eval_repeats": args.eval_repeats, "poc": POC}
        env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": str(args.threads)}
        procs.append(subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(payload)], cwd=tree, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = []
    for proc in procs:
        stdout, stderr = proc.communicate()
        line = next((l for l in stdout.splitlines() if l.startswith("RESULT ")), None)
        if proc.returncode or line is None:
            sys.exit(f"{tree}: the child failed:\n{stderr[-3000:]}")
        result = json.loads(line.removeprefix("RESULT "))
        if Path(result["prime"]).resolve() != (tree / "prime").resolve():
            sys.exit(f"the child imported prime from {result['prime']}, not {tree}")
        results.append(result)
    return results


def flop_floor(run: Path) -> dict:
    """FLOPs per phase a step cannot avoid (see the module docstring), median over the run's steps."""
    import pandas as pd
    from scoring_throughput import forward_flops

    from prime.models import load_tokenizer, resolve_model
    from prime.rollout import encode_prompt

    config = json.loads((run / "config.json").read_text())
    model_dir = Path(config["model"]["model_dir"])
    hf = json.loads((model_dir / "config.json").read_text())
    cfg = type("Config", (), {k: hf.get(k) for k in ("hidden_size", "intermediate_size", "num_hidden_layers",
                                                      "num_attention_heads", "num_key_value_heads", "vocab_size")})
    tok = load_tokenizer(resolve_model(config["model"]["name"]))
    r, targets = config["model"]["lora"]["r"], config["model"]["lora"]["targets"]
    per_step = []
    for path in sorted((run / "rollouts").glob("step_*.parquet")):
        df = pd.read_parquet(path, columns=["prompt", "prompt_id", "token_ids", "filter_decision"])
        prompt_len = {p: len(encode_prompt(tok, text)) for p, text in zip(df.prompt_id, df.prompt)}
        gen = sum(forward_flops(cfg, r, targets, 1, prompt_len[p], 1, lora=False) for p in set(df.prompt_id))
        fwd = {"plain": 0.0, "lora": 0.0}
        for p, ids, decision in zip(df.prompt_id, df.token_ids, df.filter_decision):
            n, L = len(ids), prompt_len[p] + len(ids)
            gen += forward_flops(cfg, r, targets, 1, L, n, lora=False) - forward_flops(cfg, r, targets, 1, prompt_len[p], 0, lora=False)
            if decision == "kept":
                fwd["plain"] += forward_flops(cfg, r, targets, 1, L, n, lora=False)
                fwd["lora"] += forward_flops(cfg, r, targets, 1, L, n, lora=True)
        backward = 2 * fwd["lora"] - fwd["plain"]  # activation grads + the adapters' weight grads
        per_step.append({"gen": gen, "prm": fwd["plain"] + fwd["lora"] + backward,  # ref forward, PRM forward + backward
                         "ref": 0.0,  # pi_old comes with the first PPO forward
                         "update_actor": fwd["lora"] + backward})
    return {k: statistics.median(s[k] for s in per_step) for k in per_step[0]}


def phase_medians(metrics: list[dict], first: int) -> dict:
    """Median seconds of each phase over steps first..N, and of sampling per draw: the filter
    draws again until P prompts are kept, so a step's sampling time is (draws × a draw's), and
    two runs of different random streams draw different numbers of times."""
    steps = [m for m in metrics if m.get("step", 0) >= first and "timing_s/step" in m]
    out = {p: statistics.median(m.get(f"timing_s/{p}", 0.0) for m in steps) for p in PHASES}
    out["gen_per_draw"] = statistics.median(m["timing_s/gen"] / m["filter/draws"] for m in steps)
    out["draws_mean"] = statistics.mean(m["filter/draws"] for m in steps)
    return out


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
    ap.add_argument("--parallel", type=int, default=1, help="copies of each side run at once")
    ap.add_argument("--sides", nargs="+", default=["old", "new"], choices=("old", "new"))
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], check=False, capture_output=True, text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "prime"], check=False, capture_output=True, text=True).stdout)
    result = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
              "threads": args.threads, "setting": POC, "steps": args.steps, "median_of_steps": f"{args.first_step}..{args.steps}",
              "eval_n": args.eval_n, "old": args.old, "new": commit + ("+dirty" if dirty else ""),
              "command": " ".join(["python benchmarks/step_time_poc.py", *sys.argv[1:]]), "sides": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        trees = {"old": old_tree(args.old, tmp / "old"), "new": ROOT}
        for side in args.sides:
            copies = run_side(trees[side], tmp / f"run_{side}", args)
            result["sides"][side] = {
                "copies": [{"phases_median_s": phase_medians(r["metrics"], args.first_step),
                            "step_s": [m["timing_s/step"] for m in r["metrics"] if "timing_s/step" in m],
                            "draws": [m.get("filter/draws") for m in r["metrics"]],
                            "response_length_mean": [m.get("response_length/mean") for m in r["metrics"]],
                            "run_s": r["run_s"], "eval_s": r["eval_s"], "eval": r["eval"]} for r in copies]}
            side_result = result["sides"][side]
            side_result["phases_median_s"] = {p: statistics.median(c["phases_median_s"][p] for c in side_result["copies"])
                                              for p in (*PHASES, "gen_per_draw", "draws_mean")}
            side_result["eval_median_s"] = statistics.median(t for c in side_result["copies"] for t in c["eval_s"])
            print(side, json.dumps({"phases_median_s": side_result["phases_median_s"],
                                    "eval_median_s": side_result["eval_median_s"]}), flush=True)
        if len(args.sides) == 2:
            result["records"] = compare_records(tmp / "run_old_0", tmp / "run_new_0")
            o, n = result["sides"]["old"], result["sides"]["new"]
            result["step_ratio_new_over_old"] = n["phases_median_s"]["step"] / o["phases_median_s"]["step"]
            # the new step as if it had drawn as often as the old run did (sampling is per draw)
            on, nn = o["phases_median_s"], n["phases_median_s"]
            same_draws = nn["step"] - nn["gen"] + nn["gen_per_draw"] * on["draws_mean"]
            result["step_ratio_new_over_old_at_old_draws"] = same_draws / on["step"]
            result["eval_ratio_new_over_old"] = n["eval_median_s"] / o["eval_median_s"]
        import torch
        from scoring_throughput import matmul_peak_flops

        torch.set_num_threads(args.threads)
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        peak = max(matmul_peak_flops(device, torch.bfloat16 if device.type == "cuda" else torch.float32).values())
        floor = flop_floor(tmp / f"run_{args.sides[-1]}_0")
        result["flop_floor"] = {"matmul_peak_flops": peak, "flops": floor, "seconds": {k: v / peak for k, v in floor.items()}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k not in ("sides", "setting")}, indent=1))


if __name__ == "__main__":
    main()
