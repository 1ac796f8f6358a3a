"""Tasks and their files under data/. A row is {id, prompt, answer, solution?}; code rows also
carry `tests` (assert snippets, with `entry_point`) or `io` ({input, output} cases)."""

from __future__ import annotations

from pathlib import Path

from prime.data import read_jsonl
from prime.errors import UserError
from prime.tasks.files import is_task_path, load_file_task, normalise_rows

DATA_DIR = Path(__file__).resolve().parents[2] / "data"
TASKS = ("arith", "gsm8k", "code")
SPLIT_NAMES = ("train", "val", "test")
# GSM8K ships only its training split here (../shared); we hold out its last rows.
GSM8K_HELD_OUT = {"val": 200, "test": 500}


def load_task(name: str, split: str, data_dir: Path = DATA_DIR, skipped: list[str] | None = None) -> list[dict]:
    """Rows of a task split, with a clear error for an unknown task or split. With `skipped`
    (a list), malformed rows are skipped and described there instead of raising."""
    if split not in SPLIT_NAMES:
        raise UserError(f"unknown split {split!r} for task {name}; choose one of: {', '.join(SPLIT_NAMES)}")
    if name not in TASKS:
        if is_task_path(name):
            return load_file_task(name, split, skipped)
        raise UserError(f"unknown task {name!r}; choose one of: {', '.join(TASKS)}, or the path of a .jsonl / "
                        ".parquet file or of a directory with train and test files (README: Your own data)")
    if name == "arith":
        rows = read_jsonl(data_dir / "arith" / f"{split}.jsonl", required=("id", "prompt", "answer"), skipped=skipped)
    elif name == "code":  # 16 problems: train 12, test 4 (also the val split)
        path = data_dir / "code" / f"{'train' if split == 'train' else 'test'}.jsonl"
        rows = read_jsonl(path, required=("id", "prompt", "answer"), skipped=skipped)
        rows = normalise_rows(path, rows, skipped, code_only=True)
    else:
        rows = _gsm8k(split, data_dir, skipped)
    if not rows:
        raise UserError(f"task {name}, split {split}: no usable rows in {data_dir / name}; regenerate or fix the data")
    return rows


def _gsm8k(split: str, data_dir: Path, skipped: list[str] | None) -> list[dict]:
    path = data_dir / "gsm8k" / "train.jsonl.gz"
    rows = read_jsonl(path, required=("question", "answer"), skipped=skipped)
    out = []
    for i, r in enumerate(rows):
        *steps, final = r["answer"].strip().split("\n")
        if not final.startswith("####"):
            raise UserError(f"{path}:{i + 1}: answer does not end with a '#### <number>' line")
        answer = final.removeprefix("####").strip().replace(",", "")
        out.append({"id": f"gsm8k-{i}", "prompt": r["question"], "answer": answer, "solution": "\n".join(steps)})
    n_test, n_val = GSM8K_HELD_OUT["test"], GSM8K_HELD_OUT["val"]
    bounds = {"train": (0, len(out) - n_test - n_val), "val": (len(out) - n_test - n_val, len(out) - n_test),
              "test": (len(out) - n_test, len(out))}
    lo, hi = bounds[split]
    return out[lo:hi]
