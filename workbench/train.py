"""Train tab: start a small run from the browser, watch it live in the other tabs, stop it cleanly.

The run is `prime train` in a child process (its own session, output in RUN/train.log), so the
app stays responsive and the run's records are the same as from a terminal. One run at a time
per app. Stop sends the child SIGINT, which the trainer answers by finishing the current step and
checkpointing it (checkpoint every step here), so a stopped run resumes with `Resume` or with
`prime train --resume RUN`. Offered only when the app listens on this machine or asks for a
password (`python -m workbench --auth`): starting a run uses this machine's CPU and disk.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from dataclasses import fields
from pathlib import Path

import gradio as gr

from prime.config import TrainConfig
from prime.errors import UserError
from prime.records import RunDir
from workbench import data

ROOT = Path(__file__).resolve().parents[1]
# Defaults that learn visibly on tiny within minutes (the PoC setting, README "A PoC that shows PRIME")
DEFAULTS = {"model": "tiny", "task": "arith", "algo": "prime", "steps": 60, "prompts_per_step": 16,
            "samples_per_prompt": 4, "policy_lr": 5e-4, "prm_lr": 1e-4, "prm_sharpen": 1.0, "beta": 0.05,
            "process_weight": 1.0, "reward_norm": "none", "seed": 0, "eval_every": 20, "eval_n": 100}
CHOICES = {"model": ["tiny", "smollm2-135m"], "task": ["arith", "gsm8k", "code"], "algo": ["prime", "rloo"],
           "reward_norm": ["none", "batch_norm"]}


class TrainJob:
    """The one child `prime train` of an app."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.proc: subprocess.Popen | None = None
        self.run: Path | None = None
        self._lock = threading.Lock()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def config(self, name: str, settings: dict) -> TrainConfig:
        """The run's config, checked before anything starts; bad input names the field."""
        if not isinstance(name, str) or not data.RUN_NAME.match(name or "") or "/" in name:
            raise UserError(f"run name {name!r}: use letters, digits, '.', '_' or '-'")
        known = {f.name: f for f in fields(TrainConfig)}
        clean = {}
        for key, value in settings.items():
            if key not in known:
                raise UserError(f"unknown setting {key!r}")
            want = type(known[key].default)
            if value is None or value == "":
                raise UserError(f"{key}: empty; give a value (default {DEFAULTS.get(key, known[key].default)})")
            if want is int and isinstance(value, float):
                if not value.is_integer():
                    raise UserError(f"config field {key}={value!r}: expected an integer")
                value = int(value)
            clean[key] = value
        return TrainConfig.from_dict({**clean, "out": str(self.root / name), "checkpoint_every": 1}, source="Train tab")

    def start(self, name: str, settings: dict) -> Path:
        with self._lock:
            if self.running():
                raise UserError(f"{self.run.name} is training; stop it first (one run at a time per app)")
            cfg = self.config(name, settings)
            run = Path(cfg.out)
            if run.exists():
                raise UserError(f"{run} exists; choose another run name, or select it and press Resume")
            flags = []
            for key in settings:
                flags += [f"--{key.replace('_', '-')}", str(getattr(cfg, key))]
            return self._spawn(run, ["train", "--out", str(run), "--checkpoint-every", "1", *flags])

    def resume(self, name: str) -> Path:
        with self._lock:
            if self.running():
                raise UserError(f"{self.run.name} is training; stop it first (one run at a time per app)")
            run = data.run_dir(self.root, name)
            if not RunDir(run).config_file.exists():
                raise UserError(f"{run} has no config.json: not a run that can resume")
            return self._spawn(run, ["train", "--resume", str(run)])

    def _spawn(self, run: Path, args: list[str]) -> Path:
        run.mkdir(parents=True, exist_ok=True)
        with open(run / "train.log", "a") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen([sys.executable, "-m", "prime", *args], stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, cwd=ROOT, start_new_session=True,
                                         env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.run = run
        return run

    def stop(self) -> str:
        """Ask the child to stop after its current step (it checkpoints it); returns a message."""
        with self._lock:
            if not self.running():
                return "no run is training"
            self.proc.send_signal(signal.SIGINT)
            return f"stopping {self.run.name} after its current step (it stays resumable)"

    def status(self) -> str:
        if self.run is None:
            return "no run started from this app yet"
        try:
            st = data.read_json(self.run, RunDir.STATUS)
            state = f"{st.get('state')} at step {st.get('step')}"
        except UserError:
            state = "starting (loading the model)"
        if self.proc is not None and self.proc.poll() not in (None, 0):
            state += f" · the process exited with code {self.proc.returncode}; see {self.run / 'train.log'}"
        tail = ""
        log = self.run / "train.log"
        if log.exists():
            lines = [ln for ln in log.read_text(errors="replace").replace("\r", "\n").splitlines() if ln.strip()]
            tail = lines[-1][-200:] if lines else ""
        return f"**{self.run.name}**: {state}" + (f"  \n`{tail}`" if tail else "")


def disabled_message(root: Path, off: str) -> str:
    """What the tab says where it may not start runs: why, and the one way to train that works."""
    if Path(root).resolve() == data.DEMO_RUNS.resolve():  # nothing may write into the shipped demo
        return ("The demo runs are read-only, so this tab starts nothing here. To train, open the workbench on a "
                "directory of yours (`python -m workbench --runs runs/`) and start a run in this tab, or run "
                "`prime train --out runs/NAME` in a terminal; either run appears in every tab as it trains.")
    return (f"Starting runs from the browser is off: {off}. A run started with `prime train --out {root}/NAME` "
            "in a terminal appears in the other tabs as it trains.")


def build(root: Path, refresh_s: float, off: str | None) -> None:
    """The tab; `off`: why this app may not start runs (then the tab only says so)."""
    with gr.Tab("Train", id="train"):
        if off:
            gr.Markdown(disabled_message(root, off), elem_id="train-disabled")
            return
        job = TrainJob(root)
        gr.Markdown("Start a small run; watch it in the other tabs as it trains (they refresh). Defaults learn "
                    "visibly on tiny in minutes: about 1.1 s a step on 2 CPU cores (BENCHMARKS.md, PoC step time). "
                    "Stop finishes the current step and keeps the run resumable. With these defaults the PRM's "
                    "token rewards blame the first wrong line from step 1, but the process term is only about 2% "
                    "of the update (Summary: \"How much of the update is the dense reward's?\"), so PRIME learns "
                    "like RLOO; process_weight scales it (README, \"What the study found\").")
        with gr.Row():
            name = gr.Textbox(value="my-run", label="run name", elem_id="train-name")
            widgets = {}
            for key in ("model", "task", "algo", "reward_norm"):
                widgets[key] = gr.Dropdown(CHOICES[key], value=DEFAULTS[key], label=key, allow_custom_value=key == "model",
                                           elem_id=f"train-{key}")
        with gr.Row():
            for key in ("steps", "prompts_per_step", "samples_per_prompt", "seed", "eval_every", "eval_n"):
                widgets[key] = gr.Number(value=DEFAULTS[key], label=key, precision=0, elem_id=f"train-{key}")
        with gr.Row():
            for key in ("policy_lr", "prm_lr", "prm_sharpen", "beta", "process_weight"):
                widgets[key] = gr.Number(value=DEFAULTS[key], label=key, elem_id=f"train-{key}")
        with gr.Row():
            start = gr.Button("Start", variant="primary", elem_id="train-start")
            stop = gr.Button("Stop", elem_id="train-stop")
            resume = gr.Button("Resume the named run", elem_id="train-resume")
        message = gr.Markdown(elem_id="train-message")
        status = gr.Markdown(elem_id="train-status")
        keys = list(widgets)

        def on_start(run_name, *values):
            try:
                run = job.start(run_name.strip(), dict(zip(keys, values)))
            except UserError as e:
                return f"⚠ {e}"
            return (f"started **{run.name}** ([open it in Token rewards](?tab=tokens&run={run.name}) once its first "
                    "step is written; Training curves lists it too)")

        def on_resume(run_name):
            try:
                run = job.resume(run_name.strip())
            except UserError as e:
                return f"⚠ {e}"
            return f"resuming **{run.name}** from its last checkpoint"

        start.click(on_start, [name, *widgets.values()], message)
        resume.click(on_resume, name, message)
        stop.click(lambda: job.stop(), None, message)
        gr.Timer(refresh_s).tick(job.status, None, status)
