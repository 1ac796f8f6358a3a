"""Task data: the arith generator, the committed files, GSM8K, and jsonl errors."""

import gzip
import re

import pytest

from prime.data import read_jsonl
from prime.errors import UserError
from prime.tasks import DATA_DIR, load_task
from prime.tasks.arith import MAX_STEPS, MIN_STEPS, generate, generate_splits


def test_generator_is_deterministic_and_seeded():
    assert generate(50, seed=7) == generate(50, seed=7)
    assert generate(50, seed=7) != generate(50, seed=8)


def test_committed_files_are_what_the_generator_makes():
    made = generate_splits()
    for split in ("train", "val", "test"):
        assert load_task("arith", split) == made[split], f"data/arith/{split}.jsonl is stale: regenerate it (see data/arith/README.md)"


def test_solutions_are_correct_one_step_per_line():
    for row in load_task("arith", "test"):
        *steps, final = row["solution"].split("\n")
        assert MIN_STEPS <= len(steps) <= MAX_STEPS
        assert len(steps) == row["prompt"].count(".") - 1  # "Start with N." plus one sentence per step
        value = int(re.match(r"Start with (\d+)\.", row["prompt"]).group(1))
        for line in steps:
            instruction, calc = line.split(": ")
            a, op, b, _, c = calc.split()
            assert instruction == {"+": "Add", "-": "Subtract", "*": "Multiply by"}[op] + f" {b}"
            assert instruction + "." in row["prompt"]
            assert int(a) == value and eval(f"{a}{op}{b}") == int(c) and 0 <= int(c) <= 99
            value = int(c)
        assert final == f"The answer is \\boxed{{{value}}}." and row["answer"] == str(value)


def test_held_out_prompts_never_in_train():
    train = {r["prompt"] for r in load_task("arith", "train")}
    for split in ("val", "test"):
        assert not train & {r["prompt"] for r in load_task("arith", split)}


def test_gsm8k_splits():
    test, val, train = (load_task("gsm8k", s) for s in ("test", "val", "train"))
    assert (len(test), len(val), len(train)) == (500, 200, 7473 - 700)
    assert train[0]["answer"] == "72" and "#### " not in train[0]["solution"]
    assert (DATA_DIR / "gsm8k" / "LICENSE").is_file()


@pytest.mark.parametrize("content, message", [
    (b'{"id": 1, "prompt": "p", "answer": "1"}\n{"id": 2, "prompt": \n', r"bad\.jsonl:2: malformed JSON"),
    (b'{"id": 1, "prompt": "p"}\n', r"bad\.jsonl:1: missing field\(s\) answer"),
    (b'[1, 2]\n', r"bad\.jsonl:1: expected a JSON object"),
    (b'{"id": 1, "prompt": "\xff\xfe", "answer": "1"}\n', r"bad\.jsonl:1: not UTF-8"),
])
def test_bad_jsonl_names_file_and_line(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content)
    with pytest.raises(UserError, match=message):
        read_jsonl(path, required=("id", "prompt", "answer"))


def test_truncated_gzip_names_file(tmp_path):
    data = gzip.compress(b'{"a": 1}\n' * 1000)
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match=r"cut\.jsonl\.gz:\d+: cannot read"):
        read_jsonl(path)


def test_unknown_task_and_split():
    with pytest.raises(UserError, match="unknown task 'algebra'"):
        load_task("algebra", "train")
    with pytest.raises(UserError, match="unknown split 'dev'"):
        load_task("arith", "dev")


def test_skip_bad_rows_counts_them(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b'{"id": 1, "prompt": "p", "answer": "1"}\n{oops\n\xff\n{"id": 2, "prompt": "q"}\n'
                     b'{"id": 3, "prompt": "r", "answer": "3"}\n')
    skipped = []
    rows = read_jsonl(path, required=("id", "prompt", "answer"), skipped=skipped)
    assert [r["id"] for r in rows] == [1, 3]
    assert len(skipped) == 3 and skipped[0].startswith(f"{path}:2: malformed JSON")


def test_empty_dataset_is_an_error(tmp_path):
    (tmp_path / "arith").mkdir()
    (tmp_path / "arith" / "train.jsonl").write_text("")
    with pytest.raises(UserError, match="no usable rows"):
        load_task("arith", "train", data_dir=tmp_path)
