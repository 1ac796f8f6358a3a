"""Sample efficiency on arith/tiny: PRIME, outcome-only RLOO and PRIME with a frozen PRM, ≥ 5 seeds.

    python benchmarks/sample_efficiency.py [--seeds 0 1 2 3 4] [--steps 100] [--jobs 2]
    python benchmarks/sample_efficiency.py --analyze-only      # re-read finished runs

Trains every (arm, seed) with `prime train` (finished runs are kept, interrupted ones resumed),
then compares them. The arms share every setting but the algorithm:
- rloo:   --algo rloo (outcome rewards only; the paper's baseline)
- prime:  --algo prime, PRM updated online every step
- frozen: --algo prime --prm frozen: the PRM stays the sharpened reference it starts as
          (--prm-sharpen), never trained on outcomes: what online training adds over it
Measures: training accuracy = `acc/drawn` (every sampled response, before filtering),
smoothed by a trailing mean over --window steps; RLOO's final training accuracy = the
mean over seeds of its last --window steps; for each arm and seed the first step whose
trailing mean reaches it; the final eval accuracy (greedy and pass@1 at T = 1) as mean,
standard deviation and range over seeds.
Results: benchmarks/results/sample_efficiency.json and sample_efficiency.png (the plot,
drawn with plotly and rendered by headless chromium). Raw runs stay in --runs-dir.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
# the PoC setting (README, "A PoC that shows PRIME"): the paper's algorithm with a sharpened-reference PRM
POC = ["--prompts-per-step", "16", "--samples-per-prompt", "4", "--policy-lr", "5e-4", "--prm-lr", "1e-4",
       "--reward-norm", "none", "--prm-sharpen", "1.0"]
COMMON = ["--task", "arith", "--model", "tiny", *POC, "--eval-n", "300", "--checkpoint-every", "25"]
ARMS = ("rloo", "prime", "frozen")
COLORS = {"rloo": "#1f77b4", "prime": "#d62728", "frozen": "#7f7f7f"}


def arm_args(arm: str) -> list[str]:
    return {"rloo": ["--algo", "rloo"], "prime": ["--algo", "prime"], "frozen": ["--algo", "prime", "--prm", "frozen"]}[arm]


def status(run: Path) -> str | None:
    try:
        return json.loads((run / "status.json").read_text())["state"]
    except (OSError, ValueError, KeyError):
        return None


def launch(arm: str, seed: int, runs: Path, steps: int, threads: int) -> subprocess.Popen | None:
    run = runs / f"{arm}-s{seed}"
    if status(run) == "finished":
        return None
    if run.exists():
        cmd = ["train", "--resume", str(run)]
    else:
        cmd = ["train", "--out", str(run), "--seed", str(seed), "--steps", str(steps),
               "--eval-every", str(max(1, steps // 4)), *COMMON, *arm_args(arm)]
    run.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    log = open(runs / f"{arm}-s{seed}.log", "a")
    print(f"start {arm} seed {seed}: prime {' '.join(cmd)}", flush=True)
    return subprocess.Popen([sys.executable, "-m", "prime", *cmd], env=env, stdout=log, stderr=subprocess.STDOUT)


def train_all(runs: Path, seeds: list[int], steps: int, jobs: int) -> None:
    """Seed by seed, every arm."""
    queue = [(arm, s) for s in seeds for arm in ARMS]
    threads = max(1, (os.cpu_count() or 1) // jobs)
    active: dict[tuple[str, int], subprocess.Popen] = {}
    while queue or active:
        for key, proc in list(active.items()):
            if proc.poll() is not None:
                del active[key]
                if proc.returncode:
                    sys.exit(f"{key[0]} seed {key[1]} failed (exit {proc.returncode}); see {runs}/{key[0]}-s{key[1]}.log")
                print(f"done  {key[0]} seed {key[1]}", flush=True)
        while queue and len(active) < jobs:
            key = queue.pop(0)
            if (proc := launch(*key, runs, steps, threads)) is not None:
                active[key] = proc
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


def series(rows: list[dict], key: str) -> list[float]:
    return [r[key] for r in rows if r.get(key) is not None]


def read_run(run: Path) -> dict:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    # training acc over every sampled response: `acc` since the veRL naming, `acc/drawn` before it
    drawn = "acc/drawn" if any("acc/drawn" in r for r in rows) else "acc"
    train = [r for r in rows if r.get(drawn) is not None]
    evals = [r for r in rows if "eval/acc" in r]
    return {"acc_drawn": [r[drawn] for r in train], "eval_first": evals[0], "eval_last": evals[-1],
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


def prm_acc(run: dict) -> list[float]:
    return [a for a in run["prm_pairwise_acc"] if a is not None]


def analyse(runs: Path, seeds: list[int], steps: int, window: int) -> dict:
    data = {arm: {s: read_run(runs / f"{arm}-s{s}") for s in seeds} for arm in ARMS}
    for arm in ARMS:
        for s in seeds:
            if data[arm][s]["steps"] != steps:
                sys.exit(f"{runs}/{arm}-s{s} has {data[arm][s]['steps']} steps, not {steps}; rerun without --analyze-only")
    target = statistics.fmean(statistics.fmean(data["rloo"][s]["acc_drawn"][-window:]) for s in seeds)
    out = {"target_train_acc": target, "window": window, "steps": steps, "seeds": seeds, "arms": {}}
    for arm in ARMS:
        curves = {s: trailing_mean(data[arm][s]["acc_drawn"], window) for s in seeds}
        mean_curve = [statistics.fmean(c[i] for c in curves.values()) for i in range(steps)]
        out["arms"][arm] = {
            "steps_to_target": {str(s): first_reaching(curves[s], target, window) for s in seeds},
            "steps_to_target_seed_mean_curve": first_reaching(mean_curve, target, window),
            "final_train_acc": spread([statistics.fmean(data[arm][s]["acc_drawn"][-window:]) for s in seeds]),
            "first_train_acc": spread([statistics.fmean(data[arm][s]["acc_drawn"][:window]) for s in seeds]),
            "eval_greedy_start": spread([data[arm][s]["eval_first"]["eval/acc"] for s in seeds]),
            "eval_greedy_final": spread([data[arm][s]["eval_last"]["eval/acc"] for s in seeds]),
            "eval_sampled_start": spread([data[arm][s]["eval_first"]["eval/acc_sampled"] for s in seeds]),
            "eval_sampled_final": spread([data[arm][s]["eval_last"]["eval/acc_sampled"] for s in seeds]),
            "wall_s": spread([data[arm][s]["wall_s"] for s in seeds]),
            # the PRM's pairwise accuracy on each step's fresh rollouts, before its update (0.5: chance)
            "prm_pairwise_acc_first_half": spread([statistics.fmean(prm_acc(data[arm][s])[:steps // 2]) for s in seeds])
            if arm != "rloo" else None,
            "prm_pairwise_acc_second_half": spread([statistics.fmean(prm_acc(data[arm][s])[steps // 2:]) for s in seeds])
            if arm != "rloo" else None,
            "steps_to_target_ci": bootstrap_mean_ci([first_reaching(curves[s], target, window) or steps + 1 for s in seeds]),
            "poc_checks": {str(s): poc_checks(data[arm][s], steps) for s in seeds},
            "per_step_seed_mean": {k: [mean_of([data[arm][s]["per_step"][k][i] for s in seeds]) for i in range(steps)]
                                   for k in CURVE_KEYS},
            "mean_curve": mean_curve,
            "seed_curves": {str(s): c for s, c in curves.items()},
        }
    prime, rloo = out["arms"]["prime"]["steps_to_target_ci"]["values"], out["arms"]["rloo"]["steps_to_target_ci"]["values"]
    out["prime_over_rloo_steps"] = bootstrap_mean_ci([p / r for p, r in zip(prime, rloo)])  # paired by seed
    out["not_reached_counts_as"] = steps + 1
    return out


def plot(result: dict, png: Path) -> None:
    """Training accuracy (trailing mean, seed mean and each seed) with RLOO's final level."""
    import plotly.graph_objects as go

    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=3, subplot_titles=(
        f"training accuracy (trailing mean of {result['window']})", "pairwise accuracy on fresh rollouts",
        "most negative line = first wrong line"))
    x = list(range(1, result["steps"] + 1))
    for arm, r in result["arms"].items():
        for s, c in r["seed_curves"].items():
            fig.add_scatter(x=x, y=c, mode="lines", line={"color": COLORS[arm], "width": 1}, opacity=0.3,
                            showlegend=False, name=f"{arm} seed {s}", row=1, col=1)
        fig.add_scatter(x=x, y=r["mean_curve"], mode="lines", line={"color": COLORS[arm], "width": 3},
                        name=f"{arm} (mean of {len(r['seed_curves'])} seeds)", row=1, col=1)
        smooth = lambda ys: trailing_mean([y if y is not None else float("nan") for y in ys], result["window"])  # noqa: E731
        if arm != "rloo":
            fig.add_scatter(x=x, y=smooth(r["per_step_seed_mean"]["reward_model/dpo_acc_before"]), mode="lines",
                            line={"color": COLORS[arm], "width": 2}, name=f"{arm}: PRM", row=1, col=2)
            fig.add_scatter(x=x, y=smooth(r["per_step_seed_mean"]["localise/prm_line_hit"]), mode="lines",
                            line={"color": COLORS[arm], "width": 2}, name=f"{arm}: PRM line hit", row=1, col=3)
    rloo = result["arms"]["rloo"]["per_step_seed_mean"]
    fig.add_scatter(x=x, y=smooth(rloo["reward_model/ref_ll_pairwise_acc"]), mode="lines",
                    line={"color": "#555", "dash": "dot"}, name="reference log-likelihood (RLOO's rollouts)", row=1, col=2)
    fig.add_scatter(x=x, y=smooth(rloo["localise/line_chance"]), mode="lines", line={"color": "#555", "dash": "dash"},
                    name="chance (1 / lines)", row=1, col=3)
    fig.add_hline(y=result["target_train_acc"], line_dash="dash", row=1, col=1,
                  annotation_text=f"RLOO final {result['target_train_acc']:.3f}")
    fig.add_hline(y=0.5, line_dash="dot", line_color="#999", row=1, col=2)
    fig.update_layout(title="arith / tiny, PoC setting: PRIME vs RLOO vs frozen sharpened PRM",
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs-dir", type=Path, default=ROOT / "runs" / "sample_efficiency")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--jobs", type=int, default=2, help="runs trained at once (threads split between them)")
    ap.add_argument("--window", type=int, default=10, help="trailing-mean window, steps")
    ap.add_argument("--analyze-only", action="store_true")
    args = ap.parse_args()
    if not args.analyze_only:
        train_all(args.runs_dir, args.seeds, args.steps, args.jobs)
    result = analyse(args.runs_dir, args.seeds, args.steps, args.window)
    result["command"] = " ".join(["python benchmarks/sample_efficiency.py", *sys.argv[1:]])
    result["settings"] = " ".join(COMMON)
    result["date"] = time.strftime("%Y-%m-%d")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "sample_efficiency.json").write_text(json.dumps(result, indent=1))
    plot(result, RESULTS / "sample_efficiency.png")
    print(f"PRIME / RLOO steps (paired by seed): {result['prime_over_rloo_steps']['mean']:.2f} "
          f"CI {result['prime_over_rloo_steps']['ci95']}")
    for arm, r in result["arms"].items():
        for s, c in r["poc_checks"].items():
            print(f"  {arm} seed {s}: " + ", ".join(f"{k} {v:.3f}" for k, v in c.items() if v is not None))
        print(f"{arm:7s} steps to {result['target_train_acc']:.3f}: {r['steps_to_target']} "
              f"(mean curve {r['steps_to_target_seed_mean_curve']}); final eval pass@1 "
              f"{r['eval_sampled_final']['mean']:.3f} ± {r['eval_sampled_final']['std']:.3f}, greedy "
              f"{r['eval_greedy_final']['mean']:.3f} ± {r['eval_greedy_final']['std']:.3f}")


if __name__ == "__main__":
    main()
