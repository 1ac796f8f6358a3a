"""What the workbench and `prime report` draw, in one place: the palette, the decision colours,
the training-curve charts (one metric per chart, every line named where it is drawn, baselines
in grey), the smoothing, and the Summary: the claims a run makes, each a chart with its baseline
and a sentence computed from the records.

Input everywhere is a run as the records hold it: {"name", "path", "config", "metrics"} with
`metrics` a pandas DataFrame of metrics.jsonl (one row per record, NaN where a key is absent).
Nothing here writes, and nothing is written by hand: every number comes from the records.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import pandas as pd

PALETTE = ["#2b6cb0", "#dd6b20", "#38a169", "#805ad5", "#c53030", "#319795", "#d69e2e", "#4a5568"]  # one colour per run
BASELINE = "#8a94a6"  # chance and reference lines: grey, labelled
DECISIONS = ("kept", "surplus", "too_easy", "too_hard", "truncated")
DECISION_COLOURS = {"kept": "#2b6cb0", "surplus": "#90cdf4", "too_easy": "#a0aec0", "too_hard": "#c53030",
                    "truncated": "#d69e2e"}
SMOOTHING = 0.8
"""The default EMA weight of per-step curves: a step's accuracy is measured on P × K responses
(64 in the PoC), so one step's noise is larger than the trend a run shows; an EMA of weight w
keeps √((1 − w)/(1 + w)) of white noise's standard deviation: a third at 0.8."""
LAST = 10
"""The Summary's sentences average the last LAST steps of a run."""


@dataclass(frozen=True)
class Chart:
    """One training-curve chart: one metric (a line per run, in the run's colour), grey baselines
    (another metric of the same run, or a constant), each named at its line's end."""

    title: str
    metric: str
    baselines: tuple[tuple[str, str], ...] = ()  # (metric, label)
    constants: tuple[tuple[float, str], ...] = ()  # (value, label)
    per_step: bool = True  # False: sparse (evaluations), drawn with markers and never smoothed
    fallback: str = ""  # a metric read where `metric` is absent (older records)


CHARTS = [
    Chart("training accuracy (all samples)", "acc", fallback="acc/drawn"),
    Chart("eval pass@1 (T = 1)", "eval/acc_sampled", per_step=False),
    Chart("eval greedy accuracy", "eval/acc", per_step=False),
    Chart("PRM: right ranked above wrong", "reward_model/dpo_acc_before",
          baselines=(("reward_model/ref_ll_pairwise_acc", "reference"),), constants=((0.5, "chance"),)),
    Chart("PRM: most negative line = first wrong line", "localise/prm_line_hit",
          baselines=(("localise/ref_line_hit", "reference"), ("localise/line_chance", "chance"))),
    Chart("PRM: most negative token on the first wrong line", "localise/prm_token_hit",
          baselines=(("localise/ref_token_hit", "reference"), ("localise/token_chance", "chance"))),
    Chart("kept fraction (accuracy filter)", "filter/kept_fraction"),
    Chart("prompts too hard (all wrong)", "filter/too_hard"),
    Chart("prompts too easy (all right)", "filter/too_easy"),
    Chart("PRM loss", "reward_model/loss"),
    Chart("process term's share of the update", "critic/process_share", constants=((0.0, "RLOO"),)),
    Chart("response length (mean tokens)", "response_length/mean"),
    Chart("accuracy of kept prompts", "acc/kept"),
    Chart("advantage, max", "critic/advantages/max"),
    Chart("advantage, min", "critic/advantages/min"),
    Chart("policy entropy", "actor/entropy"),
    Chart("PPO KL", "actor/ppo_kl"),
    Chart("policy grad norm", "actor/grad_norm"),
    Chart("step time (s)", "timing_s/step"),
]
CHART = {c.title: c for c in CHARTS}
DEFAULT_CHARTS = [c.title for c in CHARTS[:9]]


def ema(values, weight: float) -> list[float]:
    """TensorBoard-style exponential moving average (weight 0: raw), debiased, skipping gaps (NaN)."""
    out, avg, n = [], 0.0, 0
    for v in values:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            out.append(float("nan"))
            continue
        if weight <= 0:
            out.append(float(v))
            continue
        avg, n = avg * weight + (1 - weight) * float(v), n + 1
        out.append(avg / (1 - weight**n))
    return out


def noise_kept(weight: float) -> float:
    """The share of white noise's standard deviation an EMA of `weight` keeps: √((1 − w)/(1 + w))."""
    return math.sqrt((1 - weight) / (1 + weight))


def series(run: dict, metric: str, x: str = "step") -> tuple[list[float], list[float]]:
    """(xs, ys) of one metric of one run where it is recorded and finite; x "step" or "wall"
    (minutes since the run started)."""
    m = run["metrics"]
    if metric not in m or "step" not in m:
        return [], []
    part = m[m[metric].notna()]
    ys = [float(v) for v in part[metric]]
    keep = [math.isfinite(v) for v in ys]
    if x == "step":
        xs = [float(v) for v in part["step"]]
    else:
        wall = part["time/wall_s"] if "time/wall_s" in part else pd.Series(0.0, index=part.index)
        xs = [float(v) / 60 for v in wall.fillna(0.0)]
    return [a for a, k in zip(xs, keep) if k], [b for b, k in zip(ys, keep) if k]


def spread_labels(ys: list[float], gap: float) -> list[float]:
    """Label heights near `ys` with at least `gap` between neighbours (the order kept), moved as
    little as a push upwards from the lowest allows."""
    order = sorted(range(len(ys)), key=lambda i: ys[i])
    out = list(ys)
    for a, b in itertools.pairwise(order):
        out[b] = max(out[b], out[a] + gap)
    return out


def curves_figure(runs: list[dict], charts: list[str] | None = None, smoothing: float = SMOOTHING, x: str = "step",
                  cols: int = 3):
    """The charts as subplots of one figure. Per chart and run: the raw values (faint, exactly the
    records) and, for per-step metrics, their EMA (bold, in the run's colour); baselines in grey.
    Every line is named at its end, so nothing needs a hover or a legend. Traces carry
    meta = [run, metric, "raw" | "smoothed" | "baseline"]."""
    from plotly.subplots import make_subplots

    charts = [CHART[c] for c in (charts or DEFAULT_CHARTS) if c in CHART]
    rows = max(1, -(-len(charts) // cols))
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[c.title for c in charts], horizontal_spacing=0.07,
                        vertical_spacing=0.12 if rows > 1 else 0.1)
    drawn = 0
    for n, chart in enumerate(charts):
        row, col = n // cols + 1, n % cols + 1
        several = sum(1 for run in runs if chart.metric in run["metrics"] or chart.fallback in run["metrics"]) > 1
        ends: list[tuple[float, float, str, str]] = []  # (x, y, label, colour) of every line's last point
        all_x, all_y = [], []
        for r, run in enumerate(runs):
            colour = PALETTE[r % len(PALETTE)]
            metric = chart.metric if chart.metric in run["metrics"] or not chart.fallback else chart.fallback
            xs, ys = series(run, metric, x)
            if not xs:  # nor its baselines: a reference line beside no PRM line would read as one
                continue
            smooth = chart.per_step and smoothing > 0
            shown = ema(ys, smoothing) if smooth else ys
            fig.add_scatter(x=xs, y=ys, mode="lines+markers" if not chart.per_step else "lines", row=row, col=col,
                            name=f"{run['name']} · {chart.metric}", meta=[run["name"], metric, "raw"], showlegend=False,
                            opacity=0.3 if smooth else 1.0, line={"color": colour, "width": 1 if smooth else 2},
                            marker={"size": 5}, hovertemplate=f"{run['name']}<br>{metric}<br>%{{x}}: %{{y:.4g}}<extra></extra>")
            if smooth:
                fig.add_scatter(x=xs, y=shown, mode="lines", row=row, col=col, showlegend=False,
                                name=f"{run['name']} · {chart.metric} (EMA {smoothing:g})",
                                meta=[run["name"], metric, "smoothed"], line={"color": colour, "width": 2.5},
                                hovertemplate=f"{run['name']}<br>{metric}, EMA {smoothing:g}<br>%{{x}}: %{{y:.4g}}<extra></extra>")
            ends.append((xs[-1], shown[-1], run["name"], colour))
            all_x += xs
            all_y += ys
            drawn += 1
            for b_metric, label in chart.baselines:
                bx, by = series(run, b_metric, x)
                if not bx:
                    continue
                by_drawn = ema(by, smoothing) if smooth else by
                name = f"{label} ({run['name']})" if several else label
                fig.add_scatter(x=bx, y=by_drawn, mode="lines", row=row, col=col, showlegend=False, name=name,
                                meta=[run["name"], b_metric, "baseline"],
                                line={"color": BASELINE, "width": 1.5, "dash": "dash" if label == "chance" else "dot"},
                                hovertemplate=f"{name}<br>%{{x}}: %{{y:.4g}}<extra></extra>")
                ends.append((bx[-1], by_drawn[-1], name, BASELINE))
                all_y += by
        for value, label in chart.constants:
            if all_x:
                fig.add_scatter(x=[min(all_x), max(all_x)], y=[value, value], mode="lines", row=row, col=col,
                                showlegend=False, name=label, meta=["", f"{value:g}", "baseline"],
                                line={"color": BASELINE, "width": 1.5, "dash": "dash"}, hoverinfo="skip")
                ends.append((max(all_x), value, label, BASELINE))
                all_y.append(value)
        if not all_x:
            continue
        lo_x, hi_x = min(all_x), max(all_x)
        lo_y, hi_y = min(all_y), max(all_y)
        span_y = (hi_y - lo_y) or abs(hi_y) or 1.0
        fig.update_xaxes(range=[lo_x, hi_x + 0.45 * ((hi_x - lo_x) or 1)], row=row, col=col)
        fig.update_yaxes(range=[lo_y - 0.08 * span_y, hi_y + 0.12 * span_y], row=row, col=col)
        heights = spread_labels([e[1] for e in ends], 0.1 * span_y)
        for (ex, _, label, colour), ey in zip(ends, heights):
            fig.add_annotation(x=ex, y=ey, text=label, showarrow=False, xanchor="left", xshift=4, row=row, col=col,
                               font={"size": 11, "color": colour}, name=f"label {label}")
    fig.update_layout(height=260 * rows + 40, margin={"l": 40, "r": 10, "t": 40, "b": 30}, showlegend=False,
                      plot_bgcolor="white")
    fig.update_xaxes(gridcolor="#eee", title_text="step" if x == "step" else "wall time (min)", title_font_size=10)
    fig.update_yaxes(gridcolor="#eee")
    if not drawn:
        fig.add_annotation(text="no data for the selected runs", showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    return fig


# ---------------------------------------------------------------------------- the Summary

def _last(run: dict, metric: str, weight: str | None = None) -> tuple[float | None, int]:
    """Mean of `metric` over the run's last LAST steps that record it (weighted by `weight`, e.g.
    the number of responses behind each value), and the number of steps averaged."""
    m = run["metrics"]
    if metric not in m:
        return None, 0
    part = m[m[metric].notna()].tail(LAST)
    if not len(part):
        return None, 0
    w = part[weight].fillna(0).astype(float) if weight and weight in part else pd.Series(1.0, index=part.index)
    if float(w.sum()) <= 0:
        return None, 0
    return float((part[metric].astype(float) * w).sum() / w.sum()), len(part)


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.0f}%"


CLAIMS = ("learn", "rank", "blame", "update", "keep")
"""The Summary's claims, in their order (summary's ids)."""


def summary(runs: list[dict]) -> list[dict]:
    """The claims these runs make, each {"id", "question", "sentences", "numbers"}: does RL learn,
    does the PRM rank right above wrong, does it blame the first wrong line, how much of the update
    the dense reward makes, what did the filter keep. Every sentence is computed from the records;
    a run without the metric says so."""
    learn, rank, blame, update, keep = [], [], [], [], []
    numbers: dict[str, dict] = {c: {} for c in CLAIMS}
    for run in runs:
        name = run["name"]
        xs, ys = series(run, "eval/acc_sampled")
        if len(ys) >= 2:
            n = int(run["config"].get("eval_n", 0) or 0)
            se = math.sqrt(ys[-1] * (1 - ys[-1]) / n) if n else None
            numbers["learn"][name] = {"start": ys[0], "end": ys[-1], "from_step": xs[0], "to_step": xs[-1], "n": n}
            learn.append(f"{name}: eval pass@1 {ys[0]:.3f} at step {xs[0]:g} → {ys[-1]:.3f} at step {xs[-1]:g} "
                         f"({100 * (ys[-1] - ys[0]):+.1f} points" + (f"; one standard error {100 * se:.1f} points on "
                                                                     f"{n} problems)" if se is not None else ")") + ".")
        else:
            learn.append(f"{name}: fewer than two evaluations recorded; nothing to compare.")
        prm, k = _last(run, "reward_model/dpo_acc_before")
        if prm is not None:
            ref, _ = _last(run, "reward_model/ref_ll_pairwise_acc")
            numbers["rank"][name] = {"prm": prm, "reference": ref, "steps": k}
            rank.append(f"{name}: the PRM ranked right above wrong in {_pct(prm)} of pairs in the last {k} steps; "
                        f"the reference's likelihood alone: {_pct(ref)}; chance: 50%.")
        elif run["config"].get("algo") == "rloo":
            rank.append(f"{name}: an outcome-only run (RLOO): no PRM to rank with.")
        else:
            rank.append(f"{name}: no pairwise accuracy recorded (no prompt with a right and a wrong response).")
        hit, k = _last(run, "localise/prm_line_hit", "localise/n")
        if hit is not None:
            chance, _ = _last(run, "localise/line_chance", "localise/n")
            ref, _ = _last(run, "localise/ref_line_hit", "localise/n")
            total = int(run["metrics"]["localise/n"].dropna().tail(k).sum()) if "localise/n" in run["metrics"] else 0
            numbers["blame"][name] = {"prm": hit, "chance": chance, "reference": ref, "responses": total, "steps": k}
            blame.append(f"{name}: the most negative line was the first wrong line in {_pct(hit)} of {total} wrong "
                         f"responses in the last {k} steps; chance (one line in n): {_pct(chance)}; the reference's "
                         f"likelihood alone: {_pct(ref)}.")
        elif run["config"].get("algo") == "rloo":
            blame.append(f"{name}: an outcome-only run (RLOO): no process reward to blame with.")
        else:
            blame.append(f"{name}: no wrong response with a checkable first wrong line recorded.")
        share, k = _last(run, "critic/process_share")
        if share is not None:
            numbers["update"][name] = {"process_share": share, "steps": k}
            update.append(f"{name}: the process term made {_pct(share)} of the returns' variance in the last {k} steps "
                          f"(0%: the update is RLOO's).")
        elif run["config"].get("algo") == "rloo":
            update.append(f"{name}: an outcome-only run (RLOO): the outcome term is the whole update.")
        else:
            update.append(f"{name}: no process share recorded (records from before critic/process_share, or from "
                          f"another trainer; for this project's runs benchmarks/advantage_anatomy.py computes it).")
        totals = {d: float(run["metrics"][f"filter/{d}"].fillna(0).sum()) if f"filter/{d}" in run["metrics"] else 0.0
                  for d in DECISIONS}
        drawn = sum(totals.values())
        if drawn:
            numbers["keep"][name] = {d: totals[d] / drawn for d in DECISIONS} | {"prompts": drawn}
            keep.append(f"{name}: of {drawn:,.0f} prompts drawn, the filter kept {_pct(totals['kept'] / drawn)}"
                        + "".join(f", {d.replace('_', ' ')} {_pct(totals[d] / drawn)}" for d in DECISIONS[1:]
                                  if totals[d]) + ".")
        else:
            keep.append(f"{name}: no filter decisions recorded.")
    return [{"id": "learn", "question": "Does RL learn?", "sentences": learn, "numbers": numbers["learn"]},
            {"id": "rank", "question": "Does the PRM rank right above wrong?", "sentences": rank, "numbers": numbers["rank"]},
            {"id": "blame", "question": "Does the PRM blame the first wrong line?", "sentences": blame,
             "numbers": numbers["blame"]},
            {"id": "update", "question": "How much of the update is the dense reward's?", "sentences": update,
             "numbers": numbers["update"]},
            {"id": "keep", "question": "What did the filter keep?", "sentences": keep, "numbers": numbers["keep"]}]


SUMMARY_CHARTS = {"learn": "eval pass@1 (T = 1)", "rank": "PRM: right ranked above wrong",
                  "blame": "PRM: most negative line = first wrong line", "update": "process term's share of the update"}


def summary_figure(claim: dict, runs: list[dict], smoothing: float = SMOOTHING):
    """The chart of one claim of summary(runs): a training-curve chart with its baselines, or for
    the filter the share of each decision over all drawn prompts (the claim's numbers), a bar per run."""
    if claim["id"] in SUMMARY_CHARTS:
        fig = curves_figure(runs, [SUMMARY_CHARTS[claim["id"]]], smoothing, cols=1)
        fig.update_layout(height=300, margin={"l": 40, "r": 10, "t": 30, "b": 30})
        return fig
    import plotly.graph_objects as go

    fig = go.Figure()
    numbers = claim["numbers"]
    names = list(numbers)
    for d in [d for d in DECISIONS if any(numbers[n][d] for n in names)]:
        fig.add_bar(y=names, x=[numbers[n][d] for n in names], name=d.replace("_", " "), orientation="h",
                    marker_color=DECISION_COLOURS[d], meta=d, text=[_pct(numbers[n][d]) for n in names],
                    textposition="inside", hovertemplate=f"{d}: %{{x:.1%}} of drawn prompts<extra></extra>")
    fig.update_layout(barmode="stack", height=120 + 40 * len(names), template="plotly_white",
                      margin={"l": 40, "r": 10, "t": 30, "b": 30}, xaxis_tickformat=".0%",
                      legend={"orientation": "h", "y": -0.25, "traceorder": "normal"}, title_text="share of drawn prompts",
                      yaxis_autorange="reversed")
    return fig


def blame_examples(rows: pd.DataFrame) -> dict[str, dict]:
    """From one step's rollouts: a wrong response whose most negative line is its first wrong line
    ("hit", the one blamed hardest) and one where it is not ("miss", its most negative line
    furthest from the first wrong one): {kind: {prompt_id, sample_idx, first_wrong_line,
    blamed_line}}. Only responses with process rewards and a checkable first wrong line count."""
    from prime.math.localise import token_lines

    found: dict[str, tuple] = {}
    for r in rows.itertuples():
        if len(r.process_reward) == 0 or len(r.process_reward) != len(r.tokens):
            continue
        wrong = first_wrong_of(pd.Series(r._asdict()))
        if wrong is None:
            continue
        sums: dict[int, float] = {}
        for line, v in zip(token_lines([str(t) for t in r.tokens]), r.process_reward):
            sums[line] = sums.get(line, 0.0) + float(v)
        if wrong not in sums:
            continue
        blamed = min(sums, key=lambda k: (sums[k], k))
        kind = "hit" if blamed == wrong else "miss"
        key = (sums[blamed],) if kind == "hit" else (-abs(blamed - wrong), sums[blamed])
        if kind not in found or key < found[kind][0]:
            found[kind] = (key, {"prompt_id": int(r.prompt_id), "sample_idx": int(r.sample_idx),
                                 "first_wrong_line": int(wrong), "blamed_line": int(blamed)})
    return {k: v[1] for k, v in sorted(found.items())}


def first_wrong_of(r: pd.Series) -> int | None:
    """A rollout row's first wrong line: the recorded one; where none is recorded (records made
    before the column existed, imports), the arith process check run now on a wrong response;
    None for right or unchecked responses."""
    from prime.tasks.arith import first_wrong_line

    recorded = r.get("first_wrong_line")
    if recorded is not None and not pd.isna(recorded):
        return int(recorded)
    outcome = r.get("outcome_reward")
    if outcome is None or pd.isna(outcome) or float(outcome) != 0:
        return None
    return first_wrong_line(str(r.get("prompt")), str(r.get("response")))


def token_view(r: pd.Series) -> tuple[list[dict], int | None]:
    """One rollout record row as its token view shows it, in the app and the report alike: each
    token's text, process reward (0 where the run has none: RLOO, imports without a scorer), q
    (the rewards summed up to and including it: PRIME Prop. 3.1), the PRM's and the reference's
    log-probs and the advantage where recorded, and whether it lies on the first wrong line
    (first_wrong_of). Returns (tokens, the first wrong line or None)."""
    from prime.math.localise import token_lines

    texts = [str(t) for t in r.tokens]
    n = len(texts)
    rewards = [float(v) for v in r.process_reward] if len(r.process_reward) == n else [0.0] * n
    tokens = [{"text": t, "reward": v, "q": q} for t, v, q in zip(texts, rewards, itertools.accumulate(rewards))]
    for key in ("prm_logp", "ref_logp", "advantage"):
        values = r.get(key)
        if values is not None and len(values) == n:
            for tok, v in zip(tokens, values):
                tok[key] = float(v)
    wrong = first_wrong_of(r)
    if wrong is not None:
        for tok, line in zip(tokens, token_lines(texts)):
            tok["first_wrong"] = line == wrong
    return tokens, wrong


def accuracy_bars(fig, per_prompt: pd.DataFrame, K: int, row: int | None = None, col: int | None = None,
                  legend: bool = True, name: str = "") -> None:
    """Prompts per accuracy value into `fig`: one bar per value K samples allow (0, 1/K, ..., 1),
    stacked by decision. per_prompt: one row per prompt with columns acc and decision."""
    values = [k / K for k in range(K + 1)]
    where = {"row": row, "col": col} if row else {}
    for decision, colour in DECISION_COLOURS.items():
        part = per_prompt[per_prompt.decision == decision]
        if len(part):
            counts = [int((abs(part.acc - v) < 0.5 / K).sum()) for v in values]
            fig.add_bar(x=values, y=counts, name=decision, marker_color=colour, width=0.6 / K, showlegend=legend,
                        meta=[name, decision], hovertemplate=f"{decision}: %{{y}} prompts at acc %{{x:.3g}}<extra></extra>",
                        **where)
    fig.update_xaxes(tickvals=values, ticktext=[f"{k}/{K}" for k in range(K + 1)], range=[-0.6 / K, 1 + 0.6 / K], **where)
