"""`prime import`: rollouts made elsewhere, as a run directory the workbench opens.

    veRL   trainer.rollout_data_dir: {global_step}.jsonl, lines {input, output, gts, score, step}
    TRL    {output_dir}/completions/completions_{step:05d}.parquet: step, prompt, completion, one
           column per reward function, any log_extra columns, advantage

Responses are grouped by prompt within each step (sample_idx in order of appearance), the
accuracy filter's decisions are recomputed from the outcome (veRL's `score`, TRL's reward
columns summed), and with a scorer (our model, a run's PRM checkpoint, or an external PRM and
its reference) every response is scored token by token in one pass, as `prime score` does:
raw implicit rewards β·log(π_prm/π_ref), no batch normalisation. TRL's one advantage per
completion is repeated over its tokens; veRL dumps carry none. No policy log-probs exist for
imported rollouts (the column stays empty).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from prime import records
from prime.errors import UserError
from prime.math.filtering import filter_decisions

KNOWN_TRL_COLUMNS = {"step", "prompt", "completion", "advantage"}


def _text(value) -> str:
    """A prompt or completion: a string, or chat messages (the last message's content)."""
    if isinstance(value, str):
        return value
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, list) and value and isinstance(value[-1], dict):
        users = [m for m in value if m.get("role") == "user"] or value
        return str(users[-1].get("content", ""))
    return str(value)


def read_verl_dump(root: Path) -> list[dict]:
    """Rows {step, prompt, response, answer, outcome, advantage} of a veRL rollout dump."""
    files = sorted(root.glob("*.jsonl"), key=lambda p: int(p.stem) if p.stem.isdigit() else -1)
    files = [f for f in files if f.stem.isdigit()]
    if not files:
        raise UserError(f"{root}: no {{global_step}}.jsonl files (veRL's trainer.rollout_data_dir)")
    rows = []
    for f in files:
        for n, line in enumerate(f.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                r = json.loads(line)
                rows.append({"step": int(r.get("step", f.stem)), "prompt": str(r["input"]), "response": str(r["output"]),
                             "answer": "" if r.get("gts") is None else str(r["gts"]), "outcome": float(r["score"]),
                             "advantage": None})
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
                raise UserError(f"{f}:{n}: not a veRL rollout line ({type(e).__name__}: {e}); expected input, output, "
                                "gts, score, step") from None
    return rows


def read_trl_completions(root: Path) -> list[dict]:
    """Rows of TRL's completions parquet files (root: the trainer's output_dir or its completions/)."""
    import pandas as pd

    folder = root / "completions" if (root / "completions").is_dir() else root
    files = sorted(folder.glob("completions_*.parquet"))
    if not files:
        raise UserError(f"{root}: no completions/completions_NNNNN.parquet (TRL's GRPOConfig(log_completions=True))")
    rows = []
    for f in files:
        df = pd.read_parquet(f)
        missing = {"prompt", "completion"} - set(df.columns)
        if missing:
            raise UserError(f"{f}: missing column(s) {', '.join(sorted(missing))}; is it a TRL completions file?")
        rewards = [c for c in df.columns if c not in KNOWN_TRL_COLUMNS and pd.api.types.is_numeric_dtype(df[c])]
        if not rewards:
            raise UserError(f"{f}: no reward column (one numeric column per reward function)")
        step = int(f.stem.rsplit("_", 1)[-1])
        for _, r in df.iterrows():
            rows.append({"step": int(r.get("step", step)), "prompt": _text(r["prompt"]), "response": _text(r["completion"]),
                         "answer": "", "outcome": float(sum(float(r[c]) for c in rewards)),
                         "advantage": float(r["advantage"]) if "advantage" in df.columns else None})
    return rows


def import_rollouts(rows: list[dict], out: Path, source: Path, fmt: str, scorer=None, scorer_names: dict | None = None,
                    beta: float = 0.05, low: float = 0.2, high: float = 0.8, progress: bool = True) -> Path:
    """Write `rows` as a run directory (config, status, metrics, rollouts per step)."""
    from prime.math.losses import pairwise_accuracy
    from prime.score import score

    if records.RunDir(out).status_file.exists():
        raise UserError(f"{out} already holds a run; choose another --out")
    steps = sorted({r["step"] for r in rows})
    prompt_ids: dict[str, int] = {}
    bar = None
    if progress and scorer is not None:
        from tqdm import tqdm

        bar = tqdm(total=len(rows), desc="scoring", unit="response")
    records.atomic_write_json(records.RunDir(out).config_file, {
        "imported_from": str(source), "format": fmt, "algo": f"imported ({fmt})", "steps": len(steps),
        "model": {"name": (scorer_names or {}).get("model") or (scorer_names or {}).get("prm_model") or "none",
                  **(scorer_names or {})},
        "beta": beta, "filter_low": low, "filter_high": high, "reward_norm": "none",
        "code_version": records.code_version()})
    t0 = time.time()
    for step in steps:
        here = [r for r in rows if r["step"] == step]
        groups: dict[str, list[dict]] = {}
        for r in here:
            groups.setdefault(r["prompt"], []).append(r)
        accs = {p: sum(r["outcome"] for r in g) / len(g) for p, g in groups.items()}
        decisions = dict(zip(groups, filter_decisions(torch.tensor(list(accs.values()), dtype=torch.float64), low, high)))
        out_rows, seq_rewards, labels = [], [], []
        for p, group in groups.items():
            pid = prompt_ids.setdefault(p, len(prompt_ids))
            for k, r in enumerate(group):
                per = {"token_ids": [], "tokens": [], "prm_logp": [], "ref_logp": [], "process_reward": []}
                if scorer is not None:
                    s = score(scorer, p, r["response"] or " ", beta=beta, add_eos=False)
                    ids = [t["token_id"] for t in s["tokens"]]
                    per = {"token_ids": ids, "tokens": [t["text"] for t in s["tokens"]],
                           "prm_logp": [t["prm_logp"] for t in s["tokens"]], "ref_logp": [t["ref_logp"] for t in s["tokens"]],
                           "process_reward": [t["reward"] for t in s["tokens"]]}
                    seq_rewards.append(s["total_reward"])
                    labels.append(r["outcome"])
                    if bar:
                        bar.update(1)
                n_tok = len(per["token_ids"])
                adv = [r["advantage"]] * n_tok if r["advantage"] is not None and n_tok else []
                out_rows.append({"step": step, "prompt_id": pid, "sample_idx": k, "prompt": p, "response": r["response"],
                                 "reference_answer": r["answer"], "outcome_reward": r["outcome"],
                                 "verifier_detail": f"imported from {fmt}", "prompt_acc": accs[p],
                                 "filter_decision": decisions[p], "policy_logp_old": [], "advantage": adv, **per})
        records.write_rollouts(out, step, out_rows)
        decided = list(decisions.values())
        metrics = {"step": step, "acc": sum(r["outcome"] for r in here) / len(here),
                   "filter/kept_fraction": decided.count("kept") / len(decided),
                   **{f"filter/{d}": decided.count(d) for d in ("kept", "too_easy", "too_hard")},
                   "time/wall_s": time.time() - t0}
        sizes = {len(g) for g in groups.values()}
        if seq_rewards and len(sizes) == 1 and (K := sizes.pop()) >= 2:  # equal groups: the references' pairwise accuracy
            metrics["reward_model/dpo_acc_before"] = pairwise_accuracy(torch.tensor(seq_rewards), torch.tensor(labels), K).item()
        if scorer is not None:
            lengths = [len(r["token_ids"]) for r in out_rows]
            metrics["response_length/mean"] = sum(lengths) / len(lengths)
        records.append_metrics(out, metrics)
    if bar:
        bar.close()
    records.write_status(out, "finished", len(steps))
    return out
