"""Bad input, fuzzed (hypothesis): the dataset reader, the config loader and the workbench's
record readers either succeed or raise UserError with a message naming the file; never any
other exception."""

from __future__ import annotations

import dataclasses
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from synthetic import make_run

from prime.config import TrainConfig
from prime.data import read_jsonl
from prime.errors import UserError
from workbench import data as wdata

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                           max_leaves=8)


@FUZZ
@given(st.binary(max_size=400))
def test_jsonl_reader_never_crashes_on_bytes(tmp_path, blob):
    path = tmp_path / "rows.jsonl"
    path.write_bytes(blob)
    try:
        rows = read_jsonl(path, required=("prompt", "answer"))
        assert all(isinstance(r, dict) and {"prompt", "answer"} <= set(r) for r in rows)
    except UserError as e:
        assert str(path) in str(e)


@FUZZ
@given(st.lists(json_values | st.text(max_size=30), max_size=6))
def test_jsonl_reader_with_skip_counts_every_bad_row(tmp_path, rows):
    path = tmp_path / "rows.jsonl"
    lines = [r if isinstance(r, str) else json.dumps(r) for r in rows]
    path.write_text("\n".join(line.replace("\n", " ") for line in lines), encoding="utf-8")
    skipped: list[str] = []
    good = read_jsonl(path, required=("prompt",), skipped=skipped)
    nonblank = sum(1 for line in lines if line.replace("\n", " ").strip())
    assert len(good) + len(skipped) == nonblank
    assert all(s.startswith(f"{path}:") for s in skipped)


@FUZZ
@given(st.dictionaries(st.sampled_from(["steps", "beta", "algo", "seed", "bogus", "prompts_per_step", "temperature",
                                        "filter_truncated", "out"]), json_values, max_size=4))
def test_config_loader_names_the_bad_field(d):
    try:
        TrainConfig.from_dict(d, source="cfg.json")
    except UserError as e:
        assert "cfg.json" in str(e) or "config field" in str(e)


@pytest.mark.parametrize("d, message", [
    ({"stepz": 3}, "unknown config key(s) stepz"),
    ({"steps": "ten"}, "field steps must be int"),
    ({"beta": True}, "field beta must be float"),
    ({"algo": "ppo"}, "config field algo='ppo'"),
])
def test_config_errors_are_specific(d, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        TrainConfig.from_dict(d, source="cfg.json")


@pytest.fixture(scope="module")
def a_run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("fuzz"), "r", steps=2, prompts=3)


@FUZZ
@given(which=st.sampled_from(["status.json", "config.json", "metrics.jsonl", "rollouts/step_000001.parquet"]),
       blob=st.binary(max_size=300), keep=st.integers(0, 5000))
def test_record_readers_never_crash_on_damaged_files(a_run, which, blob, keep):
    path = a_run / which
    original = path.read_bytes()
    try:
        path.write_bytes(original[:keep] + blob if which.endswith(".parquet") else blob)
        row = wdata.run_summary(a_run.parent, "r")  # never raises: an error row at worst
        assert row["status"] in ("finished", "error")
        for call in (lambda: wdata.filtering_table(a_run, 1), lambda: wdata.metrics_frame(a_run),
                     lambda: wdata.rollout_tokens(a_run, 1, 1000, 0), lambda: wdata.run_view(a_run.parent, "r")):
            try:
                call()
            except UserError as e:
                assert str(a_run) in str(e)
    finally:
        path.write_bytes(original)


# ---------------------------------------------------------------------------- the command line's numbers

NUMERIC_FIELDS = [f.name for f in dataclasses.fields(TrainConfig) if type(f.default) in (int, float)]


def test_every_numeric_field_has_a_range_check():
    assert sorted(NUMERIC_FIELDS) == sorted(name for name, _, _ in TrainConfig.range_checks())


def run_cli(argv, monkeypatch, capsys):
    """`prime train ARGV` in-process with the trainer replaced: (exit code, stderr, config or None).
    The config must be refused before anything loads, so the trainer must not even be called."""
    from prime import cli, trainer

    started = {}
    monkeypatch.setattr(trainer, "train", lambda cfg, resume=False: started.setdefault("cfg", cfg))
    try:
        code = cli.main(["train", *argv])
    except SystemExit as e:  # argparse: a value that is not a number at all
        code = e.code
    return code, capsys.readouterr().err, started.get("cfg")


@pytest.mark.parametrize("argv, field", [  # each of these trained, or crashed with a traceback, before
    (["--prompts-per-step", "0"], "prompts_per_step"),  # ran a step that trained on nothing
    (["--steps", "-5"], "steps"),  # created a run that did nothing
    (["--beta", "-1"], "beta"),  # trained with the reward's sign flipped
    (["--filter-low", "0.9", "--filter-high", "0.1"], "filter_low"),  # kept no prompt, ever
    (["--policy-lr", "-1"], "policy_lr"),  # ValueError traceback from AdamW
    (["--temperature", "0"], "temperature"),  # RuntimeError in sampling
    (["--max-new-tokens", "0"], "max_new_tokens"),  # RuntimeError
    (["--micro-batch", "0"], "micro_batch"),  # ValueError
    (["--beta", "nan"], "beta"),
    (["--top-p", "1.5"], "top_p"),
    (["--samples-per-prompt", "1"], "samples_per_prompt"),
    (["--keep-last-checkpoints", "0"], "keep_last_checkpoints"),
    (["--process-weight", "-0.5"], "process_weight"),  # would reward the blamed tokens
    (["--process-credit", "max"], "process_credit"),
])
def test_out_of_range_fields_are_refused_before_loading(argv, field, monkeypatch, capsys, tmp_path):
    code, err, cfg = run_cli(["--out", str(tmp_path / "r"), *argv], monkeypatch, capsys)
    assert code == 2 and cfg is None and "Traceback" not in err
    lines = [l for l in err.splitlines() if l.startswith("prime: error:")]
    assert len(lines) == 1 and f"config field {field}" in lines[0], err


@FUZZ
@given(field=st.sampled_from(NUMERIC_FIELDS),
       value=st.integers(-10**6, 10**6) | st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(["", "x", "1e999"]))
def test_cli_numeric_fields_fuzzed(field, value, monkeypatch, capsys, tmp_path):
    """Any value for any numeric flag: a config every range check accepts, or exit 2 naming the
    field (argparse's own exit 2 for text that is not a number); never a traceback."""
    code, err, cfg = run_cli(["--out", str(tmp_path / "r"), f"--{field.replace('_', '-')}={value}"], monkeypatch, capsys)
    if cfg is not None:
        assert code == 0 and all(ok(getattr(cfg, name)) for name, ok, _ in TrainConfig.range_checks())
    else:
        assert code == 2 and "Traceback" not in err
        assert field in err or "invalid" in err, err  # the field is named (argparse: "invalid int value")
