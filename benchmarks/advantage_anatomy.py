"""What the dense reward changes in PRIME's update: the advantages of a run's kept rollouts taken
apart into the outcome term and the process term (paper Eq. 5), recomputed from the records.

    python benchmarks/advantage_anatomy.py RUN [RUN ...] [--every 5] [--out benchmarks/results/x.json]

For every step (every --every-th, over the run's second half) the kept responses' returns are
recomputed from the records (outcome rewards, the process rewards as the advantages used them,
the run's config) with the trainer's own `advantage_stage`; the whitened result must equal the
recorded advantage (checked, `max_abs_diff`). Then, over response tokens:
- process_share: Var(process term) / Var(outcome term + process term) — 0: the update is RLOO's;
- sign_flips: the share of tokens (with a non-zero outcome term) whose return has the opposite
  sign of the outcome term alone — where the dense reward reverses the push;
- prefix_relief (wrong responses with a known first wrong line): the process term's mean on the
  tokens before the first wrong line minus its mean on that line, in units of the outcome term's
  standard deviation — > 0: the correct steps of a wrong response are pushed down less than its
  first mistake, the credit assignment PRIME is for. RLOO's is 0 by construction. (With the
  summed credit, a step's return includes every later reward, the mistake's among them: the
  relief is the sum of the PRM's rewards from the step to the mistake.)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import pandas as pd
import torch

from prime.config import TrainConfig, run_config
from prime.math.advantages import line_ends, outcome_advantages, process_share
from prime.math.localise import token_lines
from prime.records import RunDir, read_rollouts
from prime.trainer import advantage_stage


def padded(rows: list[list[float]]) -> torch.Tensor:
    out = torch.zeros(len(rows), max(map(len, rows)))
    for b, r in enumerate(rows):
        out[b, :len(r)] = torch.tensor(r, dtype=torch.float32)
    return out


def step_anatomy(kept, cfg: TrainConfig) -> dict:
    """The numbers above for one step's kept rollouts (a DataFrame in the trainer's row order)."""
    lengths = [len(t) for t in kept.tokens]
    mask = padded([[1.0] * n for n in lengths])
    # an unscorable response (outcome None, NaN once in a DataFrame) scores 0, as in the trainer (Verdict.reward)
    outcome = torch.tensor([0.0 if pd.isna(o) else float(o) for o in kept.outcome_reward])
    process_reward = padded([list(p) for p in kept.process_reward])
    texts = [list(t) for t in kept.tokens]
    line_end = line_ends([token_lines(t) for t in texts], mask) if cfg.process_credit != "sum" else None
    advantages, returns = advantage_stage(outcome, process_reward, mask, cfg, line_end)
    out_term = outcome_advantages(outcome, mask, cfg.samples_per_prompt)
    proc_term = returns - out_term
    tokens = mask.bool()
    recorded = padded([list(a) for a in kept.advantage])
    o, r = out_term[tokens], returns[tokens]
    moving = o != 0
    sd = o.std().item()
    relief = []
    for b, (first_wrong, text) in enumerate(zip(kept.first_wrong_line, texts)):
        if outcome[b] != 0 or pd.isna(first_wrong):  # right, or no known first wrong line
            continue
        lines = torch.tensor(token_lines(text))
        before, wrong = proc_term[b, :len(text)][lines < int(first_wrong)], proc_term[b, :len(text)][lines == int(first_wrong)]
        if len(before) and len(wrong) and sd > 0:
            relief.append((before.mean() - wrong.mean()).item() / sd)
    return {"max_abs_diff": (advantages - recorded)[tokens].abs().max().item(),
            "process_share": process_share(returns, out_term, mask),
            "sign_flips": ((torch.sign(r) != torch.sign(o)) & moving).sum().item() / max(1, moving.sum().item()),
            "prefix_relief": statistics.fmean(relief) if relief else None, "n_wrong_localised": len(relief)}


def run_anatomy(run: Path, every: int) -> dict:
    cfg = run_config(run)
    done = RunDir(run).rollout_steps()
    steps = [s for s in done if s > done[-1] // 2 and s % every == 0]
    per_step = {}
    for s in steps:
        df = read_rollouts(run, s)
        per_step[s] = step_anatomy(df[df.filter_decision == "kept"].reset_index(drop=True), cfg)
    mean = lambda k: statistics.fmean(v[k] for v in per_step.values() if v[k] is not None)
    return {"run": run.name, "algo": cfg.algo, "process_credit": cfg.process_credit,
            "process_weight": cfg.process_weight, "reward_norm": cfg.reward_norm, "steps": steps,
            "max_abs_diff": max(v["max_abs_diff"] for v in per_step.values()),
            **{k: mean(k) for k in ("process_share", "sign_flips", "prefix_relief")},
            "per_step": per_step}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", type=Path, nargs="+")
    ap.add_argument("--every", type=int, default=5, help="every N-th step of the second half")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    result = [run_anatomy(r, args.every) for r in args.runs]
    for r in result:
        print(f"{r['run']:16s} process share {r['process_share']:.3f}  sign flips {r['sign_flips']:.3f}  "
              f"prefix relief {r['prefix_relief'] if r['prefix_relief'] is None else round(r['prefix_relief'], 3)}  "
              f"(recomputed = recorded to {r['max_abs_diff']:.1e})")
    if args.out:
        args.out.write_text(json.dumps({"command": " ".join(["python benchmarks/advantage_anatomy.py", *sys.argv[1:]]),
                                        "runs": result}, indent=1))


if __name__ == "__main__":
    main()
