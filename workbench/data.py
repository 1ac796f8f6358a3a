"""Run records to DataFrames for the dashboards. Imports no gradio (ARCHITECTURE.md), so it is
tested on its own and usable from notebooks.

Every path comes from a user-chosen name inside the runs directory DIR; `run_dir` refuses
anything that could leave DIR (`..`, absolute paths, symlinks). Damaged records raise
`RecordError` with the file and what is wrong; callers show it and carry on.
Rollout files are read lazily, one step at a time and only the columns asked for, so a
large run never loads whole.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from prime import records, views
from prime.errors import UserError
from prime.records import RunDir
from prime.score import line_steps

DEMO_RUNS = Path(__file__).resolve().parents[1] / "data" / "demo"  # the runs `make demo` opens: read-only
RUN_NAME = re.compile(r"^[A-Za-z0-9_.\-]+(/[A-Za-z0-9_.\-]+)?$")
SUMMARY_COLUMNS = ["step", "prompt_id", "sample_idx", "prompt", "response", "reference_answer", "outcome_reward",
                   "verifier_detail", "prompt_acc", "filter_decision"]
class RecordError(UserError):
    """A run's records are missing or damaged; the message names the file."""


# ---------------------------------------------------------------------------- paths

def run_dir(root: Path, name: str) -> Path:
    """DIR/name, refusing names that leave DIR: `..`, absolute paths, symlinks anywhere."""
    root = Path(root).resolve()
    if not isinstance(name, str) or not name or not RUN_NAME.match(name) or any(p in ("..", ".") for p in name.split("/")):
        raise UserError(f"run name {name!r} is not allowed: pick a run listed under {root}")
    path = root / name
    probe = root
    for part in name.split("/"):
        probe = probe / part
        if probe.is_symlink():
            raise UserError(f"run {name!r} is a symbolic link; the workbench reads only real directories under {root}")
    if not path.resolve().is_relative_to(root) or not path.is_dir():
        raise UserError(f"no run {name!r} under {root}")
    return path


def _inside(run: Path, relative: str | Path) -> Path:
    """A file of a run (a name relative to it, or a RunDir path), refusing symlinks (a run
    could hold a link to /etc/passwd)."""
    path = run / relative  # an absolute RunDir path stays itself
    if path.is_symlink() or any(p.is_symlink() for p in path.parents if p.is_relative_to(run) and p != run):
        raise RecordError(f"{path}: is a symbolic link; refused")
    return path


def preferred_run(root: Path) -> str | None:
    """The run a view opens on: the first PRIME run (config algo prime) that has checkpoints, else
    the first run with checkpoints, else the first run. The demo: its PRIME run."""
    names = list_run_names(root)
    with_ckpt = [n for n in names if checkpoint_steps(Path(root) / n)]
    for n in with_ckpt:
        try:
            if read_json(Path(root) / n, RunDir.CONFIG).get("algo", "prime") == "prime":
                return n
        except UserError:
            continue
    return (with_ckpt or names or [None])[0]


def list_run_names(root: Path) -> list[str]:
    """Directories under DIR that look like runs (a config.json or status.json), one level deep,
    or two (DIR/group/run); symlinks are skipped."""
    root = Path(root)
    if not root.is_dir():
        return []
    names = []
    for d in sorted(root.iterdir()):
        if d.is_symlink() or not d.is_dir():
            continue
        if RunDir(d).is_run():
            names.append(d.name)
        else:
            names += [f"{d.name}/{s.name}" for s in sorted(d.iterdir()) if s.is_dir() and not s.is_symlink() and RunDir(s).is_run()]
    return names


# ---------------------------------------------------------------------------- readers

def read_json(run: Path, name: str) -> dict:
    """A run's JSON file (prime.records.read_json), refusing a symlink in its place."""
    return records.read_json(_inside(run, name))


def metrics_frame(run: Path) -> pd.DataFrame:
    """metrics.jsonl as a DataFrame, one row per line. A torn last line (a writer killed
    mid-line) is dropped; a bad line elsewhere is an error naming it. Cached while the file
    is unchanged (the live view re-reads only what a running run rewrote)."""
    path = _inside(run, RunDir.METRICS)
    if not path.exists():
        return pd.DataFrame({"step": pd.Series(dtype=int)})
    st = path.stat()
    return _metrics_frame(str(path), st.st_mtime_ns, st.st_size).copy()


@lru_cache(maxsize=32)
def _metrics_frame(name: str, mtime_ns: int, size: int) -> pd.DataFrame:
    path = Path(name)
    lines = path.read_bytes().decode("utf-8", "replace").splitlines()
    rows = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if not isinstance(row, dict) or "step" not in row:
                raise ValueError("not an object with a step")
            rows.append(row)
        except ValueError as e:
            if i == len(lines):
                break
            raise RecordError(f"{path}:{i}: malformed metrics line ({e})") from None
    df = pd.DataFrame(rows)
    return df if len(df) else pd.DataFrame({"step": pd.Series(dtype=int)})


def run_summary(root: Path, name: str) -> dict:
    """One row of the Runs table; a damaged run gives a row with its error instead of raising."""
    row = {"run": name, "status": "", "model": "", "algo": "", "steps": "", "last acc": None, "eval acc": None,
           "error": ""}
    try:
        run = run_dir(root, name)
        config = read_json(run, RunDir.CONFIG)
        status = read_json(run, RunDir.STATUS)
        metrics = metrics_frame(run)
        model = config.get("model", {})
        row |= {"status": str(status.get("state", "?")), "model": model.get("name", "?") if isinstance(model, dict) else str(model),
                "algo": f"{config.get('algo', '?')}" + (" (prm frozen)" if config.get("prm") == "frozen" else ""),
                "steps": f"{status.get('step', '?')}/{config.get('steps', '?')}", "error": str(status.get("error") or "")}
        if "acc" in metrics and metrics["acc"].notna().any():
            row["last acc"] = round(float(metrics["acc"].dropna().iloc[-1]), 4)
        if "eval/acc" in metrics and metrics["eval/acc"].notna().any():
            row["eval acc"] = round(float(metrics["eval/acc"].dropna().iloc[-1]), 4)
    except UserError as e:
        row |= {"status": "error", "error": str(e)}
    return row


def runs_table(root: Path) -> pd.DataFrame:
    return pd.DataFrame([run_summary(root, n) for n in list_run_names(root)],
                        columns=["run", "status", "model", "algo", "steps", "last acc", "eval acc", "error"])


def run_view(root: Path, name: str) -> dict:
    """A run as prime.views draws it: {"name", "path", "config", "metrics" (a DataFrame)}."""
    run = run_dir(root, name)
    return {"name": name, "path": run, "config": read_json(run, RunDir.CONFIG), "metrics": metrics_frame(run)}


def run_views(root: Path, names: list[str]) -> list[dict]:
    """run_view of each name; runs whose records fail are left out (the Runs tab shows why)."""
    out = []
    for name in names or []:
        try:
            out.append(run_view(root, name))
        except UserError:
            continue
    return out


def rollout_steps(run: Path) -> list[int]:
    _inside(run, RunDir.ROLLOUTS)  # refuses a symlinked rollouts directory
    return RunDir(run).rollout_steps()


@lru_cache(maxsize=64)
def _read_table(path: str, mtime_ns: int, columns: tuple[str, ...] | None) -> pd.DataFrame:
    return pq.read_table(path, columns=list(columns) if columns else None).to_pandas()


def rollouts(run: Path, step: int, columns: list[str] | None = None) -> pd.DataFrame:
    """One step's rollouts (only `columns`, default all); cached while the file is unchanged.
    The frame is the cached one, shared: select from it, do not modify it in place."""
    path = _inside(run, RunDir(run).rollouts_file(step))
    try:
        return _read_table(str(path), path.stat().st_mtime_ns, tuple(columns) if columns else None)
    except FileNotFoundError:
        raise RecordError(f"{path}: no rollouts for step {step}") from None
    except (pa.ArrowException, OSError, ValueError) as e:
        raise RecordError(f"{path}: unreadable parquet ({str(e).splitlines()[0][:200]}); the file is damaged") from None


# ---------------------------------------------------------------------------- filtering

def filter_reason(acc: float, decision: str, low: float, high: float) -> str:
    if decision == "kept":
        return f"{low:g} ≤ acc {acc:.2f} ≤ {high:g}"
    if decision == "too_easy":
        return f"acc {acc:.2f} > {high:g}: every sample right, no signal"
    if decision == "too_hard":
        return f"acc {acc:.2f} < {low:g}: (almost) every sample wrong, no signal"
    if decision == "truncated":
        return "a response hit the length limit"
    if decision == "surplus":
        return f"{low:g} ≤ acc {acc:.2f} ≤ {high:g}, but the step was full: the prompt goes back, to be sampled again"
    return decision


def filtering_table(run: Path, step: int) -> pd.DataFrame:
    """One row per prompt of the step: K-sample accuracy, decision and reason."""
    config = read_json(run, RunDir.CONFIG)
    low, high = float(config.get("filter_low", 0.2)), float(config.get("filter_high", 0.8))
    df = rollouts(run, step, ["prompt_id", "prompt", "prompt_acc", "filter_decision", "sample_idx"])
    g = df.groupby("prompt_id", sort=False).agg(prompt=("prompt", "first"), acc=("prompt_acc", "first"),
                                               decision=("filter_decision", "first"), K=("sample_idx", "count"))
    g = g.reset_index()
    g["reason"] = [filter_reason(a, d, low, high) for a, d in zip(g.acc, g.decision)]
    return g[["prompt_id", "acc", "decision", "reason", "K", "prompt"]]


def prompt_responses(run: Path, step: int, prompt_id: int) -> pd.DataFrame:
    df = rollouts(run, step, ["prompt_id", "sample_idx", "response", "outcome_reward", "verifier_detail"])
    return df[df.prompt_id == int(prompt_id)].drop(columns="prompt_id").reset_index(drop=True)


# ---------------------------------------------------------------------------- tokens

def rollout_tokens(run: Path, step: int, prompt_id: int, sample_idx: int) -> dict:
    """Everything the token view shows for one rollout: tokens with reward, q, log-probs and
    advantage; per-line steps; outcome, verdict and the response-level advantage."""
    df = rollouts(run, step)
    sel = df[(df.prompt_id == int(prompt_id)) & (df.sample_idx == int(sample_idx))]
    if not len(sel):
        raise RecordError(f"{run}: step {step} has no rollout for prompt {prompt_id}, sample {sample_idx}")
    r = sel.iloc[0]
    tokens, wrong_line = views.token_view(r)
    texts = [t["text"] for t in tokens]
    rewards, q = [t["reward"] for t in tokens], [t["q"] for t in tokens]
    n = len(tokens)
    has_rewards = len(r.process_reward) == n
    return {"prompt": r.prompt, "response": r.response, "reference_answer": r.reference_answer,
            "outcome_reward": None if pd.isna(r.outcome_reward) else float(r.outcome_reward),
            "verifier_detail": r.verifier_detail, "filter_decision": r.filter_decision, "prompt_acc": float(r.prompt_acc),
            "tokens": tokens, "has_rewards": has_rewards, "steps": line_steps(texts, rewards, q) if n else [],
            "advantage": float(np.mean(r.advantage)) if len(r.advantage) else None,
            "total_reward": float(sum(rewards)), "first_wrong_line": wrong_line}


SHOW = ("all", "wrong only", "right only")


def outcome_matches(outcome, show: str) -> bool:
    """`show` filter of the Token rewards view: wrong = outcome 0 or unscorable, right = outcome > 0."""
    if show == "wrong only":
        return outcome is None or pd.isna(outcome) or float(outcome) <= 0
    if show == "right only":
        return outcome is not None and not pd.isna(outcome) and float(outcome) > 0
    return True


def most_blamed(run: Path, step: int, n: int = 10, show: str = "all") -> pd.DataFrame:
    """The step's n most negative token rewards (over rollouts `show` admits), most blamed first:
    prompt_id, sample_idx, token index, its text, reward, the rollout's outcome."""
    df = rollouts(run, step, ["prompt_id", "sample_idx", "tokens", "process_reward", "outcome_reward"])
    found = []
    for r in df.itertuples():
        if len(r.process_reward) != len(r.tokens) or not outcome_matches(r.outcome_reward, show):
            continue
        found += [(float(v), int(r.prompt_id), int(r.sample_idx), t, str(r.tokens[t]),
                   None if pd.isna(r.outcome_reward) else float(r.outcome_reward)) for t, v in enumerate(r.process_reward)]
    found.sort(key=lambda x: (x[0], x[1], x[2], x[3]))
    return pd.DataFrame([{"prompt_id": p, "sample": k, "token": t, "text": repr(text), "reward": v, "outcome": o}
                         for v, p, k, t, text, o in found[:n]],
                        columns=["prompt_id", "sample", "token", "text", "reward", "outcome"])


def _tensor(values):
    import torch

    return torch.tensor([values], dtype=torch.float64)


def checkpoint_steps(run: Path) -> list[int]:
    _inside(run, RunDir.CHECKPOINTS)  # refuses a symlinked checkpoints directory
    return RunDir(run).checkpoint_steps()


def checkpoint_path(run: Path, step) -> Path:
    """The checkpoint directory of `step`, refusing symlinks in it (they could point out of DIR)."""
    path = _inside(run, RunDir(run).checkpoint(step))
    if not path.is_dir():
        have = ", ".join(str(s) for s in checkpoint_steps(run)) or "none"
        raise RecordError(f"{run}: no checkpoint for step {step}; available: {have}")
    for p in path.rglob("*"):
        if p.is_symlink():
            raise RecordError(f"{p}: is a symbolic link; refused")
    return path
