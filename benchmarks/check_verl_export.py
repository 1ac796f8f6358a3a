"""Check `prime export verl` directories against veRL itself. Two modes.

Keys (no veRL code runs): every Hydra override in an export's run_prime.sh must be a key of veRL's
trainer config (shipped in the `verl` wheel), of verl-recipe's prime/config/prime_trainer.yaml, or
one the recipe's own launch script sets; the parquet must have veRL's columns and chat-message prompts.

    pip install -r benchmarks/requirements-verl.txt          # into an environment of its own
    git clone https://github.com/verl-project/verl-recipe    # for prime/config and prime/run_prime_qwen.sh
    prime export verl runs/demo --out /tmp/verl-export
    python benchmarks/check_verl_export.py /tmp/verl-export --recipe verl-recipe [--out result.json]

`--dump-keys` refreshes the key snapshot the test suite checks exports against
(tests/data/verl_config_keys.json).

In veRL (`--in-verl`): exports the demo runs (or the given runs / config files) with our own
`prime export verl`, computes with our own code every prompt's token ids and the outcome reward of
a right and a wrong response per checked row, then loads each export with veRL's code in a virtual
environment of its own (created under --venv on first use: torch 2.13.0, then
benchmarks/requirements-verl.txt; the export's wheel installed into it by path) and compares
(benchmarks/verl_probe.py says what it runs). The project's own environment never gets veRL.

    python benchmarks/check_verl_export.py --in-verl --recipe verl-recipe \\
        [--venv ~/.cache/prime-workbench/verl-venv] [--out benchmarks/results/verl_export_check.json] [RUN ...]

Not a test (it installs veRL and needs a recipe checkout); the result of the last run is in
benchmarks/results/verl_export_check.json and BENCHMARKS.md ("veRL export, loaded by veRL").
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_VENV = Path.home() / ".cache" / "prime-workbench" / "verl-venv"
OVERRIDE = re.compile(r"^\s+[\"']?(\+{0,2}[a-z_]+(?:\.[a-z_0-9]+)+)=", re.MULTILINE)  # in run_prime.sh, quoted or not
# validate_config's LoRA-rank check imports veRL's vLLM rollout, which raises this without vLLM (a CUDA stack)
NEEDS_VLLM = "ValueError: vllm version None not supported"
MATH_ROWS_CHECKED = 40  # per split: math-verify on every row of 12,000 adds minutes and no new case


# ---------------------------------------------------------------------------------------------- keys


def keys(tree: dict, prefix: str = "") -> set[str]:
    out = set()
    for k, v in (tree or {}).items():
        key = f"{prefix}.{k}" if prefix else str(k)
        out.add(key)
        if isinstance(v, dict):
            out |= keys(v, key)
    return out


def verl_trainer_keys() -> tuple[str, set[str]]:
    import yaml

    dist = metadata.distribution("verl")
    path = Path(dist.locate_file("verl/trainer/config/_generated_ppo_trainer.yaml"))
    return f"verl {dist.version}", keys(yaml.safe_load(path.read_text()))


def recipe_keys(recipe: Path) -> tuple[set[str], set[str]]:
    import yaml

    config = keys(yaml.safe_load((recipe / "prime" / "config" / "prime_trainer.yaml").read_text()))
    script = set(re.findall(r"^\s+([a-z_]+(?:\.[a-z_0-9]+)+)=", (recipe / "prime" / "run_prime_qwen.sh").read_text(), re.MULTILINE))
    return config, script


def emitted(export: Path) -> list[str]:
    """run_prime.sh's override keys; `++key` (added where no config declares it) keeps its prefix."""
    return OVERRIDE.findall((export / "run_prime.sh").read_text())


def check_keys(args) -> int:
    version, base = verl_trainer_keys()
    config, script = recipe_keys(args.recipe)
    if args.dump_keys:
        args.dump_keys.write_text(json.dumps({"verl": version, "recipe": "verl-recipe prime/config/prime_trainer.yaml and "
                                              "prime/run_prime_qwen.sh", "keys": sorted(base | config | script)}, indent=0))
    ours = emitted(args.export)
    found = {k: ("hydra" if k.startswith("hydra.") else "verl trainer config" if k.lstrip("+") in base
                 else "recipe config" if k.lstrip("+") in config else "recipe launch script" if k.lstrip("+") in script
                 else "added (++)" if k.startswith("++") else None) for k in ours}
    missing = [k for k, where in found.items() if where is None]
    import pandas as pd

    df = pd.read_parquet(args.export / "data" / "train.parquet")
    columns_ok = list(df.columns) == ["data_source", "prompt", "ability", "reward_model", "extra_info"]
    prompts_ok = all(len(p) and all({"role", "content"} <= set(m) for m in p) for p in df.prompt)
    truth_ok = all("ground_truth" in r for r in df.reward_model)
    result = {"verl": version, "overrides": len(ours), "where": found, "missing": missing,
              "parquet_columns_ok": columns_ok, "prompts_are_chat_messages": prompts_ok, "ground_truth_ok": truth_ok}
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))
    return 0 if not missing and columns_ok and prompts_ok and truth_ok else 1


# ------------------------------------------------------------------------------------------- in veRL


def pip(venv: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", *args],
                          check=False, capture_output=True, text=True)


def ensure_venv(venv: Path) -> None:
    """veRL's environment: created once (torch 2.13.0 first, so that veRL's requirements keep it), then
    reused while benchmarks/requirements-verl.txt is unchanged."""
    requirements = (ROOT / "benchmarks" / "requirements-verl.txt").read_text()
    stamp = venv / ".prime-requirements-verl.txt"
    if stamp.is_file() and stamp.read_text() == requirements:
        return
    if not (venv / "bin" / "python").is_file():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    for step in (["install", "-q", "torch==2.13.0"], ["install", "-q", "-r", str(ROOT / "benchmarks" / "requirements-verl.txt")]):
        print(f"{venv}: pip {' '.join(step[2:])}", file=sys.stderr)
        done = pip(venv, *step)
        if done.returncode:
            sys.exit(f"pip {' '.join(step)} in {venv} failed:\n{done.stderr[-2000:]}")
    stamp.write_text(requirements)


def install_wheel(venv: Path, export: Path) -> dict:
    """The export's wheel into veRL's environment, exactly as its README says (by path), after recording
    what veRL's loader makes of reward.py without it."""
    wheel = next(export.glob("prime_workbench-*.whl"))
    pip(venv, "uninstall", "-y", "prime-workbench")
    probe = ("from verl.utils.import_utils import load_extern_object\n"
             f"load_extern_object(module_path={str(export / 'reward.py')!r}, object_name='compute_score')")
    bare = subprocess.run([str(venv / "bin" / "python"), "-c", probe], check=False, capture_output=True, text=True,
                          cwd=export)  # not this checkout, whose prime/ `python -c` would import
    errors = [line for line in bare.stderr.splitlines() if "Error" in line]  # the cause first: No module named 'prime'
    bare_error = next((e for e in errors if "ModuleNotFoundError" in e), errors[-1] if errors else "loaded")
    for step in (["install", "-q", str(wheel)], ["install", "-q", "--force-reinstall", "--no-deps", str(wheel)]):
        done = pip(venv, *step)
        if done.returncode:
            sys.exit(f"pip {' '.join(step)} in {venv} failed:\n{done.stderr[-2000:]}")
    conflicts = pip(venv, "check")
    return {"wheel": wheel.name, "reward_py_without_wheel": bare_error, "install": f"pip install ./{wheel.name}",
            "pip_check": conflicts.stdout.strip().splitlines() or ["ok"]}


def demo_sources(tmp: Path) -> dict[str, Path]:
    """The two demo runs, and the PRIME one on the code task (assert and stdin/stdout rows) and on a
    model with a chat template of its own (SmolLM2), as config files `prime export verl` accepts."""
    sources = {"demo-prime": ROOT / "data" / "demo" / "prime", "demo-rloo": ROOT / "data" / "demo" / "rloo"}
    saved = json.loads((sources["demo-prime"] / "config.json").read_text())
    for name, change in (("demo-prime-code", {"task": "code"}), ("demo-prime-smollm2", {"model": "smollm2-135m"})):
        path = tmp / f"{name}.json"
        path.write_text(json.dumps({**saved, **change}))
        sources[name] = path
    return sources


def reward_cases(rows: list[dict], split: str) -> list[dict]:
    """A right and a wrong response for each checked row, with our verifier's score of each: math, the
    reference answer boxed and the next different answer boxed; code, the reference program and the
    next row's program of the same kind (a correct program for another problem)."""
    from prime.verifiers import verify

    def kind(r: dict) -> str:
        return "code-io" if r.get("io") else "code-assert" if r.get("tests") else "math"

    cases = []
    math_seen = 0
    for i, r in enumerate(rows):
        k = kind(r)
        if k == "math":
            math_seen += 1
            if math_seen > MATH_ROWS_CHECKED:
                continue
            other = next(o["answer"] for o in rows[i + 1:] + rows[:i] if o["answer"] != r["answer"])
            right, wrong = f"The answer is \\boxed{{{r['answer']}}}.", f"The answer is \\boxed{{{other}}}."
        else:
            right = r["answer"]
            wrong = next((o["answer"] for o in rows[i + 1:] + rows[:i] if kind(o) == k and o["answer"] != r["answer"]), None)
            if wrong is None:  # the only row of its kind in this split: a program that prints nothing
                wrong = "```python\npass\n```"
        for which, response in (("right", right), ("wrong", wrong)):
            cases.append({"split": split, "index": i, "kind": k, "which": which, "response": response,
                          "expected": float(verify(response, r).reward)})
    return cases


def our_side(source: Path, out: Path) -> dict:
    """Export with our code; each row's prompt ids (encode_prompt) and the reward cases (our verifiers)."""
    from prime.export import export_verl, load_config
    from prime.models import load_tokenizer, resolve_model
    from prime.rollout import encode_prompt
    from prime.tasks import load_task

    t0 = time.time()
    export_verl(source, out)
    export_s = time.time() - t0
    cfg, _ = load_config(source)
    tok = load_tokenizer(resolve_model(cfg.model))
    prompts, rewards = {}, []
    for split in ("train", "test"):
        rows = load_task(cfg.task, split, skipped=[])  # the rows the export wrote (bad ones skipped)
        prompts[split] = [encode_prompt(tok, r["prompt"], r.get("system") or cfg.system_prompt) for r in rows]
        rewards += reward_cases(rows, split)
    return {"dir": str(out), "algo": cfg.algo, "task": cfg.task, "model": cfg.model, "export_seconds": round(export_s, 1),
            "prompts": prompts, "rewards": rewards}


def in_verl(args) -> int:
    from prime.export import LAUNCH_EXAMPLE

    venv = args.venv.expanduser()
    ensure_venv(venv)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        sources = {Path(s).stem if Path(s).is_file() else Path(s).name: Path(s) for s in args.sources} or demo_sources(tmp)
        exports = {name: our_side(src, tmp / "exports" / name) for name, src in sources.items()}
        wheel = install_wheel(venv, Path(next(iter(exports.values()))["dir"]))
        launch_root = tmp / "launch"  # a veRL launch directory: verl-recipe importable as `recipe`
        launch_root.mkdir()
        (launch_root / "recipe").symlink_to(args.recipe.resolve())
        spec = {"recipe": str(args.recipe.resolve()), "launch_root": str(launch_root), "launch_example": list(LAUNCH_EXAMPLE),
                "recipe_calls_from": next(iter(exports)), "exports": exports}
        (tmp / "spec.json").write_text(json.dumps(spec))
        t0 = time.time()
        subprocess.run([str(venv / "bin" / "python"), str(ROOT / "benchmarks" / "verl_probe.py"), str(tmp / "spec.json"),
                        str(tmp / "verl.json")], check=True)
        result = json.loads((tmp / "verl.json").read_text())
    recipe_commit = subprocess.run(["git", "-C", str(args.recipe), "rev-parse", "HEAD"], check=False, capture_output=True, text=True).stdout.strip()
    result = {"command": "python benchmarks/check_verl_export.py --in-verl --recipe VERL_RECIPE_CHECKOUT",
              "recipe": recipe_commit or str(args.recipe), **result, **wheel, "probe_seconds": round(time.time() - t0, 1),
              "sources": {n: str(s.relative_to(ROOT) if s.is_relative_to(ROOT) else s.name) for n, s in sources.items()}}
    for name, ex in exports.items():
        result["exports"][name] = {"algo": ex["algo"], "task": ex["task"], "model": ex["model"],
                                   "export_seconds": ex["export_seconds"], **result["exports"][name]}
    failures = problems(result)
    result["all_passed"] = not failures
    result["failures"] = failures
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0 if not failures else 1


def problems(result: dict) -> list[str]:
    """What did not hold, export by export (the recipe's calls are reported, not judged: they are veRL's)."""
    out = []
    for name, r in result["exports"].items():
        if not r["entry_point_composes"]["ok"]:
            out.append(f"{name}: the recipe's entry point rejected run_prime.sh: {r['entry_point_composes'].get('tail')}")
        c = r["config"]
        if c["validate_config"] != "passed" and not c["validate_config"].startswith(NEEDS_VLLM):
            out.append(f"{name}: validate_config: {c['validate_config']}")
        if c["validate_config with rollout.name=sglang"] != "passed":
            out.append(f"{name}: validate_config with rollout.name=sglang: {c['validate_config with rollout.name=sglang']}")
        for key in ("dataclass actor_rollout_ref.actor", "dataclass actor_rollout_ref.model",
                    "dataclass actor_rollout_ref.rollout with rollout.mode=async"):
            if " " in c[key]:  # a class name, or an error
                out.append(f"{name}: {key}: {c[key]}")
        for split in ("train", "test"):
            p = r["prompts"][split]
            for what in ("kept_by_length_filter", "equal_in_length_filter", "equal_in_rollout_prompt"):
                if p[what] != p["rows"]:
                    out.append(f"{name}: {split}: {what} {p[what]} of {p['rows']}")
        rw = r["rewards"]
        if not rw["loaded"]:
            out.append(f"{name}: reward.py: {rw['error']}")
            continue
        for kind, k in rw["by_kind"].items():
            if k["equal_called"] != k["cases"] or k["equal_batch"] != k["cases"]:
                out.append(f"{name}: {kind}: veRL's scores differ from ours ({k})")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sources", nargs="*", type=Path, help="keys: one export directory; --in-verl: runs or config files "
                                                           "to export (default: the demo runs and two variants)")
    ap.add_argument("--recipe", type=Path, required=True, help="a verl-recipe checkout")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--dump-keys", type=Path, help="also write every known key (the snapshot tests/data/verl_config_keys.json)")
    ap.add_argument("--in-verl", action="store_true", help="load exports with veRL's own code in its own virtual environment")
    ap.add_argument("--venv", type=Path, default=DEFAULT_VENV, help=f"veRL's virtual environment (default {DEFAULT_VENV})")
    args = ap.parse_args()
    if args.in_verl:
        return in_verl(args)
    if len(args.sources) != 1:
        ap.error("the key check takes one export directory")
    args.export = args.sources[0]
    return check_keys(args)


if __name__ == "__main__":
    sys.exit(main())
