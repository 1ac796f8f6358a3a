"""Playground tab: paste a prompt and a response, see the implicit reward of every token.

It calls the engine's `prime.score.score` (the `prime score` path). Models load once and
stay cached; at step 0 the PRM equals the reference, so every reward is exactly 0 until
a checkpoint from a trained run is chosen.
"""

from __future__ import annotations

import threading
from functools import lru_cache

import gradio as gr
import pandas as pd

from prime.errors import UserError
from prime.models import BUILTIN_MODELS, Roles, resolve_model
from prime.score import score
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


def run_score(model: str, prompt: str, response: str, answer: str, beta: float):
    """(heatmap html, steps table, summary markdown); errors become a message, never a crash."""
    try:
        with _lock:
            out = score(_roles(model), prompt, response, answer=answer.strip() or None, beta=float(beta))
    except UserError as e:
        return f"<div class='error'>⚠ {e}</div>", pd.DataFrame(), ""
    steps = pd.DataFrame([{"step": i + 1, "text": s["text"].strip(), "reward": s["reward"], "value q": s["value"]}
                          for i, s in enumerate(out["steps"])])
    summary = f"**r_φ(y) = {out['total_reward']:+.5f}** over {len(out['tokens'])} tokens, β = {out['beta']}."
    if "verdict" in out:
        v = out["verdict"]
        summary += f" Outcome: **{'unscorable' if v['score'] is None else v['score']}** ({v['detail']})."
    return token_heatmap(out["tokens"]), steps, summary


def build() -> None:
    """Lay out the tab inside the current gr.Blocks."""
    with gr.Tab("Playground"):
        gr.Markdown("Score any response with the implicit PRM: reward per token = β·(log π_prm − log π_ref). "
                    "Hover a token for its exact numbers.")
        with gr.Row():
            model = gr.Dropdown(list(BUILTIN_MODELS), value="tiny", label="model")
            beta = gr.Number(value=0.05, label="β")
            answer = gr.Textbox(value=EXAMPLE["answer"], label="reference answer (optional)")
        prompt = gr.Textbox(value=EXAMPLE["prompt"], label="prompt", lines=2)
        response = gr.Textbox(value=EXAMPLE["response"], label="response", lines=6)
        go = gr.Button("Score", variant="primary")
        summary = gr.Markdown()
        heat = gr.HTML(elem_id="token-heatmap")
        steps = gr.Dataframe(label="steps (one per line)")
        go.click(run_score, [model, prompt, response, answer, beta], [heat, steps, summary])
