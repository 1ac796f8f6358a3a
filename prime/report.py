"""`prime report`: one self-contained HTML file that shows runs to people without the app.

Plotly and the styles are inlined; nothing is fetched (it opens from disk or an e-mail attachment
with the network off). It opens with the Summary (the claims of the workbench's Summary tab, the
same numbers: prime.views.summary), then the config of every run, the curves (prime.views, as
in the app), the filter's decisions, and token heatmaps of chosen rollouts of each run's last
step: the ones with the most negative and the most positive Σ process reward, and a right/wrong
pair of one prompt. Every token carries its exact values (hover, and `data-reward` for machines), as in the app.

Everything comes from the run records (prime.records); nothing is recomputed but the arith
process check that marks a wrong response's first wrong line.
"""

from __future__ import annotations

import datetime
import html
import json
import math
from pathlib import Path

import pandas as pd

from prime import records, views
from prime.errors import UserError
from prime.render import STYLE, token_heatmap
from prime.views import DECISIONS

CONFIG_KEYS = ["model", "task", "algo", "prm", "steps", "prompts_per_step", "samples_per_prompt", "beta", "policy_lr",
               "prm_lr", "prm_sharpen", "filter_low", "filter_high", "reward_norm", "process_baseline", "seed"]
MAX_BYTES = 5 * 2**20


def _finite(v):
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def load_run(path: Path) -> dict:
    """What the report shows of one run, read from its records."""
    layout = records.RunDir(path)
    path = layout.path
    if not layout.metrics_file.exists() and not layout.config_file.exists():
        raise UserError(f"{path}: not a run directory (no config.json or metrics.jsonl)")
    config = layout.config()
    metrics = pd.DataFrame(layout.metrics())
    steps = layout.rollout_steps()
    return {"name": path.name, "path": path, "config": config, "metrics": metrics, "rollout_steps": steps}


def filter_summary(run: dict) -> tuple[str, pd.DataFrame]:
    """(HTML table of decisions over all steps and at the last step, the last step's prompts:
    one row each with its acc and decision)."""
    totals = {d: int(run["metrics"][f"filter/{d}"].fillna(0).sum()) if f"filter/{d}" in run["metrics"] else 0
              for d in DECISIONS}
    last = run["rollout_steps"][-1] if run["rollout_steps"] else None
    per_prompt = pd.DataFrame({"acc": pd.Series(dtype=float), "decision": pd.Series(dtype=str)})
    if last is not None:
        df = records.read_rollouts(run["path"], last)
        per_prompt = df.groupby("prompt_id").agg(acc=("prompt_acc", "first"), decision=("filter_decision", "first"))
    counts = per_prompt.decision.value_counts().to_dict()
    rows = "".join(f"<tr><td>{d}</td><td class='num'>{totals[d]}</td><td class='num'>{counts.get(d, 0)}</td></tr>"
                   for d in DECISIONS)
    table = (f"<table class='filter' data-run='{html.escape(run['name'])}'><tr><th>decision</th><th>prompts, all steps</th>"
             f"<th>prompts, step {last}</th></tr>{rows}</table>")
    return table, per_prompt


def accuracy_bars_figure(runs_bars: list[tuple[str, pd.DataFrame, int]]):
    """Last step's prompts per accuracy value, stacked by decision (prime.views); a subplot per run."""
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=max(1, len(runs_bars)), subplot_titles=[f"{n}: prompt accuracy" for n, _, _ in runs_bars])
    for c, (name, per_prompt, K) in enumerate(runs_bars):
        views.accuracy_bars(fig, per_prompt, K, row=1, col=c + 1, legend=c == 0, name=name)
    fig.update_layout(barmode="stack", height=300, template="plotly_white", margin={"l": 40, "r": 10, "t": 40, "b": 30})
    return fig


def chosen_rollouts(run: dict) -> list[tuple[str, object]]:
    """(why, row) of the last step with process rewards: most negative and most positive Σ reward,
    and a right/wrong pair of one prompt (the prompt whose pair differs most in Σ reward)."""
    steps = [s for s in run["rollout_steps"]]
    for step in reversed(steps):
        df = records.read_rollouts(run["path"], step)
        scored = df[[len(r) > 0 and len(r) == len(t) for r, t in zip(df.process_reward, df.tokens)]]
        if len(scored):
            break
    else:
        return []
    scored = scored.assign(total=[float(sum(r)) for r in scored.process_reward])
    out = [("most negative Σ process reward", scored.loc[scored.total.idxmin()]),
           ("most positive Σ process reward", scored.loc[scored.total.idxmax()])]
    best = None
    for _, g in scored.groupby("prompt_id"):
        right, wrong = g[g.outcome_reward > 0], g[g.outcome_reward.fillna(0) <= 0]
        if len(right) and len(wrong):
            r, w = right.loc[right.total.idxmax()], wrong.loc[wrong.total.idxmin()]
            if best is None or r.total - w.total > best[0]:
                best = (r.total - w.total, r, w)
    if best:
        out += [("a right response …", best[1]), ("… and a wrong one to the same prompt", best[2])]
    return out


def rollout_section(run_name: str, why: str, r) -> str:
    """One rollout: its header and its token heatmap (exact values on hover and in data-reward)."""
    tokens, wrong = views.token_view(r)
    outcome = None if r.outcome_reward is None or math.isnan(r.outcome_reward) else float(r.outcome_reward)
    check = "" if wrong is None else f" · process check: line {int(wrong) + 1} is the first wrong line (underlined)"
    return (f"<section class='rollout' data-run='{html.escape(run_name)}' data-step='{int(r.step)}' "
            f"data-prompt='{int(r.prompt_id)}' data-sample='{int(r.sample_idx)}'>"
            f"<h4>{html.escape(why)}</h4><p class='meta'>{html.escape(run_name)} · step {int(r.step)} · prompt "
            f"{int(r.prompt_id)} · sample {int(r.sample_idx)} · outcome {'unscorable' if outcome is None else f'{outcome:g}'} "
            f"({html.escape(str(r.verifier_detail))}) · Σ r_φ = {sum(t['reward'] for t in tokens):+.5f}{check}</p>"
            f"<p class='prompt'><b>prompt:</b> {html.escape(str(r.prompt))}</p>{token_heatmap(tokens)}</section>")


def summary_section(runs: list[dict]) -> str:
    """The Summary tab's claims (prime.views.summary), each with its sentences and chart, then a
    wrong response of each PRM run's last step where the blame lands on the first wrong line and
    one where it does not."""
    parts = []
    for claim in views.summary(runs):
        sentences = "".join(f"<li class='claim-sentence'>{html.escape(t)}</li>" for t in claim["sentences"])
        chart = views.summary_figure(claim, runs).to_html(include_plotlyjs=False, full_html=False,
                                                                 div_id=f"summary-{claim['id']}")
        parts.append(f"<div class='claim' data-claim='{claim['id']}'><h3>{html.escape(claim['question'])}</h3>"
                     f"<ul>{sentences}</ul>{chart}</div>")
    for run in runs:
        step = next((s for s in reversed(run["rollout_steps"])), None)
        if step is None or run["config"].get("algo") == "rloo":
            continue
        df = records.read_rollouts(run["path"], step)
        for kind, ex in views.blame_examples(df).items():
            row = df[(df.prompt_id == ex["prompt_id"]) & (df.sample_idx == ex["sample_idx"])].iloc[0]
            why = (f"the blame lands on the first wrong line (line {ex['first_wrong_line'] + 1})" if kind == "hit" else
                   f"the blame misses: most negative line {ex['blamed_line'] + 1}, first wrong line "
                   f"{ex['first_wrong_line'] + 1}")
            parts.append(rollout_section(run["name"], f"{run['name']}, step {step}: {why}", row))
    return "".join(parts)


def config_table(runs: list[dict]) -> str:
    head = "".join(f"<th>{html.escape(r['name'])}</th>" for r in runs)
    rows = []
    for key in CONFIG_KEYS:
        vals = []
        for r in runs:
            v = r["config"].get(key, "")
            v = v.get("name", v) if isinstance(v, dict) else v
            vals.append(f"<td>{html.escape(str(v))}</td>")
        rows.append(f"<tr><th>{key}</th>{''.join(vals)}</tr>")
    full = "".join(f"<details><summary>full config of {html.escape(r['name'])}</summary><pre>"
                   f"{html.escape(json.dumps(r['config'], indent=1, default=str))}</pre></details>" for r in runs)
    return f"<table class='config'><tr><th></th>{head}</tr>{''.join(rows)}</table>{full}"


def build_report(run_dirs: list[Path], title: str = "PRIME runs") -> str:
    """The report's HTML for these runs."""
    import plotly.offline

    if not run_dirs:
        raise UserError("no runs given: name one or more run directories")
    runs = [load_run(Path(p)) for p in run_dirs]
    story = summary_section(runs)
    curves = views.curves_figure(runs, views.DEFAULT_CHARTS).to_html(include_plotlyjs=False, full_html=False,
                                                                      div_id="report-curves")
    tables, runs_bars = [], []
    for r in runs:
        table, bars = filter_summary(r)
        tables.append(f"<div class='filtercol'><h4>{html.escape(r['name'])}</h4>{table}</div>")
        runs_bars.append((r["name"], bars, int(r["config"].get("samples_per_prompt", 4))))
    hist = accuracy_bars_figure(runs_bars).to_html(include_plotlyjs=False, full_html=False, div_id="report-filter")
    sections = []
    for r in runs:
        chosen = chosen_rollouts(r)
        if not chosen:
            sections.append(f"<p class='note'>{html.escape(r['name'])}: no rollout with process rewards "
                            f"({'an outcome-only run' if r['config'].get('algo') == 'rloo' else 'none recorded'}).</p>")
        sections += [rollout_section(r["name"], why, row) for why, row in chosen]
    generated = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    names = ", ".join(html.escape(r["name"]) for r in runs)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<script type="text/javascript">{plotly.offline.get_plotlyjs()}</script>
<style>
body{{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:24px auto;max-width:1400px;color:#1a202c;padding:0 16px}}
h1{{margin-bottom:0}} .sub{{color:#4a5568;margin-top:4px}} h2{{border-bottom:1px solid #e2e8f0;padding-bottom:4px;margin-top:32px}}
table{{border-collapse:collapse;font-size:14px;margin:8px 0}} td,th{{border:1px solid #e2e8f0;padding:3px 8px;text-align:left}}
td.num{{text-align:right}} .filters{{display:flex;gap:24px;flex-wrap:wrap}} .rollout{{margin:18px 0;padding:8px 12px;border:1px solid #e2e8f0;border-radius:6px}}
.rollout h4{{margin:4px 0}} .meta,.prompt{{font-size:14px;margin:4px 0}} pre{{font-size:12px;background:#f7fafc;padding:8px}}
</style>{STYLE}</head>
<body><h1>{html.escape(title)}</h1>
<p class="sub">{names} · generated {generated} by <code>prime report</code> from the run records · hover a token for its exact values</p>
<h2 id="summary">Summary</h2>{story}
<h2 id="config">Config</h2>{config_table(runs)}
<h2 id="curves">Training curves</h2>{curves}
<h2 id="filter">Accuracy filter</h2><div class="filters">{''.join(tables)}</div>{hist}
<h2 id="tokens">Token rewards, last step</h2>
<p class="sub">Each token coloured by its implicit process reward r_φ = β·log(π_prm/π_ref): red blames, blue credits.</p>
{''.join(sections)}
</body></html>"""


def write_report(run_dirs: list[Path], out: Path, title: str = "PRIME runs") -> int:
    """Write the report; returns its size in bytes (a warning past MAX_BYTES is the caller's)."""
    text = build_report(run_dirs, title)
    out = Path(out)
    records.atomic_write_bytes(out, text.encode("utf-8"))
    return out.stat().st_size
