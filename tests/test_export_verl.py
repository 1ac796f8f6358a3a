"""`prime export verl`: what the export carries so that veRL reads it as the run did, checked
without veRL (benchmarks/check_verl_export.py --in-verl runs veRL's own code on it).

- prompts: a model without a chat template (tiny) gets format_prompt's format as one, and
  transformers' apply_chat_template (what veRL calls) reproduces encode_prompt token for token;
- reward: the export ships a wheel of this project, its README installs that file by path (never
  `prime-workbench` from an index), and reward.py works with nothing but the wheel, pickled too
  (veRL's PRIME reward manager scores in a process pool);
- run_prime.sh: the arguments bash hands python3, as veRL's Hydra receives them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from prime.export import LAUNCH_EXAMPLE, export_chat_template, export_verl, verl_rows
from prime.rollout import PLAIN_CHAT_TEMPLATE, encode_prompt
from prime.tasks import load_task


@pytest.fixture
def tiny_tok(tiny_dir):
    from prime.models import load_tokenizer

    return load_tokenizer(tiny_dir)


def verl_ids(tok, messages: list[dict], **kwargs) -> list[int]:
    """Token ids as veRL computes them: apply_chat_template(tokenize=True, add_generation_prompt=True)."""
    ids = tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=True, **kwargs)
    return list(ids["input_ids"] if hasattr(ids, "keys") else ids)


# ------------------------------------------------------------------------------------------ prompts

@pytest.mark.parametrize("system", ["", "Answer with \\boxed{}.\nBe brief."])  # none; one of two lines
def test_the_plain_template_reproduces_encode_prompt(tiny_tok, tiny_dir, system):
    """Every arith test row and every code row, as the export writes their messages, through the
    template both ways veRL passes it (the tokenizer's own template; apply_chat_template_kwargs)."""
    assert export_chat_template(tiny_tok) == PLAIN_CHAT_TEMPLATE  # tiny has no template of its own
    rows = load_task("arith", "test") + load_task("code", "train") + load_task("code", "test")
    exported = verl_rows(rows, "arith", "test", system)
    from prime.models import load_tokenizer

    templated = load_tokenizer(tiny_dir)
    templated.chat_template = PLAIN_CHAT_TEMPLATE  # as veRL's custom_chat_template sets it
    for row, ex in zip(rows, exported):
        ours = encode_prompt(tiny_tok, row["prompt"], system or None)
        assert verl_ids(tiny_tok, list(ex["prompt"]), chat_template=PLAIN_CHAT_TEMPLATE) == ours, row["id"]
        assert verl_ids(templated, list(ex["prompt"])) == ours, row["id"]


def test_the_plain_template_renders_format_prompts_text(tiny_tok):
    cases = [
        ([{"role": "user", "content": "Q?"}], "Q?\n"),  # the tiny model's SFT format
        ([{"role": "system", "content": "S"}, {"role": "user", "content": "Q?"}], "S\n\nQ?\n"),  # system, blank line
        ([{"role": "system", "content": ""}, {"role": "user", "content": "Q?"}], "Q?\n"),  # empty system: none, as format_prompt
        ([{"role": "user", "content": "a\nb {{ x }}"}], "a\nb {{ x }}\n"),  # content is data, not template
    ]
    for messages, text in cases:
        assert tiny_tok.apply_chat_template(messages, chat_template=PLAIN_CHAT_TEMPLATE, tokenize=False,
                                            add_generation_prompt=True) == text
    with pytest.raises(Exception, match="system and user messages only"):  # an assistant turn has no format here
        tiny_tok.apply_chat_template([{"role": "assistant", "content": "A"}], chat_template=PLAIN_CHAT_TEMPLATE,
                                     tokenize=False)


def test_a_model_with_a_chat_template_keeps_its_own(tiny_tok):
    tiny_tok.chat_template = "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}<assistant>"
    assert export_chat_template(tiny_tok) is None


# ------------------------------------------------------------------------------------- the export

@pytest.fixture(scope="module")
def code_export(tmp_path_factory, tiny_dir):
    """An export of a PRIME run on the code task (assert and stdin/stdout rows), from a config file."""
    root = tmp_path_factory.mktemp("export")
    config = root / "code-run.json"
    config.write_text(json.dumps({"task": "code", "model": "tiny", "system_prompt": "Be brief."}))
    return export_verl(config, root / "out", model_path="/models/tiny")


def launch_argv(export: Path, tmp_path: Path) -> list[str]:
    """What python3 receives from run_prime.sh (a stub python3 records it)."""
    stub, dump = tmp_path / "python3", tmp_path / "argv.json"
    stub.write_text(f"#!{sys.executable}\nimport json, sys\njson.dump(sys.argv[1:], open({str(dump)!r}, 'w'))\n")
    stub.chmod(0o755)
    subprocess.run(["bash", str(export / "run_prime.sh")], check=True, cwd=tmp_path,
                   env={**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"})
    return json.loads(dump.read_text())


def test_the_export_ships_its_wheel_and_installs_it_by_path(code_export):
    wheels = list(code_export.glob("prime_workbench-*-py3-none-any.whl"))
    assert len(wheels) == 1
    readme = (code_export / "README.md").read_text()
    assert f"pip install ./{wheels[0].name}" in readme
    for text in (readme, (code_export / "reward.py").read_text()):
        assert "pip install prime-workbench" not in text and "install `prime-workbench`" not in text
    with zipfile.ZipFile(wheels[0]) as z:
        names = set(z.namelist())
        metadata = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert {"prime/verl_reward.py", "prime/verifiers/__init__.py", "prime/sandbox/child.py"} <= names
    assert not any("__pycache__" in n or n.startswith("tests/") for n in names)
    assert "Name: prime-workbench" in metadata and "Requires-Dist: math-verify" in metadata


def test_reward_py_scores_with_nothing_but_the_wheel(code_export, tmp_path):
    """A fresh interpreter importing `prime` from the wheel's files alone (not this checkout) loads reward.py by
    path as veRL does, scores right and wrong programs of both kinds as our verifier does, and the
    function survives pickling (veRL's PRIME reward manager sends it to a process pool)."""
    import pandas as pd

    from prime.verifiers import verify

    wheel = next(code_export.glob("prime_workbench-*.whl"))
    rows = load_task("code", "train")
    df = pd.read_parquet(code_export / "data" / "train.parquet")
    cases = []
    for i, (row, ex) in enumerate(zip(rows, df.itertuples())):
        if i % 4:
            continue
        wrong = rows[(i + 1) % len(rows)]["answer"]  # a right program for another problem
        for response in (row["answer"], wrong):
            cases.append({"args": [ex.data_source, response, ex.reward_model["ground_truth"], dict(ex.extra_info)],
                          "ours": verify(response, row).reward})
    assert {c["ours"] for c in cases} == {0.0, 1.0}
    assert {"io" in json.loads(c["args"][3]["prime_checks"]) for c in cases} == {True, False}  # both kinds of code
    script = (
        "import importlib.util, json, pickle, sys\n"
        f"spec = importlib.util.spec_from_file_location('reward_by_path', {str(code_export / 'reward.py')!r})\n"
        "mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)\n"
        "import prime\n"
        "fn = pickle.loads(pickle.dumps(mod.compute_score))\n"
        "cases = json.loads(sys.stdin.read())\n"
        "print(json.dumps({'prime': prime.__file__, 'scores': [fn(*c['args']) for c in cases]}))\n")
    site = tmp_path / "site"  # the wheel installed: a pure-Python wheel's files unpacked (the sandbox reads files)
    zipfile.ZipFile(wheel).extractall(site)
    done = subprocess.run([sys.executable, "-c", script], input=json.dumps(cases), capture_output=True, text=True,
                          cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(site)}, check=True)
    got = json.loads(done.stdout)
    assert got["prime"].startswith(str(site))  # imported from the wheel, not from the source tree
    assert got["scores"] == [c["ours"] for c in cases]


def test_run_prime_sh_hands_hydra_what_veRL_needs(code_export, tmp_path):
    from prime.models import load_tokenizer, resolve_model

    argv = launch_argv(code_export, tmp_path)
    assert argv[:2] == ["-m", "recipe.prime.main_prime"]
    given = dict(a.split("=", 1) for a in argv[2:])
    here = str(code_export.resolve())
    assert given["hydra.searchpath"] == "[pkg://verl.trainer.config]"  # not the recipe's checkout-relative path
    assert given["data.train_files"] == f"['{here}/data/train.parquet']"  # absolute: Ray workers run elsewhere
    assert given["custom_reward_function.path"] == f"{here}/reward.py"
    assert given["actor_rollout_ref.model.path"] == "/models/tiny"
    # the template reaches Hydra as one quoted string, whole (Hydra unquotes it)
    assert given["actor_rollout_ref.model.custom_chat_template"] == f'"{PLAIN_CHAT_TEMPLATE}"'
    assert given["++data.apply_chat_template_kwargs.chat_template"] == "${actor_rollout_ref.model.custom_chat_template}"
    tok = load_tokenizer(resolve_model("tiny"))
    rows = load_task("code", "train") + load_task("code", "test")
    assert int(given["data.max_prompt_length"]) == max(len(encode_prompt(tok, r["prompt"], "Be brief.")) for r in rows)
    assert given["actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu"] == given["actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu"]
    assert [k for k in given if k.startswith("+")] == ["++data.apply_chat_template_kwargs.chat_template",
                                                        "++reward_model.micro_batch_size_per_gpu"]
    readme = (code_export / "README.md").read_text()
    assert f"run_prime.sh {' '.join(LAUNCH_EXAMPLE)}" in readme and "custom_chat_template" in readme


def test_an_rloo_run_launches_the_recipe_without_its_prm(tmp_path, tiny_dir):
    """veRL's own main_ppo has no accuracy filter (Hydra rejects data.filter_accuracy there): an RLOO run
    goes through the recipe too, with reward_model.enable=False."""
    config = tmp_path / "rloo-run.json"
    config.write_text(json.dumps({"task": "arith", "model": "tiny", "algo": "rloo"}))
    out = export_verl(config, tmp_path / "out")
    given = dict(a.split("=", 1) for a in launch_argv(out, tmp_path)[2:])
    assert given["reward_model.enable"] == "False" and given["data.filter_accuracy"] == "True"
    assert "python3 -m recipe.prime.main_prime" in (out / "run_prime.sh").read_text()
