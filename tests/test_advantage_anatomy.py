"""benchmarks/advantage_anatomy.py takes a step's advantages apart into the outcome and the process
term of Eq. 5; hand-computed on one prompt with K = 2 (3 tokens, one per line)."""

import importlib.util
import statistics
from pathlib import Path

import pandas as pd
import pytest
import torch

from prime.config import TrainConfig
from prime.math.advantages import whiten

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def anatomy():
    spec = importlib.util.spec_from_file_location("advantage_anatomy", ROOT / "benchmarks" / "advantage_anatomy.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def kept(process: list[list[float]], returns: list[list[float]]) -> pd.DataFrame:
    """Response 0 right, response 1 wrong from its line 1; the recorded advantages = whitened returns."""
    advantage = whiten(torch.tensor(returns), torch.ones(2, 3))
    return pd.DataFrame({"tokens": [["a\n", "b\n", "c"]] * 2, "outcome_reward": [1.0, 0.0], "process_reward": process,
                         "advantage": advantage.tolist(), "first_wrong_line": [None, 1]})


def test_weight_one(anatomy):
    # outcome term ±1; process: mean rewards 0.1 / -0.1, shaped r - (other's mean), summed from each token on
    process = [[0.1, 0.1, 0.1], [0.3, -0.6, 0.0]]
    proc = [0.6, 0.4, 0.2, -0.6, -0.8, -0.1]
    total = [1.6, 1.4, 1.2, -1.6, -1.8, -1.1]
    got = anatomy.step_anatomy(kept(process, [total[:3], total[3:]]),
                               TrainConfig(algo="prime", samples_per_prompt=2, reward_norm="none"))
    assert got["max_abs_diff"] < 1e-6
    assert got["process_share"] == pytest.approx(statistics.variance(proc) / statistics.variance(total), rel=1e-5)
    assert got["sign_flips"] == 0
    # wrong response: its line 0 gets -0.6, its first wrong line -0.8; outcome term's sd = sqrt(6/5)
    assert got["prefix_relief"] == pytest.approx(0.2 / (6 / 5) ** 0.5, rel=1e-5)
    assert got["n_wrong_localised"] == 1


def test_an_unscorable_response_counts_as_wrong(anatomy):
    """A response the verifier could not score is recorded with outcome None (NaN in the DataFrame);
    the trainer rewarded it 0, so the anatomy does too (it had made the whole step NaN)."""
    process = [[0.1, 0.1, 0.1], [0.3, -0.6, 0.0]]
    total = [[1.6, 1.4, 1.2], [-1.6, -1.8, -1.1]]
    cfg = TrainConfig(algo="prime", samples_per_prompt=2, reward_norm="none")
    scored, unscorable = kept(process, total), kept(process, total)
    unscorable["outcome_reward"] = [1.0, None]
    assert unscorable["outcome_reward"].isna().tolist() == [False, True]
    assert anatomy.step_anatomy(unscorable, cfg) == anatomy.step_anatomy(scored, cfg)


def test_a_heavy_process_weight_flips_signs(anatomy):
    # mean rewards -1/6 and -0.1; process returns ×8 against the outcome term's ±1
    process = [[-0.5, 0.0, 0.0], [0.3, -0.6, 0.0]]
    total = [[-0.6, 2.6, 1.8], [0.6, -1 - 8 * 0.8 / 3, -1 + 8 / 6]]
    got = anatomy.step_anatomy(kept(process, total),
                               TrainConfig(algo="prime", samples_per_prompt=2, reward_norm="none", process_weight=8))
    assert got["max_abs_diff"] < 1e-5
    assert got["sign_flips"] == pytest.approx(3 / 6)  # response 0's first token, response 1's first and last
