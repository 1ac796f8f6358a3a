"""Does a PRM rank another run's responses? A PRM checkpoint's pairwise accuracy on a run's
recorded rollouts, beside the reference's own likelihood and the run's own PRM.

    python benchmarks/prm_transfer.py --prm RUN/checkpoints/step_N --on RUN2 --steps 20 40 60 [--out F.json]

For each step, the kept responses of RUN2 (prompt groups with a right and a wrong answer) are
scored by the checkpoint's PRM (Σ_t log π_prm/π_ref; β only scales it) and by the reference's
log-likelihood Σ_t log π_ref, and each ranking is compared with the outcome labels
(`prime.math.losses.pairwise_accuracy`, the definition of reward_model/dpo_acc_before); the run's
own PRM comes from the records (its prm_logp and ref_logp). The model is the checkpoint run's.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from prime.config import run_config
from prime.math.losses import pairwise_accuracy
from prime.models import make_batch
from prime.records import read_rollouts
from prime.rollout import encode_prompt
from prime.trainer import build_roles


def transfer(prm: Path, on: Path, steps: list[int]) -> list[dict]:
    cfg = run_config(prm.parent.parent, prm_init=str(prm))
    roles = build_roles(cfg)  # the run's model with the checkpoint's PRM, as `prime train --prm-init` builds it
    tok, K = roles.tokenizer, run_config(on).samples_per_prompt
    out = []
    for step in steps:
        df = read_rollouts(on, step)
        kept = df[df.filter_decision == "kept"]
        batch = make_batch([encode_prompt(tok, p, cfg.system_prompt or None) for p in kept.prompt],
                           [list(t) for t in kept.token_ids], tok.pad_token_id)
        with torch.no_grad():
            prm_logp, ref_logp = roles.logprobs("prm", batch), roles.logprobs("ref", batch)
        outcome = torch.tensor(kept.outcome_reward.fillna(0.0).values, dtype=torch.float32)
        own = None
        if len(kept.prm_logp.iloc[0]):
            recorded = torch.tensor([sum(a) - sum(b) for a, b in zip(kept.prm_logp, kept.ref_logp)])
            own = pairwise_accuracy(recorded, outcome, K).item()
        out.append({"step": step, "prm": pairwise_accuracy((prm_logp - ref_logp).sum(-1), outcome, K).item(),
                    "reference_ll": pairwise_accuracy(ref_logp.sum(-1), outcome, K).item(), "run_own_prm": own})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prm", type=Path, required=True, help="a checkpoint directory holding a prm adapter")
    ap.add_argument("--on", type=Path, required=True, help="the run whose rollouts are ranked")
    ap.add_argument("--steps", type=int, nargs="+", required=True)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    rows = transfer(args.prm, args.on, args.steps)
    for r in rows:
        own = "—" if r["run_own_prm"] is None else f"{r['run_own_prm']:.3f}"
        print(f"step {r['step']:4d}: this PRM {r['prm']:.3f} | reference likelihood {r['reference_ll']:.3f} | "
              f"{args.on.name}'s own PRM {own}")
    if args.out:
        args.out.write_text(json.dumps({"command": " ".join(["python benchmarks/prm_transfer.py", *sys.argv[1:]]),
                                        "prm": str(args.prm), "on": str(args.on), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
