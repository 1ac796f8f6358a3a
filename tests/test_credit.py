"""The process-credit forms (config process_credit: sum | min | clip) and process_weight:
hand-computed cases, loops against the vectorised forms, and the trainer using them."""

from __future__ import annotations

import pytest
import torch

from prime.math.advantages import (
    clipped_line_rewards,
    line_ends,
    line_rewards,
    min_credit,
    process_advantages,
    process_advantages_min,
    rloo_baseline,
)
from prime.math.localise import token_lines

# two responses of one prompt (K = 2), right-padded to T = 5
#   row 0: tokens "a", "b\n", "c", "d\n", "e" -> lines 0, 0, 1, 1, 2; rewards 1, -3, 2, 0, -1
#   row 1: tokens "x\n", "y", "z"            -> lines 0, 1, 1;       rewards 0.5, 0.25, 0.25
TEXTS = [["a", "b\n", "c", "d\n", "e"], ["x\n", "y", "z"]]
R = torch.tensor([[1.0, -3.0, 2.0, 0.0, -1.0], [0.5, 0.25, 0.25, 0.0, 0.0]])
MASK = torch.tensor([[1.0, 1, 1, 1, 1], [1, 1, 1, 0, 0]])


def ends():
    return line_ends([token_lines(t) for t in TEXTS], MASK)


def test_line_ends_and_line_rewards_by_hand():
    assert ends().tolist() == [[0, 1, 0, 1, 1], [1, 0, 1, 0, 0]]
    # row 0: lines sum to -2, 2, -1; row 1: 0.5, 0.5
    assert line_rewards(R, ends(), MASK).tolist() == [[0, -2, 0, 2, -1], [0.5, 0, 0.5, 0, 0]]


def test_min_credit_by_hand():
    # row 0: lines -2, 2, -1 -> future minima -2, -1, -1 ; row 1: 0.5, 0.5 -> 0.5, 0.5
    assert min_credit(R, ends(), MASK).tolist() == [[-2, -2, -1, -1, -1], [0.5, 0.5, 0.5, 0, 0]]
    # baseline: the other sample's credit at its first token (its worst line): row 0 − 0.5, row 1 − (−2)
    assert process_advantages_min(R, ends(), MASK, K=2).tolist() == [[-2.5, -2.5, -1.5, -1.5, -1.5],
                                                                      [2.5, 2.5, 2.5, 0, 0]]


def test_clip_keeps_only_blame_by_hand():
    assert clipped_line_rewards(R, ends(), MASK).tolist() == [[0, -2, 0, 0, -1], [0, 0, 0, 0, 0]]
    # repeating a rewarded step earns nothing under clip, and more under sum
    rep_texts = [["x\n", "x\n", "x\n"], ["x\n", "z", "z"]]
    rep_r = torch.tensor([[0.5, 0.5, 0.5], [0.5, 0.0, 0.0]])
    rep_mask = torch.ones(2, 3)
    rep_ends = line_ends([token_lines(t) for t in rep_texts], rep_mask)
    assert clipped_line_rewards(rep_r, rep_ends, rep_mask).sum() == 0
    assert process_advantages(rep_r, rep_mask, 2)[0, 0] > process_advantages(rep_r, rep_mask, 2)[1, 0]


def slow_min_credit(r, mask, texts):
    out = torch.zeros_like(r)
    for b, toks in enumerate(texts):
        lines = token_lines(toks)
        sums = {}
        for t, line in enumerate(lines):
            sums[line] = sums.get(line, 0.0) + float(r[b, t])
        for t, line in enumerate(lines):
            out[b, t] = min(v for k, v in sums.items() if k >= line)
    return out


@pytest.mark.parametrize("seed", range(5))
def test_min_credit_fast_against_slow(seed):
    g = torch.Generator().manual_seed(seed)
    P, K, T = 3, 4, 9
    pieces = ["a", "b\n", "c", "\n", "d e\n"]
    texts, masks = [], []
    for _ in range(P * K):
        n = int(torch.randint(1, T + 1, (1,), generator=g))
        texts.append([pieces[int(i)] for i in torch.randint(0, len(pieces), (n,), generator=g)])
        masks.append([1.0] * n + [0.0] * (T - n))
    mask = torch.tensor(masks)
    r = torch.randn(P * K, T, generator=g, dtype=torch.float64).float() * mask
    e = line_ends([token_lines(t) for t in texts], mask)
    slow = slow_min_credit(r, mask, texts)
    assert torch.allclose(min_credit(r, e, mask), slow, atol=1e-6)
    first = slow[:, 0]
    expected = (slow - rloo_baseline(first, K).unsqueeze(-1)) * mask
    assert torch.allclose(process_advantages_min(r, e, mask, K), expected, atol=1e-6)
    # line rewards sum to the response's total, and clip never exceeds 0
    assert torch.allclose(line_rewards(r, e, mask).sum(-1), (r * mask).sum(-1), atol=1e-5)
    assert (clipped_line_rewards(r, e, mask) <= 0).all()


@pytest.mark.parametrize("credit", ["sum", "min", "clip"])
def test_advantage_stage_weighs_the_process_term(credit):
    """process_weight 0 is RLOO exactly; weight w scales the process term of every form."""
    from prime.config import TrainConfig
    from prime.math.advantages import outcome_advantages
    from prime.trainer import advantage_stage

    outcome = torch.tensor([1.0, 0.0])
    cfg = lambda w: TrainConfig(samples_per_prompt=2, process_credit=credit, process_weight=w)
    _, r0 = advantage_stage(outcome, R, MASK, cfg(0.0), ends())
    assert torch.equal(r0, outcome_advantages(outcome, MASK, 2))
    _, r1 = advantage_stage(outcome, R, MASK, cfg(1.0), ends())
    _, r2 = advantage_stage(outcome, R, MASK, cfg(2.0), ends())
    assert torch.allclose(r2 - r0, 2 * (r1 - r0), atol=1e-5)
    assert not torch.equal(r1, r0)


@pytest.mark.parametrize("credit", ["min", "clip"])
def test_a_run_records_the_advantages_of_its_credit_form(credit, tmp_path, tiny_dir):
    """One step on tiny: the recorded per-token advantages are what the credit form computes from
    the recorded process rewards, outcomes and tokens (whitened over the batch)."""
    from prime.config import TrainConfig
    from prime.records import read_rollouts
    from prime.trainer import advantage_stage, train

    cfg = TrainConfig(out=str(tmp_path / credit), steps=1, prompts_per_step=2, samples_per_prompt=4, eval_every=0,
                      max_new_tokens=60, filter_low=0.0, filter_high=1.0, prm_sharpen=1.0, reward_norm="none",
                      process_credit=credit, process_weight=0.5)
    train(cfg, progress=False)
    df = read_rollouts(tmp_path / credit, 1)
    df = df[df.filter_decision == "kept"].sort_values(["prompt_id", "sample_idx"])
    T = max(len(t) for t in df.tokens)
    pad = lambda rows: torch.tensor([list(map(float, r)) + [0.0] * (T - len(r)) for r in rows])
    mask = pad([[1.0] * len(t) for t in df.tokens])
    texts = [list(map(str, t)) for t in df.tokens]
    outcome = torch.tensor(df.outcome_reward.fillna(0.0).tolist())  # unscorable (truncated) counts as 0
    advantages, _ = advantage_stage(outcome, pad(df.process_reward), mask, cfg,
                                    line_ends([token_lines(t) for t in texts], mask))
    assert torch.allclose(advantages, pad(df.advantage), atol=1e-4)
    assert any(r != 0 for row in df.process_reward for r in row)


def test_prm_pretrain_round_trip(tmp_path, tiny_dir, capsys):
    """`prime prm pretrain`: the policy stays the start model (its LoRA B exactly 0), the PRM
    learns; `prime train --prm-init` on the printed path starts from exactly that PRM."""
    from safetensors.torch import load_file

    from prime import cli

    out = tmp_path / "warm"
    flags = ["--steps", "2", "--prompts-per-step", "2", "--eval-every", "0", "--max-new-tokens", "60",
             "--filter-low", "0", "--filter-high", "1", "--prm-lr", "1e-2"]
    assert cli.main(["prm", "pretrain", "--out", str(out), *flags]) in (0, None)
    printed = capsys.readouterr().out.strip().splitlines()[-1]
    init = out / "checkpoints" / "step_000002"
    assert printed.endswith(f"--prm-init {init}`")
    policy = load_file(init / "policy" / "adapter_model.safetensors")
    assert all(not v.any() for k, v in policy.items() if "lora_B" in k)  # learning rate 0: never moved
    warm = load_file(init / "prm" / "adapter_model.safetensors")
    assert any(v.any() for k, v in warm.items() if "lora_B" in k)
    run = tmp_path / "after"
    assert cli.main(["train", "--out", str(run), "--prm-init", str(init), "--prm", "frozen", "--steps", "1",
                     "--prompts-per-step", "2", "--eval-every", "0", "--max-new-tokens", "60"]) in (0, None)
    after = load_file(run / "checkpoints" / "step_000001" / "prm" / "adapter_model.safetensors")
    assert after.keys() == warm.keys() and all(torch.equal(after[k], warm[k]) for k in warm)


@pytest.mark.parametrize("argv, needle", [(["--policy-lr", "1e-4"], "--policy-lr"), (["--algo", "rloo"], "--algo prime"),
                                          (["--prm", "frozen"], "--prm online")])
def test_prm_pretrain_refuses_what_would_not_pretrain(argv, needle, tmp_path, capsys):
    from prime import cli

    code = cli.main(["prm", "pretrain", "--out", str(tmp_path / "w"), *argv])
    err = capsys.readouterr().err
    assert code == 2 and needle in err and "Traceback" not in err
    assert not (tmp_path / "w").exists()
