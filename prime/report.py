"""`prime report`: one self-contained HTML file that shows runs to people without the app.

Plotly and the styles are inlined; nothing is fetched (it opens from disk or an e-mail attachment
with the network off). It holds the config of every run, the main curves overlaid, the filter's
decisions, and token heatmaps of chosen rollouts of each run's last step: the ones with the most
negative and the most positive Σ process reward, and a right/wrong pair of one prompt. Every
token carries its exact values (hover, and `data-reward` for machines), as in the app.

Everything comes from the run records (prime.records); nothing is recomputed but the arith
process check that marks a wrong response's first wrong line.
"""

from __future__ import annotations

import datetime
import html
import json
import math
from pathlib import Path

from prime import records
from prime.errors import UserError
from prime.localise import token_lines
from prime.render import STYLE, token_heatmap
from prime.tasks.arith import first_wrong_line

PALETTE = ["#2b6cb0", "#dd6b20", "#38a169", "#805ad5", "#c53030", "#319795", "#d69e2e", "#4a5568"]
CURVES = [  # (title, [(metric, label)])
    ("training accuracy (all samples)", [("acc", "acc")]),
    ("eval accuracy", [("eval/acc", "greedy"), ("eval/acc_sampled", "pass@1")]),
    ("PRM pairwise accuracy on fresh rollouts", [("reward_model/dpo_acc_before", "PRM"),
                                                 ("reward_model/ref_ll_pairwise_acc", "reference log-likelihood")]),
    ("most negative line = first wrong line", [("localise/prm_line_hit", "PRM"), ("localise/line_chance", "chance")]),
    ("kept fraction (accuracy filter)", [("filter/kept_fraction", "kept")]),
    ("response length", [("response_length/mean", "mean")]),
]
CONFIG_KEYS = ["model", "task", "algo", "prm", "steps", "prompts_per_step", "samples_per_prompt", "beta", "policy_lr",
               "prm_lr", "prm_sharpen", "filter_low", "filter_high", "reward_norm", "process_baseline", "seed"]
DECISIONS = ("kept", "surplus", "too_easy", "too_hard", "truncated")
MAX_BYTES = 5 * 2**20


def _finite(v):
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def load_run(path: Path) -> dict:
    """What the report shows of one run, read from its records."""
    path = Path(path)
    if not (path / "metrics.jsonl").exists() and not (path / "config.json").exists():
        raise UserError(f"{path}: not a run directory (no config.json or metrics.jsonl)")
    config = records.read_json(path / "config.json")
    metrics = records.read_metrics(path)
    steps = sorted(int(p.stem.removeprefix("step_")) for p in (path / "rollouts").glob("step_*.parquet"))
    return {"name": path.name, "path": path, "config": config, "metrics": metrics, "rollout_steps": steps}


def curves_figure(runs: list[dict]):
    """The main curves of every run overlaid: a subplot per chart, a colour per run, a dash per metric."""
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=2, cols=3, subplot_titles=[t for t, _ in CURVES], horizontal_spacing=0.06,
                        vertical_spacing=0.14)
    for n, run in enumerate(runs):
        colour = PALETTE[n % len(PALETTE)]
        for c, (_, series) in enumerate(CURVES):
            for d, (metric, label) in enumerate(series):
                pts = [(m["step"], _finite(m.get(metric))) for m in run["metrics"] if _finite(m.get(metric)) is not None]
                if not pts:
                    continue
                fig.add_scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], row=c // 3 + 1, col=c % 3 + 1,
                                mode="lines+markers" if len(pts) < 30 else "lines", name=f"{run['name']} · {label}",
                                meta=[run["name"], metric], legendgroup=run["name"],
                                line={"color": colour, "dash": ["solid", "dot", "dash"][d % 3]})
    fig.update_layout(height=640, template="plotly_white", margin=dict(l=40, r=10, t=40, b=30),
                      legend=dict(orientation="h", y=-0.08))
    return fig


def filter_summary(run: dict) -> tuple[str, dict]:
    """(HTML table of decisions over all steps and at the last step, the last step's counts per
    accuracy value {decision: {acc: prompts}})."""
    totals = {d: sum(m.get(f"filter/{d}", 0) or 0 for m in run["metrics"]) for d in DECISIONS}
    last = run["rollout_steps"][-1] if run["rollout_steps"] else None
    bars: dict[str, dict[float, int]] = {}
    if last is not None:
        df = records.read_rollouts(run["path"], last)
        per_prompt = df.groupby("prompt_id").agg(acc=("prompt_acc", "first"), decision=("filter_decision", "first"))
        for r in per_prompt.itertuples():
            bars.setdefault(r.decision, {})
            bars[r.decision][float(r.acc)] = bars[r.decision].get(float(r.acc), 0) + 1
    rows = "".join(f"<tr><td>{d}</td><td class='num'>{totals[d]}</td><td class='num'>{sum(bars.get(d, {}).values())}</td></tr>"
                   for d in DECISIONS)
    table = (f"<table class='filter' data-run='{html.escape(run['name'])}'><tr><th>decision</th><th>prompts, all steps</th>"
             f"<th>prompts, step {last}</th></tr>{rows}</table>")
    return table, bars


def accuracy_bars_figure(runs_bars: list[tuple[str, dict, int]]):
    """Last step's prompts per accuracy value, one bar per value K allows, stacked by decision; a subplot per run."""
    from plotly.subplots import make_subplots

    colours = {"kept": "#2b6cb0", "surplus": "#90cdf4", "too_easy": "#a0aec0", "too_hard": "#c53030", "truncated": "#d69e2e"}
    fig = make_subplots(rows=1, cols=max(1, len(runs_bars)), subplot_titles=[f"{n}: prompt accuracy" for n, _, _ in runs_bars])
    for c, (name, bars, K) in enumerate(runs_bars):
        values = [k / K for k in range(K + 1)]
        for d in DECISIONS:
            if d in bars:
                fig.add_bar(x=values, y=[sum(n for a, n in bars[d].items() if abs(a - v) < 0.5 / K) for v in values],
                            name=d, marker_color=colours[d], width=0.6 / K, row=1, col=c + 1, showlegend=c == 0,
                            meta=[name, d])
        fig.update_xaxes(tickvals=values, ticktext=[f"{k}/{K}" for k in range(K + 1)], row=1, col=c + 1)
    fig.update_layout(barmode="stack", height=300, template="plotly_white", margin=dict(l=40, r=10, t=40, b=30))
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
    texts = [str(t) for t in r.tokens]
    tokens = [{"text": t, "reward": float(v)} for t, v in zip(texts, r.process_reward)]
    for key in ("prm_logp", "ref_logp"):
        if len(r[key]) == len(tokens):
            for tok, v in zip(tokens, r[key]):
                tok[key] = float(v)
    q = 0.0
    for tok in tokens:
        q += tok["reward"]
        tok["q"] = q
    outcome = None if r.outcome_reward is None or math.isnan(r.outcome_reward) else float(r.outcome_reward)
    wrong = r.get("first_wrong_line") if "first_wrong_line" in r.index else None
    if wrong is None or (isinstance(wrong, float) and math.isnan(wrong)):
        wrong = first_wrong_line(str(r.prompt), str(r.response)) if outcome == 0 else None
    if wrong is not None:
        for tok, line in zip(tokens, token_lines(texts)):
            tok["first_wrong"] = line == int(wrong)
    check = "" if wrong is None else f" · process check: line {int(wrong) + 1} is the first wrong line (underlined)"
    return (f"<section class='rollout' data-run='{html.escape(run_name)}' data-step='{int(r.step)}' "
            f"data-prompt='{int(r.prompt_id)}' data-sample='{int(r.sample_idx)}'>"
            f"<h4>{html.escape(why)}</h4><p class='meta'>{html.escape(run_name)} · step {int(r.step)} · prompt "
            f"{int(r.prompt_id)} · sample {int(r.sample_idx)} · outcome {'unscorable' if outcome is None else f'{outcome:g}'} "
            f"({html.escape(str(r.verifier_detail))}) · Σ r_φ = {sum(t['reward'] for t in tokens):+.5f}{check}</p>"
            f"<p class='prompt'><b>prompt:</b> {html.escape(str(r.prompt))}</p>{token_heatmap(tokens)}</section>")


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
    curves = curves_figure(runs).to_html(include_plotlyjs=False, full_html=False, div_id="report-curves")
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
    generated = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
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
