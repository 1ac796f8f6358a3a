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
                  "blame on the first wrong line", "advantages", "response length"]


def figure(root: Path, names: list[str], smoothing: float, x: str, charts: list[str] = DEFAULT_CHARTS,
           cols: int = 3) -> go.Figure:
    """All charts as subplots of one figure (one plotly render instead of nine): a trace per
    (chart, run, metric), one colour per run, one dash per metric of a chart."""
    from plotly.subplots import make_subplots

    names = names or []
    rows = -(-len(charts) // cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=charts, horizontal_spacing=0.06, vertical_spacing=0.09)
    shown = set()
    for n, curve in enumerate(charts):
        df = data.curve_frame(root, names, curve, smoothing, x)
        metrics = list(dict.fromkeys(df.metric)) if len(df) else []
        for (run, metric), part in df.groupby(["run", "metric"], sort=False):
            colour = PALETTE[names.index(run) % len(PALETTE)] if run in names else None
            dash = DASHES[metrics.index(metric) % len(DASHES)]
            fig.add_trace(go.Scatter(x=part.x, y=part.value, mode="lines+markers" if len(part) < 30 else "lines",
                                     name=f"{run} · {metric}", meta=run, legendgroup=run, showlegend=run not in shown,
                                     line=dict(color=colour, dash=dash, width=1.5), marker=dict(size=4),
                                     hovertemplate=f"{run}<br>{metric}<br>%{{x}}: %{{y:.4g}}<extra></extra>"),
                          row=n // cols + 1, col=n % cols + 1)
            shown.add(run)
    fig.update_layout(height=300 * rows, margin=dict(l=40, r=10, t=40, b=30), legend=dict(orientation="h", y=1.06),
                      plot_bgcolor="white")
    fig.update_xaxes(gridcolor="#eee", title_text="step" if x == "step" else "wall time (min)", title_font_size=10)
    fig.update_yaxes(gridcolor="#eee")
    if not shown:
        fig.add_annotation(text="no data for the selected runs", showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    return fig


def build(root: Path, refresh_s: float) -> None:
    with gr.Tab("Training curves", id="curves"):
        names = data.list_run_names(root)
        with gr.Row():
            runs = gr.Dropdown(choices=names, value=names[:2], multiselect=True, label="runs (overlaid)", scale=3)
            smoothing = gr.Slider(0.0, 0.99, value=0.0, step=0.01, label="smoothing (EMA weight)")
            x = gr.Radio(["step", "wall time"], value="step", label="x axis")
        gr.Markdown("Dashed / dotted lines: the second / third metric of a chart (see the legend on hover). "
                    + " · ".join(DEFAULT_CHARTS))
        plots = gr.Plot(label="training curves", elem_classes=["curve"])

        def draw(selected, w, axis):
            return figure(root, selected, float(w), "step" if axis == "step" else "wall")

        inputs = [runs, smoothing, x]
        for control in inputs:
            control.change(draw, inputs, plots)
        gr.Timer(refresh_s).tick(draw, inputs, plots)
        runs.focus(lambda sel: gr.Dropdown(choices=data.list_run_names(root), value=sel), runs, runs)
        return draw, inputs, plots
