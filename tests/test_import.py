"""`prime import`: a veRL rollout dump (its documented format) and a TRL completions file made
by TRL itself become run directories; token rewards from our PRM checkpoint; the workbench
opens them (browser)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pandas as pd
import pytest

from prime import cli
from prime.records import ROLLOUT_SCHEMA, read_metrics, read_rollouts
from prime.tasks import load_task

ROOT = Path(__file__).resolve().parents[1]
DEMO_PRIME = ROOT / "data" / "demo" / "prime"  # a real run: its PRM checkpoint scores the imports


pytestmark = pytest.mark.slow  # runs TRL's GRPOTrainer for a step


@pytest.fixture(scope="module")
def trl_output(tiny_dir):
    """One GRPO step of TRL on tiny with log_completions=True: TRL writes completions/*.parquet."""
    pytest.importorskip("trl")
    import torch
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from prime.models import load_base, load_tokenizer
    from prime.verifiers import verify

    rows = load_task("arith", "train")[:2]
    by_prompt = {r["prompt"] + "\n": r for r in rows}

    def arith_reward(completions, prompts, **_):
        return [float(verify(c, by_prompt[p]).reward) for c, p in zip(completions, prompts)]

    out = Path(tempfile.mkdtemp(prefix="trl-"))
    config = GRPOConfig(output_dir=str(out), use_cpu=True, per_device_train_batch_size=8, num_generations=4,
                        generation_batch_size=8, max_completion_length=32, max_steps=1, logging_steps=1, report_to="none",
                        save_strategy="no", log_completions=True, beta=0.0, seed=0, dataloader_num_workers=0,
                        shuffle_dataset=False)
    torch.manual_seed(0)
    trainer = GRPOTrainer(model=load_base(tiny_dir, "none", torch.device("cpu")), reward_funcs=arith_reward, args=config,
                          train_dataset=Dataset.from_list([{"prompt": p} for p in by_prompt]),
                          processing_class=load_tokenizer(tiny_dir))
    trainer.train()
    assert list((out / "completions").glob("completions_*.parquet"))
    return out


@pytest.fixture(scope="module")
def verl_dump(tmp_path_factory):
    """trainer.rollout_data_dir as veRL writes it: {global_step}.jsonl with input, output, gts, score, step."""
    root = tmp_path_factory.mktemp("verl-dump")
    rows = load_task("arith", "train")[:2]
    for step in (1, 2):
        lines = []
        for r in rows:
            for k in range(4):
                right = k < step  # step 1: 1 of 4 right, step 2: 2 of 4
                answer = r["answer"] if right else str(int(float(r["answer"])) + 1)
                lines.append({"input": r["prompt"], "output": f"{r.get('solution', '')}\nThe answer is \\boxed{{{answer}}}.",
                              "gts": r["answer"], "score": 1.0 if right else 0.0, "step": step})
        (root / f"{step}.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return root


def test_import_a_verl_dump_with_token_rewards(verl_dump, tmp_path, capsys):
    out = tmp_path / "runs" / "from-verl"
    assert cli.main(["import", "verl", str(verl_dump), "--out", str(out), "--run", str(DEMO_PRIME)]) == 0
    assert "scored token by token" in capsys.readouterr().out
    df = read_rollouts(out, 2)
    assert list(df.columns) == ROLLOUT_SCHEMA.names and len(df) == 8
    assert (df.groupby("prompt_id").size() == 4).all() and sorted(df.sample_idx.unique()) == [0, 1, 2, 3]
    assert set(df.prompt_acc) == {0.5} and set(df.filter_decision) == {"kept"}  # recomputed: 2 of 4 right
    assert set(read_rollouts(out, 1).filter_decision) == {"kept"}  # 1 of 4 = 0.25, inside [0.2, 0.8]
    assert all(len(r) == len(t) > 0 for r, t in zip(df.process_reward, df.token_ids))
    assert any(abs(x) > 0 for r in df.process_reward for x in r)  # the demo run's trained PRM, not the reference
    metrics = read_metrics(out)
    assert [m["step"] for m in metrics] == [1, 2] and metrics[1]["acc"] == 0.5
    assert 0.0 <= metrics[1]["reward_model/dpo_acc_before"] <= 1.0


def test_import_trl_completions_made_by_trl(trl_output, tmp_path):
    out = tmp_path / "runs" / "from-trl"
    assert cli.main(["import", "trl", str(trl_output), "--out", str(out), "--run", str(DEMO_PRIME)]) == 0
    made = pd.read_parquet(next((trl_output / "completions").glob("*.parquet")))
    df = read_rollouts(out, int(made.step.iloc[0]))
    assert len(df) == len(made) and sorted(df.outcome_reward) == sorted(made.arith_reward)
    assert all(len(set(a)) <= 1 for a in df.advantage)  # TRL's one advantage per completion, on every token
    assert set(df.advantage.map(lambda a: a[0] if len(a) else None)) <= set(made.advantage) | {None}


def test_bad_import_sources_are_clear_errors(tmp_path, capsys):
    assert cli.main(["import", "verl", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "no {global_step}.jsonl files" in capsys.readouterr().err
    (tmp_path / "3.jsonl").write_text('{"input": "q"}\n')
    assert cli.main(["import", "verl", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "3.jsonl:1: not a veRL rollout line" in capsys.readouterr().err
    assert cli.main(["import", "trl", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "completions_NNNNN.parquet" in capsys.readouterr().err


def test_imports_open_in_the_workbench(verl_dump, trl_output, tmp_path):
    """Both imports in the browser: the Runs table lists them, the Token rewards tab shows a
    scored response's tokens with their values."""
    from test_browser import CHROMIUM, browser_page, serve, shot

    if not Path(CHROMIUM).exists():
        pytest.skip("chromium missing")

    runs = tmp_path / "runs"
    for fmt, src in (("verl", verl_dump), ("trl", trl_output)):
        assert cli.main(["import", fmt, str(src), "--out", str(runs / f"from-{fmt}"), "--run", str(DEMO_PRIME)]) == 0
    app, url = serve(runs)
    try:
        with browser_page(url) as page:
            page.get_by_role("tab", name="Runs").click()
            page.wait_for_function("document.querySelector('#runs-table').innerText.includes('from-verl')", timeout=60_000)
            text = page.locator("#runs-table").inner_text()
            assert "from-trl" in text and "imported (verl)" in text and "imported (trl)" in text
            page.get_by_role("tab", name="Token rewards").click()
            page.wait_for_selector("#token-view .tok", timeout=60_000)
            shown = [float(v) for v in page.eval_on_selector_all("#token-view .tok", "els => els.map(e => e.dataset.reward)")]
            assert shown and any(v != 0 for v in shown)
            shot(page, "imported-token-view")
    finally:
        app.close()
