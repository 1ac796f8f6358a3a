"""Runs tab: every run under DIR with its status, model, algorithm, steps and last accuracy,
and an overview chart of their training accuracy. A damaged run shows its error in its own
row; the others still display."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from workbench import data


def overview(root: Path):
    """Training accuracy (all samples, before filtering) of every run, one small chart."""
    from workbench.curves import figure

    names = data.list_run_names(root)
    fig = figure(root, names, 0.6, "step", charts=["training acc (all samples)"], cols=1)
    fig.update_layout(height=260, showlegend=True, title="training accuracy of every run (smoothed 0.6)")
    return fig


def build(root: Path, refresh_s: float):
    with gr.Tab("Runs", id="runs"):
        gr.Markdown(f"Runs under `{root}`. Refreshes every {refresh_s:g} s while runs train.")
        table = gr.Dataframe(value=lambda: data.runs_table(root), elem_id="runs-table", interactive=False, wrap=True)
        chart = gr.Plot(elem_id="runs-overview", label="overview")
        gr.Timer(refresh_s).tick(lambda: (data.runs_table(root), overview(root)), None, [table, chart])
    return lambda: overview(root), chart
