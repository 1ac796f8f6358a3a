"""Tasks from the user's own files: jsonl (optionally .gz) or parquet, in our flat schema or in
veRL's, so a dataset prepared for veRL (or written with `datasets`) trains here unchanged.

Flat rows:  {"prompt": str, "answer": str}               math (math-verify)
            {"prompt": str, "tests": [str], "entry_point": str}   code, assert-style
            {"prompt": str, "io": [{"input": str, "output": str}]} code, stdin/stdout
            optional: "id", "system", "prelude"
veRL rows:  {"data_source": str, "prompt": [{"role", "content"}, ...], "ability": str,
             "reward_model": {"style": "rule", "ground_truth": ...}, "extra_info": {...}}
            ground_truth: the answer (math); for code, {"inputs": [...], "outputs": [...]} (as a
            dict or a JSON string, the form of PRIME's Eurus-2-RL-Data): stdin/stdout cases, or
            calls of `fn_name` when it is given.

A path is a file (its last rows, min(200, 10%), are held out as the test and val split) or a
directory holding train / test (/ val) files, as veRL's preprocessing scripts write them.
The verifier is chosen per row. A bad row is an error naming the file, the row and the field
(with skip_bad_rows: skipped and counted).
"""

from __future__ import annotations

import json
from pathlib import Path

from prime.data import read_jsonl
from prime.errors import UserError

SUFFIXES = (".jsonl", ".jsonl.gz", ".parquet")
HELD_OUT = 200  # rows held out of a single file for test / val (at most 10% of it)


def is_task_path(name: str) -> bool:
    path = Path(name).expanduser()
    return path.is_dir() or (path.is_file() and str(path).endswith(SUFFIXES))


def split_file(root: Path, split: str) -> Path | None:
    """The file of `split` in a task directory (val falls back to test)."""
    for name in ((split, "test") if split == "val" else (split,)):
        for suffix in SUFFIXES:
            if (root / f"{name}{suffix}").is_file():
                return root / f"{name}{suffix}"
    return None


def read_rows(path: Path, skipped: list[str] | None = None) -> list[dict]:
    """Raw rows of a jsonl or parquet file, as plain Python values."""
    if str(path).endswith(".parquet"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            return pq.read_table(path).to_pylist()
        except (pa.ArrowException, OSError) as e:
            raise UserError(f"{path}: not a readable parquet file ({str(e).splitlines()[0][:200]})") from None
    return read_jsonl(path, required=(), skipped=skipped)


def load_file_task(name: str, split: str, skipped: list[str] | None = None) -> list[dict]:
    path = Path(name).expanduser()
    if path.is_dir():
        file = split_file(path, split)
        if file is None:
            raise UserError(f"task directory {path} has no {split} file ({', '.join(split + s for s in SUFFIXES)}); "
                            "a directory needs train and test files, as veRL's preprocessing writes them")
        return normalise_rows(file, read_rows(file, skipped), skipped)
    rows = normalise_rows(path, read_rows(path, skipped), skipped)
    n_out = min(HELD_OUT, len(rows) // 10) if len(rows) >= 10 else 0
    if split == "train":
        return rows[: len(rows) - n_out] if n_out else rows
    return rows[len(rows) - n_out:] if n_out else rows  # a file under 10 rows evaluates on its training rows


def normalise_rows(path: Path, rows: list[dict], skipped: list[str] | None, code_only: bool = False) -> list[dict]:
    """normalise() every row; a bad row raises UserError naming file, row and field, or (with
    `skipped`) is skipped and described there. code_only: rows must carry tests or io."""
    out = []
    for n, raw in enumerate(rows, start=1):
        try:
            row = normalise(raw, n)
            if code_only and not (row.get("tests") or row.get("io")):
                raise ValueError("needs `tests` (a list of assert snippets) or `io` (a list of {input, output}); "
                                 "see data/code/README.md")
            out.append(row)
        except ValueError as e:
            why = f"{path}: row {n}: {e}"
            if skipped is None:
                raise UserError(why + "; fix the row or pass --skip-bad-rows") from None
            skipped.append(why)
    if not out:
        raise UserError(f"{path}: no usable rows")
    return out


def normalise(raw: dict, n: int) -> dict:
    """One row of either schema -> our flat row {id, prompt, system?, answer | tests | io, ...}.
    ValueError naming the field when it does not fit."""
    if not isinstance(raw, dict):
        raise ValueError("not an object")  # noqa: TRY004 - the caller reports every bad row as a ValueError
    system, prompt = _prompt(raw.get("prompt"))
    ident = next((v for v in (raw.get("id"), _extra(raw).get("index")) if v is not None and v != ""), n)
    row = {"id": str(ident), "prompt": prompt}
    system = raw.get("system") or system
    if system:
        row["system"] = str(system)
    for key in ("data_source", "ability"):
        if isinstance(raw.get(key), str):
            row[key] = raw[key]
    if "reward_model" in raw:
        return row | _from_ground_truth(raw)
    if raw.get("tests") is not None:
        tests = raw["tests"]
        if not isinstance(tests, list) or not tests or not all(isinstance(t, str) for t in tests):
            raise ValueError("field tests: expected a non-empty list of assert snippets (strings)")
        extra = {k: raw[k] for k in ("entry_point", "prelude") if isinstance(raw.get(k), str)}
        return row | {"tests": tests, "answer": str(raw.get("answer") or "")} | extra
    if raw.get("io") is not None:
        return row | {"io": _io_cases(raw["io"], "io"), "answer": str(raw.get("answer") or "")}
    if raw.get("answer") is None:
        raise ValueError("no verifier: give `answer` (math), `tests` or `io` (code), or veRL's reward_model.ground_truth")
    return row | {"answer": str(raw["answer"]).strip()}


def _extra(raw: dict) -> dict:
    return raw["extra_info"] if isinstance(raw.get("extra_info"), dict) else {}


def _prompt(prompt) -> tuple[str | None, str]:
    """(system message, the question): a string, or chat messages (veRL) whose last user turn
    is the question."""
    if isinstance(prompt, str) and prompt.strip():
        return None, prompt
    if isinstance(prompt, list) and prompt and all(isinstance(m, dict) for m in prompt):
        system = next((str(m.get("content")) for m in prompt if m.get("role") == "system"), None)
        users = [m for m in prompt if m.get("role") == "user" and isinstance(m.get("content"), str)]
        if users and users[-1]["content"].strip():
            return system, users[-1]["content"]
        raise ValueError("field prompt: chat messages without a non-empty user message")
    raise ValueError("field prompt: expected a non-empty string or a list of chat messages {role, content}")


def _from_ground_truth(raw: dict) -> dict:
    reward = raw["reward_model"]
    if not isinstance(reward, dict) or "ground_truth" not in reward:
        raise ValueError("field reward_model: expected {style, ground_truth}")
    truth = reward["ground_truth"]
    if isinstance(truth, str) and truth.lstrip().startswith("{"):
        try:
            truth = json.loads(truth)
        except json.JSONDecodeError:
            pass
    if isinstance(truth, dict):
        inputs, outputs = truth.get("inputs"), truth.get("outputs")
        if not isinstance(inputs, list) or not isinstance(outputs, list) or len(inputs) != len(outputs) or not inputs:
            raise ValueError("field reward_model.ground_truth: a code ground truth needs equal-length inputs and outputs")
        if truth.get("fn_name"):  # call-based: each input is the argument list
            fn = str(truth["fn_name"])
            if not fn.isidentifier():
                raise ValueError(f"field reward_model.ground_truth.fn_name: {fn!r} is not a Python name")
            tests = [f"assert candidate(*{list(a) if isinstance(a, list) else [a]!r}) == {o!r}" for a, o in zip(inputs, outputs)]
            return {"tests": tests, "entry_point": fn, "answer": ""}
        return {"io": _io_cases([{"input": i, "output": o} for i, o in zip(inputs, outputs)], "reward_model.ground_truth"),
                "answer": ""}
    if isinstance(truth, list):  # several accepted answers: math-verify compares with the first
        truth = truth[0] if truth else None
    if truth is None or not str(truth).strip():
        raise ValueError("field reward_model.ground_truth: empty")
    return {"answer": str(truth).strip()}


def _io_cases(cases, field: str) -> list[dict]:
    if not isinstance(cases, list) or not cases:
        raise ValueError(f"field {field}: expected a non-empty list of {{input, output}}")
    out = []
    for c in cases:
        if not isinstance(c, dict) or not all(isinstance(c.get(k), (str, list)) for k in ("input", "output")):
            raise ValueError(f"field {field}: every case needs string input and output")
        out.append({k: c[k] if isinstance(c[k], str) else "\n".join(map(str, c[k])) for k in ("input", "output")})
    return out
