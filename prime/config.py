"""One config tree for `prime train` (STYLE.md §7): each field documented, paper default noted."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, fields


@dataclass
class TrainConfig:
    """A PRIME (or RLOO) run. Defaults are PRIME_SPEC §8's small-run column."""

    out: str = "runs/demo"
    """run directory to write records into"""
    model: str = "tiny"
    """tiny, smollm2-135m or a local HF model directory"""
    task: str = "arith"
    """arith or gsm8k (math, 0/1 rewards), code (a pass rate from the sandboxed tests), or the path of
    a .jsonl / .parquet file (or a directory of train / test files) in our flat schema or veRL's"""
    system_prompt: str = ""
    """a system message before every prompt (a row's own system message wins); empty: none"""
    algo: str = "prime"
    """prime (outcome + implicit process rewards) or rloo (outcome only, the paper's baseline)"""
    prm: str = "online"
    """online (updated every step) or frozen (never updated: the offline-PRM ablation)"""
    prm_init: str = ""
    """checkpoint directory whose prm adapter starts the PRM (empty: a fresh adapter, equal to the
    reference, so process rewards start at 0; with --prm frozen that makes PRIME equal to RLOO)"""
    prm_sharpen: float = 0.0
    """c ≥ 0: the PRM's logits are multiplied by 1 + c, so the PRM starts as a sharpened reference,
    π_φ ∝ π_ref^(1+c) per token, whose implicit reward already ranks likely (usually right) responses
    above unlikely ones; LoRA then trains on top. 0: the paper's PRM, equal to the reference at
    init (process rewards exactly 0). Saved with the PRM adapter; scoring a checkpoint uses it"""
    prm_update: str = "single"
    """single forward (paper default: rewards from the PRM before its update) or double"""
    steps: int = 100
    """PRIME iterations"""
    prompts_per_step: int = 8
    """P: kept prompts per step (paper 256)"""
    samples_per_prompt: int = 4
    """K (paper 4)"""
    beta: float = 0.05
    """β of Eq. 3 (paper 0.05)"""
    filter_low: float = 0.2
    """keep prompts with low ≤ acc (inclusive; paper 0.2)"""
    filter_high: float = 0.8
    """keep prompts with acc ≤ high (inclusive; paper 0.8)"""
    filter_truncated: bool = False
    """drop prompts any of whose responses hit the length limit"""
    max_draws_per_step: int = 8
    """draw limit: at most this many batches of P prompts sampled to fill one step (reported)"""
    policy_lr: float = 2e-4
    """AdamW, constant (paper 5e-7 full fine-tune; LoRA needs more)"""
    prm_lr: float = 2e-4
    """AdamW, constant, weight decay 0 (paper 1e-6 full fine-tune)"""
    clip_eps: float = 0.2
    """PPO clip ε (paper 0.2)"""
    policy_grad_clip: float = 1.0
    """paper 1.0"""
    prm_grad_clip: float = 10.0
    """paper 10.0"""
    micro_batch: int = 16
    """responses per forward/backward; gradients accumulate to one step per mini-batch"""
    ppo_mini_batches: int = 1
    """policy optimizer steps per iteration: the kept rollouts, in order, split into this many
    mini-batches, one PPO step each (1: one step on the whole batch; PRIME-RL's published run: 4,
    256 rollouts per mini-batch of 1024)"""
    prm_mini_batches: int = 1
    """PRM optimizer steps per iteration (PRIME-RL and veRL's recipe: 4). With prm_update single,
    each mini-batch is scored by the PRM as the mini-batches before it left it (PRIME-RL's
    `update: after`); with double, all steps come first, then one scoring pass (veRL's `before`)"""
    max_new_tokens: int = 128
    """response length limit (paper 3072)"""
    temperature: float = 1.0
    """sampling temperature (paper 1.0)"""
    top_p: float = 1.0
    """nucleus sampling (paper 1.0)"""
    reward_norm: str = "batch_norm"
    """batch_norm (both code bases) or none"""
    process_baseline: str = "paper"
    """paper (Eq. 5) or code (the authors' per-token variant)"""
    gamma: float = 1.0
    """discount for process returns (paper 1)"""
    process_credit: str = "sum"
    """how process rewards become credit: sum (paper Eq. 5: a token gets the sum of the future
    token rewards); min (PURE, arXiv 2504.15275: a token gets the minimum of the future line
    rewards, a line's reward being the sum of its tokens'; baseline: the other samples' worst
    line); clip (Gao et al., arXiv 2410.15115: line rewards clipped at 0 from above, so they only
    blame, then summed as in Eq. 5). The PRM and its loss are unchanged"""
    process_weight: float = 1.0
    """w in A = A_outcome + w · A_process (paper 1): the process term's weight against the outcome's"""
    zero_last_process_reward: bool = False
    """set each response's last-token process reward to 0 before normalisation and advantages, as
    veRL's PRIME recipe does (paper and PRIME-RL: kept). The PRM loss still sums every token."""
    lora_r: int = 16
    """LoRA rank of both adapters"""
    quant: str = "4bit"
    """4bit (NF4, double quantisation) or none"""
    layout: str = "shared"
    """shared (one base, two adapters) or separate (three copies)"""
    sampler: str = "auto"
    """merged: sample from a full-precision copy of the policy (base dequantised + LoRA merged,
    refreshed every step; fast, costs one unquantised copy); adapter: sample through the 4-bit
    base with the policy adapter unmerged (exactly the trained function, no copy; slower); auto:
    merged where the copy is affordable (prime.models.choose_sampler: a CPU, or a copy under a
    tenth of the GPU's memory), adapter otherwise. Log-probs always come from the 4-bit roles."""
    sample_rows: int = 512
    """rows decoded at once; more prompts are sampled in further batches (the KV cache grows with
    rows × (prompt + max_new_tokens): `prime plan` says how many fit)"""
    micro_batch_tokens: int = 0
    """> 0: a micro-batch also stops growing before its rows × longest row pass this many tokens
    (activations grow with tokens, not rows); 0: micro_batch rows only"""
    gradient_checkpointing: bool = False
    """recompute each layer's activations (and each chunk of LM-head logits) in the backward pass
    instead of keeping them: memory for a long response at ~1/3 more compute. Same gradients"""
    optimizer: str = "adamw"
    """adamw (torch), adamw8bit (bitsandbytes' 8-bit states, a quarter of the memory) or
    paged_adamw8bit (8-bit states in paged memory, CUDA only). Only the adapters have states"""
    skip_bad_rows: bool = False
    """skip malformed dataset rows (counted in status.json and the log) instead of stopping"""
    seed: int = 0
    """seeds data order, sampling and adapter init"""
    eval_every: int = 10
    """evaluate on the test split every N steps (0: never)"""
    eval_n: int = 200
    """test problems per evaluation"""
    report_to: str = ""
    """comma-separated trackers that mirror the metrics: trackio, tensorboard, wandb (each an optional
    package; the run records stay the source of truth)"""
    report_project: str = "prime-workbench"
    """the tracker project (trackio, wandb) the run logs into, under the run directory's name"""
    report_table_every: int = 10
    """with report_to: a completions table (prompt, response, outcome, decision, Σ process reward,
    advantage) every N steps; 0: never"""
    checkpoint_every: int = 1
    """save adapters + optimizers + RNG + data position every N steps"""
    keep_last_checkpoints: int = 2
    """keep only this many most recent checkpoints (resume needs the last one) ..."""
    keep_checkpoint_every: int = 50
    """... plus every checkpoint whose step is a multiple of this (0: none), and the final one"""

    def __post_init__(self):
        choices = {"algo": ("prime", "rloo"), "prm": ("online", "frozen"), "prm_update": ("single", "double"),
                   "reward_norm": ("batch_norm", "none"), "process_baseline": ("paper", "code"),
                   "process_credit": ("sum", "min", "clip"),
                   "quant": ("4bit", "none"), "layout": ("shared", "separate"), "sampler": ("auto", "merged", "adapter"),
                   "optimizer": ("adamw", "adamw8bit", "paged_adamw8bit")}
        from prime.errors import UserError

        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise UserError(f"config field {name}={getattr(self, name)!r}: expected one of {', '.join(allowed)}")
        from prime.tasks import TASKS
        from prime.tasks.files import is_task_path
        from prime.trackers import parse_report_to

        parse_report_to(self.report_to)
        if self.task not in TASKS and not is_task_path(self.task):
            raise UserError(f"config field task={self.task!r}: expected one of {', '.join(TASKS)} or an existing .jsonl, "
                            ".jsonl.gz or .parquet file or a directory with train and test files")
        for name, ok, expected in self.range_checks():
            value = getattr(self, name)
            if not ok(value):
                raise UserError(f"config field {name}={value!r}: expected {expected}")
        if self.filter_low > self.filter_high:
            raise UserError(f"config field filter_low={self.filter_low} > filter_high={self.filter_high}: "
                            "the filter would keep no prompt; expected filter_low ≤ filter_high")

    @staticmethod
    def range_checks():
        """(field, test, what is expected) for every numeric field: checked before anything loads."""
        finite = math.isfinite
        at_least = lambda n: (lambda v: v >= n, f"an integer ≥ {n}")
        positive = (lambda v: finite(v) and v > 0, "a finite number > 0")
        non_negative = (lambda v: finite(v) and v >= 0, "a finite number ≥ 0")
        fraction = (lambda v: finite(v) and 0 <= v <= 1, "a number in [0, 1]")
        return [(n, *c) for n, c in {
            "steps": at_least(1), "prompts_per_step": at_least(1),
            "samples_per_prompt": (lambda v: v >= 2, "an integer ≥ 2: the leave-one-out baseline needs another sample"),
            "beta": positive, "prm_sharpen": non_negative, "filter_low": fraction, "filter_high": fraction, "max_draws_per_step": at_least(1),
            "policy_lr": non_negative, "prm_lr": non_negative, "clip_eps": positive,
            "policy_grad_clip": positive, "prm_grad_clip": positive, "micro_batch": at_least(1),
            "ppo_mini_batches": at_least(1), "sample_rows": at_least(1), "micro_batch_tokens": at_least(0), "prm_mini_batches": at_least(1), "max_new_tokens": at_least(1),
            "temperature": positive, "top_p": (lambda v: finite(v) and 0 < v <= 1, "a number in (0, 1]"),
            "gamma": fraction, "process_weight": non_negative, "lora_r": at_least(1), "seed": at_least(0), "eval_every": at_least(0),
            "eval_n": at_least(1), "checkpoint_every": at_least(1), "keep_last_checkpoints": at_least(1),
            "keep_checkpoint_every": at_least(0), "report_table_every": at_least(0),
        }.items()]

    @classmethod
    def from_dict(cls, d: dict, source: str = "config") -> TrainConfig:
        from prime.errors import UserError

        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise UserError(f"{source}: unknown config key(s) {', '.join(unknown)}")
        for k, v in d.items():
            want = type(getattr(cls(), k)) if k in ("out",) else type(known[k].default)
            if want is float and isinstance(v, int) and not isinstance(v, bool):
                v = float(v)
            if not isinstance(v, want) or (want is int and isinstance(v, bool)):
                raise UserError(f"{source}: field {k} must be {want.__name__}, got {type(v).__name__} {v!r}")
            d = {**d, k: v}
        return cls(**d)


def run_config(run, **overrides) -> TrainConfig:
    """The TrainConfig a run directory was made with (its config.json), with overrides."""

    from prime.records import RunDir

    layout = RunDir(run)
    saved = {k: v for k, v in layout.config().items() if k not in ("model", "code_version")}
    return TrainConfig.from_dict({**saved, "model": layout.model_name(), **overrides, "out": str(run)},
                                 source=str(layout.config_file))


def field_docs(cls=TrainConfig) -> dict[str, str]:
    """The docstring under each dataclass field (for --help), read from the source."""
    import ast
    import inspect

    body = ast.parse(inspect.getsource(cls)).body[0].body
    docs = {}
    for node, nxt in itertools.pairwise(body):
        if isinstance(node, ast.AnnAssign) and isinstance(nxt, ast.Expr) and isinstance(getattr(nxt, "value", None), ast.Constant):
            docs[node.target.id] = str(nxt.value.value)
    return docs


def add_arguments(parser, cls=TrainConfig) -> None:
    """One --flag per config field, typed from its default, help from its docstring."""
    import argparse

    docs = field_docs(cls)
    for f in fields(cls):
        flag = "--" + f.name.replace("_", "-")
        if isinstance(f.default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=docs.get(f.name))
        else:
            parser.add_argument(flag, type=type(f.default), default=None, help=f"{docs.get(f.name, '')} (default {f.default})")
