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
from workbench import data
from workbench.render import token_heatmap


def prompt_choices(root: Path, run: str, step) -> list[tuple[str, int]]:
    try:
        df = data.rollouts(data.run_dir(root, run), int(step), ["prompt_id", "prompt", "filter_decision"])
    except (UserError, TypeError, ValueError):
        return []
    first = df.groupby("prompt_id", sort=False).first().reset_index()
    first = first.sort_values("filter_decision", key=lambda d: d != "kept", kind="stable")  # kept (with rewards) first
    return [(f"{r.prompt_id} [{r.filter_decision}] {r.prompt[:70]}", int(r.prompt_id)) for r in first.itertuples()]


def summary_md(view: dict, step, sample) -> str:
    outcome = "unscorable (counts as 0)" if view["outcome_reward"] is None else f"{view['outcome_reward']:g}"
    adv = "—" if view["advantage"] is None else f"{view['advantage']:+.4f} (mean over tokens, after whitening)"
    note = "" if view["has_rewards"] else " · **filtered out**: no process rewards were computed for it"
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
                      margin=dict(l=40, r=10, t=40, b=30))
    return fig


def show(root: Path, run: str, step, prompt_id, sample):
    """(summary, heatmap html, q figure, steps table)."""
    try:
        view = data.rollout_tokens(data.run_dir(root, run), int(step), int(prompt_id), int(sample))
    except (UserError, TypeError, ValueError) as e:
        return f"⚠ {html.escape(str(e))}", "", go.Figure(), pd.DataFrame()
    wrong = view.get("first_wrong_line")
    steps = pd.DataFrame([{"line": i + 1, "text": s["text"].strip(), "reward (sum)": s["reward"], "value q": s["value"],
                           "check": "✗ first wrong line" if i == wrong else ("✓" if wrong is not None and i < wrong else "")}
                          for i, s in enumerate(view["steps"])])
    return summary_md(view, step, sample), token_heatmap(view["tokens"]), q_figure(view), steps


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
        config = data.read_json(path, "config.json")
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
        run0 = names[0] if names else None
        steps0 = step_choices(root, run0) if run0 else []
        step0 = steps0[-1] if steps0 else None
        prompts0 = prompt_choices(root, run0, step0) if step0 is not None else []
        with gr.Row():
            run = gr.Dropdown(choices=names, value=run0, label="run")
            step = gr.Dropdown(choices=steps0, value=step0, label="step")
            prompt = gr.Dropdown(choices=prompts0, value=prompts0[0][1] if prompts0 else None, label="prompt", scale=3)
            sample = gr.Dropdown(choices=[0, 1, 2, 3], value=0, label="sample")
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

        def on_run(name):
            s = step_choices(root, name)
            c = checkpoint_choices(root, name)
            return (gr.Dropdown(choices=s, value=s[-1] if s else None), gr.Dropdown(choices=c, value=c[0]),
                    gr.Dropdown(choices=c, value=c[-1]))

        def on_step(name, s):
            p = prompt_choices(root, name, s)
            return gr.Dropdown(choices=p, value=p[0][1] if p else None)

        def on_prompt(name, s, p):
            try:
                df = data.rollouts(data.run_dir(root, name), int(s), ["prompt_id", "sample_idx"])
                ks = sorted(df[df.prompt_id == int(p)].sample_idx.tolist())
            except (UserError, TypeError, ValueError):
                ks = []
            return gr.Dropdown(choices=ks, value=ks[0] if ks else None)

        run.change(on_run, run, [step, ck_a, ck_b])
        step.change(on_step, [run, step], prompt)
        prompt.change(on_prompt, [run, step, prompt], sample)
        outs = [summary, heat, qplot, steps]
        for control in (prompt, sample):
            control.change(lambda n, s, p, k: show(root, n, s, p, k), [run, step, prompt, sample], outs)
        prompt.change(lambda n, s, p: side_by_side(root, n, s, p), [run, step, prompt], kview)
        go_ck.click(lambda n, s, p, k, a, b: two_checkpoints(root, n, s, p, k, a, b), [run, step, prompt, sample, ck_a, ck_b],
                    [view_a, view_b])
        return (run, step, prompt, sample), outs, kview
