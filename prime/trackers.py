"""Mirror a run's metrics to the trackers people already watch (`--report-to`): trackio,
TensorBoard, Weights & Biases. Each is an optional package; the run records stay the source
of truth and every number goes out under the name it has in metrics.jsonl (veRL's names).

Every `table_every` steps a small completions table goes too: prompt, response, outcome,
filter decision, Σ process reward and mean advantage of each of the step's rollouts.

    trackio      trackio.init(project, name, config, resume="allow"); local store under
                 $TRACKIO_DIR (default ~/.cache/huggingface/trackio); `trackio show` opens it
    tensorboard  event files in RUN/tensorboard (`tensorboard --logdir RUN/tensorboard`)
    wandb        wandb.init(project, name, config, dir=RUN, resume="allow"); offline with
                 WANDB_MODE=offline (then `wandb sync RUN/wandb/offline-run-*`)
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

from prime.errors import UserError

TRACKERS = {"trackio": "trackio", "tensorboard": "tensorboard", "wandb": "wandb"}  # name -> package to pip install


def parse_report_to(value: str) -> list[str]:
    """`trackio,tensorboard` -> ["trackio", "tensorboard"]; UserError for an unknown name."""
    names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in names if n not in TRACKERS]
    if unknown:
        raise UserError(f"config field report_to={value!r}: unknown tracker(s) {', '.join(unknown)}; "
                        f"choose from {', '.join(TRACKERS)}")
    return list(dict.fromkeys(names))


def check_installed(names: list[str]) -> None:
    """Before anything loads: each tracker's package is importable, or say what to install."""
    missing = [n for n in names if importlib.util.find_spec(TRACKERS[n]) is None]
    if missing:
        raise UserError(f"--report-to {','.join(missing)} needs `pip install {' '.join(TRACKERS[n] for n in missing)}` "
                        "(optional packages, not in the core install)")


def scalars(metrics: dict) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items()
            if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


def completions_table(rollouts):
    """The step's rollouts file (a DataFrame) as a small table, one row per response."""
    import pandas as pd

    return pd.DataFrame({
        "prompt": rollouts["prompt"], "response": rollouts["response"], "outcome": rollouts["outcome_reward"],
        "decision": rollouts["filter_decision"],
        "process_reward_sum": [float(sum(r)) if len(r) else 0.0 for r in rollouts["process_reward"]],
        "advantage": [float(sum(a) / len(a)) if len(a) else None for a in rollouts["advantage"]]})


class Trackers:
    """The trackers of one run; `log` and `table` fan out, `finish` closes them."""

    def __init__(self, names: list[str], run: Path, project: str, config: dict):
        self.sinks = [_OPEN[n](run, project, config) for n in names]

    def log(self, metrics: dict, step: int) -> None:
        values = scalars(metrics)
        for sink in self.sinks:
            sink.log(values, step)

    def table(self, rollouts, step: int) -> None:
        if len(rollouts):
            df = completions_table(rollouts)
            for sink in self.sinks:
                sink.table(df, step)

    def finish(self) -> None:
        for sink in self.sinks:
            sink.finish()


class _WandbLike:
    """trackio and wandb share one API (`import trackio as wandb` works): init, log, Table, finish."""

    def __init__(self, module, **init):
        self.module = module
        self.run = module.init(**init)

    def log(self, values, step):
        self.run.log(values, step=step)

    def table(self, df, step):
        self.run.log({"completions": self.module.Table(dataframe=df)}, step=step)

    def finish(self):
        self.run.finish()


def _trackio(run: Path, project: str, config: dict) -> _WandbLike:
    import trackio

    return _WandbLike(trackio, project=project, name=run.name, config=config, resume="allow", embed=False)


def _wandb(run: Path, project: str, config: dict) -> _WandbLike:
    import wandb

    return _WandbLike(wandb, project=project, name=run.name, config=config, dir=str(run), resume="allow", id=_wandb_id(run))


class _TensorBoard:
    def __init__(self, run: Path, project: str, config: dict):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(run / "tensorboard"))
        self.writer.add_text("config", "\n".join(f"    {k}: {v}" for k, v in config.items()), 0)

    def log(self, values, step):
        for k, v in values.items():
            self.writer.add_scalar(k, v, step)
        self.writer.flush()

    def table(self, df, step):
        header = "| " + " | ".join(df.columns) + " |\n|" + " --- |" * len(df.columns) + "\n"
        cells = lambda v: str(v).replace("|", "\\|").replace("\n", "⏎")[:200]
        body = "".join("| " + " | ".join(cells(v) for v in row) + " |\n" for row in df.itertuples(index=False))
        self.writer.add_text("completions", header + body, step)
        self.writer.flush()

    def finish(self):
        self.writer.close()


def _wandb_id(run: Path) -> str:
    """A stable id per run directory, so --resume continues the same W&B run."""
    import hashlib

    return hashlib.sha1(str(run.resolve()).encode()).hexdigest()[:16]


_OPEN = {"trackio": _trackio, "tensorboard": _TensorBoard, "wandb": _wandb}
