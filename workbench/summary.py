"""Summary tab: the three or four claims a run makes, each one chart with its baseline and one
sentence computed from the records (prime.views.summary, the same as the first section of
`prime report`), then a wrong response where the blame lands on its first wrong line and one
where it does not, each a link to its token view."""

from __future__ import annotations

import html
from pathlib import Path
from urllib.parse import urlencode

import gradio as gr

from prime import views
from prime.errors import UserError
from prime.records import RunDir
from workbench import data

INTRO = ("What these runs show, each claim with its baseline. Every sentence is computed from the run records "
         f"(the last {views.LAST} steps where it says so); the report (Runs tab) opens with the same numbers.")


def claims_html(claim: dict) -> str:
    items = "".join(f"<li class='claim-sentence'>{html.escape(t)}</li>" for t in claim["sentences"])
    return f"<div class='claim' data-claim='{claim['id']}'><h3>{html.escape(claim['question'])}</h3><ul>{items}</ul></div>"


def examples_html(root: Path, names: list[str]) -> str:
    """Links to a wrong response of each PRM run's last step where the most negative line is the
    first wrong line, and to one where it is not."""
    out = []
    for name in names or []:
        try:
            run = data.run_dir(root, name)
            if data.read_json(run, RunDir.CONFIG).get("algo") == "rloo":
                continue
            steps = data.rollout_steps(run)
            if not steps:
                continue
            found = views.blame_examples(data.rollouts(run, steps[-1]))
        except UserError as e:
            out.append(f"<li>{html.escape(name)}: ⚠ {html.escape(str(e))}</li>")
            continue
        for kind, ex in found.items():
            query = urlencode({"tab": "tokens", "run": name, "step": steps[-1], "prompt": ex["prompt_id"],
                               "sample": ex["sample_idx"]})
            what = (f"the blame lands on its first wrong line (line {ex['first_wrong_line'] + 1})" if kind == "hit" else
                    f"the blame misses: its most negative line is line {ex['blamed_line'] + 1}, the first wrong line "
                    f"is line {ex['first_wrong_line'] + 1}")
            out.append(f"<li class='blame-example' data-kind='{kind}'><a href='?{html.escape(query)}'>{html.escape(name)}, "
                       f"step {steps[-1]}, prompt {ex['prompt_id']}, sample {ex['sample_idx']}</a>: a wrong response; "
                       f"{html.escape(what)}.</li>")
    if not out:
        return "<p class='note'>No PRM run with a wrong response whose first wrong line can be checked.</p>"
    return "<h3>Where the blame lands, in two wrong responses</h3><ul>" + "".join(out) + "</ul>"


def show(root: Path, names: list[str]) -> list:
    """[claim html, chart] for each of views.CLAIMS, then the examples' html."""
    runs = data.run_views(root, names)
    out = []
    for claim in views.summary(runs):
        out += [claims_html(claim), views.summary_figure(claim, runs)]
    return out + [examples_html(root, [r["name"] for r in runs])]


def build(root: Path):
    with gr.Tab("Summary", id="summary"):
        names = data.list_run_names(root)
        gr.Markdown(INTRO)
        runs = gr.Dropdown(choices=names, value=names[:4], multiselect=True, label="runs", elem_id="summary-runs")
        outs = []
        for claim_id in views.CLAIMS:
            with gr.Row(equal_height=False):
                outs.append(gr.HTML(elem_id=f"claim-{claim_id}"))
                outs.append(gr.Plot(elem_id=f"claim-chart-{claim_id}", show_label=False))
        outs.append(gr.HTML(elem_id="blame-examples"))
        runs.change(lambda n: show(root, n), runs, outs)
        runs.focus(lambda sel: gr.Dropdown(choices=data.list_run_names(root), value=sel), runs, runs)
        return (lambda n: show(root, n)), runs, outs
