"""The PRIME loop (PRIME_SPEC §7), top to bottom: sample, verify, filter, PRM, reference and
old log-probs, advantages, PPO, records. One function per stage, called in that order."""

from __future__ import annotations

import contextlib
import itertools
import math
import random
import shutil
import signal
import time
import types
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import torch

from prime import records
from prime.config import TrainConfig
from prime.errors import UserError
from prime.evaluate import accuracy
from prime.math.advantages import (
    clipped_line_rewards,
    line_ends,
    outcome_advantages,
    process_advantages,
    process_advantages_min,
    process_share,
    whiten,
)
from prime.math.filtering import KEPT, SURPLUS, filter_decisions
from prime.math.localise import localisation_rates, localise, token_lines
from prime.math.losses import pairwise_accuracy, pairwise_accuracy_pooled, ppo_loss, prm_ce_loss
from prime.math.rewards import batch_norm_rewards, implicit_rewards, zero_last_token
from prime.models import LoraSettings, Roles, choose_sampler, make_batch, make_optimizer, resolve_model
from prime.records import RunDir
from prime.rollout import encode_prompt, generate
from prime.score import token_texts
from prime.tasks import load_task
from prime.tasks.arith import first_wrong_line
from prime.trackers import Trackers, check_installed, parse_report_to
from prime.verifiers import CODE_FIELDS, verify


class TrainingFailed(Exception):
    """A non-finite loss or similar: the run stops with status `failed`."""


@dataclass(kw_only=True)
class Group:
    """One prompt and its K sampled responses, verified and decided."""

    prompt_id: int
    prompt: str
    answer: str
    prompt_ids: list[int]
    responses: list[list[int]]
    texts: list[str]
    outcome: list[float | None]
    detail: list[str]
    truncated: list[bool]
    checks: dict | None = None  # code tasks: the row's tests / io cases, prelude and entry point
    first_wrong: list[int | None] = field(default_factory=list)
    """per response: index of its first wrong line when it is wrong and checkable (arith), else None"""
    acc: float = 0.0
    decision: str = ""


@dataclass
class LoopState:
    """What a checkpoint must restore besides weights: where the data stream is."""

    step: int = 0
    cursor: int = 0
    """position in the current epoch's order of the training rows"""
    epoch: int = 0
    """passes over the training rows completed: each epoch draws them in a new seeded order"""
    buffer: list[int] = field(default_factory=list)
    """surplus kept prompts (row indices), drawn first next step and sampled again (PRIME_SPEC §4)"""

    def __post_init__(self):
        # checkpoints before the prompts-only buffer kept whole groups: keep their prompts
        self.buffer = [b["prompt_id"] if isinstance(b, dict) else int(b) for b in self.buffer]


# ---------------------------------------------------------------------------- stages

def sample_groups(roles: Roles, rows: list[dict], ids: list[int], cfg: TrainConfig, seed: int, merged=None) -> list[Group]:
    """§7.1: K responses per prompt from the policy (temperature, top-p from the config).
    `merged`: the step's full-precision sampler, built once per step (config `sampler`)."""
    tok, K = roles.tokenizer, cfg.samples_per_prompt
    prompt_ids = [encode_prompt(tok, rows[i]["prompt"], rows[i].get("system")) for i in ids]
    with policy_sampler(roles, cfg, merged) as model:
        torch.manual_seed(seed)  # after the sampler exists: building it draws random init weights
        responses = generate(model, tok, [p for p in prompt_ids for _ in range(K)], cfg.max_new_tokens,
                             temperature=cfg.temperature, top_p=cfg.top_p, batch_size=cfg.sample_rows)
    groups = []
    for n, i in enumerate(ids):
        resp = responses[n * K : (n + 1) * K]
        groups.append(Group(prompt_id=i, prompt=rows[i]["prompt"], answer=rows[i]["answer"], prompt_ids=prompt_ids[n],
                            responses=resp, texts=[tok.decode(r, skip_special_tokens=True) for r in resp],
                            outcome=[], detail=[], truncated=[not r or r[-1] != tok.eos_token_id for r in resp],
                            checks={k: rows[i][k] for k in CODE_FIELDS if k in rows[i]} or None))
    return groups


def policy_sampler(roles: Roles, cfg: TrainConfig, merged=None):
    """The model that samples for the policy (config field `sampler`, auto resolved by
    prime.models.choose_sampler); `merged` reuses a sampler already refreshed from the current
    policy adapter."""
    if sampler_of(roles, cfg) == "merged":
        return contextlib.nullcontext(merged if merged is not None else roles.sampler())
    return roles.role("policy")


def sampler_of(roles: Roles, cfg: TrainConfig) -> str:
    """merged or adapter: config `sampler` with auto resolved for this model on this device."""
    return choose_sampler(cfg.sampler, roles.device, roles.sampler_bytes())


def verify_groups(groups: list[Group]) -> None:
    """§7.2: outcome reward per response (math: 0/1, code: pass rate); unscorable counts as 0
    (kept as None in records)."""
    for g in groups:
        verdicts = [verify(t, {"answer": g.answer, **(g.checks or {})}) for t in g.texts]
        g.outcome = [v.score for v in verdicts]
        g.detail = [v.detail for v in verdicts]
        g.acc = sum(v.reward for v in verdicts) / len(verdicts)
        g.first_wrong = [first_wrong_line(g.prompt, t) if v.reward == 0 else None for t, v in zip(g.texts, verdicts)]


def decide(groups: list[Group], cfg: TrainConfig) -> None:
    """§7.3: the accuracy filter's decision for every prompt."""
    acc = torch.tensor([g.acc for g in groups], dtype=torch.float64)
    trunc = torch.tensor([any(g.truncated) for g in groups]) if cfg.filter_truncated else None
    for g, d in zip(groups, filter_decisions(acc, cfg.filter_low, cfg.filter_high, trunc)):
        g.decision = d


def fit_context(rows: list[dict], tok, context: int | None, max_new_tokens: int, skipped: list[str] | None,
                task: str) -> list[dict]:
    """Rows whose prompt leaves room for max_new_tokens in the model's context. An enormous
    prompt is a clear error naming the row (or, with skip_bad_rows, skipped and counted)."""
    if not context:
        return rows
    limit = context - max_new_tokens
    out = []
    for r in rows:
        # tokens ≤ bytes (+ the chat template's few dozen): tokenize only prompts that might not fit
        size = len(r["prompt"].encode()) + len(r.get("system", "").encode())
        n = len(encode_prompt(tok, r["prompt"], r.get("system"))) if size + 256 > limit else 0
        if n > limit:
            why = (f"task {task}, row {r.get('id', '?')}: the prompt is {n} tokens; with max_new_tokens {max_new_tokens} "
                   f"it does not fit the model's context of {context}")
            if skipped is None:
                raise UserError(why + "; shorten it, lower --max-new-tokens or pass --skip-bad-rows")
            skipped.append(why)
            continue
        out.append(r)
    return out


def in_order_parts(B: int, n: int) -> list[slice]:
    """Rows 0..B split in order into n near-equal contiguous mini-batches (the last ones may be
    one row shorter; none is empty)."""
    n = min(n, B)
    bounds = [B * i // n for i in range(n + 1)]
    return [slice(a, b) for a, b in itertools.pairwise(bounds)]


def micro_batches(batch, rows: slice, size: int, tokens: int = 0) -> list[torch.Tensor]:
    """The rows of `rows` in micro-batches of at most `size` rows, shortest rows first, so that
    each micro-batch, cut to its own longest row (`cut`), carries little padding. tokens > 0: a
    micro-batch also closes before its rows × longest row would pass `tokens` (a row longer than
    that goes alone). Which rows share a micro-batch changes nothing but float rounding: their
    gradients add up in the mini-batch."""
    index = torch.arange(rows.start, rows.stop)
    lengths = batch.attention_mask[index].sum(-1)
    order = lengths.argsort(stable=True)
    index, lengths = index[order].tolist(), lengths[order].tolist()
    parts, start = [], 0
    for end in range(1, len(index) + 1):  # rows start..end-1 so far; lengths ascend
        full = end - start == size or end == len(index)
        over = tokens and end < len(index) and (end - start + 1) * lengths[end] > tokens
        if full or over:
            parts.append(torch.tensor(index[start:end]))
            start = end
    return parts


def cut(batch, index: torch.Tensor):
    """Rows `index` of a right-padded batch, without the columns after their longest row's last
    token. Returns (batch, width): its log-probs fill columns [:width] of the rows' full width."""
    width = int(batch.attention_mask[index].sum(-1).max())
    return type(batch)(batch.input_ids[index, :width], batch.attention_mask[index, :width],
                       batch.response_mask[index, :width]), width


def scored(roles, role: str, batch, rows: slice, size: int, tokens: int = 0) -> torch.Tensor:
    """No-grad log π_role on rows `rows` of the batch, (B, T), zero on other rows and padding."""
    out = torch.zeros(batch.input_ids.shape, device=roles.device)
    for index in micro_batches(batch, rows, size, tokens):
        part, width = cut(batch, index)
        out[index, :width] = roles.logprobs(role, part)
    return out


def prm_stage(roles, batch, mask, outcome, cfg, prm_opt) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """§7.4: PRM forward → token rewards; CE update, `prm_mini_batches` optimizer steps.

    Returns (prm_logp, ref_logp, stats), log-probs (B, T) detached; prm_logp is None for rloo.
    Single forward (the authors' `update: after`): each mini-batch's rewards come from the PRM
    before that mini-batch's step (so with one mini-batch, from the PRM before this update).
    Double forward: all steps first, then the updated PRM scores the whole batch again.
    """
    K, B = cfg.samples_per_prompt, batch.input_ids.shape[0]
    update = cfg.algo == "prime" and cfg.prm == "online"
    ref_logp = scored(roles, "ref", batch, slice(0, B), cfg.micro_batch, cfg.micro_batch_tokens)
    if cfg.algo == "rloo":  # outcome only: no PRM forward (its log-probs would go unused)
        return None, ref_logp, {"reward_model/ref_ll_pairwise_acc": pairwise_accuracy((ref_logp * mask).sum(-1), outcome, K).item()}
    prm_logp, loss_total, grad_norms = torch.zeros_like(ref_logp), 0.0, []
    for mini in in_order_parts(B, cfg.prm_mini_batches if update else 1):
        n_mini = mini.stop - mini.start
        if update:
            prm_opt.zero_grad(set_to_none=True)
        for index in micro_batches(batch, mini, cfg.micro_batch, cfg.micro_batch_tokens):
            part, width = cut(batch, index)
            logp = roles.logprobs("prm", part, grad=update)  # (b, width)
            if update:
                seq_reward = cfg.beta * ((logp - ref_logp[index, :width]) * mask[index, :width]).sum(-1)  # (b,) r_φ(y)
                loss = prm_ce_loss(seq_reward, outcome[index]) * (len(index) / n_mini)
                if not torch.isfinite(loss):
                    raise TrainingFailed(f"PRM loss is {loss.item()} (non-finite); lower --prm-lr or check the data")
                loss.backward()
                loss_total += loss.item() * n_mini / B
            prm_logp[index, :width] = logp.detach()
        if update:
            grad_norms.append(torch.nn.utils.clip_grad_norm_(roles.adapter_parameters("prm"), cfg.prm_grad_clip).item())
            prm_opt.step()
    seq_reward = cfg.beta * ((prm_logp - ref_logp) * mask).sum(-1)
    stats = {"reward_model/dpo_acc_before": pairwise_accuracy(seq_reward, outcome, K).item(),
             "reward_model/ref_ll_pairwise_acc": pairwise_accuracy((ref_logp * mask).sum(-1), outcome, K).item(),
             "reward_model/pairwise_acc_pooled": pairwise_accuracy_pooled(seq_reward, outcome, K).item()}
    if update:
        stats |= {"reward_model/loss": loss_total, "reward_model/grad_norm": sum(grad_norms) / len(grad_norms)}
        if cfg.prm_update == "double":
            prm_logp = scored(roles, "prm", batch, slice(0, B), cfg.micro_batch, cfg.micro_batch_tokens)
    return prm_logp, ref_logp, stats


def advantage_stage(outcome, process_reward, mask, cfg, line_end=None) -> tuple[torch.Tensor, torch.Tensor]:
    """§7.6: Eq. 5 (outcome RLOO + process_weight × process RLOO returns in the process_credit
    form; line_end marks each line's last token, needed by the line-level forms), then
    whitening. Returns (A, returns)."""
    K = cfg.samples_per_prompt
    returns = outcome_advantages(outcome, mask, K)
    if cfg.algo == "prime":
        if cfg.process_credit == "sum":  # the paper's
            process = process_advantages(process_reward, mask, K, cfg.gamma, cfg.process_baseline)
        elif cfg.process_credit == "min":
            process = process_advantages_min(process_reward, line_end, mask, K)
        else:  # clip
            process = process_advantages(clipped_line_rewards(process_reward, line_end, mask), mask, K, cfg.gamma,
                                         cfg.process_baseline)
        returns = returns + cfg.process_weight * process
    return whiten(returns, mask), returns


def old_logprobs(roles, batch, cfg) -> torch.Tensor:
    """§7.5: log π_old on the kept rollouts, (B, T), for the rows past the first PPO mini-batch
    (zeros on the first one's rows, which policy_stage fills from its own forward)."""
    B = batch.input_ids.shape[0]
    return scored(roles, "policy", batch, slice(in_order_parts(B, cfg.ppo_mini_batches)[0].stop, B), cfg.micro_batch,
                  cfg.micro_batch_tokens)


def policy_stage(roles, batch, mask, old_logp, advantages, cfg, policy_opt) -> tuple[dict, torch.Tensor]:
    """§7.7: one PPO epoch over the kept rollouts in `ppo_mini_batches` mini-batches, one optimizer
    step each; within a mini-batch, micro-batches accumulate so its loss is the mean over its
    response tokens. Logged values are token-weighted means over the epoch; grad norm the mean.

    The first mini-batch runs on the policy that sampled (no step has been taken yet), so its own
    forward gives π_old: its rows of `old_logp` are filled from it (detached) instead of from a
    separate no-grad pass that would compute the same numbers (grad and no-grad forwards are
    bit-identical: tests/test_numeric_path.py). Returns (stats, old_logp completed)."""
    n_tokens = mask.sum()
    old_logp = old_logp.clone()
    totals = {"actor/pg_loss": 0.0, "actor/pg_clipfrac": 0.0, "actor/ppo_kl": 0.0, "actor/entropy": 0.0}
    grad_norms = []
    for m, mini in enumerate(in_order_parts(batch.input_ids.shape[0], cfg.ppo_mini_batches)):
        mini_tokens = mask[mini].sum()
        policy_opt.zero_grad(set_to_none=True)
        for index in micro_batches(batch, mini, cfg.micro_batch, cfg.micro_batch_tokens):
            part, width = cut(batch, index)
            logp = roles.logprobs("policy", part, grad=True)  # (b, width)
            if m == 0:
                old_logp[index, :width] = logp.detach()
            old, adv, tokens = old_logp[index, :width], advantages[index, :width], mask[index, :width]
            loss, stats = ppo_loss(logp, old, adv, tokens, cfg.clip_eps)
            if not torch.isfinite(loss):
                raise TrainingFailed(f"policy loss is {loss.item()} (non-finite); lower --policy-lr")
            (loss * (tokens.sum() / mini_tokens)).backward()
            weight = (tokens.sum() / n_tokens).item()
            totals["actor/pg_loss"] += loss.item() * weight
            totals["actor/pg_clipfrac"] += stats["pg_clipfrac"] * weight
            totals["actor/ppo_kl"] += stats["ppo_kl"] * weight
            # Monte-Carlo entropy: mean −log π of the sampled tokens (no full-vocabulary pass).
            totals["actor/entropy"] += (-(old * tokens).sum() / n_tokens).item()
        grad_norms.append(torch.nn.utils.clip_grad_norm_(roles.adapter_parameters("policy"), cfg.policy_grad_clip).item())
        policy_opt.step()
    totals["actor/grad_norm"] = sum(grad_norms) / len(grad_norms)
    return totals, old_logp


def rollout_rows(step, groups, tok, prm_logp, ref_logp, old_logp, process_reward, advantages,
                 kept: tuple[Group, ...] | list[Group] = (), texts: list[list[str]] | None = None):
    """One record row per response, kept and filtered-out alike (ARCHITECTURE.md). A kept group's
    responses are rows n·K … n·K+K−1 of the batch tensors, n its place in `kept`: found by the group
    itself, not its prompt id, since a step that crosses an epoch boundary can draw a prompt twice."""
    first_row = {id(g): n * len(g.responses) for n, g in enumerate(kept)}
    rows = []
    for g in groups:
        for k in range(len(g.responses)):
            b = first_row[id(g)] + k if id(g) in first_row else None
            ids = g.responses[k]
            n = len(ids)

            def per_token(x, b=b, n=n):
                return [] if b is None or x is None else x[b][:n].tolist()

            rows.append({
                "step": step, "prompt_id": g.prompt_id, "sample_idx": k, "prompt": g.prompt, "response": g.texts[k],
                "reference_answer": g.answer, "outcome_reward": g.outcome[k], "verifier_detail": g.detail[k],
                "prompt_acc": g.acc, "filter_decision": g.decision, "token_ids": ids,
                "tokens": texts[b] if texts is not None and b is not None else token_texts(tok, ids),
                "policy_logp_old": per_token(old_logp), "prm_logp": per_token(prm_logp), "ref_logp": per_token(ref_logp),
                "process_reward": per_token(process_reward), "advantage": per_token(advantages),
                "first_wrong_line": g.first_wrong[k] if g.first_wrong else None,
            })
    return rows


def process_check(kept: list[Group], texts: list[list[str]], raw_reward: list | None, ref_logp: list) -> dict:
    """Where the blame falls (prime.math.localise) on the kept wrong responses whose first wrong line is
    known (arith): the PRM's raw token rewards r_φ, and, as a baseline with no training, the
    reference's own token log-probs (its least likely token). Rates beside their chance rates."""
    K = len(kept[0].responses) if kept else 0
    prm, ref = [], []
    for n, g in enumerate(kept):
        for k, line in enumerate(g.first_wrong):
            if line is None:
                continue
            b = n * K + k
            if raw_reward is not None:
                prm.append(localise(raw_reward[b].tolist(), texts[b], line))
            ref.append(localise(ref_logp[b].tolist(), texts[b], line))
    out = {}
    if not ref:
        return out
    r = localisation_rates(ref)
    out |= {"localise/n": r["n"], "localise/line_chance": r["line_chance"], "localise/token_chance": r["token_chance"],
            "localise/ref_token_hit": r["token_hit"], "localise/ref_line_hit": r["line_hit"]}
    if raw_reward is not None:
        p = localisation_rates(prm)
        out |= {"localise/prm_line_hit": p["line_hit"], "localise/prm_token_hit": p["token_hit"]}
    return out


def mean_max_min(name: str, values: torch.Tensor) -> dict:
    """{name/mean, name/max, name/min} of the values (veRL's metric names)."""
    return {f"{name}/mean": values.mean().item(), f"{name}/max": values.max().item(), f"{name}/min": values.min().item()}


# ---------------------------------------------------------------------------- checkpoints

def save_checkpoint(run: Path, state: LoopState, roles: Roles, prm_opt, policy_opt) -> None:
    """adapters + optimizers + data-stream position, written to a temporary dir then renamed."""
    final, tmp = RunDir(run).checkpoint(state.step), RunDir(run).partial_checkpoint(state.step)
    shutil.rmtree(tmp, ignore_errors=True)
    roles.save_adapters(tmp)
    torch.save({"prm": prm_opt.state_dict(), "policy": policy_opt.state_dict()}, tmp / "optimizers.pt")
    records.atomic_write_json(tmp / "state.json", asdict(state))
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)


def prune_checkpoints(run: Path, cfg: TrainConfig) -> list[Path]:
    """Delete checkpoints the retention policy does not keep; returns what was deleted.

    Kept: the `keep_last_checkpoints` most recent (resume needs the last), every step that is a
    multiple of `keep_checkpoint_every`, and the run's final step. Called after a checkpoint is
    complete, so a kill at any moment still leaves the newest one whole.
    """
    done = RunDir(run).checkpoint_steps()
    keep = set(done[-cfg.keep_last_checkpoints:])
    keep |= {s for s in done if s == cfg.steps or (cfg.keep_checkpoint_every and s % cfg.keep_checkpoint_every == 0)}
    dropped = [RunDir(run).checkpoint(s) for s in done if s not in keep]
    for p in dropped:
        shutil.rmtree(p, ignore_errors=True)
    return dropped


def load_checkpoint(ckpt: Path, roles: Roles, prm_opt, policy_opt) -> LoopState:
    roles.load_adapters(ckpt)
    opts = torch.load(ckpt / "optimizers.pt", weights_only=True)
    prm_opt.load_state_dict(opts["prm"])
    policy_opt.load_state_dict(opts["policy"])
    return LoopState(**records.read_json(ckpt / "state.json"))


def latest_checkpoint(run: Path) -> Path | None:
    return RunDir(run).latest_checkpoint()


# ---------------------------------------------------------------------------- the loop

@lru_cache(maxsize=2)
def data_order(n_rows: int, seed: int, epoch: int = 0) -> tuple[int, ...]:
    """The order in which a run with this seed draws its training rows in this epoch (the first
    epoch's order depends on the seed alone, as it always has)."""
    order = list(range(n_rows))
    random.Random(seed if epoch == 0 else seed * 1_000_003 + epoch).shuffle(order)
    return tuple(order)


def next_prompts(state: LoopState, n: int, n_rows: int, seed: int) -> list[int]:
    """The next n row indices of the data stream; where an epoch ends, the next one starts in a
    new order (a run longer than one pass over the data never runs dry)."""
    if n_rows == 0:
        raise UserError("the task has no training rows to draw prompts from")
    ids: list[int] = []
    while len(ids) < n:
        take = data_order(n_rows, seed, state.epoch)[state.cursor : state.cursor + n - len(ids)]
        ids += take
        state.cursor += len(take)
        if state.cursor >= n_rows:
            state.epoch, state.cursor = state.epoch + 1, 0
    return ids


def task_rows(cfg: TrainConfig, roles: Roles, split: str, n: int | None = None,
              skipped: list[str] | None = None) -> list[dict]:
    """A split's rows as the run sees them: the first n, with the run's system prompt (a row's
    own system message wins), prompts that leave room for the response in the model's context."""
    rows = load_task(cfg.task, split, skipped=skipped)[:n]
    if cfg.system_prompt:
        rows = [{"system": cfg.system_prompt, **r} for r in rows]
    return fit_context(rows, roles.tokenizer, roles.context_length, cfg.max_new_tokens, skipped, cfg.task)


def evaluate(roles: Roles, rows: list[dict], cfg: TrainConfig) -> dict:
    """Accuracy of the policy on held-out rows: greedy (eval/acc) and one sample each at the
    training temperature (eval/acc_sampled, pass@1), with a fixed seed so evaluations compare."""
    with policy_sampler(roles, cfg) as model:
        greedy = accuracy(model, roles.tokenizer, rows, cfg.max_new_tokens, greedy=True, batch_size=cfg.sample_rows)["acc"]
        sampled = accuracy(model, roles.tokenizer, rows, cfg.max_new_tokens, greedy=False, seed=cfg.seed,
                           temperature=cfg.temperature, batch_size=cfg.sample_rows)["acc"]
    return {"eval/acc": greedy, "eval/acc_sampled": sampled}


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True) -> Path:
    """Run (or resume) PRIME for cfg.steps steps; returns the run directory."""
    run = Path(cfg.out)
    tracker_names = parse_report_to(cfg.report_to)
    check_installed(tracker_names)  # before the model loads: a missing package is a one-line error
    roles = build_roles(cfg)
    prm_opt = make_optimizer(cfg.optimizer, roles.adapter_parameters("prm"), lr=cfg.prm_lr, weight_decay=0.0)
    policy_opt = make_optimizer(cfg.optimizer, roles.adapter_parameters("policy"), lr=cfg.policy_lr)
    skipped: list[str] | None = [] if cfg.skip_bad_rows else None
    train_rows = task_rows(cfg, roles, "train", skipped=skipped)
    test_rows = task_rows(cfg, roles, "test", cfg.eval_n, skipped)
    if skipped:
        print(f"skipped {len(skipped)} bad dataset row(s); first: {skipped[0]}")
    state = start_or_resume(cfg, roles, prm_opt, policy_opt, resume)
    n_skipped = len(skipped or [])
    records.write_status(run, "running", state.step, skipped_rows=n_skipped)
    trackers = Trackers(tracker_names, run, cfg.report_project, asdict(cfg)) if tracker_names else None
    t_run = time.time()
    try:
        with stop_on_sigint() as stop, progress_bar(progress, cfg.steps, state.step, run.name) as bar:
            if cfg.eval_every and state.step == 0 and not records.read_metrics(run):  # the eval curve's starting point
                t = time.time()
                first = {"step": 0, **evaluate(roles, test_rows, cfg), "timing_s/eval": time.time() - t}
                records.append_metrics(run, first)
                if trackers:
                    trackers.log(first, 0)
            while state.step < cfg.steps and not stop.requested:
                metrics = one_step(state, roles, roles.tokenizer, train_rows, test_rows, cfg, prm_opt, policy_opt, run)
                metrics["time/wall_s"] = time.time() - t_run
                records.append_metrics(run, metrics)
                if trackers:
                    trackers.log(metrics, state.step)
                    if cfg.report_table_every and state.step % cfg.report_table_every == 0:
                        trackers.table(records.read_rollouts(run, state.step), state.step)
                if state.step % cfg.checkpoint_every == 0 or state.step == cfg.steps:
                    save_checkpoint(run, state, roles, prm_opt, policy_opt)
                    prune_checkpoints(run, cfg)
                records.write_status(run, "running", state.step, skipped_rows=n_skipped)
                bar(metrics)
    except TrainingFailed as e:
        records.write_status(run, "failed", state.step, str(e))
        raise UserError(f"run {run} failed at step {state.step + 1}: {e}; the last checkpoint stays loadable") from None
    except KeyboardInterrupt:
        records.write_status(run, "stopped", state.step, "interrupted")
        raise
    finally:
        if trackers:
            trackers.finish()
    records.write_status(run, "finished" if state.step >= cfg.steps else "stopped", state.step, skipped_rows=n_skipped)
    return run


def build_roles(cfg: TrainConfig) -> Roles:
    """The roles of a run: base, both adapters (seeded), the PRM from --prm-init if given."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(cfg.seed)  # adapter init
    roles = Roles(resolve_model(cfg.model), quant=cfg.quant, layout=cfg.layout,
                  lora=LoraSettings(r=cfg.lora_r, alpha=2 * cfg.lora_r), device=device,
                  prm_logit_scale=1.0 + cfg.prm_sharpen, recompute=cfg.gradient_checkpointing)
    if cfg.prm_init:  # an offline PRM (resume overwrites it with the checkpoint's, the same when frozen)
        roles.load_adapters(Path(cfg.prm_init), roles=("prm",))
        if cfg.prm_sharpen and roles.prm_logit_scale != 1.0 + cfg.prm_sharpen:
            raise UserError(f"--prm-sharpen {cfg.prm_sharpen} disagrees with the PRM of --prm-init {cfg.prm_init} "
                            f"(logit scale {roles.prm_logit_scale}); drop --prm-sharpen: the checkpoint's scale is used")
    elif cfg.algo == "prime" and cfg.prm == "frozen":
        print("note: --prm frozen without --prm-init keeps the PRM equal to the reference: process rewards are 0")
    return roles


def start_or_resume(cfg: TrainConfig, roles: Roles, prm_opt, policy_opt, resume: bool) -> LoopState:
    """A new run writes its config; a resumed one loads its last checkpoint (or starts over) and
    drops every record written after it. Returns where the loop starts."""
    run = Path(cfg.out)
    layout = RunDir(run)
    state = LoopState()
    if resume:
        records.remove_partial_writes(run)
        if (ckpt := layout.latest_checkpoint()) is not None:
            state = load_checkpoint(ckpt, roles, prm_opt, policy_opt)
        layout.truncate_after(state.step)
    elif layout.status_file.exists():
        raise UserError(f"{run} already holds a run; use `prime train --resume {run}` or choose another --out")
    if not layout.config_file.exists():  # a new run (or one killed before its config was written)
        model = {"name": cfg.model, **roles.describe(), "sampler": sampler_of(roles, cfg)}
        records.atomic_write_json(layout.config_file, {**asdict(cfg), "model": model, "code_version": records.code_version()})
    return state


@contextlib.contextmanager
def stop_on_sigint():
    """Within the block, the first Ctrl-C asks the loop to stop after the current step
    (`.requested`); a second one aborts at once (KeyboardInterrupt). The old handler comes back."""
    stop = types.SimpleNamespace(requested=False)

    def on_sigint(signum, frame):
        if stop.requested:
            raise KeyboardInterrupt
        stop.requested = True
        print("\nstopping after the current step (Ctrl-C again to abort now)")

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def progress_bar(enabled: bool, total: int, initial: int, name: str):
    """Yields update(metrics): one step done, with its accuracy and kept fraction (tqdm; a no-op when disabled)."""
    if not enabled:
        yield lambda metrics: None
        return
    from tqdm import tqdm

    bar = tqdm(total=total, initial=initial, desc=name, unit="step")

    def update(metrics: dict) -> None:
        bar.update(1)
        bar.set_postfix(acc="-" if metrics["acc"] is None else f"{metrics['acc']:.2f}",
                        kept=f"{metrics['filter/kept_fraction']:.2f}")

    try:
        yield update
    finally:
        bar.close()


@contextlib.contextmanager
def timed(timing: dict, key: str):
    """Add the block's wall time to timing[key] (the step's timing_s/* metrics)."""
    t = time.time()
    try:
        yield
    finally:
        timing[key] = timing.get(key, 0.0) + time.time() - t


def one_step(state, roles, tok, train_rows, test_rows, cfg, prm_opt, policy_opt, run) -> dict:
    """One PRIME iteration (§7.1–7.8); advances `state`."""
    step = state.step + 1
    t0 = time.time()
    timing = {"gen": 0.0, "verify": 0.0}
    drawn, kept, draws = draw_and_filter(state, roles, train_rows, cfg, step, timing)  # 1–3
    metrics = filter_metrics(step, state, drawn, kept, draws, cfg)
    if kept:
        metrics |= learn(kept, drawn, roles, tok, cfg, prm_opt, policy_opt, run, step, timing)  # 4–8
    else:  # nothing passed the filter: every sampled response is still recorded, nothing is learnt
        records.write_rollouts(run, step, rollout_rows(step, drawn, tok, None, None, None, None, None))
        metrics["acc/kept"] = None
    if cfg.eval_every and (step % cfg.eval_every == 0 or step == cfg.steps):
        with timed(timing, "eval"):
            metrics |= evaluate(roles, test_rows, cfg)
    metrics |= {f"timing_s/{k}": v for k, v in timing.items()} | {"timing_s/step": time.time() - t0}
    for k, v in metrics.items():
        if isinstance(v, float) and not math.isfinite(v):
            raise TrainingFailed(f"metric {k} is {v}")
    state.step = step
    return metrics


def draw_and_filter(state: LoopState, roles, train_rows, cfg, step: int, timing: dict) -> tuple[list, list, int]:
    """§7.1–7.3 and §4: draw P prompts, sample K responses each, verify, filter by accuracy;
    refill until P prompts are kept or the draw limit is hit. Prompts put back by the last step
    come first (sampled again by the current policy); kept prompts past P go back to
    state.buffer as prompts. Returns (every drawn group, the kept ones, the number of draws)."""
    P = cfg.prompts_per_step
    drawn: list[Group] = []
    draws = n_kept = 0
    merged = roles.sampler() if sampler_of(roles, cfg) == "merged" else None  # once per step: the policy is fixed until §7.7
    while n_kept < P and draws < cfg.max_draws_per_step:
        ids, state.buffer = state.buffer[:P], state.buffer[P:]
        ids += next_prompts(state, P - len(ids), len(train_rows), cfg.seed)
        with timed(timing, "gen"):
            groups = sample_groups(roles, train_rows, ids, cfg, seed=cfg.seed * 1_000_003 + step * 1009 + draws,
                                   merged=merged)
        with timed(timing, "verify"):
            verify_groups(groups)
        decide(groups, cfg)
        drawn += groups
        draws += 1
        n_kept += sum(g.decision == KEPT for g in groups)
    kept = [g for g in drawn if g.decision == KEPT]
    kept, surplus = kept[:P], kept[P:]
    for g in surplus:  # passed the filter, but the step is full: the prompt goes back, its responses do not
        g.decision = SURPLUS
    state.buffer = [g.prompt_id for g in surplus] + state.buffer
    return drawn, kept, draws


def filter_metrics(step: int, state: LoopState, drawn: list[Group], kept: list[Group], draws: int, cfg) -> dict:
    """The step's filter/* metrics and veRL's `acc` (every rollout generated, before filtering)."""
    decisions = [g.decision for g in drawn]
    n_drawn = sum(len(g.outcome) for g in drawn)
    return {"step": step, "data/epoch": state.epoch, "filter/draws": draws,
            "filter/draw_limit_hit": int(len(kept) < cfg.prompts_per_step),
            **{f"filter/{d}": decisions.count(d) for d in ("kept", "surplus", "too_easy", "too_hard", "truncated")},
            "filter/kept_fraction": decisions.count(KEPT) / max(1, len(decisions)),
            "acc": sum(g.acc * len(g.outcome) for g in drawn) / n_drawn if n_drawn else None,
            "verifier/unscorable": sum(o is None for g in drawn for o in g.outcome)}


def process_rewards(prm_logp, ref_logp, mask, cfg) -> tuple[torch.Tensor | None, torch.Tensor]:
    """§1: (raw implicit rewards β·log π_φ/π_ref, or None without a PRM; the rewards advantages
    use: zero_last_process_reward, then reward_norm, applied)."""
    if prm_logp is None:
        return None, torch.zeros_like(mask)
    raw = implicit_rewards(prm_logp, ref_logp, mask, cfg.beta)
    if cfg.zero_last_process_reward:
        raw = zero_last_token(raw, mask)
    return raw, batch_norm_rewards(raw, mask) if cfg.reward_norm == "batch_norm" else raw


def learn(kept, drawn, roles, tok, cfg, prm_opt, policy_opt, run, step: int, timing: dict) -> dict:
    """§7.4–7.8 on the kept groups: PRM scoring and update, process rewards, old log-probs,
    advantages, the PPO update, then the records of every drawn response. Returns the metrics."""
    K = cfg.samples_per_prompt
    batch = make_batch([g.prompt_ids for g in kept for _ in range(K)], [r for g in kept for r in g.responses],
                       tok.pad_token_id)
    mask = batch.response_mask.float().to(roles.device)
    outcome = torch.tensor([0.0 if o is None else o for g in kept for o in g.outcome], device=roles.device)
    with timed(timing, "prm"):  # 4. PRM forward on kept rollouts, then its update
        prm_logp, ref_logp, prm_stats = prm_stage(roles, batch, mask, outcome, cfg, prm_opt)
    raw, process_reward = process_rewards(prm_logp, ref_logp, mask, cfg)
    with timed(timing, "ref"):  # 5. old policy log-probs (the first PPO mini-batch's come with its own forward)
        old_logp = old_logprobs(roles, batch, cfg)
    kept_texts = [token_texts(tok, r) for g in kept for r in g.responses]
    with timed(timing, "adv"):  # 6. advantages
        line_end = line_ends([token_lines(x) for x in kept_texts], mask) if cfg.process_credit != "sum" else None
        advantages, returns = advantage_stage(outcome, process_reward, mask, cfg, line_end)
    with timed(timing, "update_actor"):  # 7. PPO update of the policy
        actor, old_logp = policy_stage(roles, batch, mask, old_logp, advantages, cfg, policy_opt)

    # 8. records: every number above, per token
    def unpad(x):
        sel = batch.response_mask.bool()
        return [x[b][sel[b]].cpu() for b in range(x.shape[0])]

    use_prm = cfg.algo == "prime"
    localised = process_check(kept, kept_texts, unpad(raw) if use_prm else None, unpad(ref_logp))
    rows = rollout_rows(step, drawn, tok, unpad(prm_logp) if use_prm else None, unpad(ref_logp), unpad(old_logp),
                        unpad(process_reward) if use_prm else None, unpad(advantages), kept, kept_texts)
    records.write_rollouts(run, step, rows)
    tokens = mask.bool()
    share = {"critic/process_share": process_share(returns, outcome_advantages(outcome, mask, K), mask)} if use_prm else {}
    return {"acc/kept": outcome.mean().item(), **prm_stats, **localised, **actor, **share,
            **mean_max_min("critic/advantages", advantages[tokens]), **mean_max_min("critic/returns", returns[tokens]),
            **mean_max_min("response_length", mask.sum(-1)),
            "response_length/clip_ratio": sum(t for g in kept for t in g.truncated) / len(outcome)}
