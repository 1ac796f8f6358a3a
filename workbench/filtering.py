"""Filtering tab: per step, every prompt's K-sample accuracy, the filter's decision and why;
a histogram of prompt accuracies with the [low, high] band; a prompt's K responses."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import pandas as pd
import plotly.graph_objects as go

from prime.errors import UserError
from prime.records import RunDir
from prime.views import accuracy_bars as accuracy_bars_into
from workbench import data


def step_choices(root: Path, run: str) -> list[int]:
    try:
        return data.rollout_steps(data.run_dir(root, run))
    except UserError:
        return []


def show_step(root: Path, run: str, step):
    """(table, histogram, message)."""
    try:
        path = data.run_dir(root, run)
        table = data.filtering_table(path, int(step))
        config = data.read_json(path, RunDir.CONFIG)
    except (UserError, TypeError, ValueError) as e:
        return pd.DataFrame(), go.Figure(), f"⚠ {e}"
    low, high = float(config.get("filter_low", 0.2)), float(config.get("filter_high", 0.8))
    fig = accuracy_bars(table)
    fig.add_vrect(x0=low, x1=high, fillcolor="#2b6cb0", opacity=0.08, line_width=1, annotation_text=f"keep [{low:g}, {high:g}]")
    fig.update_layout(barmode="stack", height=280, title=f"prompt accuracy, step {step}", xaxis_title="acc over K samples",
                      yaxis_title="prompts", template="plotly_white", margin={"l": 40, "r": 10, "t": 40, "b": 30})
    counts = table.decision.value_counts().to_dict()
    msg = f"step {step}: {len(table)} prompts; " + ", ".join(f"{k} {v}" for k, v in counts.items())
    return table, fig, msg




def accuracy_bars(table: pd.DataFrame) -> go.Figure:
    """Prompts per accuracy value, stacked by decision (prime.views.accuracy_bars)."""
    fig = go.Figure()
    accuracy_bars_into(fig, table, int(table.K.max()) if len(table) else 4)
    return fig


def build(root: Path) -> None:
    with gr.Tab("Filtering", id="filtering"):
        names = data.list_run_names(root)
        first = data.preferred_run(root)
        steps0 = step_choices(root, first) if first else []
        with gr.Row():
            run = gr.Dropdown(choices=names, value=first, label="run")
            step = gr.Dropdown(choices=steps0, value=steps0[-1] if steps0 else None, label="step",
                               allow_custom_value=True)  # see tokens.build
        message = gr.Markdown(elem_id="filter-message")
        hist = gr.Plot(label="prompt accuracy", elem_id="filter-histogram")
        table = gr.Dataframe(label="prompts (select a row to see its responses)", elem_id="filter-table", interactive=False, wrap=True)
        hint = gr.Markdown("Select a prompt in the table above to see its K responses here.", elem_id="filter-hint")
        responses = gr.Dataframe(label="the prompt's K responses", elem_id="filter-responses", interactive=False,
                                 wrap=True, visible=False)

        def on_run(name, s_now):
            steps = step_choices(root, name)
            return gr.Dropdown(choices=steps, value=s_now if s_now in steps else (steps[-1] if steps else None))

        def on_select(name, s, tbl: pd.DataFrame, evt: gr.SelectData):
            try:
                prompt_id = int(tbl.iloc[evt.index[0]]["prompt_id"])
                shown = data.prompt_responses(data.run_dir(root, name), int(s), prompt_id)
            except (UserError, IndexError, KeyError, TypeError, ValueError) as e:
                return gr.Dataframe(visible=False), f"⚠ could not show that prompt's responses: {e}"
            return gr.Dataframe(value=shown, visible=True), f"Prompt {prompt_id}, step {s}: its {len(shown)} responses."

        run.input(on_run, [run, step], step)  # .input: a restored link's update does not reset the step
        step.change(lambda n, s: show_step(root, n, s), [run, step], [table, hist, message])
        table.select(on_select, [run, step, table], [responses, hint])
        step.change(lambda: (gr.Dataframe(visible=False), ("Select a prompt in the table above to see its K "
                    "responses here.")), None, [responses, hint])
        return run, step, (table, hist, message)
