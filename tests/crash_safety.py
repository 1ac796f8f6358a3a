"""kill -9 a training process at many moments, resume each time, and compare the final records
with an uninterrupted run of the same seed (no lost, duplicated or half-written step).

    python tests/crash_safety.py --kills 12 [--steps 4]     # the full set; prints a summary

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


def run_until_done(run: Path, steps: int, kill_after_s: list[float]) -> list[dict]:
    """Start training, SIGKILL it after each delay (restarting with --resume), then finish.
    Returns what each kill interrupted (the step on disk when it died)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    kills = []
    for delay in kill_after_s:
        proc = subprocess.Popen(train_cmd(run, steps), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        time.sleep(delay)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            on_disk = max((m["step"] for m in read_metrics(run)), default=0) if (run / "metrics.jsonl").exists() else 0
            kills.append({"after_s": delay, "steps_on_disk": on_disk})
        else:
            kills.append({"after_s": delay, "steps_on_disk": None, "note": f"finished before the kill (rc {proc.returncode})"})
    subprocess.run(train_cmd(run, steps), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return kills


def comparable(run: Path) -> dict:
    """Every record of a run, without timings (which differ run to run)."""
    metrics = [{k: v for k, v in m.items() if not k.startswith(("timing_s/", "time/"))} for m in read_metrics(run)]
    steps = sorted(int(p.stem.removeprefix("step_")) for p in (run / "rollouts").glob("step_*.parquet"))
    rollouts = {}
    for step in steps:
        df = pd.read_parquet(run / "rollouts" / f"step_{step:06d}.parquet")
        df["outcome_reward"] = df["outcome_reward"].fillna(-1.0)
        rollouts[step] = {c: [list(v) if hasattr(v, "__len__") and not isinstance(v, str) else v for v in df[c]]
                          for c in df.columns}
    leftovers = sorted(p.name for p in run.rglob("*") if ".tmp" in p.name or p.name.endswith(".partial"))
    return {"metrics": metrics, "rollout_steps": steps, "rollouts": rollouts, "leftovers": leftovers}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kills", type=int, default=12)
    ap.add_argument("--steps", type=int, default=4)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        whole, killed = Path(tmp) / "whole", Path(tmp) / "killed"
        t = time.time()
        subprocess.run(train_cmd(whole, args.steps), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        full = time.time() - t
        # spread kill moments over the run: model load, sampling, updates, record writing
        delays = [2.0 + (full * 0.8) * i / max(1, args.kills - 1) / 2 for i in range(args.kills)]
        kills = run_until_done(killed, args.steps, delays)
        a, b = comparable(whole), comparable(killed)
        same = a == b
        print(f"uninterrupted run: {full:.0f} s; {sum(k['steps_on_disk'] is not None for k in kills)} kills")
        for k in kills:
            print("  ", k)
        print("records identical:", same, "; leftovers:", b["leftovers"])
        sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()
