"""kill -9 a training process at many moments, resume each time, and compare the final records
with an uninterrupted run of the same seed (no lost, duplicated or half-written step).

    python tests/crash_safety.py --kills 12 [--steps 16]     # the full set; prints a summary

tests/test_crash_safety.py runs a few kill points of the same procedure.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from prime.records import read_metrics

ARGS = ["--prompts-per-step", "2", "--max-new-tokens", "60", "--eval-every", "0", "--policy-lr", "1e-3",
        "--prm-lr", "1e-3"]


def train_cmd(run: Path, steps: int) -> list[str]:
    resume = (run / "config.json").exists()
    if resume:
        return [sys.executable, "-m", "prime", "train", "--resume", str(run)]
    return [sys.executable, "-m", "prime", "train", "--out", str(run), "--steps", str(steps), *ARGS]


def steps_on_disk(run: Path) -> int:
    try:
        return max((m["step"] for m in read_metrics(run)), default=0)
    except Exception:  # noqa: BLE001 - a reader racing the writer; the next poll sees it whole
        return -1


def last_step_seconds(run: Path, default: float = 8.0) -> float:
    """How long the run's latest step took (its metrics), to aim kills inside the next one."""
    try:
        times = [m["timing_s/step"] for m in read_metrics(run) if "timing_s/step" in m]
    except Exception:  # noqa: BLE001
        times = []
    return times[-1] if times else default


def run_until_done(run: Path, steps: int, kill_points: list[tuple[int, float]]) -> list[dict]:
    """Start training and SIGKILL it at each kill point, restarting with --resume, then finish.

    A kill point (advance, depth): wait until `advance` more steps are on disk than when the
    process (re)started, then `depth` × the last step's duration (inside the next step); with
    advance 0, `depth` × 10 s after the start (loading or the first step). So
    kills land in model loading, sampling, updates and record writing of successive steps.
    Returns what each kill interrupted.
    """
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    kills = []
    for advance, depth in kill_points:
        target = max(0, steps_on_disk(run)) + advance
        delay = depth * last_step_seconds(run) if advance else depth * 10.0  # inside the step / while loading
        proc = subprocess.Popen(train_cmd(run, steps), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        while proc.poll() is None and steps_on_disk(run) < target:
            time.sleep(0.05)
        time.sleep(delay)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills.append({"waited_for_step": target, "then_s": round(delay, 2), "steps_on_disk": steps_on_disk(run)})
        else:
            kills.append({"waited_for_step": target, "then_s": round(delay, 2), "steps_on_disk": None,
                          "note": f"finished before the kill (rc {proc.returncode})"})
    subprocess.run(train_cmd(run, steps), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return kills


def comparable(run: Path) -> dict:
    """Every record of a run, without timings (which differ run to run)."""
    metrics = [{k: v for k, v in m.items() if not k.startswith(("timing_s/", "time/"))} for m in read_metrics(run)]
    steps = sorted(int(p.stem.removeprefix("step_")) for p in (run / "rollouts").glob("step_*.parquet"))
    rollouts = {}
    for step in steps:
        df = pd.read_parquet(run / "rollouts" / f"step_{step:06d}.parquet")
        for col in ("outcome_reward", "first_wrong_line"):  # nullable: NaN never equals NaN
            df[col] = df[col].fillna(-1)
        rollouts[step] = {c: [list(v) if hasattr(v, "__len__") and not isinstance(v, str) else v for v in df[c]]
                          for c in df.columns}
    leftovers = sorted(p.name for p in run.rglob("*") if ".tmp" in p.name or p.name.endswith(".partial"))
    return {"metrics": metrics, "rollout_steps": steps, "rollouts": rollouts, "leftovers": leftovers}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kills", type=int, default=12)
    ap.add_argument("--steps", type=int, default=16)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        whole, killed = Path(tmp) / "whole", Path(tmp) / "killed"
        t = time.time()
        subprocess.run(train_cmd(whole, args.steps), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        full = time.time() - t
        # kill points across the steps and inside them: loading, sampling, updates, writing
        # every third kill right after a restart (loading, first step); the others inside the next
        # step at varying depths, so the kills walk through the run step by step
        points = [(0 if i % 3 == 0 else 1, 0.1 + 0.8 * ((i * 0.37) % 1.0)) for i in range(args.kills)]
        kills = run_until_done(killed, args.steps, points)
        a, b = comparable(whole), comparable(killed)
        same = a == b
        print(f"uninterrupted run: {full:.0f} s; {sum(k['steps_on_disk'] is not None for k in kills)} kills landed")
        for k in kills:
            print("  ", k)
        print("records identical:", same, "; leftovers:", b["leftovers"])
        sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()
