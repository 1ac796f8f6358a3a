"""Reading task files (jsonl, optionally gzipped) with errors that name the file and line."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path

from prime.errors import UserError


def read_jsonl(path: Path, required: tuple[str, ...] = (), skipped: list[str] | None = None) -> list[dict]:
    """All rows of a jsonl file; every row must be a JSON object holding `required` fields.

    Raises UserError naming the file and the 1-based line on malformed JSON, bytes that
    are not UTF-8, a row that is not an object, or a missing field. With `skipped` given (a
    list), bad rows are skipped instead and one message per skipped row is appended to it.
    """
    return list(iter_jsonl(path, required, skipped))


def _check_line(raw: bytes, path: Path, lineno: int, required: tuple[str, ...]) -> dict | None:
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{path}:{lineno}: not UTF-8 text ({e.reason}); re-save the file as UTF-8") from None
    if not line.strip():
        return None
    try:
        row = json.loads(line)
    except json.JSONDecodeError as e:
        raise UserError(f"{path}:{lineno}: malformed JSON ({e.msg} at column {e.colno}); fix or remove the line") from None
    if not isinstance(row, dict):
        raise UserError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
    missing = [k for k in required if k not in row]
    if missing:
        raise UserError(f"{path}:{lineno}: missing field(s) {', '.join(missing)}; each row needs {', '.join(required)}")
    return row


def iter_jsonl(path: Path, required: tuple[str, ...] = (), skipped: list[str] | None = None) -> Iterator[dict]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file; check the path or regenerate the data")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        lineno = 0
        while True:
            lineno += 1
            try:
                raw = f.readline()
            except (OSError, EOFError) as e:
                raise UserError(f"{path}:{lineno}: cannot read ({e}); the file may be truncated") from None
            if not raw:
                return
            try:
                row = _check_line(raw, path, lineno, required)
            except UserError as e:
                if skipped is None:
                    raise
                skipped.append(str(e))
                continue
            if row is not None:
                yield row


def write_jsonl(path: Path, rows: list[dict]) -> None:
    """Write rows atomically (temporary file, then rename)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    tmp.replace(path)
