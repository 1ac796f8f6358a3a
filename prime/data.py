"""Reading task files (jsonl, optionally gzipped) with errors that name the file and line."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Iterator

from prime.errors import UserError


def _open_text(path: Path):
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, "r", encoding="utf-8")


def read_jsonl(path: Path, required: tuple[str, ...] = ()) -> list[dict]:
    """All rows of a jsonl file; every row must be a JSON object holding `required` fields.

    Raises UserError naming the file and the 1-based line on malformed JSON, bytes that
    are not UTF-8, a row that is not an object, or a missing field.
    """
    return list(iter_jsonl(path, required))


def iter_jsonl(path: Path, required: tuple[str, ...] = ()) -> Iterator[dict]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file; check the path or regenerate the data")
    with _open_text(path) as f:
        lineno = 0
        while True:
            lineno += 1
            try:
                line = f.readline()
            except UnicodeDecodeError as e:
                raise UserError(f"{path}:{lineno}: not UTF-8 text ({e.reason}); re-save the file as UTF-8") from None
            except (OSError, EOFError) as e:
                raise UserError(f"{path}:{lineno}: cannot read ({e}); the file may be truncated") from None
            if not line:
                return
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise UserError(f"{path}:{lineno}: malformed JSON ({e.msg} at column {e.colno}); fix or remove the line") from None
            if not isinstance(row, dict):
                raise UserError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
            missing = [k for k in required if k not in row]
            if missing:
                raise UserError(f"{path}:{lineno}: missing field(s) {', '.join(missing)}; each row needs {', '.join(required)}")
            yield row


def write_jsonl(path: Path, rows: list[dict]) -> None:
    """Write rows atomically (temporary file, then rename)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(path)
