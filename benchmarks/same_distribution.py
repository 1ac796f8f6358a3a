"""Do this tree and an older commit train the same way? PoC runs of several seeds on each side.

    python benchmarks/same_distribution.py [--old 6ad846e] [--seeds 0 1 2 3 4 5] [--steps 20] [--sampler-seeds 20]

The new code's numbers differ from the old code's in float rounding (its plain-torch forward
adds the LoRA term on the rank side, attends with the causal kernel; prime.decoder), and
sampling amplifies any difference, so a seeded run's records are not the old run's bit for bit.
What must agree is the distribution: per seed, a `--steps`-step run in the PoC setting
(benchmarks/step_time_poc.POC) on each side, then eval pass@1 on 300 test problems. Compared
over seeds: training accuracy (every sampled response before filtering), mean response
length, the filter's kept fraction (steps 1..N), eval pass@1 and greedy accuracy at the end;
the difference new − old with a 95% bootstrap interval over seeds (paired by seed). Two runs at
a time, one thread each.

The sampler alone, which a training run's noise would hide: the same policy (tiny as built)
evaluated on the same 300 test problems by each side's sampler, greedy once (must be equal) and
one sample each at temperature 1 with `--sampler-seeds` seeds (pass@1 and mean response length
per seed; the two sides' means compared, unpaired: their random draws differ).
Results: benchmarks/results/same_distribution.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from step_time_poc import POC, ROOT, old_tree

OUT = ROOT / "benchmarks" / "results" / "same_distribution.json"
FLAGS = {"prompts_per_step": "--prompts-per-step", "policy_lr": "--policy-lr", "prm_lr": "--prm-lr",
         "reward_norm": "--reward-norm", "prm_sharpen": "--prm-sharpen"}


def command(run: Path, seed: int, steps: int) -> list[str]:
    flags = [x for k, f in FLAGS.items() for x in (f, str(POC[k]))]
    return [sys.executable, "-m", "prime", "train", "--out", str(run), "--model", "tiny", "--task", "arith",
            "--algo", "prime", "--steps", str(steps), "--seed", str(seed), "--eval-every", str(steps),
            "--eval-n", "300", "--checkpoint-every", str(steps), *flags]


def summary(run: Path) -> dict:
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [m for m in metrics if m["step"] > 0]
    last = metrics[-1]
    return {"train_acc": statistics.mean(m["acc"] for m in steps),
            "response_length": statistics.mean(m["response_length/mean"] for m in steps if "response_length/mean" in m),
            "kept_fraction": statistics.mean(m["filter/kept_fraction"] for m in steps),
            "eval_pass1": last["eval/acc_sampled"], "eval_greedy": last["eval/acc"],
            "step_s": statistics.median(m["timing_s/step"] for m in steps)}


SAMPLER_CHILD = r"""
import json, sys
import torch
from prime.models import Roles, resolve_model
from prime.rollout import encode_prompt, generate
from prime.tasks import load_task
from prime.verifiers import verify

seeds = json.loads(sys.argv[1])
roles = Roles(resolve_model("tiny"), device=torch.device("cpu"))
model, tok = roles.sampler(), roles.tokenizer
rows = load_task("arith", "test")[:300]
prompts = [encode_prompt(tok, r["prompt"]) for r in rows]
greedy = generate(model, tok, prompts, 128, greedy=True)
out = {"greedy": greedy, "sampled": []}
for seed in seeds:  # as prime.evaluate.accuracy samples: seeded, one response per problem
    torch.manual_seed(seed)
    responses = generate(model, tok, prompts, 128)
    acc = sum(verify(tok.decode(r, skip_special_tokens=True), row).reward for r, row in zip(responses, rows)) / len(rows)
    out["sampled"].append({"seed": seed, "pass1": acc, "length": sum(map(len, responses)) / len(responses)})
print("RESULT " + json.dumps(out))
"""


def sampler_check(trees: dict, seeds: list[int]) -> dict:
    """The same policy through each side's sampler (module docstring)."""
    sides = {}
    for side, tree in trees.items():
        proc = subprocess.run([sys.executable, "-c", SAMPLER_CHILD, json.dumps(seeds)], cwd=tree, check=False, capture_output=True,
                              text=True, env={**os.environ, "PYTHONPATH": str(tree)})
        line = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT ")), None)
        if proc.returncode or line is None:
            sys.exit(f"{side} sampler check failed:\n{proc.stderr[-3000:]}")
        sides[side] = json.loads(line.removeprefix("RESULT "))
    out = {"greedy_equal": sides["old"]["greedy"] == sides["new"]["greedy"],
           "greedy_rows_equal": sum(a == b for a, b in zip(sides["old"]["greedy"], sides["new"]["greedy"])),
           "per_seed": {side: sides[side]["sampled"] for side in sides}}
    for key in ("pass1", "length"):
        old = [r[key] for r in sides["old"]["sampled"]]
        new = [r[key] for r in sides["new"]["sampled"]]
        out[key] = {"old_mean": statistics.mean(old), "new_mean": statistics.mean(new),
                    "old_sd": statistics.stdev(old), "new_sd": statistics.stdev(new),
                    "diff_mean": statistics.mean(new) - statistics.mean(old),
                    "diff_se": (statistics.variance(old) / len(old) + statistics.variance(new) / len(new)) ** 0.5}
    return out


def bootstrap(diffs: list[float], n: int = 10_000) -> list[float]:
    rng = random.Random(0)
    means = sorted(statistics.mean(rng.choices(diffs, k=len(diffs))) for _ in range(n))
    return [means[int(0.025 * n)], means[int(0.975 * n)]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", default="6ad846e")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--sampler-seeds", type=int, default=20, help="seeds of the sampler check (0: skip it)")
    ap.add_argument("--skip-runs", action="store_true", help="only the sampler check")
    ap.add_argument("--add", action="store_true", help="add to the results in --out instead of replacing them")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    result = {"date": time.strftime("%Y-%m-%d"), "old": args.old, "seeds": args.seeds, "steps": args.steps,
              "setting": POC, "command": " ".join(["python benchmarks/same_distribution.py", *sys.argv[1:]]),
              "runs": {"old": {}, "new": {}}}
    if args.out.exists() and args.add:  # add seeds (and a sampler check) to an earlier call's results
        earlier = json.loads(args.out.read_text())
        result = {**earlier, "seeds": sorted({*earlier["seeds"], *([] if args.skip_runs else args.seeds)}),
                  "commands": [*earlier.get("commands", [earlier["command"]]), result["command"]]}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        trees = {"old": old_tree(args.old, tmp / "old"), "new": ROOT}
        if args.sampler_seeds:
            result["sampler"] = sampler_check(trees, list(range(args.sampler_seeds)))
            print("sampler", json.dumps({k: v for k, v in result["sampler"].items() if k != "per_seed"}), flush=True)
        jobs = [] if args.skip_runs else [(side, seed) for seed in args.seeds for side in ("old", "new")]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        for i in range(0, len(jobs), 2):  # two at a time, one thread each
            procs = [(side, seed, subprocess.Popen(command(tmp / f"{side}_{seed}", seed, args.steps), cwd=trees[side],
                                                   env={**env, "PYTHONPATH": str(trees[side])},
                                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
                     for side, seed in jobs[i : i + 2]]
            for side, seed, proc in procs:
                _, err = proc.communicate()
                if proc.returncode:
                    sys.exit(f"{side} seed {seed} failed:\n{err[-3000:]}")
                result["runs"][side][str(seed)] = summary(tmp / f"{side}_{seed}")
                print(side, seed, result["runs"][side][str(seed)], flush=True)
    result.setdefault("compare", {})
    seeds = [s for s in result["runs"]["old"] if s in result["runs"]["new"]]  # JSON keys: str after --add
    for key in () if args.skip_runs else ("train_acc", "response_length", "kept_fraction", "eval_pass1", "eval_greedy", "step_s"):
        old = [result["runs"]["old"][s][key] for s in seeds]
        new = [result["runs"]["new"][s][key] for s in seeds]
        diffs = [n - o for n, o in zip(new, old)]
        result["compare"][key] = {"old_mean": statistics.mean(old), "new_mean": statistics.mean(new),
                                  "diff_mean": statistics.mean(diffs), "diff_ci95": bootstrap(diffs)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result["compare"], indent=1))


if __name__ == "__main__":
    main()
