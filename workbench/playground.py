"""Playground tab: paste a prompt and a response, see the implicit reward of every token.

It calls the engine's `prime.score.score` (the `prime score` path). Models load once and
stay cached; at step 0 the PRM equals the reference, so every reward is exactly 0 until
a checkpoint from a trained run is chosen.
"""

from __future__ import annotations

import html
import threading
from functools import lru_cache
from pathlib import Path

import gradio as gr
import pandas as pd
import torch

from prime.errors import UserError
from prime.models import BUILTIN_MODELS, Roles, resolve_model
from prime.score import score
from workbench import data
from workbench.render import token_heatmap

_lock = threading.Lock()  # one forward at a time: the shared base switches adapters in place

EXAMPLE = {
    "prompt": "Start with 5. Multiply by 3. Multiply by 3. Subtract 3. Add 3. What is the result?",
    "response": "Multiply by 3: 5 * 3 = 15\nMultiply by 3: 15 * 3 = 45\nSubtract 3: 45 - 3 = 42\nAdd 3: 42 + 3 = 45\nThe answer is \\boxed{45}.",
    "answer": "45",
}


@lru_cache(maxsize=2)
def _roles(model: str) -> Roles:
    return Roles(resolve_model(model))


def score_at(model: str, checkpoint: Path | None, prompt: str, response: str, answer: str | None, beta: float) -> dict:
    """`prime score` with the PRM of `checkpoint` (None: the initial PRM, equal to the reference)."""
    with _lock:
        roles = _roles(model)
        if checkpoint is None:
            with torch.no_grad():
                for name, p in roles.models["prm"].named_parameters():
                    if "lora_B" in name and ".prm." in name:
                        p.zero_()  # B = 0: the PRM equals the reference (ARCHITECTURE.md)
        else:
            roles.load_adapters(checkpoint, roles=("prm",))
        return score(roles, prompt, response, answer=answer, beta=float(beta))


def run_score(model: str, prompt: str, response: str, answer: str, beta: float, run: str = "", step: str = "",
              runs_root: Path | None = None):
    """(heatmap html, steps table, summary markdown); errors become a message, never a crash."""
    try:
        checkpoint = None
        if run and step not in ("", None, "initial"):
            run_path = data.run_dir(runs_root, run)
            checkpoint = data.checkpoint_path(run_path, int(step))
        out = score_at(model, checkpoint, prompt, response, answer.strip() or None, beta)
    except UserError as e:
        return f"<div class='error'>⚠ {html.escape(str(e))}</div>", pd.DataFrame(), ""
    steps = pd.DataFrame([{"step": i + 1, "text": s["text"].strip(), "reward": s["reward"], "value q": s["value"]}
                          for i, s in enumerate(out["steps"])])
    summary = f"**r_φ(y) = {out['total_reward']:+.5f}** over {len(out['tokens'])} tokens, β = {out['beta']}."
    if "verdict" in out:
        v = out["verdict"]
        summary += f" Outcome: **{'unscorable' if v['score'] is None else v['score']}** ({v['detail']})."
    return token_heatmap(out["tokens"]), steps, summary


def checkpoint_choices(runs_root: Path, run: str) -> list[str]:
    """'initial' and the run's checkpoint steps; nothing beyond 'initial' for a bad run."""
    try:
        return ["initial"] + [str(s) for s in data.checkpoint_steps(data.run_dir(runs_root, run))] if run else ["initial"]
    except UserError:
        return ["initial"]


def build(runs_root: Path) -> None:
    """Lay out the tab inside the current gr.Blocks."""
    with gr.Tab("Playground", id="playground"):
        gr.Markdown("Score any response with the implicit PRM: reward per token = β·(log π_prm − log π_ref). "
                    "Hover a token for its exact numbers. Pick a run and a checkpoint to use its trained PRM; "
                    "with `initial` the PRM equals the reference and every reward is 0.")
        with gr.Row():
            model = gr.Dropdown(list(BUILTIN_MODELS), value="tiny", label="model")
            run = gr.Dropdown(choices=[""] + data.list_run_names(runs_root), value="", label="run (for its PRM)")
            step = gr.Dropdown(choices=["initial"], value="initial", label="checkpoint step")
            beta = gr.Number(value=0.05, label="β")
        answer = gr.Textbox(value=EXAMPLE["answer"], label="reference answer (optional)")
        prompt = gr.Textbox(value=EXAMPLE["prompt"], label="prompt", lines=2)
        response = gr.Textbox(value=EXAMPLE["response"], label="response", lines=6)
        go = gr.Button("Score", variant="primary")
        summary = gr.Markdown()
        heat = gr.HTML(elem_id="token-heatmap")
        steps = gr.Dataframe(label="steps (one per line)")

        def on_run(name):
            choices = checkpoint_choices(runs_root, name)
            return gr.Dropdown(choices=choices, value=choices[-1])

        run.change(on_run, run, step)
        go.click(lambda *a: run_score(*a, runs_root=runs_root), [model, prompt, response, answer, beta, run, step],
                 [heat, steps, summary])
