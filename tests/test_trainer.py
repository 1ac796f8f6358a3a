"""A 2-step PRIME smoke run on `tiny` in 4-bit (STYLE.md §9): adapters change, the quantised
base does not, and the records are complete and recompute."""

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from prime.config import TrainConfig
from prime.math.advantages import outcome_advantages, process_advantages, whiten
from prime.math.filtering import filter_decisions
from prime.math.rewards import batch_norm_rewards, implicit_rewards
from prime.records import ROLLOUT_SCHEMA, read_metrics

METRICS = ["acc", "reward_model/loss", "reward_model/dpo_acc_before", "reward_model/grad_norm", "actor/pg_loss",
           "actor/pg_clipfrac", "actor/ppo_kl", "actor/entropy", "actor/grad_norm", "critic/advantages/mean",
           "critic/returns/mean", "response_length/mean", "response_length/clip_ratio", "timing_s/gen", "timing_s/step",
           "filter/kept", "filter/surplus", "filter/too_easy", "filter/too_hard", "filter/truncated", "filter/draws", "eval/acc",
           "eval/acc_sampled", "acc/kept", "reward_model/pairwise_acc_pooled", "reward_model/ref_ll_pairwise_acc",
           "critic/process_share"]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, tiny_dir):
    from prime import trainer

    run = tmp_path_factory.mktemp("runs") / "smoke"
    cfg = TrainConfig(out=str(run), steps=2, prompts_per_step=2, eval_every=2, eval_n=8, max_new_tokens=100,
                      policy_lr=1e-3, prm_lr=1e-3)
    captured = {}
    real_train = trainer.one_step

    def spy(state, roles, *args, **kwargs):
        if "before" not in captured:
            captured["before"] = {n: p.detach().clone() for n, p in roles.shared.named_parameters()}
        out = real_train(state, roles, *args, **kwargs)
        captured["after"] = {n: p.detach().clone() for n, p in roles.shared.named_parameters()}
        return out

    trainer.one_step = spy
    try:
        trainer.train(cfg, progress=False)
    finally:
        trainer.one_step = real_train
    return run, cfg, captured


def test_adapters_changed_base_did_not(smoke_run):
    _, _, cap = smoke_run
    before, after = cap["before"], cap["after"]
    for role in ("policy", "prm"):  # every adapted projection learned, not only some (a repacked 4-bit layer blocks gradients)
        names = [n for n in before if "lora_B" in n and f".{role}." in n]
        unchanged = [n for n in names if torch.equal(before[n], after[n])]
        assert len(names) == 28 and unchanged == [], f"{role}: {len(unchanged)} of {len(names)} unchanged, e.g. {unchanged[:2]}"
    frozen = [n for n in before if "lora_" not in n]
    assert frozen and all(torch.equal(before[n], after[n]) for n in frozen)


def test_records_complete(smoke_run):
    run, cfg, _ = smoke_run
    assert json.loads((run / "status.json").read_text())["state"] == "finished"
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["name"] == "tiny" and config["seed"] == 0 and config["code_version"]
    metrics = read_metrics(run)
    assert [m["step"] for m in metrics] == [0, 1, 2]  # step 0: the evaluation before training
    assert set(metrics[0]) == {"step", "eval/acc", "eval/acc_sampled", "timing_s/eval"}
    for name in METRICS:
        assert name in metrics[-1], name
    # the first PPO step: the policy's log-probs with grad equal the old (no-grad) ones exactly
    assert metrics[1]["actor/ppo_kl"] == 0.0 and metrics[1]["actor/pg_clipfrac"] == 0.0
    for step in (1, 2):
        df = pd.read_parquet(run / "rollouts" / f"step_{step:06d}.parquet")
        assert list(df.columns) == ROLLOUT_SCHEMA.names
        assert (df.groupby("prompt_id").size() == cfg.samples_per_prompt).all()
        assert (df.token_ids.map(len) == df.tokens.map(len)).all()
        kept = df[df.filter_decision == "kept"]
        assert len(kept) == cfg.prompts_per_step * cfg.samples_per_prompt
        for col in ("policy_logp_old", "prm_logp", "ref_logp", "process_reward", "advantage"):
            assert (kept[col].map(len) == kept.token_ids.map(len)).all(), col
        assert (run / "checkpoints" / f"step_{step:06d}" / "prm" / "adapter_model.safetensors").is_file()


def test_records_recompute(smoke_run):
    """Process rewards, advantages and filter decisions recompute from the rollouts file (1e-5)."""
    run, cfg, _ = smoke_run
    K = cfg.samples_per_prompt
    localised = []
    for step in (1, 2):
        df = pd.read_parquet(run / "rollouts" / f"step_{step:06d}.parquet")
        decisions = filter_decisions(torch.tensor(df.groupby("prompt_id", sort=False).prompt_acc.first().values))
        recorded = [d.replace("surplus", "kept") for d in df.groupby("prompt_id", sort=False).filter_decision.first()]
        assert decisions == recorded
        kept = df[df.filter_decision == "kept"]
        T = kept.token_ids.map(len).max()
        pad = lambda col, T=T, kept=kept: torch.tensor([list(v) + [0.0] * (T - len(v)) for v in kept[col]],
                                                       dtype=torch.float64)
        mask = torch.tensor([[1.0] * len(v) + [0.0] * (T - len(v)) for v in kept.token_ids], dtype=torch.float64)
        raw = implicit_rewards(pad("prm_logp"), pad("ref_logp"), mask, cfg.beta)
        process = batch_norm_rewards(raw, mask)
        torch.testing.assert_close(process, pad("process_reward"), atol=1e-5, rtol=0)
        outcome = torch.tensor(kept.outcome_reward.fillna(0.0).values, dtype=torch.float64)
        returns = outcome_advantages(outcome, mask, K) + process_advantages(pad("process_reward"), mask, K)
        torch.testing.assert_close(whiten(returns, mask), pad("advantage"), atol=1e-5, rtol=0)
        # the process check and the metrics made of it
        from prime.math.localise import localisation_rates, localise
        from prime.math.losses import pairwise_accuracy
        from prime.tasks.arith import first_wrong_line

        for r in df.itertuples():
            expected = first_wrong_line(r.prompt, r.response) if r.outcome_reward == 0 else None
            assert (None if pd.isna(r.first_wrong_line) else int(r.first_wrong_line)) == expected
        m = next(m for m in read_metrics(run) if m["step"] == step)
        # the process term's share of the returns' variance, by hand
        tokens = mask.bool()
        share = (returns - outcome_advantages(outcome, mask, K))[tokens].var() / returns[tokens].var()
        assert m["critic/process_share"] == pytest.approx(share.item(), abs=1e-5)
        ref_ll = (pad("ref_logp") * mask).sum(-1)
        assert m["reward_model/ref_ll_pairwise_acc"] == pytest.approx(pairwise_accuracy(ref_ll, outcome, K).item(), abs=1e-6)
        checked = kept[kept.first_wrong_line.notna()]
        rates = localisation_rates([localise([cfg.beta * (a - b) for a, b in zip(r.prm_logp, r.ref_logp)], list(r.tokens),
                                             int(r.first_wrong_line)) for r in checked.itertuples()])
        if rates["n"]:
            localised.append(step)
            assert m["localise/n"] == rates["n"]
            assert m["localise/prm_line_hit"] == pytest.approx(rates["line_hit"], abs=1e-9)
            assert m["localise/token_chance"] == pytest.approx(rates["token_chance"], abs=1e-9)
        else:  # nothing to localise this step: the metrics say nothing rather than 0
            assert "localise/n" not in m
    assert localised, "no step of the smoke run had a kept wrong response to localise: the check above never ran"


def _comparable(run, step):
    df = pd.read_parquet(run / "rollouts" / f"step_{step:06d}.parquet")
    for col in ("outcome_reward", "first_wrong_line"):  # null (unscorable, not wrong): NaN never equals NaN
        df[col] = df[col].fillna(-1)
    return {c: [list(v) if hasattr(v, "__len__") and not isinstance(v, str) else v for v in df[c]] for c in df.columns}


LEVERS = {"sampler": "adapter", "gradient_checkpointing": True, "optimizer": "adamw8bit", "micro_batch_tokens": 150,
          "sample_rows": 5}


@pytest.mark.parametrize("levers", [{}, LEVERS], ids=["defaults", "memory-levers"])
def test_stop_and_resume_gives_the_same_records(tmp_path, tiny_dir, levers):
    """Stopped after step 2 and resumed: the records of an uninterrupted run. Also with every
    memory lever on (the unmerged sampler in batches of 5 rows, checkpointing, 8-bit optimizer
    states saved and restored, micro-batches by tokens)."""
    from prime.trainer import train

    common = {"prompts_per_step": 2, "eval_every": 0, "max_new_tokens": 100, "policy_lr": 1e-3, "prm_lr": 1e-3, **levers}
    whole = tmp_path / "whole"
    train(TrainConfig(out=str(whole), steps=3, **common), progress=False)
    part = tmp_path / "part"
    train(TrainConfig(out=str(part), steps=2, **common), progress=False)
    assert json.loads((part / "status.json").read_text())["step"] == 2
    train(TrainConfig(out=str(part), steps=3, **common), resume=True, progress=False)
    strip = lambda ms: [{k: v for k, v in m.items() if not k.startswith(("timing_s/", "time/"))} for m in ms]
    assert strip(read_metrics(part)) == strip(read_metrics(whole))
    for step in (1, 2, 3):
        assert _comparable(part, step) == _comparable(whole, step), step
    assert json.loads((whole / "config.json").read_text())["model"]["sampler"] == ("adapter" if levers else "merged")


def test_non_finite_loss_fails_the_run_cleanly(tmp_path, tiny_dir, monkeypatch):
    from prime import trainer
    from prime.errors import UserError

    run = tmp_path / "nan"
    cfg = TrainConfig(out=str(run), steps=2, prompts_per_step=2, eval_every=0, max_new_tokens=100)
    real = trainer.ppo_loss
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        loss, stats = real(*args, **kwargs)
        calls["n"] += 1
        return (loss * float("nan"), stats) if calls["n"] > 1 else (loss, stats)

    # step 1 trains normally (one micro-batch); step 2's loss is NaN
    monkeypatch.setattr(trainer, "ppo_loss", poisoned)
    with pytest.raises(UserError, match="non-finite"):
        trainer.train(cfg, progress=False)
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "failed" and "non-finite" in status["error"] and status["step"] == 1
    from prime.models import Roles

    roles = Roles(tiny_dir, device=torch.device("cpu"))
    roles.load_adapters(run / "checkpoints" / "step_000001")  # the last checkpoint stays loadable


def test_a_prm_update_leaves_the_policy_and_reference_alone(tiny_dir):
    from prime.models import Roles, make_batch
    from prime.trainer import prm_stage

    torch.manual_seed(0)
    roles = Roles(tiny_dir, device=torch.device("cpu"))
    tok = roles.tokenizer
    prompts = [tok.encode("Start with 3. Add 4.")] * 4
    responses = [tok.encode(" 3 + 4 = 7. The answer is \\boxed{7}."), tok.encode(" 3 + 4 = 8. The answer is \\boxed{8}.")] * 2
    batch = make_batch(prompts, responses, tok.pad_token_id)
    mask = batch.response_mask.float()
    outcome = torch.tensor([1.0, 0.0, 1.0, 0.0])
    cfg = TrainConfig(prm_lr=1e-2)
    opt = torch.optim.AdamW(roles.adapter_parameters("prm"), lr=cfg.prm_lr)
    before = {r: roles.logprobs(r, batch) for r in ("policy", "ref", "prm")}
    prm_stage(roles, batch, mask, outcome, cfg, opt)
    torch.testing.assert_close(roles.logprobs("policy", batch), before["policy"], atol=0, rtol=0)
    torch.testing.assert_close(roles.logprobs("ref", batch), before["ref"], atol=0, rtol=0)
    assert not torch.allclose(roles.logprobs("prm", batch), before["prm"])


def test_code_task_runs_through_the_sandboxed_verifier(tmp_path, tiny_dir):
    from prime.trainer import train

    run = tmp_path / "code"
    train(TrainConfig(out=str(run), task="code", steps=1, prompts_per_step=2, eval_every=0, max_new_tokens=40),
          progress=False)
    df = pd.read_parquet(run / "rollouts" / "step_000001.parquet")
    assert len(df) >= 8 and df.verifier_detail.str.contains("unscorable|passed").all()
    assert json.loads((run / "status.json").read_text())["state"] == "finished"


def test_an_enormous_prompt_is_a_clear_error_or_skipped(tiny_dir):
    from prime.errors import UserError
    from prime.models import load_tokenizer
    from prime.trainer import fit_context

    tok = load_tokenizer(tiny_dir)
    rows = [{"id": "ok", "prompt": "Start with 2. Add 3. What is the result?"}, {"id": "huge", "prompt": "Add 1. " * 5000}]
    with pytest.raises(UserError, match="row huge: the prompt is .* tokens"):
        fit_context(rows, tok, 256, 128, None, "arith")
    skipped = []
    assert [r["id"] for r in fit_context(rows, tok, 256, 128, skipped, "arith")] == ["ok"]
    assert len(skipped) == 1 and "row huge" in skipped[0]


def test_a_frozen_prm_starts_from_prm_init_and_never_moves(smoke_run, tmp_path):
    """--prm frozen --prm-init CKPT: the paper's offline-PRM ablation. The PRM is the checkpoint's
    (so process rewards are not 0) and is bit-identical after training."""
    from safetensors.torch import load_file

    from prime.records import read_rollouts
    from prime.trainer import train

    source, _, _ = smoke_run
    init = source / "checkpoints" / "step_000002"
    run = tmp_path / "frozen"
    train(TrainConfig(out=str(run), algo="prime", prm="frozen", prm_init=str(init), steps=1, prompts_per_step=2,
                      eval_every=0, max_new_tokens=100, filter_low=0.0, filter_high=1.0), progress=False)
    before = load_file(init / "prm" / "adapter_model.safetensors")
    after = load_file(run / "checkpoints" / "step_000001" / "prm" / "adapter_model.safetensors")
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    rewards = read_rollouts(run, 1)["process_reward"]
    assert any(abs(r) > 0 for row in rewards for r in row)


def test_prm_init_without_an_adapter_is_a_clear_error(tmp_path, tiny_dir):
    from prime.errors import UserError
    from prime.trainer import train

    with pytest.raises(UserError, match="no prm adapter"):
        train(TrainConfig(out=str(tmp_path / "r"), prm_init=str(tmp_path), steps=1, eval_every=0), progress=False)


def test_surplus_prompts_return_without_their_responses(tmp_path, tiny_dir, monkeypatch):
    """PRIME_SPEC §4: a prompt kept after the step already has P goes back to the buffer as a
    prompt only; the next step samples it again with the then-current policy."""
    from prime import trainer
    from prime.math.filtering import KEPT, TOO_HARD
    from prime.records import read_rollouts

    script = iter([[KEPT, TOO_HARD], [KEPT, KEPT], [KEPT, KEPT]])  # draw 2 leaves one kept prompt over

    def scripted(groups, cfg):
        for g, d in zip(groups, next(script)):
            g.decision = d

    monkeypatch.setattr(trainer, "decide", scripted)
    run = tmp_path / "surplus"
    trainer.train(TrainConfig(out=str(run), steps=2, prompts_per_step=2, eval_every=0, max_new_tokens=30), progress=False)
    one, two = read_rollouts(run, 1), read_rollouts(run, 2)
    surplus = one[one.filter_decision == "surplus"].prompt_id.unique().tolist()
    assert len(surplus) == 1 and (one.filter_decision == "kept").sum() == 2 * 4
    assert one[one.filter_decision == "surplus"].advantage.map(len).eq(0).all()  # not trained in step 1
    state1 = json.loads((run / "checkpoints" / "step_000001" / "state.json").read_text())
    assert state1["buffer"] == surplus  # the prompt id only
    again = two[two.prompt_id == surplus[0]]
    assert len(again) == 4 and (again.step == 2).all() and (again.filter_decision == "kept").all()
    assert two.prompt_id.iloc[0] == surplus[0]  # drawn first
    metrics = read_metrics(run)
    assert [m["filter/surplus"] for m in metrics] == [1, 0]


def test_mini_batch_steps_and_reference_options(tmp_path, tiny_dir):
    """4 PRM and 4 policy optimizer steps per iteration and veRL's last-token zeroing run and
    record: the last token of every kept response has process reward exactly 0."""
    from prime.records import read_rollouts
    from prime.trainer import train

    run = tmp_path / "verl"
    train(TrainConfig(out=str(run), steps=1, prompts_per_step=2, eval_every=0, max_new_tokens=60, prm_mini_batches=4,
                      ppo_mini_batches=4, prm_update="double", zero_last_process_reward=True, prm_lr=1e-3), progress=False)
    kept = read_rollouts(run, 1).query("filter_decision == 'kept'")
    assert len(kept) == 8 and all(len(r) and r[-1] == 0.0 and any(x != 0 for x in r) for r in kept.process_reward)
    assert read_metrics(run)[-1]["reward_model/loss"] > 0


def test_checkpoint_retention(tmp_path):
    """The last N, every Kth and the final step stay; the rest go (and half-written ones are left
    for resume to clean up)."""
    from prime.trainer import latest_checkpoint, prune_checkpoints

    run = tmp_path / "r"
    for step in range(1, 121):
        (run / "checkpoints" / f"step_{step:06d}").mkdir(parents=True)
    (run / "checkpoints" / "step_000121.partial").mkdir()
    cfg = TrainConfig(steps=200, keep_last_checkpoints=2, keep_checkpoint_every=50)
    dropped = prune_checkpoints(run, cfg)
    left = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert left == ["step_000050", "step_000100", "step_000119", "step_000120", "step_000121.partial"]
    assert len(dropped) == 116 and latest_checkpoint(run).name == "step_000120"
    prune_checkpoints(run, TrainConfig(steps=119, keep_last_checkpoints=1, keep_checkpoint_every=0))
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_000119", "step_000120", "step_000121.partial"]


def test_the_data_stream_wraps_into_new_epochs():
    from prime.trainer import LoopState, data_order, next_prompts

    state = LoopState()
    drawn = [next_prompts(state, 3, 5, seed=7) for _ in range(4)]  # 12 prompts from 5 rows
    flat = [i for ids in drawn for i in ids]
    assert flat[:5] == list(data_order(5, 7)) and sorted(flat[:5]) == list(range(5))  # the first epoch as always
    assert flat[5:10] == list(data_order(5, 7, 1)) and sorted(flat[5:10]) == list(range(5))
    assert (state.epoch, state.cursor) == (2, 2)
    assert LoopState(step=3, cursor=1, buffer=[]).epoch == 0  # checkpoints from before epochs


def test_prime_eval_reproduces_the_runs_own_evaluation(tmp_path, tiny_dir, capsys):
    """`prime eval --run R --step S` is the run's evaluation at S: the same rows (trainer.task_rows:
    also the system prompt), temperature, length and seed, so the same numbers as the run's own
    eval/* at S. (It sampled at temperature 1 with seed 0 and dropped the system prompt before.)"""
    import json

    from prime import cli
    from prime.records import read_metrics
    from prime.trainer import train

    run = tmp_path / "run"
    train(TrainConfig(out=str(run), steps=2, prompts_per_step=2, eval_every=2, eval_n=24, max_new_tokens=128,
                      temperature=0.7, filter_low=0.0, filter_high=1.0),
          progress=False)
    recorded = next(m for m in read_metrics(run) if m["step"] == 2)
    capsys.readouterr()
    assert cli.main(["eval", "--run", str(run), "--step", "2"]) in (0, None)
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["n"] == 24 and out["temperature"] == 0.7
    assert (out["greedy_acc"], out["sampled_acc"]) == (recorded["eval/acc"], recorded["eval/acc_sampled"])
    assert recorded["eval/acc"] > 0 or recorded["eval/acc_sampled"] > 0  # something to reproduce


def test_a_prm_checkpoint_ranks_the_rollouts_it_scored(smoke_run):
    """benchmarks/prm_transfer.py scores a run's recorded rollouts with a PRM checkpoint: the PRM
    saved after step 1 is the one that scored step 2's rollouts, so its pairwise accuracy there is
    the run's own, recomputed from a fresh model."""
    import importlib.util

    from prime.math.losses import pairwise_accuracy

    run, cfg, _ = smoke_run
    spec = importlib.util.spec_from_file_location("prm_transfer", Path(__file__).resolve().parents[1] / "benchmarks"
                                                  / "prm_transfer.py")
    transfer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(transfer)
    [row] = transfer.transfer(run / "checkpoints" / "step_000001", run, [2])
    assert row["prm"] == pytest.approx(row["run_own_prm"], abs=1e-6)
    df = pd.read_parquet(run / "rollouts" / "step_000002.parquet")
    kept = df[df.filter_decision == "kept"]
    ref_ll = torch.tensor([sum(r) for r in kept.ref_logp])
    outcome = torch.tensor(kept.outcome_reward.fillna(0.0).values, dtype=torch.float32)
    assert row["reference_ll"] == pytest.approx(pairwise_accuracy(ref_ll, outcome, cfg.samples_per_prompt).item(), abs=1e-6)


def test_a_prompt_drawn_twice_in_one_step_keeps_each_groups_own_records():
    """A step that crosses an epoch boundary can draw a prompt twice. Each group's record rows must
    hold its own batch rows: keyed by prompt id, the second group's advantages overwrote the first's
    (found in the fair batch's paper-s3, step 220, by benchmarks/advantage_anatomy.py)."""
    from prime.trainer import Group, rollout_rows

    def group(outcome):
        return Group(prompt_id=7, prompt="p", answer="1", prompt_ids=[1], responses=[[5, 6], [5, 6]],
                     texts=["a", "b"], outcome=outcome, detail=["", ""], truncated=[False, False],
                     acc=sum(outcome) / 2, decision="kept")

    first, second = group([1.0, 0.0]), group([0.0, 1.0])
    rows4 = torch.arange(8, dtype=torch.float32).reshape(4, 2)  # batch row b holds [2b, 2b+1]
    per_row = [rows4[b] for b in range(4)]
    rows = rollout_rows(3, [first, second], None, per_row, per_row, per_row, per_row, per_row,
                        kept=[first, second], texts=[["x", "y"]] * 4)
    assert [r["advantage"] for r in rows] == [[0.0, 1.0], [2.0, 3.0], [4.0, 5.0], [6.0, 7.0]]
    assert [r["outcome_reward"] for r in rows] == [1.0, 0.0, 0.0, 1.0]

    class Chars:  # a stand-in tokenizer: token id i is the character chr(i)
        def decode(self, ids, **_):
            return "".join(map(chr, ids))

    filtered = rollout_rows(3, [first, second], Chars(), per_row, per_row, per_row, per_row, per_row,
                            kept=[second], texts=[["x", "y"]] * 2)
    assert [r["advantage"] for r in filtered] == [[], [], [0.0, 1.0], [2.0, 3.0]]
