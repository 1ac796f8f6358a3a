"""The workbench app assembles, and the Playground scores through the engine."""

import re


def test_app_builds_every_tab_summary_first(tmp_path):
    import gradio as gr

    from workbench import links
    from workbench.app import make_app

    app = make_app(tmp_path)
    tabs = [b.id for b in app.blocks.values() if isinstance(b, gr.Tab)]
    assert tabs == list(links.TABS)  # every tab a link can name, in order, the Summary first


def test_playground_scores_tiny(tiny_dir):
    from workbench.playground import EXAMPLE, run_score

    html, steps, summary = run_score("tiny", EXAMPLE["prompt"], EXAMPLE["response"], EXAMPLE["answer"], 0.05)
    rewards = [float(v) for v in re.findall(r"class='tok'[^>]*data-reward='([^']+)'", html)]
    assert len(rewards) > 20 and all(r == 0.0 for r in rewards)  # step 0: PRM equals the reference
    assert len(steps) == EXAMPLE["response"].count("\n") + 1
    assert "Outcome: **1.0**" in summary


def test_playground_takes_none_from_closed_accordions(tiny_dir):
    """On a fresh page the external-PRM boxes (and the Rank box) sit in closed accordions and
    arrive as None: that is "not given", so Score uses the model and run, and Rank says what it
    needs, instead of an AttributeError (issue 24's first bug; its browser test is still to come)."""
    from workbench.playground import EXAMPLE, run_rank, run_score

    html, steps, summary = run_score("tiny", EXAMPLE["prompt"], EXAMPLE["response"], None, 0.05, prm_dir=None, ref_dir=None)
    assert "class='tok'" in html and len(steps) > 0 and "r_φ(y)" in summary
    table, message = run_rank("tiny", EXAMPLE["prompt"], None, 0.05, "total", prm_dir=None, ref_dir=None)
    assert table.empty and message.startswith("⚠ ranking needs at least two responses")


def test_playground_reports_bad_input_without_crashing(tiny_dir):
    from workbench.playground import run_score

    html, _, _ = run_score("tiny", "p", "", "", 0.05)
    assert "zero tokens" in html
    html, _, _ = run_score("no-such-model", "p", "r", "", 0.05)
    assert "unknown model" in html


def test_listens_on_localhost_by_default_and_warns_without_auth_elsewhere(tmp_path):
    from workbench.app import parse_args

    _root, _, launch, warning = parse_args(["--runs", str(tmp_path)])
    assert launch["server_name"] == "127.0.0.1" and launch["auth"] is None and warning is None
    _, _, launch, warning = parse_args(["--runs", str(tmp_path), "--host", "0.0.0.0"])
    assert "WITHOUT --auth" in warning
    _, _, launch, warning = parse_args(["--runs", str(tmp_path), "--host", "0.0.0.0", "--auth", "ann:s3cret"])
    assert launch["auth"] == ("ann", "s3cret") and warning is None
    import pytest

    with pytest.raises(SystemExit, match="user:password"):
        parse_args(["--runs", str(tmp_path), "--auth", "nopassword"])
    with pytest.raises(SystemExit, match="not a directory"):
        parse_args(["--runs", str(tmp_path / "missing")])
