"""Assemble the workbench tabs and launch (127.0.0.1 unless told otherwise)."""

from __future__ import annotations

import argparse
from pathlib import Path

import gradio as gr

from workbench import playground


def make_app(runs: Path) -> gr.Blocks:
    with gr.Blocks(title="PRIME Workbench") as app:
        gr.Markdown(f"# PRIME Workbench\nImplicit process rewards, token by token. Runs directory: `{runs}`")
        playground.build()
    return app


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m workbench", description="PRIME Workbench dashboards")
    p.add_argument("--runs", type=Path, default=Path("runs"), help="directory of run records (default runs/)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=7860)
    args = p.parse_args(argv)
    args.runs.mkdir(parents=True, exist_ok=True)
    make_app(args.runs).launch(server_name=args.host, server_port=args.port, share=False)
