"""The workbench data layer: records to DataFrames, without gradio; damaged runs give error rows;
no input can read outside the runs directory."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
from synthetic import make_run

from prime.errors import UserError
from workbench import data


@pytest.fixture
def root(tmp_path):
    make_run(tmp_path, "prime-a", steps=3, prompts=6)
    make_run(tmp_path, "rloo-a", steps=2, prompts=6, algo="rloo", seed=1)
    return tmp_path


def test_the_data_layer_imports_no_gradio():
    code = "import sys, workbench.data; assert 'gradio' not in sys.modules, 'gradio imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_runs_table(root):
    df = data.runs_table(root)
    assert list(df.run) == ["prime-a", "rloo-a"]
    assert list(df.status) == ["finished", "finished"] and list(df.steps) == ["3/3", "2/2"]
    assert list(df.algo) == ["prime", "rloo"] and (df.error == "").all()
    assert df["last acc"].notna().all()


@pytest.mark.parametrize("damage, message", [
    (lambda run: (run / "status.json").write_text("{garbage"), "status.json: not valid JSON"),
    (lambda run: (run / "status.json").write_text("[1, 2]"), "status.json: expected a JSON object"),
    (lambda run: (run / "config.json").unlink(), "config.json: missing"),
    (lambda run: (run / "metrics.jsonl").write_text('{"step": 1}\nnot json\n{"step": 3}\n'), "metrics.jsonl:2: malformed"),
])
def test_a_damaged_run_is_an_error_row_and_the_others_display(root, damage, message):
    damage(root / "prime-a")
    df = data.runs_table(root).set_index("run")
    assert df.loc["prime-a", "status"] == "error" and message in df.loc["prime-a", "error"]
    assert df.loc["rloo-a", "status"] == "finished"


def test_a_torn_last_metrics_line_is_dropped(root):
    path = root / "prime-a" / "metrics.jsonl"
    path.write_bytes(path.read_bytes() + b'{"step": 4, "acc')
    assert list(data.metrics_frame(root / "prime-a").step) == [1, 2, 3]


def test_a_truncated_parquet_is_a_clear_error(root):
    path = root / "prime-a" / "rollouts" / "step_000002.parquet"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(data.RecordError, match="step_000002.parquet: unreadable parquet"):
        data.filtering_table(root / "prime-a", 2)


def test_filtering_table_follows_the_records(root):
    run = root / "prime-a"
    table = data.filtering_table(run, 1)
    raw = pd.read_parquet(run / "rollouts" / "step_000001.parquet")
    assert len(table) == raw.prompt_id.nunique() and (table.K == 4).all()
    assert dict(zip(table.prompt_id, table.decision)) == dict(zip(raw.prompt_id, raw.filter_decision))
    assert all(("≤" in r) == (d == "kept") for r, d in zip(table.reason, table.decision))
    pid = int(table.prompt_id[0])
    assert list(data.prompt_responses(run, 1, pid).sample_idx) == [0, 1, 2, 3]


def test_rollout_tokens_carry_the_recorded_rewards(root):
    run = root / "prime-a"
    raw = pd.read_parquet(run / "rollouts" / "step_000001.parquet")
    row = raw[raw.filter_decision == "kept"].iloc[0]
    view = data.rollout_tokens(run, 1, row.prompt_id, row.sample_idx)
    assert [t["reward"] for t in view["tokens"]] == list(row.process_reward)
    assert [t["text"] for t in view["tokens"]] == list(row.tokens)
    q = 0.0
    for t in view["tokens"]:
        q += t["reward"]
        assert t["q"] == pytest.approx(q, abs=1e-12)
    assert sum(s["reward"] for s in view["steps"]) == pytest.approx(view["total_reward"])


def test_run_views_overlay_runs_and_skip_bad_names(root):
    from prime import views

    runs = data.run_views(root, ["prime-a", "rloo-a", "../etc"])
    assert [r["name"] for r in runs] == ["prime-a", "rloo-a"]
    fig = views.curves_figure(runs, ["training accuracy (all samples)", "accuracy of kept prompts"], 0.0)
    raw = {tuple(t.meta[:2]) for t in fig.data if t.meta[2] == "raw"}
    assert raw == {(r, m) for r in ("prime-a", "rloo-a") for m in ("acc", "acc/kept")}
    _, ys = views.series(runs[0], "time/wall_s", x="wall")
    assert views.series(runs[0], "acc", x="wall")[0][-1] == pytest.approx(ys[-1] / 60)


@pytest.mark.parametrize("name", ["../secret", "/etc", "prime-a/../../x", "..", ".", "", "a/b/c", "prime-a/..",
                                  "~root", "prime-a\x00", "link", "nested-link/run"])
def test_names_that_leave_dir_are_refused(root, tmp_path_factory, name):
    outside = tmp_path_factory.mktemp("outside")
    make_run(outside, "run", steps=1, prompts=2)
    (root / "link").symlink_to(outside / "run")
    (root / "nested-link").symlink_to(outside)
    with pytest.raises(UserError):
        data.run_dir(root, name)


def test_symlinked_files_inside_a_run_are_refused(root, tmp_path):
    secret = tmp_path / "secret.json"
    secret.write_text(json.dumps({"state": "finished"}))
    (root / "prime-a" / "status.json").unlink()
    (root / "prime-a" / "status.json").symlink_to(secret)
    assert data.runs_table(root).set_index("run").loc["prime-a", "error"].endswith("is a symbolic link; refused")
    (root / "prime-a" / "checkpoints").mkdir()
    (root / "prime-a" / "checkpoints" / "step_000001").symlink_to(tmp_path)
    with pytest.raises(data.RecordError, match="symbolic link"):
        data.checkpoint_path(root / "prime-a", 1)
    assert data.checkpoint_steps(root / "prime-a") == []


def test_symlinked_run_directories_are_not_listed(root, tmp_path_factory):
    outside = tmp_path_factory.mktemp("elsewhere")
    make_run(outside, "x", steps=1, prompts=2)
    (root / "sneaky").symlink_to(outside / "x")
    assert "sneaky" not in data.list_run_names(root)


def test_most_blamed_tokens_and_the_outcome_filter(root):
    run = root / data.list_run_names(root)[0]
    step = data.rollout_steps(run)[-1]
    df = data.rollouts(run, step)
    every = sorted((float(v), int(r.prompt_id), int(r.sample_idx), t) for r in df.itertuples()
                   if len(r.process_reward) == len(r.tokens) for t, v in enumerate(r.process_reward))
    top = data.most_blamed(run, step, 5)
    assert [(float(r.reward), int(r.prompt_id), int(r.sample), int(r.token)) for r in top.itertuples()] == every[:5]
    wrong = data.most_blamed(run, step, 50, "wrong only")
    right = data.most_blamed(run, step, 50, "right only")
    assert all(o is None or pd.isna(o) or o <= 0 for o in wrong.outcome) and all(o > 0 for o in right.outcome)
    assert data.outcome_matches(None, "wrong only") and not data.outcome_matches(None, "right only")
    assert data.outcome_matches(0.5, "right only") and data.outcome_matches(0.0, "all")


def test_preferred_run_is_a_prime_run_with_checkpoints(tmp_path_factory):
    from workbench.app import DEMO_RUNS

    assert data.preferred_run(DEMO_RUNS) == "prime"
    tmp_path = tmp_path_factory.mktemp("empty")
    assert data.preferred_run(tmp_path) is None
    make_run(tmp_path, "b-rloo", steps=2, prompts=4, algo="rloo")
    assert data.preferred_run(tmp_path) == "b-rloo"  # no checkpoints anywhere: the first run
