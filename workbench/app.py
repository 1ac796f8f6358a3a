"""Assemble the workbench tabs and launch (127.0.0.1 unless told otherwise)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import gradio as gr

from workbench import curves, data, filtering, playground, runs, tokens

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
DEMO_RUNS = Path(__file__).resolve().parents[1] / "data" / "demo"


def make_app(root: Path, refresh_s: float = 5.0) -> gr.Blocks:
    """The dashboard over the runs under `root` (read-only)."""
    root = Path(root)
    with gr.Blocks(title="PRIME Workbench") as app:
        gr.Markdown(f"# PRIME Workbench\nImplicit process rewards, token by token · runs from `{root}`")
        with gr.Tabs():
            runs_overview, runs_chart = runs.build(root, refresh_s)
            draw, curve_inputs, plots = curves.build(root, refresh_s)
            f_run, f_step, f_outs = filtering.build(root)
            t_inputs, t_outs, kview = tokens.build(root)
            playground.build(root)
        # first paint: fill the charts and views for the default selections (the Runs chart
        # also loads plotly.js, so the Training curves tab paints at once when opened)
        app.load(runs_overview, None, runs_chart)
        app.load(draw, curve_inputs, plots, show_progress="hidden")
        app.load(lambda n, s: filtering.show_step(root, n, s), [f_run, f_step], list(f_outs))
        app.load(lambda n, s, p, k: tokens.show(root, n, s, p, k), list(t_inputs), t_outs)
        app.load(lambda n, s, p, k: tokens.side_by_side(root, n, s, p), list(t_inputs), kview)
    return app


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
    make_app(root, refresh).launch(**launch)
