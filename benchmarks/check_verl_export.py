"""Check a `prime export verl` directory against veRL itself: every Hydra override in its
run_prime.sh must be a key of veRL's trainer config (shipped in the `verl` wheel), of
verl-recipe's prime/config/prime_trainer.yaml, or one the recipe's own launch script sets;
the parquet must have veRL's columns and chat-message prompts.

    pip install -r benchmarks/requirements-verl.txt          # verl, without its GPU dependencies
    git clone https://github.com/verl-project/verl-recipe    # for prime/config and prime/run_prime_qwen.sh
    prime export verl runs/demo --out /tmp/verl-export
    python benchmarks/check_verl_export.py /tmp/verl-export --recipe verl-recipe [--out result.json]

Not a test (needs verl and a recipe checkout, neither in the core install); the result of the
last run is in benchmarks/results/verl_export_check.json. `--dump-keys` refreshes the key snapshot
the test suite checks exports against (tests/data/verl_config_keys.json).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from importlib import metadata
from pathlib import Path


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
    return re.findall(r"^\s+([a-z_]+(?:\.[a-z_0-9]+)+)=", (export / "run_prime.sh").read_text(), re.MULTILINE)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("export", type=Path)
    ap.add_argument("--recipe", type=Path, required=True, help="a verl-recipe checkout")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--dump-keys", type=Path, help="also write every known key (the snapshot tests/data/verl_config_keys.json)")
    args = ap.parse_args()
    version, base = verl_trainer_keys()
    config, script = recipe_keys(args.recipe)
    if args.dump_keys:
        args.dump_keys.write_text(json.dumps({"verl": version, "recipe": "verl-recipe prime/config/prime_trainer.yaml and "
                                              "prime/run_prime_qwen.sh", "keys": sorted(base | config | script)}, indent=0))
    ours = emitted(args.export)
    found = {k: ("verl trainer config" if k in base else "recipe config" if k in config
                 else "recipe launch script" if k in script else None) for k in ours}
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


if __name__ == "__main__":
    sys.exit(main())
