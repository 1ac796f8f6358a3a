"""`prime` command line: bad input gives one clear line on stderr and exit code 2."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from prime.models import MANIFEST

EXAMPLE_PROMPT = "Start with 5. Multiply by 3. Subtract 3. What is the result?"
EXAMPLE_RESPONSE = "5 * 3 = 15\n15 - 3 = 12\nThe answer is \\boxed{12}."


pytestmark = pytest.mark.slow  # each test starts `prime` in a fresh process (~2-7 s)


def prime(*args, cache=None):
    env = dict(os.environ)
    if cache is not None:
        env["PRIME_CACHE"] = str(cache)
    return subprocess.run([sys.executable, "-m", "prime", *args], check=False, capture_output=True, text=True, env=env, timeout=300)


def assert_one_line_error(result, *needles):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [l for l in result.stderr.splitlines() if l.startswith("prime: error:")]
    assert len(lines) == 1, result.stderr
    for n in needles:
        assert n in lines[0], lines[0]


def score_args(model, response=EXAMPLE_RESPONSE, prompt=EXAMPLE_PROMPT):
    return ["score", "--model", model, "--prompt", prompt, "--response", response]


def test_unknown_model_name():
    assert_one_line_error(prime(*score_args("gpt-17")), "unknown model 'gpt-17'", "tiny, smollm2-135m")


def test_missing_cache(tmp_path):
    assert_one_line_error(prime(*score_args("tiny"), cache=tmp_path), "not built yet", "prime models build tiny")


def test_corrupt_cache(tmp_path, tiny_dir):
    broken = tmp_path / "models" / "tiny"
    shutil.copytree(tiny_dir, broken)
    (broken / "model.safetensors").unlink()
    assert_one_line_error(prime(*score_args("tiny"), cache=tmp_path), "corrupt", "--force")
    shutil.copy(tiny_dir / "model.safetensors", broken / "model.safetensors")
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    assert_one_line_error(prime(*score_args("tiny"), cache=tmp_path), "cannot load model")


def test_zero_token_response(tiny_dir):
    assert_one_line_error(prime(*score_args("tiny", response="")), "zero tokens")


def test_prompt_longer_than_context(tiny_dir):
    assert_one_line_error(prime(*score_args("tiny", prompt="Add 1. " * 400)), "longer than the model's context")


def test_step_without_run():
    assert_one_line_error(prime("score", "--model", "tiny", "--step", "3", "--prompt", "p", "--response", "r"), "--step needs --run")


def test_missing_checkpoint(tmp_path):
    (tmp_path / "run" / "checkpoints" / "step_000002").mkdir(parents=True)
    assert_one_line_error(prime("score", "--model", "tiny", "--run", str(tmp_path / "run"), "--step", "5",
                                "--prompt", "p", "--response", "r"), "no checkpoint for step 5", "available steps: 2")


def test_score_json_on_tiny(tiny_dir):
    result = prime(*score_args("tiny"), "--answer", "12", "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert "".join(t["text"] for t in out["tokens"]) == EXAMPLE_RESPONSE + "</s>"
    assert all(t["reward"] == 0.0 and t["q"] == 0.0 for t in out["tokens"])  # step 0: PRM == reference
    # a token the model is sure of can have log-prob exactly 0.0 in fp32
    assert all(t["prm_logp"] == t["ref_logp"] <= 0 for t in out["tokens"]) and any(t["ref_logp"] < 0 for t in out["tokens"])
    assert [s["text"] for s in out["steps"]] == ["5 * 3 = 15\n", "15 - 3 = 12\n", "The answer is \\boxed{12}.</s>"]
    assert out["verdict"]["score"] == 1.0


def test_score_with_a_trained_prm_checkpoint(tmp_path, tiny_dir):
    """A PRM adapter that moved gives non-zero rewards through --run/--step."""
    import torch

    from prime.models import Roles
    from prime.score import score

    torch.manual_seed(0)
    roles = Roles(tiny_dir, device=torch.device("cpu"))
    with torch.no_grad():
        for p in roles.adapter_parameters("prm"):
            p.add_(0.02 * torch.randn_like(p))
    run = tmp_path / "run"
    roles.save_adapters(run / "checkpoints" / "step_000001")
    (run / "config.json").write_text(json.dumps({"model": {"name": "tiny"}}))
    result = prime("score", "--run", str(run), "--prompt", EXAMPLE_PROMPT, "--response", EXAMPLE_RESPONSE, "--json")
    assert result.returncode == 0, result.stderr
    rewards = [t["reward"] for t in json.loads(result.stdout)["tokens"]]
    expected = [t["reward"] for t in score(roles, EXAMPLE_PROMPT, EXAMPLE_RESPONSE)["tokens"]]
    assert rewards == pytest.approx(expected, abs=1e-6)  # the checkpoint's PRM, not the initial one
    assert sum(abs(r) for r in rewards) > 1e-3  # (a token the model is sure of can still give exactly 0)


def test_models_list(tiny_dir):
    result = prime("models", "list")
    assert result.returncode == 0 and "tiny" in result.stdout and "ok" in result.stdout


def test_build_reports_cached_path(tiny_dir):
    result = prime("models", "build", "tiny")
    assert result.returncode == 0 and result.stdout.strip() == str(tiny_dir)
    assert (tiny_dir / MANIFEST).is_file()


def test_score_accepts_a_local_model_directory(micro_model_dir):
    result = prime(*score_args(str(micro_model_dir)), "--json")
    assert result.returncode == 0, result.stderr
    assert all(t["reward"] == 0.0 for t in json.loads(result.stdout)["tokens"])


def test_not_a_model_directory(tmp_path):
    (tmp_path / "empty").mkdir()
    assert_one_line_error(prime(*score_args(str(tmp_path / "empty"))), "incomplete or corrupt", "config.json")
