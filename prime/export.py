"""`prime export verl`: the same experiment for veRL's PRIME recipe on a cluster.

Writes into OUT:
    data/train.parquet, data/test.parquet   the run's task in veRL's schema (data_source, prompt as
                                            chat messages, ability, reward_model.ground_truth, extra_info)
    reward.py                               compute_score(data_source, solution_str, ground_truth, extra_info)
                                            through our verifiers (math-verify; the bubblewrap sandbox for code)
    prime_workbench-<version>-py3-none-any.whl   this project, built from its source tree: what reward.py
                                            imports, installed on every node by path (the name
                                            `prime-workbench` on an index is not ours)
    run_prime.sh                            python3 -m recipe.prime.main_prime with our config as Hydra overrides
                                            (a model without a chat template gets ours: PLAIN_CHAT_TEMPLATE)
    README.md                               every config field: the veRL key it became, or why it could not

The mapping is FIELD_MAP below (one place, also rendered into the README tables). Keys were read
from verl 0.9.1's trainer config and verl-recipe's prime/config/prime_trainer.yaml and launch
script; `python benchmarks/check_verl_export.py` checks an export against them, and with
`--in-verl` loads it with veRL's own code (BENCHMARKS.md, "veRL export, loaded by veRL").
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

from prime.config import TrainConfig
from prime.errors import UserError
from prime.records import RunDir, model_name_of, read_json

# our field -> (veRL key or None, how the value maps / why it cannot)
FIELD_MAP: dict[str, tuple[str | None, str]] = {
    "model": ("actor_rollout_ref.model.path", "the model directory (also reward_model.model.path: PRM and reference start from it)"),
    "task": ("data.train_files", "exported to data/train.parquet and data/test.parquet (data.val_files)"),
    "algo": ("algorithm.adv_estimator", "rloo in both; prime keeps reward_model.enable=True, rloo sets it False"),
    "prm": ("reward_model.model.optim.lr", "frozen: PRM learning rate 0 (the recipe has no frozen switch)"),
    "prm_init": (None, "no key: point reward_model.model.path at a full PRM model (merge the adapter first)"),
    "prm_sharpen": (None, "no key: veRL's PRM has no logit scale; bake it in (scale the merged PRM's LM head by 1 + c)"),
    "prm_update": ("reward_model.model.update", "single -> after, double -> before"),
    "steps": ("trainer.total_training_steps", "as is"),
    "prompts_per_step": ("data.train_batch_size", "prompts per step (veRL counts prompts, then samples n each)"),
    "samples_per_prompt": ("actor_rollout_ref.rollout.n", "as is"),
    "beta": ("reward_model.model.beta_train", "as is"),
    "filter_low": ("data.accuracy_lower_bound", "with data.filter_accuracy=True; inclusive in both"),
    "filter_high": ("data.accuracy_upper_bound", "inclusive in both"),
    "filter_truncated": ("data.filter_truncate", "veRL counts length >= max - 1 as truncated"),
    "max_draws_per_step": ("data.oversample_factor", "veRL oversamples (factor = draws) then downsamples instead of refilling"),
    "policy_lr": ("actor_rollout_ref.actor.optim.lr", "as is (LoRA rates are higher than full fine-tuning rates)"),
    "prm_lr": ("reward_model.model.optim.lr", "as is"),
    "clip_eps": ("actor_rollout_ref.actor.clip_ratio", "as is; veRL also applies dual-clip c = 3"),
    "policy_grad_clip": ("actor_rollout_ref.actor.grad_clip", "as is"),
    "prm_grad_clip": ("reward_model.model.optim.grad_clip", "as is"),
    "micro_batch": ("actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu", "also reward_model.micro_batch_size_per_gpu"),
    "ppo_mini_batches": ("actor_rollout_ref.actor.ppo_mini_batch_size", "= prompts_per_step / ppo_mini_batches prompts"),
    "prm_mini_batches": ("reward_model.mini_batch_size", "= prompts_per_step / prm_mini_batches prompts"),
    "max_new_tokens": ("data.max_response_length", "as is"),
    "temperature": ("actor_rollout_ref.rollout.temperature", "as is"),
    "top_p": ("actor_rollout_ref.rollout.top_p", "as is"),
    "reward_norm": ("reward_model.prime_norm", "as is"),
    "process_baseline": (None, "veRL always uses the code form; paper form cannot be expressed"),
    "gamma": ("algorithm.gamma", "veRL's rloo ignores it (γ = 1); values other than 1 cannot be expressed"),
    "process_credit": (None, "veRL's recipe sums future process rewards (the paper's form); min and clip cannot be expressed"),
    "process_weight": ("algorithm.reward_dpo_coef", "with algorithm.reward_gt_coef = 1: A = A_outcome + w·A_process"),
    "zero_last_process_reward": (None, "veRL always zeroes the last token's process reward; off cannot be expressed"),
    "lora_r": ("actor_rollout_ref.model.lora_rank", "policy only; the recipe's PRM trains fully (no LoRA)"),
    "quant": (None, "veRL trains in bf16 without 4-bit quantisation"),
    "layout": (None, "veRL always holds separate policy, PRM and reference models"),
    "sampler": (None, "veRL samples with vLLM / SGLang"),
    "sample_rows": (None, "vLLM / SGLang size their own batches (rollout.gpu_memory_utilization)"),
    "micro_batch_tokens": (None, "veRL's form is use_dynamic_bsz with ppo_max_token_len_per_gpu, sized per GPU: add it with the GPU overrides"),
    "gradient_checkpointing": ("actor_rollout_ref.model.enable_gradient_checkpointing", "as is"),
    "optimizer": (None, "veRL's FSDP actor uses torch AdamW; 8-bit states cannot be expressed"),
    "system_prompt": ("data.train_files", "written into each row's prompt messages"),
    "skip_bad_rows": (None, "bad rows are dropped at export (counted in the README)"),
    "seed": ("data.seed", "data order seed"),
    "eval_every": ("trainer.test_freq", "0 -> -1 (never)"),
    "eval_n": ("data.val_max_samples", "as is"),
    "checkpoint_every": ("trainer.save_freq", "as is"),
    "keep_last_checkpoints": ("trainer.max_actor_ckpt_to_keep", "veRL keeps the last N; every-Kth is not expressible"),
    "keep_checkpoint_every": (None, "veRL keeps only the last N checkpoints"),
    "report_to": ("trainer.logger", "console plus the same trackers (trackio, tensorboard, wandb)"),
    "report_project": ("trainer.project_name", "as is; trainer.experiment_name = the run's name"),
    "report_table_every": (None, "veRL logs generations with trainer.log_val_generations instead"),
    "out": ("trainer.default_local_dir", "checkpoints/<run name>"),
}

REWARD_PY = '''"""veRL custom reward: PRIME Workbench's verifiers behind veRL's signature.

    custom_reward_function.path=reward.py custom_reward_function.name=compute_score

Needs the PRIME Workbench wheel shipped beside this file on every node: `pip install
./prime_workbench-*.whl` (math-verify comes with it; code runs in bubblewrap, so `apt-get install
bubblewrap` too). Returns the outcome reward in [0, 1]: 0/1 for math, the pass rate for code;
unscorable answers count 0, as in the trainer. The function is the wheel's, not defined here, so
that veRL's process pools can pickle it (prime/verl_reward.py says why).
"""

from prime.verl_reward import compute_score

__all__ = ["compute_score"]
'''


def load_config(source: Path) -> tuple[TrainConfig, str]:
    """A run directory (its config.json) or a config JSON file -> (config, experiment name)."""
    path = RunDir(source).config_file if source.is_dir() else source
    if not path.is_file():
        raise UserError(f"{source}: neither a run directory (with config.json) nor a config JSON file")
    saved = read_json(path)
    saved = {k: v for k, v in saved.items() if k != "code_version"} | ({"model": model_name_of(saved)} if "model" in saved else {})
    return TrainConfig.from_dict(saved, source=str(path)), (source.name if source.is_dir() else path.stem)


def verl_rows(rows: list[dict], task: str, split: str, system_prompt: str) -> list[dict]:
    """Our rows in veRL's schema; code rows keep their checks in extra_info.prime_checks."""
    out = []
    for i, r in enumerate(rows):
        system = r.get("system") or system_prompt
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": r["prompt"]}]
        checks = {k: r[k] for k in ("tests", "io", "entry_point", "prelude") if r.get(k)}
        extra = {"split": split, "index": i, "id": str(r.get("id", i))}
        if checks:
            extra["prime_checks"] = json.dumps(checks)
        out.append({"data_source": f"prime-workbench/{Path(task).name}", "prompt": messages,
                    "ability": "code" if checks else "math",
                    "reward_model": {"style": "rule", "ground_truth": str(r.get("answer", ""))}, "extra_info": extra})
    return out


# what PRIME Workbench's benchmarks/check_verl_export.py --in-verl found (BENCHMARKS.md, "veRL export, loaded by veRL")
VERL_CHECKED = (
    "With verl 0.9.1 and verl-recipe 48ea0a7, on CPUs: veRL's RLHFDataset builds these prompts token for token as the "
    "run did, veRL's reward loader scores `reward.py` as our verifiers do, the recipe's entry point composes every "
    "override and veRL's validate_config accepts the result (its last check needs vLLM installed). Not checked: the "
    "launch (GPUs). The recipe's PRIME trainer as it stands does not run on verl 0.9.1: `main_prime` calls "
    "`need_reference_policy` with a dict and builds `RayPRIMETrainer` with a `reward_fn` argument that veRL's trainer "
    "no longer takes, its config sets `rollout.mode: sync`, which veRL removed, its first step pops `input_ids` that "
    "RLHFDataset no longer returns, and `main_prime` never passes `custom_reward_function` to its reward managers "
    "(veRL's default scorer raises for this data source, and a failed score counts 0). Those are the recipe's, not "
    "the export's: a launch on verl 0.9.1 needs them fixed first.")

# what a launch adds after run_prime.sh (the README's example; the check validates the config with it)
LAUNCH_EXAMPLE = ("trainer.n_gpus_per_node=8", "trainer.nnodes=1", "actor_rollout_ref.rollout.name=vllm")

# run_prime.sh sets HERE to its own absolute directory: veRL opens the data and reward.py in Ray workers,
# whose working directory (and node) is not the launcher's
HERE = "$HERE"


def overrides(cfg: TrainConfig, name: str, model_path: str, chat_template: str | None = None,
              max_prompt_length: int = 1024) -> list[tuple[str, object]]:
    """(veRL key, value) for every field that maps, and what veRL needs to read the export as we do.

    A key written `++key` is one no config of verl 0.9.1 or the recipe declares but the recipe's
    workers read (Hydra rejects a plain override of it). `chat_template`: the template veRL must
    apply to this model's prompts when its tokenizer has none (export_chat_template)."""
    P = cfg.prompts_per_step
    prime = cfg.algo == "prime"
    loggers = ["console"] + [t.strip() for t in cfg.report_to.split(",") if t.strip()]
    template = [] if chat_template is None else [
        # the agent loop's tokenizer and workers take it from the model config (HFModelConfig) ...
        ("actor_rollout_ref.model.custom_chat_template", '"' + chat_template.replace('"', '\\"') + '"'),
        # ... and RLHFDataset's length filter applies it whichever tokenizer the launcher built
        ("++data.apply_chat_template_kwargs.chat_template", "${actor_rollout_ref.model.custom_chat_template}")]
    out = [
        # the recipe's config names veRL's config by a path relative to a veRL checkout; by package it
        # resolves wherever veRL is installed
        ("hydra.searchpath", "[pkg://verl.trainer.config]"),
        ("data.train_files", f"['{HERE}/data/train.parquet']"), ("data.val_files", f"['{HERE}/data/test.parquet']"),
        ("data.max_prompt_length", max_prompt_length),
        ("data.train_batch_size", P), ("data.max_response_length", cfg.max_new_tokens), ("data.seed", cfg.seed),
        ("data.filter_accuracy", True), ("data.accuracy_lower_bound", cfg.filter_low),
        ("data.accuracy_upper_bound", cfg.filter_high), ("data.filter_truncate", cfg.filter_truncated),
        ("data.oversample_factor", float(cfg.max_draws_per_step)), ("data.val_max_samples", cfg.eval_n),
        ("actor_rollout_ref.model.path", model_path), ("actor_rollout_ref.model.lora_rank", cfg.lora_r),
        ("actor_rollout_ref.model.lora_alpha", 2 * cfg.lora_r), *template,
        ("actor_rollout_ref.model.enable_gradient_checkpointing", cfg.gradient_checkpointing),
        ("actor_rollout_ref.actor.optim.lr", cfg.policy_lr), ("actor_rollout_ref.actor.clip_ratio", cfg.clip_eps),
        ("actor_rollout_ref.actor.grad_clip", cfg.policy_grad_clip),
        ("actor_rollout_ref.actor.ppo_mini_batch_size", max(1, P // cfg.ppo_mini_batches)),
        ("actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu", cfg.micro_batch),
        ("actor_rollout_ref.actor.ppo_epochs", 1), ("actor_rollout_ref.actor.entropy_coeff", 0.0),
        ("actor_rollout_ref.actor.use_kl_loss", False),
        ("actor_rollout_ref.rollout.n", cfg.samples_per_prompt), ("actor_rollout_ref.rollout.temperature", cfg.temperature),
        ("actor_rollout_ref.rollout.top_p", cfg.top_p),
        ("actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu", cfg.micro_batch),
        ("actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu", cfg.micro_batch),
        ("algorithm.adv_estimator", "rloo"), ("algorithm.gamma", cfg.gamma), ("algorithm.kl_ctrl.kl_coef", 0.0),
        ("algorithm.reward_gt_coef", 1.0), ("algorithm.reward_dpo_coef", cfg.process_weight),
        ("reward_model.enable", prime), ("reward_model.model.path", model_path),
        ("reward_model.model.update", "after" if cfg.prm_update == "single" else "before"),
        ("reward_model.model.beta_train", cfg.beta),
        ("reward_model.model.optim.lr", cfg.prm_lr if cfg.prm == "online" else 0.0),
        ("reward_model.model.optim.grad_clip", cfg.prm_grad_clip), ("reward_model.prime_norm", cfg.reward_norm),
        ("reward_model.mini_batch_size", max(1, P // cfg.prm_mini_batches)),
        ("++reward_model.micro_batch_size_per_gpu", cfg.micro_batch),
        ("custom_reward_function.path", f"{HERE}/reward.py"), ("custom_reward_function.name", "compute_score"),
        ("trainer.total_training_steps", cfg.steps), ("trainer.test_freq", cfg.eval_every or -1),
        ("trainer.save_freq", cfg.checkpoint_every), ("trainer.max_actor_ckpt_to_keep", cfg.keep_last_checkpoints),
        ("trainer.logger", json.dumps(loggers)), ("trainer.project_name", cfg.report_project),
        ("trainer.experiment_name", name), ("trainer.default_local_dir", f"checkpoints/{name}"),
    ]
    return out


def _hydra(value) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    return str(value)


def shell_override(key: str, value) -> str:
    """One `key=value` argument for bash: single-quoted, except that a value in the export directory
    is double-quoted so that bash expands $HERE (our own text around it has no `"`, `$`, `\\` or backtick)."""
    text = _hydra(value)
    return f'"{key}={text}"' if HERE in text else f"{key}={shlex.quote(text)}"


def export_chat_template(tokenizer) -> str | None:
    """The template veRL should apply to this model's prompts: None when the tokenizer has its own
    (veRL applies it, as format_prompt does), else format_prompt's plain format as a template."""
    from prime.rollout import PLAIN_CHAT_TEMPLATE

    return None if getattr(tokenizer, "chat_template", None) else PLAIN_CHAT_TEMPLATE


def write_wheel(out: Path) -> Path:
    """Build this project's wheel into `out` (pip wheel --no-deps, from a copy of the source tree so that
    the build leaves nothing in it); returns the wheel's path. reward.py imports prime from it."""
    root = Path(__file__).resolve().parents[1]
    if not (root / "pyproject.toml").is_file():
        raise UserError(f"the export builds a wheel of PRIME Workbench from its source tree, and {root} has no "
                        "pyproject.toml: run `prime export verl` from a clone of the project")
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        shutil.copy2(root / "pyproject.toml", src)
        for package in ("prime", "workbench"):
            shutil.copytree(root / package, src / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                               "--disable-pip-version-check", "-q", "-w", str(out), str(src)],
                              check=False, capture_output=True, text=True)
    wheels = sorted(out.glob("prime_workbench-*.whl"))
    if done.returncode or len(wheels) != 1:
        raise UserError(f"building the PRIME Workbench wheel into {out} failed (pip wheel, exit {done.returncode}): "
                        f"{(done.stderr or done.stdout).strip()[-800:]}")
    return wheels[0]


def not_expressible(cfg: TrainConfig) -> list[str]:
    """What veRL's recipe does differently from this run's settings (README of the export)."""
    notes = [("refill: veRL oversamples `data.oversample_factor` × the batch and downsamples, and may keep prompts "
             "that failed the filter; we draw until P prompts pass")]
    if cfg.process_baseline == "paper":
        notes.append("process_baseline = 'paper': veRL's advantages use the code-form process baseline")
    if not cfg.zero_last_process_reward:
        notes.append("zero_last_process_reward = False: veRL zeroes the last token's process reward")
    if cfg.process_credit != "sum":
        notes.append(f"process_credit = {cfg.process_credit!r}: veRL's recipe gives each token the sum of the future "
                     "process rewards (the paper's form)")
    if cfg.gamma != 1.0:
        notes.append(f"gamma = {cfg.gamma}: veRL's rloo uses γ = 1")
    if cfg.quant == "4bit":
        notes.append("quant = '4bit': veRL trains the models in bf16, unquantised (numbers differ slightly)")
    if cfg.prm_sharpen:
        notes.append(f"prm_sharpen = {cfg.prm_sharpen}: veRL's PRM has no logit scale; multiply the merged PRM's "
                     f"LM head weights by {1 + cfg.prm_sharpen:g} before pointing reward_model.model.path at it")
    if cfg.prm_init:
        notes.append(f"prm_init = {cfg.prm_init!r}: merge that PRM adapter into a full model and set reward_model.model.path")
    if cfg.keep_checkpoint_every:
        notes.append(f"keep_checkpoint_every = {cfg.keep_checkpoint_every}: veRL keeps only the last N checkpoints")
    notes.append("PPO: veRL adds dual-clip (c = 3) and a log-ratio clamp; the recipe's entropy coefficient is set to 0 here")
    return notes


def export_verl(source: Path, out: Path, model_path: str | None = None) -> Path:
    """Write the export (see the module docstring); returns `out`."""
    import pandas as pd

    from prime.models import BUILTIN_MODELS, cache_dir, load_tokenizer, resolve_model
    from prime.rollout import encode_prompt
    from prime.tasks import load_task

    cfg, name = load_config(source)
    if out.exists() and any(out.iterdir()):
        raise UserError(f"{out} is not empty; choose a new --out")
    if model_path is None:
        model_path = str(cache_dir() / cfg.model) if cfg.model in BUILTIN_MODELS else cfg.model
    tok = load_tokenizer(resolve_model(cfg.model))  # the run's tokenizer: its chat template, the prompt lengths
    (out / "data").mkdir(parents=True, exist_ok=True)
    counts, longest = {}, 0
    for split in ("train", "test"):
        skipped: list[str] = []
        rows = load_task(cfg.task, split, skipped=skipped)
        pd.DataFrame(verl_rows(rows, cfg.task, split, cfg.system_prompt)).to_parquet(out / "data" / f"{split}.parquet")
        counts[split] = (len(rows), len(skipped))
        longest = max([longest] + [len(encode_prompt(tok, r["prompt"], r.get("system") or cfg.system_prompt)) for r in rows])
    (out / "reward.py").write_text(REWARD_PY)
    wheel = write_wheel(out)
    template = export_chat_template(tok)
    pairs = overrides(cfg, name, model_path, template, max_prompt_length=longest)
    lines = "".join(f"    {shell_override(k, v)} \\\n" for k, v in pairs)
    entry = "recipe.prime.main_prime"
    (out / "run_prime.sh").write_text(
        "#!/usr/bin/env bash\n# Exported by `prime export verl` from "
        f"{source} (PRIME Workbench). Run it from a directory where `{entry}` imports (a veRL\n"
        "# checkout with verl-recipe as `recipe/`; see README.md); extra Hydra overrides (GPUs, nodes, rollout engine)\n"
        "# go after the script. Data and reward.py are read from this script's directory, by absolute path.\n"
        f"set -euo pipefail\nHERE=\"$(cd \"$(dirname \"$0\")\" && pwd)\"\npython3 -m {entry} \\\n{lines}    \"$@\"\n")
    (out / "run_prime.sh").chmod(0o755)
    notes = not_expressible(cfg)
    table = "\n".join(f"| `{f}` | {'`' + k + '`' if k else '—'} | {why} |" for f, (k, why) in FIELD_MAP.items())
    template_note = ("the model's own chat template (veRL applies it as we do)" if template is None else
                     "the model has no chat template, so `run_prime.sh` hands veRL ours "
                     "(`actor_rollout_ref.model.custom_chat_template`, also `data.apply_chat_template_kwargs`): "
                     "the question after the system message and a blank line, then a newline, as the run saw them")
    (out / "README.md").write_text(
        f"# {name}: PRIME on veRL\n\nExported from `{source}` by `prime export verl`.\n\n"
        f"- `data/train.parquet` ({counts['train'][0]} rows, {counts['train'][1]} bad rows dropped), "
        f"`data/test.parquet` ({counts['test'][0]} rows); prompts: {template_note}; the longest is {longest} tokens "
        "(`data.max_prompt_length`)\n"
        "- `reward.py`: our verifiers behind veRL's `compute_score`\n"
        f"- `{wheel.name}`: PRIME Workbench itself, which `reward.py` imports. On every node, in veRL's environment:\n\n"
        f"      pip install ./{wheel.name}    # by path: no package index is asked for it\n"
        "      apt-get install bubblewrap     # code tasks run the model's programs in it\n\n"
        f"  (`--force-reinstall --no-deps` replaces an older install of the same version.)\n"
        f"- `run_prime.sh`: `python3 -m {entry}` with the overrides below"
        + ("" if cfg.algo == "prime" else " (an RLOO run: the recipe with `reward_model.enable=False`, which keeps its "
           "accuracy filter; veRL's own `main_ppo` has none)") + ". From a veRL checkout with verl-recipe as `recipe/`:\n\n"
        f"      bash /path/to/this/run_prime.sh {' '.join(LAUNCH_EXAMPLE)}\n\n"
        "## What veRL cannot reproduce of this run\n\n" + ("\n".join(f"- {n}" for n in notes) or "- nothing") + "\n\n"
        "## Checked with veRL\n\n" + VERL_CHECKED + "\n\n"
        "## Every field\n\n| ours | veRL | how |\n| --- | --- | --- |\n" + table + "\n\n"
        "## The config\n\n```json\n" + json.dumps(asdict(cfg), indent=1) + "\n```\n")
    return out
