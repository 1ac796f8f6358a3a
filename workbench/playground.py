"""Playground tab: paste a prompt and a response, see the implicit reward of every token.

It calls the engine's `prime.score.score` (the `prime score` path). Models load once and
stay cached; at step 0 the PRM equals the reference, so every reward is exactly 0 until
a checkpoint from a trained run is chosen. An external implicit PRM (a full PRM model and its
reference, two local directories, e.g. EurusPRM-Stage2 and Qwen2.5-Math-7B-Instruct) can
score instead, and K responses can be ranked best-of-N (`prime rank`).
"""

from __future__ import annotations

import html
import threading
from functools import lru_cache
from pathlib import Path

import gradio as gr
import pandas as pd

from prime.errors import UserError
from prime.models import BUILTIN_MODELS, ExternalPRM, Roles, resolve_model
from prime.render import token_heatmap
from prime.score import rank, score
from workbench import data

_lock = threading.Lock()  # one forward at a time: the shared base switches adapters in place

EXAMPLE = {
    "prompt": "Start with 5. Multiply by 3. Multiply by 3. Subtract 3. Add 3. What is the result?",
    "response": "Multiply by 3: 5 * 3 = 15\nMultiply by 3: 15 * 3 = 45\nSubtract 3: 45 - 3 = 42\nAdd 3: 42 + 3 = 45\nThe answer is \\boxed{45}.",
    "answer": "45",
}


@lru_cache(maxsize=2)
def _roles(model: str) -> Roles:
    return Roles(resolve_model(model))


@lru_cache(maxsize=1)
def _external(prm_dir: str, ref_dir: str) -> ExternalPRM:
    return ExternalPRM(resolve_model(prm_dir), resolve_model(ref_dir))


def given(text: str | None) -> str:
    """A textbox's text, stripped; None (what a textbox inside a closed accordion sends on a
    fresh page) is "not given", as an empty box is."""
    return (text or "").strip()


def scorer_for(model: str, checkpoint: Path | None, prm_dir: str | None = "", ref_dir: str | None = ""):
    """The external PRM pair when both directories are given, else our model with the PRM of
    `checkpoint` (None: the initial PRM, equal to the reference). Call with _lock held."""
    prm_dir, ref_dir = given(prm_dir), given(ref_dir)
    if prm_dir or ref_dir:
        if not (prm_dir and ref_dir):
            raise UserError("an external PRM needs both directories: the PRM model and the reference it was trained from")
        return _external(prm_dir, ref_dir)
    roles = _roles(model)
    if checkpoint is None:
        roles.reset_prm()  # a checkpoint loaded before may have trained or sharpened it
    else:
        roles.load_adapters(checkpoint, roles=("prm",))
    return roles


def score_at(model: str, checkpoint: Path | None, prompt: str, response: str, answer: str | None, beta: float,
             prm_dir: str = "", ref_dir: str = "") -> dict:
    """`prime score` with the PRM of `checkpoint`, or with an external PRM pair."""
    with _lock:
        return score(scorer_for(model, checkpoint, prm_dir, ref_dir), prompt, response, answer=answer, beta=float(beta))


def _checkpoint(run: str, step, runs_root: Path | None) -> Path | None:
    if run and step not in ("", None, "initial"):
        return data.checkpoint_path(data.run_dir(runs_root, run), int(step))
    return None


def run_rank(model: str, prompt: str, responses: str, beta: float, by: str, run: str = "", step: str = "",
             prm_dir: str = "", ref_dir: str = "", runs_root: Path | None = None):
    """(table, message): the responses (separated by a line holding only ---) ranked best-first."""
    try:
        texts = [t.strip("\n") for t in (responses or "").split("\n---\n") if t.strip()]
        with _lock:
            scorer = scorer_for(model, _checkpoint(run, step, runs_root), prm_dir, ref_dir)
            ranked = rank(scorer, prompt, texts, beta=float(beta), by=by)
    except UserError as e:
        return pd.DataFrame(), f"⚠ {html.escape(str(e))}"
    table = pd.DataFrame([{"rank": r["rank"], "#": r["index"] + 1, "r_φ(y)": r["total_reward"],
                           "min step reward": r["min_step_reward"], "response": r["response"].strip()[:120]} for r in ranked])
    return table, f"{len(ranked)} responses ranked by {'r_φ(y)' if by == 'total' else 'the minimum step reward'}."


def run_score(model: str, prompt: str, response: str, answer: str, beta: float, run: str = "", step: str = "",
              prm_dir: str = "", ref_dir: str = "", runs_root: Path | None = None):
    """(heatmap html, steps table, summary markdown); errors become a message, never a crash."""
    try:
        out = score_at(model, _checkpoint(run, step, runs_root), prompt, response, given(answer) or None, beta,
                       prm_dir, ref_dir)
    except UserError as e:
        return f"<div class='error'>⚠ {html.escape(str(e))}</div>", pd.DataFrame(), ""
    steps = pd.DataFrame([{"step": i + 1, "text": s["text"].strip(), "reward": s["reward"], "value q": s["value"]}
                          for i, s in enumerate(out["steps"])])
    summary = (f"**r_φ(y) = {out['total_reward']:+.5f}** over {len(out['tokens'])} tokens, minimum step reward "
               f"{out['min_step_reward']:+.5f}, β = {out['beta']}.")
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
                    "Hover a token for its exact numbers. It opens on a PRIME run's last checkpoint (its trained "
                    "PRM); with `initial` the PRM equals the reference and every reward is 0.")
        run0 = data.preferred_run(runs_root) or ""  # the demo's PRIME run, at its last checkpoint
        steps0 = checkpoint_choices(runs_root, run0)
        with gr.Row():
            model = gr.Dropdown(list(BUILTIN_MODELS), value="tiny", label="model")
            run = gr.Dropdown(choices=[""] + data.list_run_names(runs_root), value=run0, label="run (for its PRM)",
                              elem_id="playground-run")
            step = gr.Dropdown(choices=steps0, value=steps0[-1], label="checkpoint step", elem_id="playground-step",
                               allow_custom_value=True)  # see tokens.build
            beta = gr.Number(value=0.05, label="β")
        with gr.Accordion("External implicit PRM (a full PRM model and its reference, local directories)", open=False), \
                gr.Row():
                prm_dir = gr.Textbox(label="PRM model directory", elem_id="prm-dir",
                                     placeholder="e.g. /models/EurusPRM-Stage2 (empty: the model and run above)")
                ref_dir = gr.Textbox(label="reference model directory", elem_id="ref-dir",
                                     placeholder="e.g. /models/Qwen2.5-Math-7B-Instruct")
        answer = gr.Textbox(value=EXAMPLE["answer"], label="reference answer (optional)")
        prompt = gr.Textbox(value=EXAMPLE["prompt"], label="prompt", lines=2)
        response = gr.Textbox(value=EXAMPLE["response"], label="response", lines=6)
        go = gr.Button("Score", variant="primary", elem_id="score-button")
        summary = gr.Markdown(elem_id="score-summary")
        heat = gr.HTML(elem_id="token-heatmap")
        steps = gr.Dataframe(label="steps (one per line)")
        with gr.Accordion("Rank K responses to this prompt (best-of-N)", open=False):
            responses = gr.Textbox(label="responses, separated by a line holding only ---", lines=8, elem_id="rank-responses")
            by = gr.Radio(["total", "min-step"], value="total", label="rank by (total: r_φ(y), EurusPRM-Stage2; "
                                                                       "min-step: the lowest step reward, Stage 1)")
            go_rank = gr.Button("Rank", elem_id="rank-button")
            rank_msg = gr.Markdown(elem_id="rank-message")
            ranking = gr.Dataframe(label="ranking", elem_id="rank-table")

        def on_run(name, now):
            choices = checkpoint_choices(runs_root, name)
            return gr.Dropdown(choices=choices, value=now if now in choices else choices[-1])

        run.input(on_run, [run, step], step)  # .input: a restored link's update does not reset the checkpoint
        go.click(lambda *a: run_score(*a, runs_root=runs_root), [model, prompt, response, answer, beta, run, step,
                                                                  prm_dir, ref_dir], [heat, steps, summary])
        go_rank.click(lambda *a: run_rank(*a, runs_root=runs_root), [model, prompt, responses, beta, by, run, step,
                                                                     prm_dir, ref_dir], [ranking, rank_msg])
        return run, step
