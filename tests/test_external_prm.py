"""External implicit PRMs (a full PRM model and its reference, e.g. EurusPRM with its base) in
`prime score`, and best-of-N ranking with `prime rank`. Tested with two local full models:
tiny, and a copy of tiny whose weights carry a nudged PRM adapter merged in."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from prime import cli

PROMPT = "Start with 5. Multiply by 3. Subtract 3. What is the result?"
RIGHT = "Multiply by 3: 5 * 3 = 15\nSubtract 3: 15 - 3 = 12\nThe answer is \\boxed{12}."
WRONG = "Multiply by 3: 5 * 3 = 15\nSubtract 3: 15 - 3 = 11\nThe answer is \\boxed{11}."
OFF = "Multiply by 3: 5 * 3 = 18\nSubtract 3: 18 - 3 = 15\nThe answer is \\boxed{15}."


pytestmark = pytest.mark.slow  # trains and merges a PRM, then drives the Playground in a browser


def make_prm_copy(out, tiny_dir):
    """tiny with a PRM adapter pushed towards RIGHT, merged and saved as a plain full model in `out`."""
    from transformers import AutoModelForCausalLM

    from prime.models import LoraSettings, Roles, make_batch, write_manifest
    from prime.rollout import encode_prompt

    torch.manual_seed(0)
    roles = Roles(tiny_dir, quant="none", device=torch.device("cpu"), lora=LoraSettings(r=4, alpha=8))
    tok = roles.tokenizer
    batch = make_batch([encode_prompt(tok, PROMPT)], [tok(RIGHT, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]],
                       tok.pad_token_id)
    opt = torch.optim.SGD(roles.adapter_parameters("prm"), lr=2e-3)
    for _ in range(3):
        opt.zero_grad()
        (-roles.logprobs("prm", batch, grad=True).sum()).backward()
        opt.step()
    full = AutoModelForCausalLM.from_config(roles.causal_lm(roles.models["ref"]).config, dtype=torch.float32)
    _missing, unexpected = full.load_state_dict(roles.merged_state_dict("prm"), strict=False)
    assert not unexpected
    full.tie_weights()
    full.save_pretrained(out)
    tok.save_pretrained(out)
    write_manifest(out, kind="test PRM: tiny with a merged PRM adapter")
    return out


@pytest.fixture(scope="module")
def prm_copy(tmp_path_factory, tiny_dir):
    return make_prm_copy(tmp_path_factory.mktemp("prm") / "tiny-prm", tiny_dir)


def run_cli(capsys, *argv):
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_external_prm_scores_tokens(capsys, prm_copy, tiny_dir):
    code, out, err = run_cli(capsys, "score", "--prm-model", str(prm_copy), "--ref-model", str(tiny_dir), "--prompt", PROMPT,
                             "--response", RIGHT, "--beta", "0.001", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["prm_model"] == str(prm_copy) and result["beta"] == 0.001
    rewards = [t["reward"] for t in result["tokens"]]
    assert any(r != 0 for r in rewards) and result["total_reward"] == pytest.approx(sum(rewards))
    assert result["total_reward"] > 0  # the PRM was pushed towards this very response
    assert result["min_step_reward"] == pytest.approx(min(s["reward"] for s in result["steps"]))
    # the same model as PRM and reference: every reward exactly 0
    code, out, _ = run_cli(capsys, "score", "--prm-model", str(tiny_dir), "--ref-model", str(tiny_dir), "--prompt", PROMPT,
                           "--response", RIGHT, "--json")
    assert code == 0 and all(t["reward"] == 0.0 for t in json.loads(out)["tokens"])


def test_rank_orders_responses_best_first(capsys, prm_copy, tiny_dir, tmp_path):
    responses = tmp_path / "k.jsonl"
    responses.write_text("".join(json.dumps({"response": r}) + "\n" for r in (WRONG, OFF)))
    for by, key in (("total", "total_reward"), ("min-step", "min_step_reward")):
        code, out, err = run_cli(capsys, "rank", "--prm-model", str(prm_copy), "--ref-model", str(tiny_dir), "--prompt", PROMPT,
                                 "--response", RIGHT, "--responses", str(responses), "--by", by, "--json")
        assert code == 0, err
        ranking = json.loads(out)["ranking"]
        assert sorted(r["index"] for r in ranking) == [0, 1, 2] and [r["rank"] for r in ranking] == [1, 2, 3]
        values = [r[key] for r in ranking]
        assert values == sorted(values, reverse=True)
    assert json.loads(out)["ranking"][0]["index"] == 0 or by == "min-step"
    code, out, _ = run_cli(capsys, "rank", "--model", "tiny", "--prompt", PROMPT, "--response", RIGHT, "--response", WRONG)
    assert code == 0 and out.splitlines()[0].split()[:3] == ["rank", "#", "r_φ(y)"]


def test_bad_external_prm_input_is_a_clear_error(capsys, prm_copy, tiny_dir, micro_model_dir):
    code, _, err = run_cli(capsys, "score", "--prm-model", str(prm_copy), "--prompt", PROMPT, "--response", RIGHT)
    assert code == 2 and "needs both --prm-model DIR and --ref-model DIR" in err
    code, _, err = run_cli(capsys, "score", "--prm-model", str(micro_model_dir), "--ref-model", str(tiny_dir), "--prompt",
                           PROMPT, "--response", RIGHT)
    assert code == 2 and "tokenize differently" in err
    code, _, err = run_cli(capsys, "rank", "--model", "tiny", "--prompt", PROMPT, "--response", RIGHT)
    assert code == 2 and "at least two responses" in err


def test_external_prm_and_ranking_in_the_playground(prm_copy, tiny_dir):
    """The Playground with an external PRM/reference pair: the heatmap shows exactly the rewards
    `prime score` computes, and three responses come back ranked."""
    from test_browser import CHROMIUM, browser_page, serve, shot

    if not Path(CHROMIUM).exists():
        pytest.skip("chromium missing")

    from prime.models import ExternalPRM
    from prime.score import score
    from workbench.app import DEMO_RUNS
    from workbench.playground import EXAMPLE

    expected = score(ExternalPRM(prm_copy, tiny_dir), EXAMPLE["prompt"], EXAMPLE["response"], beta=0.05)
    app, url = serve(DEMO_RUNS)
    try:
        with browser_page(url, height=1400) as page:
            page.get_by_role("tab", name="Playground").click()
            page.get_by_text("External implicit PRM").click()
            page.locator("#prm-dir textarea, #prm-dir input").first.fill(str(prm_copy))
            page.locator("#ref-dir textarea, #ref-dir input").first.fill(str(tiny_dir))
            page.get_by_role("button", name="Score").click()
            page.wait_for_selector("#token-heatmap .tok", timeout=60_000)
            shown = [float(v) for v in page.eval_on_selector_all("#token-heatmap .tok", "els => els.map(e => e.dataset.reward)")]
            assert shown == [t["reward"] for t in expected["tokens"]] and any(v != 0 for v in shown)
            page.get_by_text("Rank K responses").click()
            page.locator("#rank-responses textarea").fill(f"{RIGHT}\n---\n{WRONG}\n---\n{OFF}")
            page.locator("#rank-button").click()
            page.wait_for_function("document.querySelector('#rank-message').innerText.includes('3 responses ranked')",
                                   timeout=60_000)
            assert "min step reward" in page.locator("#rank-table").inner_text()
            shot(page, "playground-external-prm")
    finally:
        app.close()
