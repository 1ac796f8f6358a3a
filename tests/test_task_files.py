"""--task PATH: the user's own jsonl / parquet, flat or in veRL's schema; the verifier per row."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pandas as pd
import pytest

from prime.config import TrainConfig
from prime.errors import UserError
from prime.rollout import format_prompt
from prime.tasks import load_task
from prime.verifiers import verify

ARITH = [("Start with 2. Add 3. What is the result?", "5"), ("Start with 4. Multiply by 2. What is the result?", "8"),
         ("Start with 9. Subtract 5. What is the result?", "4"), ("Start with 3. Add 3. What is the result?", "6")]


def verl_rows(split: str) -> list[dict]:
    """Rows as veRL's examples/data_preprocess/gsm8k.py writes them (chat-message prompt,
    ability, reward_model.ground_truth, extra_info)."""
    return [{"data_source": "arith", "prompt": [{"role": "user", "content": q}], "ability": "math",
             "reward_model": {"style": "rule", "ground_truth": a},
             "extra_info": {"split": split, "index": i, "answer": a, "question": q}} for i, (q, a) in enumerate(ARITH)]


@pytest.fixture
def verl_dir(tmp_path):
    """train.parquet / test.parquet in veRL's schema, written with pandas (as veRL's scripts do)."""
    for split in ("train", "test"):
        pd.DataFrame(verl_rows(split)).to_parquet(tmp_path / f"{split}.parquet")
    return tmp_path


def test_verl_parquet_reads_as_math_rows(verl_dir):
    rows = load_task(str(verl_dir), "train")
    assert [(r["prompt"], r["answer"]) for r in rows] == ARITH
    assert rows[0]["id"] == "0" and rows[0]["data_source"] == "arith" and rows[0]["ability"] == "math"
    assert load_task(str(verl_dir), "val") == load_task(str(verl_dir), "test")  # val falls back to test
    assert verify("The answer is \\boxed{5}.", rows[0]).score == 1.0


def test_a_few_steps_on_a_verl_parquet(verl_dir, tmp_path, tiny_dir):
    from prime.records import read_metrics, read_rollouts
    from prime.trainer import train

    run = tmp_path / "run"
    train(TrainConfig(out=str(run), task=str(verl_dir), steps=2, prompts_per_step=2, eval_every=2, eval_n=4,
                      max_new_tokens=60, filter_low=0.0, filter_high=1.0), progress=False)
    assert [m["step"] for m in read_metrics(run)] == [0, 1, 2]
    assert set(read_rollouts(run, 1).prompt) <= {q for q, _ in ARITH}


def test_a_run_longer_than_its_data_starts_new_epochs(verl_dir, tmp_path, tiny_dir):
    """More prompts drawn than the file holds: every step still trains on P kept prompts, drawn
    from a new pass over the rows (data/epoch counts the passes), instead of running dry."""
    from prime.records import read_metrics
    from prime.trainer import train

    run = tmp_path / "run"
    steps = len(ARITH) + 1  # two prompts a step: more than two passes over the rows
    train(TrainConfig(out=str(run), task=str(verl_dir), steps=steps, prompts_per_step=2, eval_every=0,
                      max_new_tokens=40, filter_low=0.0, filter_high=1.0), progress=False)
    rows = [m for m in read_metrics(run) if m["step"] > 0]
    assert [m["filter/kept"] for m in rows] == [2] * steps
    assert rows[-1]["data/epoch"] == 2 * steps // len(ARITH)


def test_flat_jsonl_with_every_verifier_and_a_system_prompt(tmp_path):
    rows = [{"id": "m", "prompt": "What is 2+2?", "answer": "4", "system": "Be brief."},
            {"id": "c", "prompt": "Write add.", "tests": ["assert add(1, 2) == 3"], "entry_point": "add"},
            {"id": "io", "prompt": "Echo.", "io": [{"input": "hi\n", "output": "hi\n"}]}]
    path = tmp_path / "mine.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    got = {r["id"]: r for r in load_task(str(path), "train")}  # under 10 rows: nothing held out
    assert got["m"]["system"] == "Be brief." and verify("\\boxed{4}", got["m"]).score == 1.0
    assert verify("```python\ndef add(a, b):\n    return a + b\n```", got["c"]).score == 1.0
    assert verify("```python\nprint(input())\n```", got["io"]).score == 1.0


def test_a_single_file_holds_out_its_last_tenth(tmp_path):
    path = tmp_path / "big.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"q{i}", "answer": str(i)}) + "\n" for i in range(50)))
    train, test = load_task(str(path), "train"), load_task(str(path), "test")
    assert len(train) == 45 and [r["answer"] for r in test] == ["45", "46", "47", "48", "49"]


def test_prime_style_code_ground_truths(tmp_path):
    """Eurus-2-RL-Data's code rows: ground_truth a JSON string of inputs/outputs (stdin/stdout),
    or with fn_name, calls of that function."""
    io_truth = json.dumps({"inputs": ["1 2\n", "3 4\n"], "outputs": ["3\n", "7\n"]})
    call_truth = json.dumps({"fn_name": "add", "inputs": [[1, 2], [3, 4]], "outputs": [3, 7]})
    rows = [{"data_source": "codecontests", "prompt": [{"role": "system", "content": "Use Python."},
                                                       {"role": "user", "content": "Sum two numbers."}],
             "ability": "code", "reward_model": {"style": "rule", "ground_truth": t}, "extra_info": {"index": i}}
            for i, t in enumerate((io_truth, call_truth))]
    path = tmp_path / "code.parquet"
    pd.DataFrame(rows).to_parquet(path)
    io_row, call_row = load_task(str(path), "train")
    assert io_row["system"] == "Use Python." and io_row["prompt"] == "Sum two numbers."
    assert verify("```python\na, b = map(int, input().split())\nprint(a + b)\n```", io_row).score == 1.0
    assert call_row["entry_point"] == "add" and call_row["tests"][0] == "assert candidate(*[1, 2]) == 3"
    assert verify("```python\ndef add(a, b):\n    return a + b\n```", call_row).score == 1.0
    assert verify("```python\ndef add(a, b):\n    return a * b\n```", call_row).score == 0.0


@pytest.mark.parametrize("row, message", [
    ({"answer": "1"}, "row 2: field prompt"),
    ({"prompt": "q"}, "row 2: no verifier"),
    ({"prompt": [{"role": "assistant", "content": "x"}], "answer": "1"}, "row 2: field prompt: chat messages"),
    ({"prompt": "q", "tests": "assert x"}, "row 2: field tests"),
    ({"prompt": "q", "io": [{"input": 1}]}, "row 2: field io"),
    ({"prompt": "q", "reward_model": {"style": "rule"}}, "row 2: field reward_model"),
    ({"prompt": "q", "reward_model": {"ground_truth": "{\"inputs\": [1], \"outputs\": []}"}},
     "row 2: field reward_model.ground_truth"),
])
def test_bad_rows_name_file_row_and_field(tmp_path, row, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"prompt": "fine", "answer": "1"}) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(UserError, match=f"{path}: {message}".replace("(", r"\(").replace("[", r"\[")):
        load_task(str(path), "train")
    skipped = []
    assert len(load_task(str(path), "train", skipped=skipped)) == 1 and len(skipped) == 1


def test_unknown_task_paths_are_refused_by_the_config(tmp_path):
    with pytest.raises(UserError, match="config field task='nope.jsonl'"):
        TrainConfig(task="nope.jsonl")
    (tmp_path / "train.parquet").write_bytes(b"not parquet")
    (tmp_path / "test.parquet").write_bytes(b"not parquet")
    with pytest.raises(UserError, match="not a readable parquet file"):
        load_task(str(tmp_path), "train")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="has no train file"):
        load_task(str(empty), "train")


def test_system_prompt_formatting(micro_model_dir):
    from prime.models import load_tokenizer

    tok = load_tokenizer(micro_model_dir)
    assert format_prompt(tok, "Q?", "Be brief.") == "Be brief.\n\nQ?\n"
    tok.chat_template = "{% for m in messages %}[{{ m['role'] }}]{{ m['content'] }}{% endfor %}[assistant]"
    assert format_prompt(tok, "Q?", "Be brief.") == "[system]Be brief.[user]Q?[assistant]"


# ---------------------------------------------------------------------------- export to veRL

def test_export_verl_from_a_run_on_a_verl_parquet(verl_dir, tmp_path, tiny_dir):
    """A veRL parquet written with pandas, trained on, exported back: data round-trips, the
    reward function scores like our verifier, the launch script carries the config."""
    import importlib.util

    from prime import cli
    from prime.export import FIELD_MAP
    from prime.trainer import train

    run = tmp_path / "verl-run"
    train(TrainConfig(out=str(run), task=str(verl_dir), steps=2, prompts_per_step=2, eval_every=0, max_new_tokens=40,
                      filter_low=0.0, filter_high=1.0, beta=0.1, prm_update="double"), progress=False)
    out = tmp_path / "export"
    assert cli.main(["export", "verl", str(run), "--out", str(out), "--model-path", "/models/tiny"]) == 0
    exported = pd.read_parquet(out / "data" / "train.parquet")
    assert list(exported.columns) == ["data_source", "prompt", "ability", "reward_model", "extra_info"]
    assert [(r["prompt"], r["answer"]) for r in load_task(str(out / "data"), "train")] == ARITH  # round trip
    spec = importlib.util.spec_from_file_location("exported_reward", out / "reward.py")
    reward = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reward)
    assert reward.compute_score("arith", "The answer is \\boxed{5}.", "5") == 1.0
    assert reward.compute_score("arith", "The answer is \\boxed{6}.", "5", {"split": "train"}) == 0.0
    script = (out / "run_prime.sh").read_text()
    for override in ("reward_model.model.beta_train=0.1", "reward_model.model.update=before", "actor_rollout_ref.rollout.n=4",
                     "data.accuracy_lower_bound=0.0", "data.train_batch_size=2", "actor_rollout_ref.model.path=/models/tiny",
                     "custom_reward_function.name=compute_score"):
        assert override in script, override
    readme = (out / "README.md").read_text()
    assert "code-form process baseline" in readme and "`reward_model.model.beta_train`" in readme
    assert set(FIELD_MAP) == {f.name for f in dataclasses.fields(TrainConfig)}  # every field accounted for
    # every override is a key veRL knows: its trainer config (verl 0.9.1) or the PRIME recipe's config and launch
    # script, as snapshot by benchmarks/check_verl_export.py --dump-keys; Hydra's own search path; or one added
    # with ++ because no config declares it (the recipe's workers read reward_model.micro_batch_size_per_gpu)
    known = set(json.loads((Path(__file__).parent / "data" / "verl_config_keys.json").read_text())["keys"])
    emitted = re.findall(r"^\s+[\"']?(\+{0,2}[a-z_]+(?:\.[a-z_0-9]+)+)=", script, re.MULTILINE)
    assert len(emitted) > 40 and [k for k in emitted if k not in known and not k.startswith(("++", "hydra."))] == []
    assert {k for k in emitted if k.startswith("++")} == {"++data.apply_chat_template_kwargs.chat_template",
                                                          "++reward_model.micro_batch_size_per_gpu"}
    assert cli.main(["export", "verl", str(run), "--out", str(out)]) == 2  # not empty: refused
    assert cli.main(["export", "verl", str(tmp_path / "nothing"), "--out", str(tmp_path / "x")]) == 2


def test_export_verl_code_rows_keep_their_checks(tmp_path):
    from prime.export import REWARD_PY, verl_rows

    rows = load_task("code", "test")
    exported = verl_rows(rows, "code", "test", "")
    namespace = {}
    exec(REWARD_PY.format(), namespace)  # noqa: S102 - the reward module as written
    for row, ex in zip(rows, exported):
        assert ex["ability"] == "code" and "prime_checks" in ex["extra_info"]
        assert namespace["compute_score"](ex["data_source"], row["answer"], ex["reward_model"]["ground_truth"],
                                          ex["extra_info"]) == 1.0


def test_files_written_by_datasets(tmp_path):
    """Hugging Face `datasets` writing veRL rows to parquet and flat rows to JSON Lines."""
    from datasets import Dataset

    Dataset.from_list(verl_rows("train")).to_parquet(str(tmp_path / "verl.parquet"))
    Dataset.from_list([{"prompt": q, "answer": a} for q, a in ARITH]).to_json(str(tmp_path / "flat.jsonl"))
    for name in ("verl.parquet", "flat.jsonl"):
        rows = load_task(str(tmp_path / name), "train")
        assert [(r["prompt"], r["answer"]) for r in rows] == ARITH, name


def test_the_readme_maps_every_config_field_for_verl():
    from pathlib import Path

    from prime.export import FIELD_MAP

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## To a cluster: export to veRL", 1)[1].split("\n## ", 1)[0]
    for name, (key, _) in FIELD_MAP.items():
        assert f"| `{name}` | {'`' + key + '`' if key else '—'} |" in section, name
