"""prime report: a self-contained HTML file of runs (the browser test checks what it shows)."""

from pathlib import Path

from synthetic import make_run

from prime.cli import main
from prime.report import MAX_BYTES, build_report
from workbench.app import DEMO_RUNS


def test_report_of_the_demo_is_self_contained_and_small(tmp_path, capsys):
    out = tmp_path / "r.html"
    assert main(["report", str(DEMO_RUNS / "prime"), str(DEMO_RUNS / "rloo"), "-o", str(out)]) == 0
    text = out.read_text()
    assert out.stat().st_size <= MAX_BYTES
    assert "<script src" not in text and "<link " not in text  # plotly and styles inline; the browser test runs it offline
    assert text.count("class='rollout'") >= 2 and "wrote" in capsys.readouterr().out


def test_runs_without_process_rewards_say_so(tmp_path):
    make_run(tmp_path, "outcome-only", steps=2, prompts=4, algo="rloo")
    html = build_report([tmp_path / "outcome-only"])
    assert "outcome-only" in html and "Training curves" in html


def test_bad_input_is_a_clear_error(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nope"), "-o", str(tmp_path / "x.html")]) == 2
    assert "not a run directory" in capsys.readouterr().err
    assert not Path(tmp_path / "x.html").exists()
