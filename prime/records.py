"""Run records (ARCHITECTURE.md): writer, reader and schema, in one place.

    runs/<name>/
      config.json          the resolved config, code version, seed, model
      status.json          state, step, last update, error
      metrics.jsonl        one JSON object per step (PRIME_SPEC §9 names)
      rollouts/step_000001.parquet
      checkpoints/step_000010/   (step_000010.partial/ while it is written)

RunDir names every one of these paths; nothing else in the project spells them. Every write
is atomic: a temporary file in the same directory, then a rename.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from prime.errors import UserError

STATES = ("running", "finished", "failed", "stopped")

ROLLOUT_SCHEMA = pa.schema([
    ("step", pa.int64()), ("prompt_id", pa.int64()), ("sample_idx", pa.int64()),
    ("prompt", pa.string()), ("response", pa.string()), ("reference_answer", pa.string()),
    ("outcome_reward", pa.float64()), ("verifier_detail", pa.string()),
    ("prompt_acc", pa.float64()), ("filter_decision", pa.string()),
    ("token_ids", pa.list_(pa.int64())), ("tokens", pa.list_(pa.string())),
    ("policy_logp_old", pa.list_(pa.float64())), ("prm_logp", pa.list_(pa.float64())),
    ("ref_logp", pa.list_(pa.float64())), ("process_reward", pa.list_(pa.float64())),
    ("advantage", pa.list_(pa.float64())),
    ("first_wrong_line", pa.int64()),  # wrong arith responses: index of the first wrong line (prime.tasks.arith)
])


@dataclass(frozen=True)
class RunDir:
    """A run directory's layout, and the reads and writes that know it."""

    path: Path

    def __post_init__(self):
        object.__setattr__(self, "path", Path(self.path))

    # the layout ------------------------------------------------------------------------------
    CONFIG, STATUS, METRICS, ROLLOUTS, CHECKPOINTS = "config.json", "status.json", "metrics.jsonl", "rollouts", "checkpoints"

    @property
    def config_file(self) -> Path:
        return self.path / self.CONFIG

    @property
    def status_file(self) -> Path:
        return self.path / self.STATUS

    @property
    def metrics_file(self) -> Path:
        return self.path / self.METRICS

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / self.CHECKPOINTS

    @staticmethod
    def step_name(step: int) -> str:
        return f"step_{int(step):06d}"

    @staticmethod
    def step_of(name: str) -> int | None:
        """The step a `step_NNNNNN[.parquet]` name holds; None for anything else (`.partial`, junk)."""
        digits = name.removeprefix("step_").removesuffix(".parquet")
        return int(digits) if name.startswith("step_") and digits.isdigit() else None

    def rollouts_file(self, step: int) -> Path:
        return self.path / self.ROLLOUTS / f"{self.step_name(step)}.parquet"

    def checkpoint(self, step: int) -> Path:
        return self.checkpoints_dir / self.step_name(step)

    def partial_checkpoint(self, step: int) -> Path:
        """Where a checkpoint is written before its rename: readers never take it for one."""
        return self.checkpoints_dir / f"{self.step_name(step)}.partial"

    def is_run(self) -> bool:
        return any(f.exists() for f in (self.config_file, self.status_file, self.metrics_file))

    # what is there ---------------------------------------------------------------------------
    def checkpoint_steps(self) -> list[int]:
        """Steps with a complete checkpoint (directories, not links), in order."""
        if not self.checkpoints_dir.is_dir():
            return []
        return sorted(s for p in self.checkpoints_dir.iterdir()
                      if (s := self.step_of(p.name)) is not None and p.is_dir() and not p.is_symlink())

    def latest_checkpoint(self) -> Path | None:
        steps = self.checkpoint_steps()
        return self.checkpoint(steps[-1]) if steps else None

    def rollout_steps(self) -> list[int]:
        """Steps with a rollouts file, in order."""
        d = self.path / self.ROLLOUTS
        if not d.is_dir():
            return []
        return sorted(s for p in d.glob("step_*.parquet") if (s := self.step_of(p.name)) is not None and not p.is_symlink())

    # reads -----------------------------------------------------------------------------------
    def config(self) -> dict:
        return read_json(self.config_file)

    def model_name(self) -> str:
        return model_name_of(self.config())

    def status(self) -> dict:
        return read_json(self.status_file)

    def metrics(self) -> list[dict]:
        return read_metrics(self.path)

    def rollouts(self, step: int):
        return read_rollouts(self.path, step)

    # the resume surgery ----------------------------------------------------------------------
    def truncate_after(self, step: int) -> None:
        """Drop every record of the steps after `step` (what a run wrote past its last
        checkpoint), and what a killed writer left half-written."""
        remove_partial_writes(self.path)
        kept = [m for m in read_metrics(self.path) if m["step"] <= step]
        atomic_write_bytes(self.metrics_file, "".join(json.dumps(m) + "\n" for m in kept).encode())
        for s in self.rollout_steps():
            if s > step:
                self.rollouts_file(s).unlink()


def model_name_of(config: dict) -> str:
    """The model of a run's config: config.json records it resolved ({"name", ...}); a config
    file may give the name alone."""
    model = config.get("model", "")
    return str(model.get("name", "")) if isinstance(model, dict) else str(model)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def remove_partial_writes(run: Path) -> list[Path]:
    """Delete what a killed writer left: `.NAME.PID.tmp` files and `*.partial` checkpoint dirs.
    Readers never take them for records (their names differ); resume tidies them away."""
    import shutil

    gone = []
    for p in list(run.glob(".*.tmp")) + list(run.glob("*/.*.tmp")) + list(run.glob(f"{RunDir.CHECKPOINTS}/*.partial")):
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        gone.append(p)
    return gone


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, allow_nan=False) + "\n").encode())


def code_version() -> str:
    """The git commit of the engine (with '+dirty' for local changes), or 'unknown'."""
    root = Path(__file__).resolve().parents[1]
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, check=False, capture_output=True, text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               check=False, capture_output=True, text=True, timeout=5).stdout.strip()
        return (rev + ("+dirty" if dirty else "")) or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def write_status(run: Path, state: str, step: int, error: str | None = None, **extra) -> None:
    assert state in STATES, state
    atomic_write_json(RunDir(run).status_file, {"state": state, "step": step, "updated": time.time(), "error": error, **extra})


def append_metrics(run: Path, metrics: dict) -> None:
    """Rewrite metrics.jsonl with one more line (atomic: never a half-written line).

    Rewriting is O(steps) per step, which stays small (kilobytes per step) next to a step's
    compute, and keeps the file consistent after a crash at any moment.
    """
    path = RunDir(run).metrics_file
    old = path.read_bytes() if path.exists() else b""
    atomic_write_bytes(path, old + (json.dumps(metrics, allow_nan=False) + "\n").encode())


def write_rollouts(run: Path, step: int, rows: list[dict]) -> Path:
    path = RunDir(run).rollouts_file(step)
    table = pa.Table.from_pylist(rows, schema=ROLLOUT_SCHEMA)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")  # a quarter smaller than the default snappy
    atomic_write_bytes(path, sink.getvalue().to_pybytes())
    return path


def read_metrics(run: Path) -> list[dict]:
    path = RunDir(run).metrics_file
    if not path.exists():
        return []
    out = []
    for i, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise UserError(f"{path}:{i}: malformed metrics line ({e.msg}); the run's records are damaged") from None
    return out


def read_rollouts(run: Path, step: int):
    """The step's rollouts as a pandas DataFrame."""
    path = RunDir(run).rollouts_file(step)
    try:
        return pq.read_table(path).to_pandas()
    except FileNotFoundError:
        raise UserError(f"{path}: no rollouts for step {step}") from None
    except (pa.ArrowException, OSError) as e:
        raise UserError(f"{path}: unreadable parquet ({e}); the file is damaged") from None


def read_json(path: Path) -> dict:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not valid JSON ({e}); the run's records are damaged") from None
    if not isinstance(obj, dict):
        raise UserError(f"{path}: expected a JSON object")
    return obj
