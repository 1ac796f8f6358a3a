"""Token rewards tab: one rollout token by token, coloured by its implicit process reward (from
the records, exactly), the cumulative q_t, the per-line step sums, the verdict and advantage;
the K responses of the prompt side by side; the response re-scored at two checkpoints."""

from __future__ import annotations

import html
from pathlib import Path

import gradio as gr
import pandas as pd
import plotly.graph_objects as go

from prime.errors import UserError
from prime.records import RunDir
from prime.render import colour, token_heatmap
from workbench import data

# One selection change (a link, a jump) fires several change events, each with the values of its
# moment; run the redraws one at a time in the order they were fired, so the last selection paints last.
VIEW_QUEUE = {"concurrency_id": "token-view", "concurrency_limit": 1}
K_QUEUE = {"concurrency_id": "token-k", "concurrency_limit": 1}


def prompt_choices(root: Path, run: str, step, show: str = "all") -> list[tuple[str, int]]:
    """The step's prompts, kept ones (with rewards) first; with `show`, only prompts that have such a response."""
    try:
        df = data.rollouts(data.run_dir(root, run), int(step), ["prompt_id", "prompt", "filter_decision", "outcome_reward"])
    except (UserError, TypeError, ValueError):
        return []
    df = df[[data.outcome_matches(o, show) for o in df.outcome_reward]]
    first = df.groupby("prompt_id", sort=False).first().reset_index()
    first = first.sort_values("filter_decision", key=lambda d: d != "kept", kind="stable")  # kept (with rewards) first
    return [(f"{r.prompt_id} [{r.filter_decision}] {r.prompt[:70]}", int(r.prompt_id)) for r in first.itertuples()]


def summary_md(view: dict, step, sample) -> str:
    outcome = "unscorable (counts as 0)" if view["outcome_reward"] is None else f"{view['outcome_reward']:g}"
    adv = "—" if view["advantage"] is None else f"{view['advantage']:+.4f} (mean over tokens, after whitening)"
    note = ("" if view["has_rewards"] else " · no process rewards: " + (
        "an outcome-only run" if view["filter_decision"] == "kept" else "**filtered out** before the PRM scored it"))
    return (f"**step {step}, sample {sample}** · decision **{view['filter_decision']}** (prompt acc {view['prompt_acc']:.2f}) · "
            f"outcome **{outcome}** ({html.escape(str(view['verifier_detail']))}) · advantage {adv} · "
            f"Σ r_φ = {view['total_reward']:+.5f} over {len(view['tokens'])} tokens{note}"
            + ("" if view.get("first_wrong_line") is None else
               f" · process check: **line {view['first_wrong_line'] + 1} is the first wrong line** (underlined)")
            + "\n\n"
            f"**prompt:** {html.escape(view['prompt'])}  \n**reference answer:** {html.escape(str(view['reference_answer']))}")


def q_figure(view: dict) -> go.Figure:
    fig = go.Figure()
    toks = view["tokens"]
    fig.add_trace(go.Scatter(x=list(range(len(toks))), y=[t["q"] for t in toks], mode="lines", name="q_t = Σ_{s≤t} r_φ",
                             hovertext=[repr(t["text"]) for t in toks]))
    fig.add_trace(go.Bar(x=list(range(len(toks))), y=[t["reward"] for t in toks], name="r_φ(y_t)", opacity=0.5))
    fig.update_layout(height=260, title="cumulative process reward q_t", xaxis_title="token", template="plotly_white",
                      margin={"l": 40, "r": 10, "t": 40, "b": 30})
    return fig


def show(root: Path, run: str, step, prompt_id, sample):
    """(summary, heatmap html, q figure, steps table)."""
    try:
        view = data.rollout_tokens(data.run_dir(root, run), int(step), int(prompt_id), int(sample))
    except (UserError, TypeError, ValueError) as e:
        return f"⚠ {html.escape(str(e))}", "", go.Figure(), pd.DataFrame()
    return summary_md(view, step, sample), token_heatmap(view["tokens"]), q_figure(view), steps_table(view)


def steps_table(view: dict):
    """The per-line table, each line's reward cell coloured like the tokens: the heatmap's diverging colours,
    centred at 0, saturating at the largest |line reward|."""
    wrong = view.get("first_wrong_line")
    steps = pd.DataFrame([{"line": i + 1, "text": s["text"].strip(), "reward (sum)": s["reward"], "value q": s["value"],
                           "check": "✗ first wrong line" if i == wrong else ("✓" if wrong is not None and i < wrong else "")}
                          for i, s in enumerate(view["steps"])])
    if steps.empty:
        return steps
    scale = max([abs(s) for s in steps["reward (sum)"]] + [1e-6])
    return steps.style.map(lambda v: f"background-color: {colour(v, scale)}; color: #111", subset=["reward (sum)"])


def sample_choices(root: Path, run: str, step, prompt_id, show: str = "all") -> list[int]:
    try:
        df = data.rollouts(data.run_dir(root, run), int(step), ["prompt_id", "sample_idx", "outcome_reward"])
    except (UserError, TypeError, ValueError):
        return []
    df = df[(df.prompt_id == int(prompt_id)) if prompt_id is not None else df.prompt_id < 0]
    return sorted(int(k) for k, o in zip(df.sample_idx, df.outcome_reward) if data.outcome_matches(o, show))


def blamed_table(root: Path, run: str, step, show: str = "all") -> pd.DataFrame:
    try:
        return data.most_blamed(data.run_dir(root, run), int(step), 10, show)
    except (UserError, TypeError, ValueError):
        return pd.DataFrame()


def side_by_side(root: Path, run: str, step, prompt_id) -> str:
    """The prompt's K responses in columns, on one colour scale."""
    try:
        path = data.run_dir(root, run)
        df = data.rollouts(path, int(step), ["prompt_id", "sample_idx"])
        samples = sorted(df[df.prompt_id == int(prompt_id)].sample_idx.tolist())
        views = [data.rollout_tokens(path, int(step), int(prompt_id), k) for k in samples]
    except (UserError, TypeError, ValueError) as e:
        return f"<div class='error'>⚠ {html.escape(str(e))}</div>"
    scale = max([abs(t["reward"]) for v in views for t in v["tokens"]] + [1e-6])
    cols = []
    for k, v in zip(samples, views):
        outcome = "unscorable" if v["outcome_reward"] is None else f"{v['outcome_reward']:g}"
        cols.append(f"<div class='kcol' style='flex:1;min-width:220px'><b>sample {k}</b> · outcome {outcome} · "
                    f"Σr {v['total_reward']:+.4f}{token_heatmap(v['tokens'], scale)}</div>")
    return f"<div class='kgrid' style='display:flex;gap:12px;flex-wrap:wrap'>{''.join(cols)}</div>"


def two_checkpoints(root: Path, run: str, step, prompt_id, sample, a, b) -> tuple[str, str]:
    """The rollout's response re-scored by the PRM of two checkpoints (the `prime score` path)."""
    from workbench.playground import score_at

    try:
        path = data.run_dir(root, run)
        view = data.rollout_tokens(path, int(step), int(prompt_id), int(sample))
        config = data.read_json(path, RunDir.CONFIG)
        model = config.get("model", {})
        model = model.get("name") if isinstance(model, dict) else model
        beta = float(config.get("beta", 0.05))
        outs = []
        for ck in (a, b):
            ckpt = None if ck in (None, "", "initial") else data.checkpoint_path(path, int(ck))
            scored = score_at(model, ckpt, view["prompt"], view["response"], None, beta)
            outs.append(f"<b>checkpoint {ck}</b> · Σr {scored['total_reward']:+.4f}{token_heatmap(scored['tokens'])}")
        return outs[0], outs[1]
    except (UserError, TypeError, ValueError) as e:
        err = f"<div class='error'>⚠ {html.escape(str(e))}</div>"
        return err, err


def build(root: Path) -> None:
    from workbench.filtering import step_choices
    from workbench.playground import checkpoint_choices

    with gr.Tab("Token rewards", id="tokens"):
        names = data.list_run_names(root)
        run0 = data.preferred_run(root)
        steps0 = step_choices(root, run0) if run0 else []
        step0 = steps0[-1] if steps0 else None
        prompts0 = prompt_choices(root, run0, step0) if step0 is not None else []
        with gr.Row():
            run = gr.Dropdown(choices=names, value=run0, label="run")
            # allow_custom_value: a restored link sets these together, and a change event can read
            # one before the others arrive; every handler checks values against the records itself
            step = gr.Dropdown(choices=steps0, value=step0, label="step", allow_custom_value=True)
            prompt = gr.Dropdown(choices=prompts0, value=prompts0[0][1] if prompts0 else None, label="prompt", scale=3,
                                 allow_custom_value=True)
            sample = gr.Dropdown(choices=[0, 1, 2, 3], value=0, label="sample", allow_custom_value=True)
            show_filter = gr.Radio(list(data.SHOW), value="all", label="responses", elem_id="token-show")
        with gr.Accordion("The most blamed tokens of this step (select one to jump to it)", open=False):
            jump = gr.Button("Jump to the most blamed token", elem_id="jump-blamed", size="sm")
            blamed = gr.Dataframe(elem_id="blamed-table", interactive=False, wrap=True)
        summary = gr.Markdown(elem_id="token-summary")
        heat = gr.HTML(elem_id="token-view")
        with gr.Row():
            qplot = gr.Plot(label="q_t")
            steps = gr.Dataframe(label="per-line steps", elem_id="token-steps", interactive=False, wrap=True)
        with gr.Accordion("The prompt's K responses side by side", open=False):
            kview = gr.HTML(elem_id="k-side-by-side")
        with gr.Accordion("The same response scored at two checkpoints", open=False):
            ck0 = checkpoint_choices(root, run0) if run0 else ["initial"]
            with gr.Row():
                ck_a = gr.Dropdown(choices=ck0, value=ck0[0], label="checkpoint A")
                ck_b = gr.Dropdown(choices=ck0, value=ck0[-1], label="checkpoint B")
                go_ck = gr.Button("Score at both")
            with gr.Row():
                view_a, view_b = gr.HTML(elem_id="ckpt-a"), gr.HTML(elem_id="ckpt-b")

        # Selections cascade inside one handler per user action (.input), so a programmatic update
        # (a restored link, a jump) never triggers a reset; views redraw on .change.
        def selection(name, s, p=None, k=None, show="all"):
            """Dropdown updates (step, prompt, sample): each kept if still valid, else the first choice."""
            steps = step_choices(root, name)
            s = s if s in steps else (steps[-1] if steps else None)
            prompts = prompt_choices(root, name, s, show) if s is not None else []
            ids = [v for _, v in prompts]
            p = p if p in ids else (ids[0] if ids else None)
            ks = sample_choices(root, name, s, p, show) if p is not None else []
            k = k if k in ks else (ks[0] if ks else None)
            return (gr.Dropdown(choices=steps, value=s), gr.Dropdown(choices=prompts, value=p),
                    gr.Dropdown(choices=ks, value=k))

        def on_run(name, show):
            c = checkpoint_choices(root, name)
            return (*selection(name, None, show=show), gr.Dropdown(choices=c, value=c[0]), gr.Dropdown(choices=c, value=c[-1]))

        def on_jump(name, s, show, table, evt: gr.SelectData | None = None):
            """Select the rollout of a blamed token: the picked row, or the most blamed one."""
            df = table if table is not None and len(table) else blamed_table(root, name, s, show)
            if df is None or not len(df):
                return gr.Dropdown(), gr.Dropdown()
            row = df.iloc[evt.index[0] if evt is not None else 0]
            _, p, k = selection(name, s, int(row["prompt_id"]), int(row["sample"]), show)
            return p, k

        run.input(on_run, [run, show_filter], [step, prompt, sample, ck_a, ck_b])
        step.input(lambda n, s, show: selection(n, s, show=show), [run, step, show_filter], [step, prompt, sample])
        show_filter.input(lambda n, s, p, k, show: selection(n, s, p, k, show), [run, step, prompt, sample, show_filter],
                          [step, prompt, sample])
        prompt.input(lambda n, s, p, show: selection(n, s, p, show=show), [run, step, prompt, show_filter],
                     [step, prompt, sample])
        for control in (step, show_filter):
            control.change(lambda n, s, show: blamed_table(root, n, s, show), [run, step, show_filter], blamed)
        jump.click(lambda n, s, show, t: on_jump(n, s, show, t), [run, step, show_filter, blamed], [prompt, sample])
        blamed.select(on_jump, [run, step, show_filter, blamed], [prompt, sample])
        outs = [summary, heat, qplot, steps]
        for control in (prompt, sample):
            control.change(lambda n, s, p, k: show(root, n, s, p, k), [run, step, prompt, sample], outs, **VIEW_QUEUE)
        prompt.change(lambda n, s, p: side_by_side(root, n, s, p), [run, step, prompt], kview, **K_QUEUE)
        go_ck.click(lambda n, s, p, k, a, b: two_checkpoints(root, n, s, p, k, a, b), [run, step, prompt, sample, ck_a, ck_b],
                    [view_a, view_b])
        return (run, step, prompt, sample), outs, kview, (show_filter, blamed)
