"""Assemble the workbench tabs and launch (127.0.0.1 unless told otherwise)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import gradio as gr

from workbench import curves, data, filtering, links, playground, runs, summary, tokens, train

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
DEMO_RUNS = data.DEMO_RUNS


def make_app(root: Path, refresh_s: float = 5.0, train_off: str | None = "not enabled for this app") -> gr.Blocks:
    """The dashboard over the runs under `root`; unless `train_off` says why not, its Train tab
    starts runs there."""
    root = Path(root)
    with gr.Blocks(title="PRIME Workbench") as app:
        gr.Markdown(f"# PRIME Workbench\nImplicit process rewards, token by token · runs from `{root}`")
        with gr.Tabs() as tabs:
            story, story_runs, story_outs = summary.build(root)
            runs_overview, runs_chart = runs.build(root, refresh_s)
            draw, curve_inputs, plots = curves.build(root, refresh_s)
            f_run, f_step, f_outs = filtering.build(root)
            t_inputs, t_outs, kview, (t_show, t_blamed) = tokens.build(root)
            p_run, p_step = playground.build(root)
            train.build(root, refresh_s, train_off)
        t_run, t_step, t_prompt, t_sample = t_inputs
        # links: what is on screen goes into the URL query; a link's query is restored on load
        tab_blocks = [b for b in app.blocks.values() if isinstance(b, gr.Tab)]
        links.write_tab_on_select(tab_blocks)
        links.write_on_change({"run": t_run, "step": t_step, "prompt": t_prompt, "sample": t_sample})
        links.write_on_change({"run": f_run, "step": f_step})
        links.write_on_change({"run": p_run, "checkpoint": p_step})
        # first paint: the linked view, then the charts and views for the selections (the Runs
        # chart also loads plotly.js, so the Training curves tab paints at once when opened)
        def on_load(request: gr.Request):
            return restore_view(root, request)

        restored = app.load(on_load, None,
                            [tabs, t_run, t_step, t_prompt, t_sample, f_run, f_step, p_run, p_step])
        app.load(story, story_runs, story_outs)
        app.load(runs_overview, None, runs_chart)
        app.load(draw, curve_inputs, plots, show_progress="hidden")
        restored.then(None, None, None, js=links.READY_JS)
        restored.then(lambda n, s: filtering.show_step(root, n, s), [f_run, f_step], list(f_outs))
        restored.then(lambda n, s, p, k: tokens.show(root, n, s, p, k), list(t_inputs), t_outs, **tokens.VIEW_QUEUE)
        restored.then(lambda n, s, p, k: tokens.side_by_side(root, n, s, p), list(t_inputs), kview, **tokens.K_QUEUE)
        restored.then(lambda n, s, show: tokens.blamed_table(root, n, s, show), [t_run, t_step, t_show], t_blamed)
    return app


def restore_view(root: Path, request: gr.Request | None) -> list:
    """Updates for (tabs, token run/step/prompt/sample, filtering run/step, playground run/checkpoint)
    from the page's URL query (workbench.links); no change for what the query does not name."""
    from workbench.filtering import step_choices
    from workbench.playground import checkpoint_choices

    q = links.restore(root, request)
    tab = gr.Tabs(selected=q["tab"]) if "tab" in q else gr.update()
    if "run" not in q:
        return [tab] + [gr.update()] * 8
    run, steps = q["run"], step_choices(root, q["run"])
    step = q.get("step", steps[-1] if steps else None)
    prompts = tokens.prompt_choices(root, run, step) if step is not None else []
    prompt = q.get("prompt", prompts[0][1] if prompts else None)
    samples = tokens.sample_choices(root, run, step, prompt) if prompt is not None else []
    sample = q.get("sample", samples[0] if samples else None)
    ckpts = checkpoint_choices(root, run)
    names = data.list_run_names(root)  # a run started after the app (Train tab) is linkable too
    return [tab, gr.Dropdown(choices=names, value=run), gr.Dropdown(choices=steps, value=step),
            gr.Dropdown(choices=prompts, value=prompt), gr.Dropdown(choices=samples, value=sample),
            gr.Dropdown(choices=names, value=run), gr.Dropdown(choices=steps, value=step),
            gr.Dropdown(choices=[""] + names, value=run), gr.Dropdown(choices=ckpts, value=q.get("checkpoint", ckpts[-1]))]


def parse_auth(value: str | None) -> tuple[str, str] | None:
    if value is None:
        return None
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise SystemExit("python -m workbench: error: --auth expects user:password")
    return user, password


def parse_args(argv: list[str] | None = None) -> tuple[Path, float, dict, str | None]:
    """(runs root, refresh seconds, launch kwargs, warning to print or None)."""
    p = argparse.ArgumentParser(prog="python -m workbench", description="PRIME Workbench dashboards")
    p.add_argument("--runs", type=Path, default=Path("runs"), help="directory of run records (default runs/)")
    p.add_argument("--demo", action="store_true", help=f"open the demo runs shipped in {DEMO_RUNS}")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--auth", help="user:password; asked of every visitor (needed to listen beyond this machine)")
    p.add_argument("--refresh", type=float, default=5.0, help="seconds between live refreshes (default 5)")
    args = p.parse_args(argv)
    root = DEMO_RUNS if args.demo else args.runs
    if not root.is_dir():
        raise SystemExit(f"python -m workbench: error: {root} is not a directory; create it or point --runs at your runs")
    auth = parse_auth(args.auth)
    warning = None
    if args.host not in LOCAL_HOSTS and auth is None:
        warning = ("=" * 78 + f"\nWARNING: listening on {args.host} WITHOUT --auth: anyone who can reach this port "
                   "can read\nyour runs and use the models. Pass --auth user:password.\n" + "=" * 78)
    return root, args.refresh, {"server_name": args.host, "server_port": args.port, "share": False, "auth": auth}, warning


def main(argv: list[str] | None = None) -> None:
    root, refresh, launch, warning = parse_args(argv)
    if warning:
        print(warning, file=sys.stderr)
    make_app(root, refresh, train_off_reason(root, launch)).launch(**launch)


def train_off_reason(root: Path, launch: dict) -> str | None:
    """Why the Train tab may not start runs here, or None: only on this machine or behind a
    password, and never into the demo shipped in the repository."""
    if launch["server_name"] not in LOCAL_HOSTS and launch["auth"] is None:
        return (f"this app listens on {launch['server_name']} without a password; restart it with "
                "`--auth user:password` (or on 127.0.0.1) to train from here")
    if Path(root).resolve() == DEMO_RUNS.resolve():
        return "the demo runs are read-only; start the app with `--runs runs/` to train into a directory of yours"
    return None
