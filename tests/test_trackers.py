"""--report-to: the metrics (same names, same values) and a completions table reach trackio,
TensorBoard and W&B (offline); read back from each tool's own store."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys

import pytest

from prime.config import TrainConfig
from prime.errors import UserError
from prime.records import read_metrics

pytestmark = pytest.mark.slow  # a training run in a subprocess with three trackers


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory, tiny_dir):
    for package in ("trackio", "tensorboard", "wandb"):
        pytest.importorskip(package)
    root = tmp_path_factory.mktemp("tracked")
    run = root / "tracked"
    env = {**os.environ, "TRACKIO_DIR": str(root / "trackio"), "WANDB_MODE": "offline", "WANDB_SILENT": "true",
           "WANDB_DISABLE_GIT": "true", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-m", "prime", "train", "--out", str(run), "--steps", "2",
                             "--prompts-per-step", "2", "--max-new-tokens", "60", "--eval-every", "2", "--eval-n", "4",
                             "--report-to", "trackio,tensorboard,wandb", "--report-table-every", "1",
                             "--report-project", "prime-test"], check=False, capture_output=True, text=True, env=env, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return run, env


def expected(run) -> dict[int, dict]:
    return {m["step"]: {k: v for k, v in m.items() if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "step"}
            for m in read_metrics(run)}


def test_trackio_store_holds_the_metrics(tracked_run):
    run, env = tracked_run
    code = ("import json; from trackio.sqlite_storage import SQLiteStorage as S; "
            "print(json.dumps(S.get_logs('prime-test', 'tracked'), default=str))")
    logs = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                                     check=True).stdout.strip().splitlines()[-1])
    want = expected(run)
    got = {}
    for row in logs:
        got.setdefault(row["step"], {}).update(row)
    assert sorted(want) == sorted(got)
    for step, values in want.items():
        for k, v in values.items():
            assert got[step][k] == pytest.approx(v), (step, k)
    assert any("completions" in row for row in logs)


def test_tensorboard_events_hold_the_metrics(tracked_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run, _ = tracked_run
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    want = expected(run)
    for name in ("acc", "eval/acc", "reward_model/loss", "actor/pg_loss"):
        series = {e.step: e.value for e in events.Scalars(name)}
        assert series == pytest.approx({s: v[name] for s, v in want.items() if name in v}), name
    assert "completions/text_summary" in events.Tags()["tensors"]


def wandb_records(path) -> list[bytes]:
    """The records of a .wandb file: a 7-byte header (":W&B", magic, version), then LevelDB-log
    blocks of 32 KiB holding records with a (crc32, length, type) header; types FULL, FIRST,
    MIDDLE, LAST. (wandb ≥ 0.2x writes it from Go and no longer ships a Python reader.)"""
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, out, pending = 7, 32768, [], b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0:  # zero padding up to the block's end
            pos += left
            continue
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind == 1:
            out.append(chunk)
        elif kind == 2:
            pending = chunk
        elif kind == 3:
            pending += chunk
        elif kind == 4:
            out.append(pending + chunk)
            pending = b""
    return out


def test_wandb_offline_history_holds_the_metrics(tracked_run):
    from wandb.proto import wandb_internal_pb2

    run, _ = tracked_run
    files = list((run / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == 1
    history = {}
    for raw in wandb_records(files[0]):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(raw)
        if record.HasField("history"):
            items = {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item}
            history[items["_step"]] = items
    want = expected(run)
    assert sorted(want) == sorted(history)
    for step, values in want.items():
        for k, v in values.items():
            assert history[step][k] == pytest.approx(v), (step, k)
    assert any(k.startswith("completions/") for h in history.values() for k in h)  # the table's reference
    tables = list(files[0].parent.glob("files/media/table/completions_*.table.json"))
    assert tables and "response" in json.loads(tables[0].read_text())["columns"]


def test_tracker_names_and_packages_are_checked(monkeypatch):
    from prime import trackers

    with pytest.raises(UserError, match="unknown tracker.*mlflow"):
        TrainConfig(report_to="tensorboard,mlflow")
    monkeypatch.setattr(trackers.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError, match="pip install wandb"):
        trackers.check_installed(["wandb"])
