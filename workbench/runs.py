"""Runs tab: every run under DIR with its status, model, algorithm, steps and last accuracy.
A damaged run shows its error in its own row; the others still display."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from workbench import data


def build(root: Path, refresh_s: float) -> gr.Dataframe:
    with gr.Tab("Runs", id="runs"):
        gr.Markdown(f"Runs under `{root}`. The table refreshes every {refresh_s:g} s while runs train.")
        table = gr.Dataframe(value=lambda: data.runs_table(root), elem_id="runs-table", interactive=False, wrap=True)
        gr.Timer(refresh_s).tick(lambda: data.runs_table(root), None, table)
    return table
