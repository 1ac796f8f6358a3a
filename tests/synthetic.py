"""Synthetic run records, written with the engine's own writers (prime.records), for tests
and the dashboard benchmark: any size, instantly, with the exact schema. The numbers are
random but consistent (decisions follow prompt_acc; rewards sum to what the rows say).
Real runs come from `prime train`; the demo under data/demo is one. A test fixture: the app
never imports it."""

from __future__ import annotations

import random
from pathlib import Path

from prime import records
from prime.math.filtering import filter_decisions


def make_run(root: Path, name: str, steps: int = 5, prompts: int = 16, K: int = 4, tokens: int = 40,
             algo: str = "prime", seed: int = 0) -> Path:
    import torch

    rng = random.Random(seed)
    run = Path(root) / name
    run.mkdir(parents=True)
    records.atomic_write_json(records.RunDir(run).config_file, {"model": {"name": "tiny"}, "algo": algo, "prm": "online",
                                                    "steps": steps, "beta": 0.05, "filter_low": 0.2, "filter_high": 0.8,
                                                    "samples_per_prompt": K, "prompts_per_step": prompts})
    words = ["Add", " 3", ":", " 4", " +", " 3", " =", " 7", "\n", "The", " answer", " is", " \\boxed{7}", "."]
    for step in range(1, steps + 1):
        accs = [rng.choice([0.0, 0.25, 0.5, 0.75, 1.0]) for _ in range(prompts)]
        decisions = filter_decisions(torch.tensor(accs, dtype=torch.float64))
        rows = []
        for p, (acc, decision) in enumerate(zip(accs, decisions)):
            right = round(acc * K)
            for k in range(K):
                n = rng.randint(tokens // 2, tokens)
                toks = [words[i % len(words)] for i in range(n)]
                kept = decision == "kept"
                per = lambda n=n, kept=kept: [rng.gauss(0, 0.05) for _ in range(n)] if kept else []
                rows.append({"step": step, "prompt_id": step * 1000 + p, "sample_idx": k, "prompt": f"Start with {p}. Add 3.",
                             "response": "".join(toks), "reference_answer": "7", "outcome_reward": float(k < right),
                             "verifier_detail": "synthetic", "prompt_acc": acc, "filter_decision": decision,
                             "token_ids": list(range(n)), "tokens": toks,
                             "policy_logp_old": [-rng.random() for _ in range(n)] if kept else [],
                             "prm_logp": per() if algo == "prime" else [], "ref_logp": per(),
                             "process_reward": per() if algo == "prime" else [], "advantage": per()})
        records.write_rollouts(run, step, rows)
        acc = sum(accs) / len(accs)
        records.append_metrics(run, {"step": step, "acc": acc, "acc/kept": acc, "filter/kept_fraction": decisions.count("kept") / prompts,
                                     "filter/kept": decisions.count("kept"), "filter/too_easy": decisions.count("too_easy"),
                                     "filter/too_hard": decisions.count("too_hard"), "filter/truncated": 0,
                                     "reward_model/loss": 0.69 - 0.001 * step, "reward_model/dpo_acc_before": 0.5 + rng.random() / 5,
                                     "critic/advantages/mean": 0.0, "critic/advantages/max": 1.5, "critic/advantages/min": -1.5,
                                     "response_length/mean": tokens * 0.75, "response_length/max": tokens,
                                     "response_length/min": tokens // 2, "timing_s/step": 5.0, "time/wall_s": 5.0 * step,
                                     **({"eval/acc": 0.3 + step / steps / 10} if step % 10 == 0 else {})})
    records.write_status(run, "finished", steps)
    return run
