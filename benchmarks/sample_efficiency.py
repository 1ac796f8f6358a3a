"""Sample efficiency on arith/tiny: PRIME against outcome-only RLOO, arms × seeds, resumable.

    python benchmarks/sample_efficiency.py [--setting poc|fair|pilot] [--arms ...] [--seeds 0 1 2 3 4] [--jobs 2]
    (pilot: issue 21's lever pilot, the fair batch for 150 steps with one lever changed per arm: --seeds 0)
    python benchmarks/sample_efficiency.py --setting fair --analyze-only   # read whatever has finished
    (a subset of arms or seeds writes over the setting's result files unless --result names others;
    --anatomy adds benchmarks/advantage_anatomy.py's numbers to the pilot's lever table)

Trains every (arm, seed) with `prime train` (finished runs are kept, interrupted ones resumed from
their last checkpoint), then compares them. Stop it at any time and start it again: it goes on
where it stopped, and the analysis reads the runs that have finished (`--partial`: also those
still training, up to the step every compared run has reached).

Settings (every arm of a setting shares all of its flags but the algorithm's):
- poc:  P = 16 kept prompts × K = 4, 100 steps, eval every 25 (the PoC issue's study);
        arms rloo, prime (online sharpened PRM), frozen (the sharpened PRM never trained)
- fair: P = 64 × K = 4, 300 steps, eval of 300 test problems every 50 (the paper's 256 × 4
        scaled to this machine); arms
        rloo:   --algo rloo (outcome rewards only; the paper's baseline)
        paper:  PRIME as the paper and PRIME-RL run it: PRM equal to the reference at init,
                batch_norm, PRM learning rate 2× the policy's
        poc:    PRIME in the PoC form: a sharpened-reference PRM, no process-return normalisation
        frozen: the PoC's sharpened PRM, never trained on outcomes
Measures: training accuracy = `acc` (every sampled response, before filtering), smoothed by a
trailing mean over --window steps; RLOO's final training accuracy = the mean over seeds of its
last --window steps; for each arm and seed the first step whose trailing mean reaches it, and
the ratio to RLOO's paired by seed (bootstrap CI over seeds), and the same ratio at fixed
training accuracies (LEVELS; over the seeds where both reach the level); the final eval accuracy (greedy and
pass@1 at T = 1) as mean, standard deviation and range over seeds; the PoC checks per seed.
Results: benchmarks/results/<json> and <png> of the setting (plotly, rendered by headless
chromium). Raw runs stay in --runs-dir; each finished run's metrics.jsonl (gzipped) and config.json
are also kept in benchmarks/results/study_runs/<json>/<arm>-s<seed>/, committed with the results, so a
later checkout without --runs-dir skips those runs and analyses them with the new ones. Runs whose
metrics were lost before the archive existed can be kept as their per-seed numbers from an earlier
result JSON (--keep-summaries RESULT_JSON: summary.json in place of the metrics; the fair batch's
seeds 0-1): the comparison counts them like the others, the per-step PRM curves average the rest.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
ARCHIVE = RESULTS / "study_runs"  # finished runs' metrics and configs, kept with the results
LORA_LR = ["--policy-lr", "5e-4"]  # the PoC's policy rate for LoRA (the paper's 5e-7 is for full fine-tuning)
SHARPENED = ["--prm-lr", "1e-4", "--reward-norm", "none", "--prm-sharpen", "1.0"]  # README, "A PoC that shows PRIME"
WARM = "{warm}"  # stands for the seed's warm-started PRM (the setting's `warm_start`), filled in at launch
PRETRAIN = "prm-pretrain"  # the name of that warm start's run
SETTINGS = {
    "poc": {
        "flags": ["--task", "arith", "--model", "tiny", "--prompts-per-step", "16", "--samples-per-prompt", "4",
                  *LORA_LR, *SHARPENED, "--eval-n", "300", "--checkpoint-every", "25"],
        "steps": 100, "eval_every": 25, "result": "sample_efficiency",
        "arms": {"rloo": ["--algo", "rloo"], "prime": ["--algo", "prime"],
                 "frozen": ["--algo", "prime", "--prm", "frozen"]},
        "title": "arith / tiny, PoC setting (P = 16): PRIME vs RLOO vs frozen sharpened PRM",
    },
    "fair": {
        "flags": ["--task", "arith", "--model", "tiny", "--prompts-per-step", "64", "--samples-per-prompt", "4",
                  "--filter-low", "0.2", "--filter-high", "0.8", *LORA_LR, "--eval-n", "300",
                  "--checkpoint-every", "25"],
        "steps": 300, "eval_every": 50, "result": "fair_batch",
        "arms": {"rloo": ["--algo", "rloo"],
                 "paper": ["--algo", "prime", "--prm-lr", "1e-3", "--reward-norm", "batch_norm"],
                 "poc": ["--algo", "prime", *SHARPENED],
                 "frozen": ["--algo", "prime", *SHARPENED, "--prm", "frozen"]},
        "title": "arith / tiny, fair batch (P = 64 × K = 4): PRIME vs RLOO",
    },
    "pilot": {  # issue 21's lever pilot: the fair batch, half as long, one seed; each arm changes one lever
        "flags": ["--task", "arith", "--model", "tiny", "--prompts-per-step", "64", "--samples-per-prompt", "4",
                  "--filter-low", "0.2", "--filter-high", "0.8", *LORA_LR, "--eval-n", "300",
                  "--checkpoint-every", "25"],
        "steps": 150, "eval_every": 50, "result": "lever_pilot",
        "arms": {"rloo": ["--algo", "rloo"],
                 "paper-min": ["--algo", "prime", "--prm-lr", "1e-3", "--reward-norm", "batch_norm", "--process-credit", "min"],
                 "paper-clip": ["--algo", "prime", "--prm-lr", "1e-3", "--reward-norm", "batch_norm", "--process-credit", "clip"],
                 "paper-w2": ["--algo", "prime", "--prm-lr", "1e-3", "--reward-norm", "batch_norm", "--process-weight", "2"],
                 "paper-prm4x": ["--algo", "prime", "--prm-lr", "2e-3", "--reward-norm", "batch_norm"],
                 "paper-warm": ["--algo", "prime", "--prm-lr", "1e-3", "--reward-norm", "batch_norm",
                                "--prm-init", WARM],
                 "poc-min": ["--algo", "prime", *SHARPENED, "--process-credit", "min"],
                 "poc-clip": ["--algo", "prime", *SHARPENED, "--process-credit", "clip"],
                 # at weight 1 the process term is ~2% of the returns' variance in both forms
                 # (benchmarks/advantage_anatomy.py); at 8 it is about half of it
                 "paper-w8": ["--algo", "prime", "--prm-lr", "1e-3", "--reward-norm", "batch_norm", "--process-weight", "8"],
                 "poc-w8": ["--algo", "prime", *SHARPENED, "--process-weight", "8"]},
        # the warm start of an arm with --prm-init WARM: `prime prm pretrain`, the paper's PRM trained for
        # 50 steps on the start model's own samples (policy held fixed), the seed's run `prm-pretrain-s<seed>`
        "warm_start": {"steps": 50, "flags": ["--task", "arith", "--model", "tiny", "--prompts-per-step", "64",
                                              "--samples-per-prompt", "4", "--filter-low", "0.2", "--filter-high",
                                              "0.8", "--prm-lr", "1e-3", "--reward-norm", "batch_norm",
                                              "--eval-every", "0", "--checkpoint-every", "25"]},
        "title": "arith / tiny, lever pilot (P = 64 × K = 4, 150 steps)",
        "levers": {"rloo": "outcome rewards only (the baseline)",
                   "paper-prm4x": "paper's PRIME, PRM lr 4× the policy's (2e-3)",
                   "paper-warm": "paper's PRIME, PRM warm-started: 50 steps on the start model's samples",
                   "paper-min": "paper's PRIME, min-form credit", "paper-clip": "paper's PRIME, clipped credit",
                   "paper-w2": "paper's PRIME, process weight 2", "paper-w8": "paper's PRIME, process weight 8",
                   "poc-min": "sharpened PRM, min-form credit", "poc-clip": "sharpened PRM, clipped credit",
                   "poc-w8": "sharpened PRM, process weight 8"},
    },
}
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#7f7f7f", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf"]


def status(run: Path) -> str | None:
    try:
        return json.loads((run / "status.json").read_text())["state"]
    except (OSError, ValueError, KeyError):
        return None


def archived(setting: dict, arm: str, seed: int) -> Path:
    return ARCHIVE / setting["result"] / f"{arm}-s{seed}"


def is_kept(setting: dict, arm: str, seed: int) -> bool:
    """Finished and kept in the archive: its metrics, or only its numbers (keep_summaries)."""
    return any((archived(setting, arm, seed) / name).exists() for name in ("metrics.jsonl.gz", SUMMARY))


def archive(setting: dict, arm: str, seed: int, runs: Path) -> None:
    """Keep a finished run's metrics (gzipped, byte-stable) and config beside the results."""
    run, kept = runs / f"{arm}-s{seed}", archived(setting, arm, seed)
    if arm == PRETRAIN or status(run) != "finished" or (kept / "metrics.jsonl.gz").exists():
        return
    kept.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(run / "config.json", kept / "config.json")
    (kept / "metrics.jsonl.gz").write_bytes(gzip.compress((run / "metrics.jsonl").read_bytes(), mtime=0))


def warm_start(setting: dict, seed: int, runs: Path) -> Path:
    """The checkpoint whose prm adapter an arm with --prm-init WARM starts from."""
    return runs / f"{PRETRAIN}-s{seed}" / "checkpoints" / f"step_{setting['warm_start']['steps']:06d}"


def launch(setting: dict, arm: str, seed: int, runs: Path, threads: int) -> subprocess.Popen | None:
    run = runs / f"{arm}-s{seed}"
    if status(run) == "finished" or is_kept(setting, arm, seed):
        return None
    if arm == PRETRAIN:  # short: not resumed, started again
        shutil.rmtree(run, ignore_errors=True)
        ws = setting["warm_start"]
        cmd = ["prm", "pretrain", "--out", str(run), "--seed", str(seed), "--steps", str(ws["steps"]), *ws["flags"]]
    elif (run / "checkpoints").is_dir() and any((run / "checkpoints").iterdir()):
        cmd = ["train", "--resume", str(run)]
    else:  # never reached a checkpoint: start again
        shutil.rmtree(run, ignore_errors=True)
        flags = [str(warm_start(setting, seed, runs)) if f == WARM else f for f in setting["arms"][arm]]
        cmd = ["train", "--out", str(run), "--seed", str(seed), "--steps", str(setting["steps"]),
               "--eval-every", str(setting["eval_every"]), *setting["flags"], *flags]
    run.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    print(f"start {arm} seed {seed}: prime {' '.join(cmd)}", flush=True)
    with open(runs / f"{arm}-s{seed}.log", "a") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen([sys.executable, "-m", "prime", *cmd], env=env, stdout=log, stderr=subprocess.STDOUT)


def train_all(setting: dict, arms: list[str], runs: Path, seeds: list[int], jobs: int, threads: int | None) -> None:
    """Seed by seed, every arm; a seed's warm start first where an arm needs one, and that arm after it."""
    warm = {arm for arm in arms if WARM in setting["arms"][arm]}
    queue = [(arm, s) for s in seeds for arm in ([PRETRAIN] if warm else []) + arms]
    threads = threads or max(1, (os.cpu_count() or 1) // jobs)
    active: dict[tuple[str, int], subprocess.Popen] = {}

    def ready(key: tuple[str, int]) -> bool:
        return (key[0] not in warm or status(runs / f"{PRETRAIN}-s{key[1]}") == "finished"
                or is_kept(setting, *key))

    while queue or active:
        for key, proc in list(active.items()):
            if proc.poll() is not None:
                del active[key]
                if proc.returncode:
                    sys.exit(f"{key[0]} seed {key[1]} failed (exit {proc.returncode}); see {runs}/{key[0]}-s{key[1]}.log")
                archive(setting, *key, runs)
                print(f"done  {key[0]} seed {key[1]}", flush=True)
        while len(active) < jobs and (key := next((k for k in queue if ready(k)), None)):
            queue.remove(key)
            if (proc := launch(setting, *key, runs, threads)) is not None:
                active[key] = proc
        if queue and not active and not any(map(ready, queue)):
            sys.exit(f"waiting for a warm start that is not training: {queue}")
        time.sleep(2)


# ---------------------------------------------------------------------------- analysis

def trailing_mean(xs: list[float], window: int) -> list[float]:
    """out[i] = mean(xs[max(0, i-window+1) : i+1])."""
    return [statistics.fmean(xs[max(0, i - window + 1): i + 1]) for i in range(len(xs))]


def first_reaching(curve: list[float], target: float, start: int) -> int | None:
    """1-based step of the first value ≥ target at index ≥ start - 1 (None: never)."""
    return next((i + 1 for i in range(start - 1, len(curve)) if curve[i] >= target), None)


def spread(xs: list[float]) -> dict:
    return {"mean": statistics.fmean(xs), "std": statistics.stdev(xs) if len(xs) > 1 else 0.0,
            "min": min(xs), "max": max(xs), "values": xs}


def bootstrap_mean_ci(xs: list[float], n: int = 10_000, level: float = 0.95, seed: int = 0) -> dict:
    """Mean of xs and a percentile bootstrap confidence interval (resampling seeds with replacement)."""
    import random

    rng = random.Random(seed)
    means = sorted(statistics.fmean(rng.choices(xs, k=len(xs))) for _ in range(n))
    lo, hi = means[int((1 - level) / 2 * n)], means[int((1 + level) / 2 * n) - 1]
    return {"mean": statistics.fmean(xs), "ci95": [lo, hi], "values": xs}


def read_run(run: Path) -> dict:
    """A run's metrics: metrics.jsonl of a run directory, or metrics.jsonl.gz of an archived one."""
    text = (run / "metrics.jsonl").read_text() if (run / "metrics.jsonl").exists() else \
        gzip.decompress((run / "metrics.jsonl.gz").read_bytes()).decode()
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    # training acc over every sampled response: `acc` since the veRL naming, `acc/drawn` before it
    drawn = "acc/drawn" if any("acc/drawn" in r for r in rows) else "acc"
    train = [r for r in rows if r.get(drawn) is not None]
    evals = [r for r in rows if "eval/acc" in r]
    return {"acc_drawn": [r[drawn] for r in train], "evals": evals, "eval_first": evals[0], "eval_last": evals[-1],
            "wall_s": train[-1]["time/wall_s"], "steps": len(train),
            "prm_pairwise_acc": [r.get("reward_model/dpo_acc_before") for r in train],
            "per_step": {k: [r.get(k) for r in train] for k in CURVE_KEYS}}


CURVE_KEYS = ("reward_model/dpo_acc_before", "reward_model/ref_ll_pairwise_acc", "localise/prm_line_hit",
              "localise/line_chance", "localise/prm_token_hit", "localise/token_chance", "localise/ref_token_hit")


def mean_of(xs: list) -> float | None:
    xs = [x for x in xs if x is not None]
    return statistics.fmean(xs) if xs else None


def poc_checks(run: dict, steps: int) -> dict:
    """The three numbers of the PoC claim for one run: (a) eval pass@1 gain, (b) the PRM's pairwise
    accuracy on fresh rollouts over the second half, (c) most-negative-line localisation / chance."""
    half = {k: v[steps // 2:] for k, v in run["per_step"].items()}
    hit, chance = mean_of(run["per_step"]["localise/prm_line_hit"]), mean_of(run["per_step"]["localise/line_chance"])
    return {"a_pass1_gain": run["eval_last"]["eval/acc_sampled"] - run["eval_first"]["eval/acc_sampled"],
            "b_prm_pairwise_second_half": mean_of(half["reward_model/dpo_acc_before"]),
            "ref_ll_pairwise_second_half": mean_of(half["reward_model/ref_ll_pairwise_acc"]),
            "c_line_hit": hit, "c_line_chance": chance,
            "c_ratio": hit / chance if hit is not None and chance else None,
            "token_hit": mean_of(run["per_step"]["localise/prm_token_hit"]),
            "token_chance": mean_of(run["per_step"]["localise/token_chance"]),
            "ref_token_hit": mean_of(run["per_step"]["localise/ref_token_hit"])}


LEVELS = (0.40, 0.45, 0.50, 0.55)  # fixed training accuracies, for comparing arms beyond RLOO's final one


def seed_numbers(run: dict, steps: int, window: int) -> dict:
    """What the comparison takes from one run (read by read_run, cut to `steps`): the trailing-mean
    training-accuracy curve and the per-seed numbers; `per_step` holds the curves of CURVE_KEYS."""
    acc = run["acc_drawn"]
    return {"steps": steps, "curve": trailing_mean(acc, window),
            "final_train_acc": statistics.fmean(acc[-window:]), "first_train_acc": statistics.fmean(acc[:window]),
            "eval_greedy_start": run["eval_first"]["eval/acc"], "eval_greedy_final": run["eval_last"]["eval/acc"],
            "eval_sampled_start": run["eval_first"]["eval/acc_sampled"],
            "eval_sampled_final": run["eval_last"]["eval/acc_sampled"], "eval_last_step": run["eval_last"]["step"],
            "wall_s": run["wall_s"],
            # the PRM's pairwise accuracy on each step's fresh rollouts, before its update (0.5: chance)
            "prm_pairwise_acc_first_half": mean_of(run["prm_pairwise_acc"][:steps // 2]),
            "prm_pairwise_acc_second_half": mean_of(run["prm_pairwise_acc"][steps // 2:]),
            "poc_checks": poc_checks(run, steps), "per_step": run["per_step"]}


SUMMARY = "summary.json"  # an archived run kept as its seed_numbers only (its metrics predate the archive)
SEED_FIELDS = ("final_train_acc", "first_train_acc", "eval_greedy_start", "eval_greedy_final", "eval_sampled_start",
               "eval_sampled_final", "wall_s", "prm_pairwise_acc_first_half", "prm_pairwise_acc_second_half")


def keep_summaries(setting: dict, result: Path, source: str) -> list[Path]:
    """Archive each (arm, seed) of an earlier result JSON as its seed_numbers (summary.json), for runs
    whose metrics were lost before the archive existed; the analysis reads them beside the raw runs.
    A summary has no per-step curves but the training accuracy's trailing mean (the plot's PRM and
    localisation panels average the seeds that have them)."""
    old, written = json.loads(result.read_text()), []
    for arm, r in old["arms"].items():
        for i, s in enumerate(r["seeds"]):
            if is_kept(setting, arm, s):
                continue
            kept = archived(setting, arm, s)
            numbers = {k: (r[k] or {"values": [None] * len(r["seeds"])})["values"][i] for k in SEED_FIELDS}
            numbers |= {"steps": old["steps"], "window": old["window"], "curve": r["seed_curves"][str(s)],
                        "eval_last_step": r["eval_last_step"][str(s)], "poc_checks": r["poc_checks"][str(s)],
                        "per_step": None, "source": source}
            kept.mkdir(parents=True, exist_ok=True)
            (kept / SUMMARY).write_text(json.dumps(numbers, indent=1) + "\n")
            written.append(kept)
    return written


def analyse(setting: dict, runs: Path, arms: list[str], seeds: list[int], window: int, partial: bool) -> dict:
    """Compare the (arm, seed) runs found in `runs` or kept in the archive: finished ones, or with
    `partial` also those still training, cut to the step every compared run has reached. A run kept
    only as a summary (keep_summaries) counts where the comparison covers all of its steps."""
    data, summaries = {}, {}
    for arm in arms:
        for s in seeds:
            run, kept = runs / f"{arm}-s{s}", archived(setting, arm, s)
            archive(setting, arm, s, runs)
            if (run / "metrics.jsonl").exists() and (partial or status(run) == "finished"):
                data.setdefault(arm, {})[s] = read_run(run)
            elif (kept / "metrics.jsonl.gz").exists():
                data.setdefault(arm, {})[s] = read_run(kept)
            elif (kept / SUMMARY).exists():
                summaries.setdefault(arm, {})[s] = json.loads((kept / SUMMARY).read_text())
    steps = min([setting["steps"]] + [r["steps"] for by_seed in data.values() for r in by_seed.values()])
    numbers: dict[str, dict[int, dict]] = {}
    for arm, by_seed in data.items():
        for s, r in by_seed.items():
            cut_run(r, steps)
            numbers.setdefault(arm, {})[s] = seed_numbers(r, steps, window)
    for arm, by_seed in summaries.items():
        for s, n in by_seed.items():
            if n["steps"] != steps or n["window"] != window:
                print(f"{arm} seed {s}: kept as a summary of {n['steps']} steps (window {n['window']}); "
                      f"not comparable at {steps} steps (window {window}), left out", file=sys.stderr)
            else:
                numbers.setdefault(arm, {})[s] = n
    if "rloo" not in numbers:
        sys.exit(f"no {'' if partial else 'finished '}rloo run in {runs}: nothing to compare against")
    if steps < 2 * window:
        sys.exit(f"the runs in {runs} have only {steps} steps in common; train longer first")
    target = statistics.fmean(n["final_train_acc"] for n in numbers["rloo"].values())
    out = {"target_train_acc": target, "window": window, "steps": steps, "seeds": seeds, "partial": partial,
           "arms": {}, "ratio_over_rloo_steps": {}, "ratio_at_level": {}}
    for arm in [a for a in arms if a in numbers]:
        by_seed = numbers[arm]
        done = sorted(by_seed)
        curves = {s: by_seed[s]["curve"] for s in done}
        mean_curve = [statistics.fmean(c[i] for c in curves.values()) for i in range(steps)]
        reached = {s: first_reaching(curves[s], target, window) for s in done}
        has_prm = any(by_seed[s]["prm_pairwise_acc_first_half"] is not None for s in done)
        per_step = [s for s in done if by_seed[s]["per_step"] is not None]
        out["arms"][arm] = {
            "seeds": done,
            "summary_only_seeds": {str(s): by_seed[s]["source"] for s in done if by_seed[s]["per_step"] is None},
            "steps_to_target": {str(s): reached[s] for s in done},
            "steps_to_level": {f"{level:.2f}": {str(s): first_reaching(curves[s], level, window) for s in done}
                               for level in LEVELS},
            "steps_to_target_seed_mean_curve": first_reaching(mean_curve, target, window),
            **{k: spread([by_seed[s][k] for s in done]) for k in SEED_FIELDS if not k.startswith("prm_")},
            **{k: spread([by_seed[s][k] for s in done]) if has_prm else None for k in SEED_FIELDS if k.startswith("prm_")},
            "eval_last_step": {str(s): by_seed[s]["eval_last_step"] for s in done},
            "steps_to_target_ci": bootstrap_mean_ci([reached[s] or steps + 1 for s in done]),
            "poc_checks": {str(s): by_seed[s]["poc_checks"] for s in done},
            # the seed mean of the per-step curves (over the seeds kept with their metrics)
            "per_step_seed_mean": {k: [mean_of([by_seed[s]["per_step"][k][i] for s in per_step]) for i in range(steps)]
                                   for k in CURVE_KEYS},
            "mean_curve": mean_curve,
            "seed_curves": {str(s): c for s, c in curves.items()},
        }
    rloo, rloo_at = out["arms"]["rloo"]["steps_to_target"], out["arms"]["rloo"]["steps_to_level"]
    for arm, r in out["arms"].items():
        paired = [s for s in r["steps_to_target"] if s in rloo]
        if arm != "rloo" and paired:  # paired by seed; a run that never reaches the target counts as steps + 1
            out["ratio_over_rloo_steps"][arm] = bootstrap_mean_ci(
                [(r["steps_to_target"][s] or steps + 1) / (rloo[s] or steps + 1) for s in paired])
        if arm != "rloo":  # the same at each fixed level, over the seeds where both reach it (not censored)
            out["ratio_at_level"][arm] = {}
            for level, at in r["steps_to_level"].items():
                both = [at[s] / rloo_at[level][s] for s in paired if at[s] and rloo_at[level][s]]
                if both:
                    out["ratio_at_level"][arm][level] = bootstrap_mean_ci(both)
    out["not_reached_counts_as"] = steps + 1
    return out


def cut_run(run: dict, steps: int) -> None:
    """Keep the first `steps` steps of a run read by read_run (and the evaluations within them)."""
    run["acc_drawn"], run["prm_pairwise_acc"] = run["acc_drawn"][:steps], run["prm_pairwise_acc"][:steps]
    run["per_step"] = {k: v[:steps] for k, v in run["per_step"].items()}
    evals = [e for e in run["evals"] if e["step"] <= steps]
    run["eval_first"], run["eval_last"], run["steps"] = evals[0], evals[-1], steps


def plot(result: dict, title: str, png: Path) -> None:
    """Training accuracy (trailing mean, seed mean and each seed) with RLOO's final level; the
    PRMs' pairwise accuracy beside the reference's likelihood; line localisation beside chance."""
    from plotly.subplots import make_subplots

    some = "<br>(the seeds kept with metrics)" if any(r.get("summary_only_seeds") for r in result["arms"].values()) else ""
    fig = make_subplots(rows=1, cols=3, subplot_titles=(
        f"training accuracy (trailing mean of {result['window']})", "pairwise accuracy on fresh rollouts" + some,
        "most negative line = first wrong line" + some))
    x = list(range(1, result["steps"] + 1))
    smooth = lambda ys: trailing_mean([y if y is not None else float("nan") for y in ys], result["window"])
    for n, (arm, r) in enumerate(result["arms"].items()):  # one legend entry per arm, toggling all its lines
        colour, group = COLORS[n % len(COLORS)], {"legendgroup": arm, "showlegend": False}
        for s, c in r["seed_curves"].items():
            fig.add_scatter(x=x, y=c, mode="lines", line={"color": colour, "width": 1}, opacity=0.3,
                            name=f"{arm} seed {s}", row=1, col=1, **group)
        fig.add_scatter(x=x, y=r["mean_curve"], mode="lines", line={"color": colour, "width": 3}, legendgroup=arm,
                        name=f"{arm} ({len(r['seed_curves'])} seeds)", row=1, col=1)
        if r["prm_pairwise_acc_first_half"] is not None:
            fig.add_scatter(x=x, y=smooth(r["per_step_seed_mean"]["reward_model/dpo_acc_before"]), mode="lines",
                            line={"color": colour, "width": 2}, name=f"{arm}: PRM", row=1, col=2, **group)
            fig.add_scatter(x=x, y=smooth(r["per_step_seed_mean"]["localise/prm_line_hit"]), mode="lines",
                            line={"color": colour, "width": 2}, name=f"{arm}: PRM line hit", row=1, col=3, **group)
    rloo = result["arms"]["rloo"]["per_step_seed_mean"]
    fig.add_scatter(x=x, y=smooth(rloo["reward_model/ref_ll_pairwise_acc"]), mode="lines",
                    line={"color": "#555", "dash": "dot"}, name="reference log-likelihood (RLOO's rollouts)", row=1, col=2)
    fig.add_scatter(x=x, y=smooth(rloo["localise/line_chance"]), mode="lines", line={"color": "#555", "dash": "dash"},
                    name="chance (1 / lines)", row=1, col=3)
    fig.add_hline(y=result["target_train_acc"], line_dash="dash", row=1, col=1,
                  annotation_text=f"RLOO final {result['target_train_acc']:.3f}")
    fig.add_hline(y=0.5, line_dash="dot", line_color="#999", row=1, col=2)
    fig.update_layout(title=title + (" (partial)" if result.get("partial") else ""),
                      width=1500, height=480, template="plotly_white")
    from playwright.sync_api import sync_playwright

    sys.path.insert(0, str(ROOT / "tests"))
    from test_browser import CHROMIUM

    html = png.with_name(png.stem + ".plot.tmp.html")
    html.write_text(fig.to_html(include_plotlyjs=True, full_html=True))
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM)
            page = browser.new_page(viewport={"width": 1520, "height": 500})
            page.goto(html.as_uri())
            page.wait_for_selector(".main-svg")
            page.screenshot(path=str(png))
            browser.close()
    finally:
        html.unlink()


def lever_table(result: dict, levers: dict[str, str], anatomy: dict[str, dict]) -> str:
    """The pilot's ablation table (markdown), one row per arm and seed: the lever, training accuracy
    (steps to fixed levels, the last `window` steps), eval pass@1, the PRM's pairwise accuracy and
    blame over the second half, and what the process term did to the update (anatomy, if given)."""
    f = lambda v, spec=".3f": "—" if v is None else format(v, spec)
    lines = [("| arm | lever | steps to train acc 0.40 / 0.45 | train acc, last 10 | eval pass@1 (0 → end) | "
              "PRM pairwise, 2nd half (reference) | blame / chance | process share | sign flips | prefix relief |"),
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for arm, r in result["arms"].items():
        for s in r["seeds"]:
            s, c, an = str(s), r["poc_checks"][str(s)], anatomy.get(f"{arm}-s{s}", {})
            levels = " / ".join(str(r["steps_to_level"][k][s] or "—") for k in ("0.40", "0.45"))
            i = r["seeds"].index(int(s))
            start, end = r["eval_sampled_start"]["values"][i], r["eval_sampled_final"]["values"][i]
            lines.append(f"| {arm} {s} | {levers.get(arm, '')} | {levels} | {r['final_train_acc']['values'][i]:.3f} | "
                         f"{start:.3f} → {end:.3f} ({100 * (end - start):+.1f}) | {f(c['b_prm_pairwise_second_half'])} "
                         f"({f(c['ref_ll_pairwise_second_half'])}) | {f(c['c_ratio'], '.2f')}{'×' if c['c_ratio'] else ''} "
                         f"| {f(an.get('process_share'))} | {f(an.get('sign_flips'))} | {f(an.get('prefix_relief'), '+.3f')} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--setting", choices=sorted(SETTINGS), default="poc")
    ap.add_argument("--arms", nargs="+", help="arms of the setting to run (default: all of them)")
    ap.add_argument("--runs-dir", type=Path, help="default runs/<setting>")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--jobs", type=int, default=2, help="runs trained at once (threads split between them)")
    ap.add_argument("--threads", type=int, help="torch threads of each run (default: the cores split between the jobs)")
    ap.add_argument("--window", type=int, default=10, help="trailing-mean window, steps")
    ap.add_argument("--analyze-only", action="store_true")
    ap.add_argument("--partial", action="store_true", help="also analyse runs still training")
    ap.add_argument("--result", help="name of the result files (default: the setting's, e.g. lever_pilot)")
    ap.add_argument("--keep-summaries", type=Path, metavar="RESULT_JSON",
                    help="first archive each run of an earlier result JSON of this setting as its per-seed numbers "
                         "(for runs whose metrics were lost before the archive existed); training skips a run kept so: "
                         "delete its summary.json to train it again, and its metrics replace the summary")
    ap.add_argument("--anatomy", type=Path, help="benchmarks/advantage_anatomy.py's JSON of these runs, for the lever table")
    args = ap.parse_args()
    setting = SETTINGS[args.setting]
    arms = args.arms or list(setting["arms"])
    if unknown := [a for a in arms if a not in setting["arms"]]:
        ap.error(f"--arms {' '.join(unknown)}: not an arm of --setting {args.setting} ({', '.join(setting['arms'])})")
    runs = args.runs_dir or ROOT / "runs" / args.setting
    if args.keep_summaries:
        old = json.loads(args.keep_summaries.read_text())
        source = f"{args.keep_summaries.name} of {old['date']} ({old['command']}); the run's metrics were lost"
        for kept in keep_summaries(setting, args.keep_summaries, source):
            print(f"kept {kept.relative_to(ROOT) if kept.is_relative_to(ROOT) else kept} as a summary", flush=True)
    if not args.analyze_only:
        train_all(setting, arms, runs, args.seeds, args.jobs, args.threads)
    result = analyse(setting, runs, arms, args.seeds, args.window, args.partial)
    result["command"] = " ".join(["python benchmarks/sample_efficiency.py", *sys.argv[1:]])
    result["settings"] = " ".join(setting["flags"])
    result["arm_flags"] = {a: " ".join(setting["arms"][a]) for a in arms}
    result["date"] = time.strftime("%Y-%m-%d")
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = args.result or setting["result"]
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=1))
    seeds = ", ".join(map(str, sorted({s for r in result["arms"].values() for s in r["seeds"]})))
    title = setting["title"] + (f": {', '.join(arms)}" if args.result else "") + f", seeds {seeds}"
    plot(result, title, RESULTS / f"{name}.png")
    if "levers" in setting:
        anatomy = {r["run"]: r for r in json.loads(args.anatomy.read_text())["runs"]} if args.anatomy else {}
        print(lever_table(result, setting["levers"], anatomy))
    for arm, ratio in result["ratio_over_rloo_steps"].items():
        print(f"{arm} / RLOO steps (paired by seed): {ratio['mean']:.2f} CI {ratio['ci95']}")
    for arm, by_level in result["ratio_at_level"].items():
        levels = "; ".join(f"{level}: {r['mean']:.2f} [{r['ci95'][0]:.2f}, {r['ci95'][1]:.2f}] ({len(r['values'])} seeds)"
                           for level, r in by_level.items())
        print(f"{arm} / RLOO steps to a fixed training accuracy (seeds where both reach it): "
              f"{levels or 'no level reached by both'}")
    for arm, r in result["arms"].items():
        for s, c in r["poc_checks"].items():
            print(f"  {arm} seed {s}: " + ", ".join(f"{k} {v:.3f}" for k, v in c.items() if v is not None))
        print(f"{arm:7s} steps to {result['target_train_acc']:.3f}: {r['steps_to_target']} "
              f"(mean curve {r['steps_to_target_seed_mean_curve']}); final eval pass@1 "
              f"{r['eval_sampled_final']['mean']:.3f} ± {r['eval_sampled_final']['std']:.3f}, greedy "
              f"{r['eval_greedy_final']['mean']:.3f} ± {r['eval_greedy_final']['std']:.3f}")


if __name__ == "__main__":
    main()
