"""Training curves: one metric per chart, a line per run named at its end, chance and the
reference drawn in grey and labelled (prime.views, the same charts as `prime report`), with
smoothing and a step / wall-time x axis; they redraw by themselves while a run trains."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import plotly.graph_objects as go

from prime import views
from workbench import data


def figure(root: Path, names: list[str], smoothing: float, x: str, charts: list[str] | None = None,
           cols: int = 3) -> go.Figure:
    """The charts of the selected runs as subplots of one figure (one plotly render)."""
    return views.curves_figure(data.run_views(root, names), charts or views.DEFAULT_CHARTS, smoothing, x, cols)


def build(root: Path, refresh_s: float):
    with gr.Tab("Training curves", id="curves"):
        names = data.list_run_names(root)
        with gr.Row():
            runs = gr.Dropdown(choices=names, value=names[:2], multiselect=True, label="runs (overlaid)", scale=3)
            smoothing = gr.Slider(0.0, 0.99, value=views.SMOOTHING, step=0.01, label="smoothing (EMA weight)",
                                  elem_id="curve-smoothing")
            x = gr.Radio(["step", "wall time"], value="step", label="x axis")
        with gr.Accordion("charts shown", open=False):
            charts = gr.Dropdown(choices=[c.title for c in views.CHARTS], value=views.DEFAULT_CHARTS, multiselect=True,
                                 label="charts (one metric each)", elem_id="curve-charts")
        gr.Markdown(f"Each line is named at its end: a colour per run; **grey** lines are baselines (chance, and the "
                    f"untrained reference's own likelihood on the same responses). Per-step curves are smoothed by an "
                    f"EMA of weight {views.SMOOTHING:g} by default, which keeps {views.noise_kept(views.SMOOTHING):.0%} "
                    "of a step's noise (a step measures P × K responses, and its noise is larger than the trend); "
                    "the faint line under each is the raw record. Evaluations are never smoothed.",
                    elem_id="curve-note")
        plots = gr.Plot(label="training curves", elem_classes=["curve"])

        def draw(selected, chosen, w, axis):
            return figure(root, selected, float(w), "step" if axis == "step" else "wall", chosen)

        inputs = [runs, charts, smoothing, x]
        for control in inputs:
            control.change(draw, inputs, plots)
        gr.Timer(refresh_s).tick(draw, inputs, plots)
        runs.focus(lambda sel: gr.Dropdown(choices=data.list_run_names(root), value=sel), runs, runs)
        return draw, inputs, plots
