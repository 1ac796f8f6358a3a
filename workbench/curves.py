"""Training curves: plotly charts of the metrics of several runs overlaid, with smoothing and
a step / wall-time x axis; they redraw by themselves while a run trains."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import plotly.graph_objects as go

from workbench import data

PALETTE = ["#2b6cb0", "#dd6b20", "#38a169", "#805ad5", "#c53030", "#319795", "#d69e2e", "#4a5568"]  # one colour per run
DASHES = ["solid", "dash", "dot", "dashdot"]  # one dash per metric of a chart
DEFAULT_CHARTS = ["acc", "eval/acc", "kept fraction", "filter decisions", "PRM loss", "PRM pairwise accuracy",
                  "advantages", "response length", "step time (s)"]


def figure(root: Path, names: list[str], curve: str, smoothing: float, x: str) -> go.Figure:
    """One chart: a trace per (run, metric)."""
    df = data.curve_frame(root, names or [], curve, smoothing, x)
    fig = go.Figure()
    metrics = list(dict.fromkeys(df.metric)) if len(df) else []
    for (run, metric), part in df.groupby(["run", "metric"], sort=False):
        colour = PALETTE[(names or []).index(run) % len(PALETTE)] if run in (names or []) else None
        fig.add_trace(go.Scatter(x=part.x, y=part.value, mode="lines+markers" if len(part) < 30 else "lines",
                                 name=f"{run} · {metric}" if len(metrics) > 1 else run, meta=run,
                                 line=dict(color=colour, dash=DASHES[metrics.index(metric) % len(DASHES)])))
    fig.update_layout(title=curve, height=340, margin=dict(l=40, r=10, t=40, b=30), legend=dict(font=dict(size=10), orientation="h", y=-0.25),
                      xaxis_title="step" if x == "step" else "wall time (min)", template="plotly_white")
    if not len(df):
        fig.add_annotation(text="no data for the selected runs", showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    return fig


def build(root: Path, refresh_s: float) -> None:
    with gr.Tab("Training curves", id="curves"):
        names = data.list_run_names(root)
        with gr.Row():
            runs = gr.Dropdown(choices=names, value=names[:2], multiselect=True, label="runs (overlaid)", scale=3)
            smoothing = gr.Slider(0.0, 0.99, value=0.0, step=0.01, label="smoothing (EMA weight)")
            x = gr.Radio(["step", "wall time"], value="step", label="x axis")
        plots = []
        for i in range(0, len(DEFAULT_CHARTS), 3):
            with gr.Row():
                for curve in DEFAULT_CHARTS[i : i + 3]:
                    plots.append(gr.Plot(label=curve, elem_classes=["curve"]))

        def draw(selected, w, axis):
            return [figure(root, selected, c, float(w), "step" if axis == "step" else "wall") for c in DEFAULT_CHARTS]

        inputs = [runs, smoothing, x]
        for control in inputs:
            control.change(draw, inputs, plots)
        gr.Timer(refresh_s).tick(draw, inputs, plots)
        runs.focus(lambda sel: gr.Dropdown(choices=data.list_run_names(root), value=sel), runs, runs)
        return draw, inputs, plots
