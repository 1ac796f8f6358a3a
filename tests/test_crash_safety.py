"""A few kill -9 points of tests/crash_safety.py (the full set: `python tests/crash_safety.py`)."""

import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from crash_safety import comparable, run_until_done, train_cmd


@pytest.mark.slow
def test_kill_9_then_resume_gives_the_uninterrupted_records(tmp_path, tiny_dir):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    # 6 steps: a step of this small setting takes a fraction of a second, so kills aimed inside
    # later steps need steps left to land in
    subprocess.run(train_cmd(whole, 6), check=True, capture_output=True)
    kills = run_until_done(killed, 6, [(0, 0.3), (1, 0.3), (1, 0.7)])  # loading; inside two later steps
    assert sum(k["steps_on_disk"] is not None for k in kills) >= 2, kills
    a, b = comparable(whole), comparable(killed)
    assert b["leftovers"] == [] and b["rollout_steps"] == [1, 2, 3, 4, 5, 6]
    assert a == b
