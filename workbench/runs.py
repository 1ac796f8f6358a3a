"""Runs tab: every run under DIR with its status, model, algorithm, steps and last accuracy,
and an overview chart of their training accuracy. A damaged run shows its error in its own
row; the others still display."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from workbench import data


def overview(root: Path):
    """Training accuracy (all samples, before filtering) of every run, one small chart."""
    from prime.views import SMOOTHING
    from workbench.curves import figure

    names = data.list_run_names(root)
    fig = figure(root, names, SMOOTHING, "step", charts=["training accuracy (all samples)"], cols=1)
    fig.update_layout(height=300, title=f"training accuracy of every run (EMA {SMOOTHING:g}; faint: raw)")
    return fig


def write_report(root: Path, names: list[str]):
    """(file, message): `prime report` of the chosen runs, into a temporary file the browser downloads."""
    import tempfile

    from prime.errors import UserError
    from prime.report import MAX_BYTES
    from prime.report import write_report as write

    try:
        dirs = [data.run_dir(root, n) for n in names or []]
        out = Path(tempfile.mkdtemp(prefix="prime-report-")) / "report.html"
        size = write(dirs, out, "PRIME runs: " + ", ".join(names or []))
    except UserError as e:
        return None, f"⚠ {e}"
    note = " (larger than an e-mail attachment should be)" if size > MAX_BYTES else ""
    return str(out), f"report of {len(dirs)} run(s): {size / 2**20:.2f} MB{note}; same as `prime report` " + " ".join(
        str(d) for d in dirs)


def build(root: Path, refresh_s: float):
    with gr.Tab("Runs", id="runs"):
        gr.Markdown(f"Runs under `{root}`. Refreshes every {refresh_s:g} s while runs train.")
        table = gr.Dataframe(value=lambda: data.runs_table(root), elem_id="runs-table", interactive=False, wrap=True)
        chart = gr.Plot(elem_id="runs-overview", label="overview")
        with gr.Row():
            report_runs = gr.Dropdown(choices=data.list_run_names(root), value=data.list_run_names(root)[:4], multiselect=True,
                                      label="runs in the report", elem_id="report-runs", scale=3)
            make = gr.Button("Write a report (one HTML file, opens anywhere)", elem_id="report-button", scale=1)
        report_file = gr.File(label="report", elem_id="report-file", interactive=False)
        report_msg = gr.Markdown(elem_id="report-message")
        make.click(lambda names: write_report(root, names), report_runs, [report_file, report_msg])
        gr.Timer(refresh_s).tick(lambda: (data.runs_table(root), overview(root)), None, [table, chart])
    return lambda: overview(root), chart
