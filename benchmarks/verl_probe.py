"""The veRL side of `benchmarks/check_verl_export.py --in-verl`: runs inside veRL's own virtual
environment (verl 0.9.1, the export's PRIME Workbench wheel installed) and loads an export with
veRL's code, never ours: reward.py reaches PRIME Workbench only through the installed wheel.

    VENV/bin/python benchmarks/verl_probe.py SPEC.json OUT.json

SPEC (written by check_verl_export.py): the recipe checkout, the launch overrides the export's
README gives as an example, and per export its directory and what our own code computed: each
row's prompt token ids (prime.rollout.encode_prompt) and, for a right and a wrong response per row
checked, the outcome reward of prime.verifiers. For each export this records

1. config: run_prime.sh's arguments exactly as bash passes them; the recipe's real entry point
   (`python3 -m recipe.prime.main_prime ... --cfg job`) composing them; the same composition through
   Hydra's compose API; veRL's validate_config (called as recipe.prime.main_prime calls it) and
   the dataclasses veRL builds from the actor, rollout and model sections;
2. prompts: RLHFDataset (through veRL's create_rl_dataset, as the trainer builds it) reading both
   parquet files with the run's tokenizer as veRL loads it (HFModelConfig); each row's token ids as
   RLHFDataset's length filter computes them and as the agent loop's Continuous Token builder
   builds the rollout prompt, against ours;
3. rewards: reward.py loaded by veRL's loader (get_custom_reward_fn, after veRL's migration of the
   legacy custom_reward_function section), called as veRL's reward loop calls it and through
   run_reward_scoring (the PRIME reward manager's batch scorer); against our verifier's scores;
4. recipe: the recipe's own PRIME trainer code against this veRL (what a launch would reach
   first), each call recorded with the error it raises.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path


def error_text(e: BaseException) -> str:
    return f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"[:400]


def launch_argv(export: Path) -> list[str]:
    """run_prime.sh's python3 arguments after bash has expanded and unquoted them (a stub python3)."""
    with tempfile.TemporaryDirectory() as tmp:
        stub, dump = Path(tmp) / "python3", Path(tmp) / "argv.json"
        stub.write_text(f"#!{sys.executable}\nimport json, sys\njson.dump(sys.argv[1:], open({str(dump)!r}, 'w'))\n")
        stub.chmod(0o755)
        subprocess.run(["bash", str(export / "run_prime.sh")], check=True, env={**os.environ, "PATH": f"{tmp}:{os.environ['PATH']}"})
        return json.loads(dump.read_text())


def entry_point_composes(export: Path, launch_root: Path, example: list[str]) -> dict:
    """The real `python3 -m recipe.prime.main_prime` with the script's overrides, printing its composed
    config (Hydra's --cfg job) instead of running."""
    bin_dir = str(Path(sys.executable).parent)
    t0 = time.time()
    done = subprocess.run(["bash", str(export / "run_prime.sh"), *example, "--cfg", "job"], cwd=launch_root, check=False,
                          capture_output=True, text=True, env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"})
    tail = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()][-3:]
    return {"ok": done.returncode == 0, "seconds": round(time.time() - t0, 1), **({} if done.returncode == 0 else {"tail": tail})}


def compose(recipe: Path, overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(recipe / "prime" / "config"), version_base=None):
        return hydra_compose(config_name="prime_trainer", overrides=overrides)


def check_config(recipe: Path, overrides: list[str]) -> dict:
    """veRL's own validation of the composed config, as recipe.prime.main_prime runs it (its roles:
    actor-rollout, the PRM when reward_model.enable, a reference policy only with a KL term), and the
    dataclasses veRL's workers build from it. Where a step fails for a reason that is not the export's,
    the same step again with that one thing changed, to show that nothing else fails:
    - validate_config's last check (vLLM's LoRA ranks) imports veRL's vLLM rollout, which needs vLLM
      installed: again with rollout.name=sglang, which skips that check;
    - the recipe's own config sets rollout.mode=sync, which verl 0.9.1's RolloutConfig rejects:
      again with rollout.mode=async."""
    from verl.utils.config import omega_conf_to_dataclass, validate_config

    def validate(extra: list[str]) -> str:
        config = compose(recipe, overrides + extra)
        use_ref = bool(config.algorithm.get("use_kl_in_reward", False) or config.actor_rollout_ref.actor.use_kl_loss)
        try:
            validate_config(config=config, use_reference_policy=use_ref, use_critic=False)
            return "passed"
        except Exception as e:  # noqa: BLE001 - recorded, not raised
            return error_text(e)

    def build(section: str, extra: list[str]) -> str:
        node = compose(recipe, overrides + extra)
        for part in section.split("."):
            node = node[part]
        try:
            return type(omega_conf_to_dataclass(node)).__name__
        except Exception as e:  # noqa: BLE001
            return error_text(e.__cause__ or e)

    config = compose(recipe, overrides)
    out: dict = {"n_gpus": config.trainer.n_gpus_per_node * config.trainer.nnodes,
                 "validate_config": validate([]), "validate_config with rollout.name=sglang":
                 validate(["actor_rollout_ref.rollout.name=sglang"])}
    for section in ("actor_rollout_ref.actor", "actor_rollout_ref.model", "actor_rollout_ref.rollout"):
        out[f"dataclass {section}"] = build(section, [])
    out["dataclass actor_rollout_ref.rollout with rollout.mode=async"] = build(
        "actor_rollout_ref.rollout", ["actor_rollout_ref.rollout.mode=async"])
    return out


def check_prompts(config, expected: dict) -> dict:
    """RLHFDataset over both files; each row's ids from veRL's two tokenisations against ours."""
    from omegaconf import OmegaConf, open_dict
    from verl.trainer.ppo.utils import create_rl_dataset
    from verl.utils import hf_tokenizer
    from verl.utils.config import omega_conf_to_dataclass
    from verl.utils.tokenizer import normalize_token_ids
    from verl.utils.tokenizer.continuous_token_wiring import create_continuous_token_builder

    model_config = omega_conf_to_dataclass(config.actor_rollout_ref.model)  # the tokenizer as veRL's workers load it
    launcher_tokenizer = hf_tokenizer(config.actor_rollout_ref.model.path)  # as recipe.prime.main_prime loads it
    kwargs = OmegaConf.to_container(config.data.apply_chat_template_kwargs, resolve=True)
    builder = create_continuous_token_builder(model_config.tokenizer, hf_model_type=model_config.hf_config.model_type,
                                              chat_template_kwargs=kwargs)
    data = config.data.copy()
    with open_dict(data):
        data.filter_overlong_prompts = True  # run RLHFDataset's own tokenisation of every prompt
    out: dict = {"tokenizer_has_template": bool(model_config.tokenizer.chat_template),
                 "launcher_tokenizer_has_template": bool(launcher_tokenizer.chat_template),
                 "max_prompt_length": config.data.max_prompt_length}
    rows_by_index = {}
    for split, files in (("train", config.data.train_files), ("test", config.data.val_files)):
        t0 = time.time()
        dataset = create_rl_dataset(files, data, launcher_tokenizer, None, is_train=split == "train")
        ours = expected[split]
        rows = [dataset[i] for i in range(len(dataset))]
        filter_ids = [normalize_token_ids(launcher_tokenizer.apply_chat_template(
            r["raw_prompt"], add_generation_prompt=True, tokenize=True, **kwargs)) for r in rows]
        rollout_ids = [builder.build_initial_tokens(r["raw_prompt"]) for r in rows]
        index = [r["extra_info"]["index"] for r in rows]
        out[split] = {"rows": len(ours), "kept_by_length_filter": len(dataset),
                      "equal_in_length_filter": sum(ids == ours[i] for ids, i in zip(filter_ids, index)),
                      "equal_in_rollout_prompt": sum(ids == ours[i] for ids, i in zip(rollout_ids, index)),
                      "seconds": round(time.time() - t0, 1)}
        first_bad = next((i for ids, i in zip(rollout_ids, index) if ids != ours[i]), None)
        if first_bad is not None:
            out[split]["first_difference"] = {"index": first_bad, "ours": ours[first_bad][:40],
                                              "verl": rollout_ids[index.index(first_bad)][:40]}
        rows_by_index.update({(split, i): r for r, i in zip(rows, index)})
    return out, rows_by_index


def check_rewards(config, rows_by_index: dict, cases: list[dict]) -> dict:
    """reward.py through veRL's loader, called as veRL calls it, against our verifier."""
    from verl.experimental.reward_loop.reward_loop import migrate_legacy_reward_impl
    from verl.trainer.ppo.reward import get_custom_reward_fn
    from verl.workers.reward_manager.prime import run_reward_scoring

    config = migrate_legacy_reward_impl(config.copy())  # what veRL's trainer does before loading rewards
    try:
        fn = get_custom_reward_fn(config)
    except Exception as e:  # noqa: BLE001 - the failure is the result
        return {"loaded": False, "error": error_text(e), "trace": traceback.format_exc().splitlines()[-3:]}
    inputs = []
    for c in cases:
        row = rows_by_index[(c["split"], c["index"])]
        inputs.append((row["data_source"], c["response"], row["reward_model"]["ground_truth"], row["extra_info"]))
    t0 = time.time()
    direct = [fn(data_source=d, solution_str=s, ground_truth=g, extra_info=e) for d, s, g, e in inputs]
    direct_s = time.time() - t0
    t0 = time.time()
    batch = run_reward_scoring(fn, completions=[i[1] for i in inputs], references=[i[2] for i in inputs],
                               tasks=[i[0] for i in inputs], extra_info=[i[3] for i in inputs], num_processes=2)
    out: dict = {"loaded": True, "path": config.reward.custom_reward_function.path, "by_kind": {}}
    for c, a, b in zip(cases, direct, batch):
        k = out["by_kind"].setdefault(c["kind"], {"cases": 0, "right": 0, "wrong": 0, "equal_called": 0, "equal_batch": 0})
        k["cases"] += 1
        k[c["which"]] += 1
        k["equal_called"] += float(a) == c["expected"]
        k["equal_batch"] += float(b) == c["expected"]
        k.setdefault("right_scores" if c["which"] == "right" else "wrong_scores", set()).add(c["expected"])
    for k in out["by_kind"].values():
        for key in ("right_scores", "wrong_scores"):
            k[key] = sorted(k.get(key, ()))
    out["seconds_called"], out["seconds_batch"] = round(direct_s, 1), round(time.time() - t0, 1)
    return out


def check_recipe(config, launch_root: Path) -> list[dict]:
    """The recipe's PRIME trainer against this veRL, call by call, as a launch reaches them."""
    from verl import DataProto
    from verl.trainer.ppo.utils import need_reference_policy
    from verl.utils.dataset.rl_dataset import collate_fn

    sys.path.insert(0, str(launch_root))
    out = []

    def attempt(what: str, call) -> None:
        try:
            call()
            out.append({"call": what, "ok": True})
        except Exception as e:  # noqa: BLE001 - recorded
            where = traceback.extract_tb(e.__traceback__)[-1]
            out.append({"call": what, "ok": False, "error": error_text(e),
                        "at": f"{Path(where.filename).name}:{where.lineno}: {where.line}"})

    # main_prime.main_task: need_reference_policy(role_worker_mapping), a dict of roles to worker classes
    attempt("recipe.prime.main_prime: need_reference_policy(role_worker_mapping)", lambda: need_reference_policy({"ActorRollout": object}))

    def construct():
        from recipe.prime.prime_ray_trainer import RayPRIMETrainer

        RayPRIMETrainer(config=config, tokenizer=None, role_worker_mapping={}, resource_pool_manager=None,
                        reward_fn=None, val_reward_fn=None)

    attempt("recipe.prime.prime_ray_trainer: RayPRIMETrainer(..., reward_fn=, val_reward_fn=)", construct)

    def first_batch():
        from verl.utils import hf_tokenizer
        from verl.utils.dataset.rl_dataset import RLHFDataset

        ds = RLHFDataset(data_files=config.data.val_files, tokenizer=hf_tokenizer(config.actor_rollout_ref.model.path),
                         config=config.data, max_samples=2)
        batch = DataProto.from_single_dict(collate_fn([ds[0], ds[1]]))
        batch.pop(batch_keys=["input_ids", "attention_mask", "position_ids"])  # RayPRIMETrainer.fit's first step

    attempt("RayPRIMETrainer.fit: batch.pop(input_ids, attention_mask, position_ids) on RLHFDataset rows", first_batch)

    def recipe_reward():
        # main_prime builds its reward managers with run_prime's compute_score, None from the command line:
        # veRL's default_compute_score then scores by data_source, and custom_reward_function is never read
        from verl.workers.reward_manager import PrimeRewardManager

        manager = PrimeRewardManager(tokenizer=None, num_examine=0, compute_score=None)
        manager.compute_score("prime-workbench/arith", "\\boxed{5}", "5", None)  # a row of the arith export

    attempt("recipe.prime.main_prime: PrimeRewardManager(compute_score=None) scoring a row of the export", recipe_reward)
    return out


def main() -> int:
    spec = json.loads(Path(sys.argv[1]).read_text())
    recipe, launch_root = Path(spec["recipe"]), Path(spec["launch_root"])
    from importlib import metadata

    result: dict = {"verl": metadata.version("verl"), "transformers": metadata.version("transformers"),
                    "torch": metadata.version("torch"), "prime_workbench": metadata.version("prime-workbench"),
                    "prime_imported_from": __import__("prime").__file__,
                    "launch_example": spec["launch_example"], "exports": {}}
    for name, ex in spec["exports"].items():
        export = Path(ex["dir"])
        argv = launch_argv(export)
        entry, overrides = argv[1], argv[2:]
        r: dict = {"entry": entry, "overrides": len(overrides),
                   "added_keys": [o.split("=", 1)[0] for o in overrides if o.startswith("+")],
                   "entry_point_composes": entry_point_composes(export, launch_root, spec["launch_example"])}
        config = compose(recipe, overrides + spec["launch_example"])
        r["config"] = check_config(recipe, overrides + spec["launch_example"])
        r["prompts"], rows_by_index = check_prompts(config, ex["prompts"])
        r["rewards"] = check_rewards(config, rows_by_index, ex["rewards"])
        if spec.get("recipe_calls_from") == name:
            result["recipe_on_this_verl"] = check_recipe(config, launch_root)
        result["exports"][name] = r
        print(f"{name}: done", file=sys.stderr)
    Path(sys.argv[2]).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
