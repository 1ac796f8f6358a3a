"""prime.views, the one view layer of the app and the report: smoothing, label placement, the
Summary's sentences and examples, the first wrong line, each against hand-computed cases."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from prime import views


def run(name: str, rows: list[dict], **config) -> dict:
    return {"name": name, "path": None, "config": {"algo": "prime", "eval_n": 300} | config,
            "metrics": pd.DataFrame(rows)}


def test_ema_is_debiased_and_skips_gaps():
    assert views.ema([1.0, 1.0, float("nan"), 1.0], 0.9)[3] == pytest.approx(1.0)
    assert math.isnan(views.ema([1.0, float("nan")], 0.9)[1])
    assert views.ema([0.0, 1.0], 0.5) == pytest.approx([0.0, 2 / 3])  # (0.5·0 + 0.5·1) / (1 − 0.25)
    assert views.ema([0.3, 0.7], 0.0) == [0.3, 0.7]
    assert views.noise_kept(0.8) == pytest.approx(1 / 3)


def test_labels_are_spread_without_reordering():
    assert views.spread_labels([0.5, 0.52, 0.9], 0.1) == pytest.approx([0.5, 0.6, 0.9])
    assert views.spread_labels([0.52, 0.5], 0.1) == pytest.approx([0.6, 0.5])
    assert views.spread_labels([0.1, 0.5], 0.1) == [0.1, 0.5]


def test_every_line_is_labelled_in_its_own_chart_and_baselines_are_grey():
    a = run("a", [{"step": s, "acc": 0.1 * s, "reward_model/dpo_acc_before": 0.6,
                   "reward_model/ref_ll_pairwise_acc": 0.7} for s in range(1, 4)])
    b = run("b", [{"step": s, "acc": 0.2} for s in range(1, 4)], algo="rloo")
    fig = views.curves_figure([a, b], ["training accuracy (all samples)", "PRM: right ranked above wrong"], 0.5)
    by_axis: dict[str, set] = {}
    for ann in fig.layout.annotations:
        by_axis.setdefault(ann.xref, set()).add(ann.text)
    assert by_axis["x"] >= {"a", "b"}
    assert by_axis["x2"] == {"a", "reference", "chance"}  # b has no PRM: neither line nor baseline
    for t in fig.data:
        assert not t.showlegend
        if t.meta[2] == "baseline":
            assert t.line.color == views.BASELINE
    raw = next(t for t in fig.data if tuple(t.meta) == ("a", "acc", "raw"))
    assert list(raw.y) == pytest.approx([0.1, 0.2, 0.3])  # the records, unsmoothed
    smoothed = next(t for t in fig.data if tuple(t.meta) == ("a", "acc", "smoothed"))
    assert list(smoothed.y) == pytest.approx(views.ema([0.1, 0.2, 0.3], 0.5))


def test_summary_sentences_are_computed_from_the_records():
    rows = [{"step": 0, "eval/acc_sampled": 0.2}]
    rows += [{"step": s, "reward_model/dpo_acc_before": 0.5 if s <= 5 else 0.8, "reward_model/ref_ll_pairwise_acc": 0.6,
              "localise/prm_line_hit": 1.0 if s % 2 else 0.0, "localise/n": 3 if s % 2 else 1,
              "localise/line_chance": 0.25, "localise/ref_line_hit": 0.5,
              "filter/kept": 4, "filter/too_hard": 4, "filter/too_easy": 2, "filter/surplus": 0, "filter/truncated": 0,
              "critic/process_share": 0.5 if s <= 10 else 0.03}
             for s in range(1, 21)]
    rows += [{"step": 20, "eval/acc_sampled": 0.35}]
    claims = {c["id"]: c for c in views.summary([run("p", rows), run("r", [{"step": 1, "filter/kept": 2}], algo="rloo")])}
    learn = claims["learn"]["sentences"][0]
    se = math.sqrt(0.35 * 0.65 / 300)
    assert learn == (f"p: eval pass@1 0.200 at step 0 → 0.350 at step 20 (+15.0 points; one standard error "
                     f"{100 * se:.1f} points on 300 problems).")
    assert claims["rank"]["sentences"] == [
        ("p: the PRM ranked right above wrong in 80% of pairs in the last 10 steps; the reference's likelihood alone: "
        "60%; chance: 50%."), "r: an outcome-only run (RLOO): no PRM to rank with."]
    # last 10 steps: 5 odd steps hit with 3 responses each, 5 even miss with 1 each: 15 / 20 = 75%
    assert claims["blame"]["numbers"]["p"] == {"prm": 0.75, "chance": 0.25, "reference": 0.5, "responses": 20, "steps": 10}
    assert claims["blame"]["sentences"][0].startswith("p: the most negative line was the first wrong line in 75% of 20")
    assert claims["update"]["sentences"] == [
        "p: the process term made 3% of the returns' variance in the last 10 steps (0%: the update is RLOO's).",
        "r: an outcome-only run (RLOO): the outcome term is the whole update."]
    assert list(claims) == list(views.CLAIMS)
    assert claims["keep"]["sentences"][0] == "p: of 200 prompts drawn, the filter kept 40%, too easy 20%, too hard 40%."
    assert claims["keep"]["sentences"][1] == "r: of 2 prompts drawn, the filter kept 100%."


def _rollout(prompt_id: int, sample: int, response_lines: list[str], rewards_by_line: list[float], outcome: float,
             first_wrong=None) -> dict:
    tokens, rewards = [], []
    for i, (line, r) in enumerate(zip(response_lines, rewards_by_line)):
        tokens += [line[:3], line[3:] + ("\n" if i < len(response_lines) - 1 else "")]
        rewards += [r / 2, r / 2]
    return {"prompt_id": prompt_id, "sample_idx": sample, "prompt": "Start with 2. Add 3. Multiply by 2. What is the result?",
            "response": "".join(tokens), "tokens": tokens, "process_reward": rewards, "outcome_reward": outcome,
            "first_wrong_line": first_wrong}


def test_blame_examples_pick_a_hit_and_a_miss():
    right = ["Add 3: 2 + 3 = 5", "Multiply by 2: 5 * 2 = 10", "The answer is \\boxed{10}."]
    wrong = ["Add 3: 2 + 3 = 6", "Multiply by 2: 6 * 2 = 12", "The answer is \\boxed{12}."]  # first wrong: line 0
    rows = pd.DataFrame([
        _rollout(1, 0, right, [0.1, 0.1, 0.1], 1.0),
        _rollout(1, 1, wrong, [-0.5, 0.0, 0.0], 0.0),  # hit, blamed hardest
        _rollout(1, 2, wrong, [-0.1, 0.0, 0.0], 0.0),  # hit
        _rollout(2, 0, wrong, [0.0, 0.0, -0.3], 0.0),  # miss: line 2, two lines away
        _rollout(2, 1, wrong, [0.0, -0.4, 0.0], 0.0, first_wrong=0.0),  # miss: one line away
    ])
    assert views.blame_examples(rows) == {
        "hit": {"prompt_id": 1, "sample_idx": 1, "first_wrong_line": 0, "blamed_line": 0},
        "miss": {"prompt_id": 2, "sample_idx": 0, "first_wrong_line": 0, "blamed_line": 2}}


def test_first_wrong_line_recorded_or_checked_now():
    wrong = ["Add 3: 2 + 3 = 5", "Multiply by 2: 5 * 2 = 11", "The answer is \\boxed{11}."]
    row = pd.Series(_rollout(1, 0, wrong, [0, 0, 0], 0.0))
    assert views.first_wrong_of(row) == 1  # no line recorded (an import): the arith check, run now
    assert views.first_wrong_of(row.drop("first_wrong_line")) == 1  # records older than the column
    assert views.first_wrong_of(pd.Series(_rollout(1, 0, wrong, [0, 0, 0], 0.0, first_wrong=2.0))) == 2
    assert views.first_wrong_of(pd.Series(_rollout(1, 0, wrong, [0, 0, 0], 1.0))) is None  # right: nothing to blame
    assert views.first_wrong_of(pd.Series(_rollout(1, 0, wrong, [0, 0, 0], float("nan")))) is None


def test_the_app_and_the_report_mark_the_same_first_wrong_line_of_an_import(tmp_path):
    """An imported arith rollout (the first_wrong_line column present, null): the token view and
    the report's heatmap underline the same tokens, those of the line the process check finds."""
    import re

    from prime import records
    from prime.math.localise import token_lines
    from prime.report import rollout_section
    from workbench import data

    wrong = ["Add 3: 2 + 3 = 5", "Multiply by 2: 5 * 2 = 11", "The answer is \\boxed{11}."]
    row = _rollout(7, 0, wrong, [0.1, -0.2, 0.0], 0.0) | {
        "step": 1, "verifier_detail": "imported", "reference_answer": "10", "filter_decision": "kept", "prompt_acc": 0.25,
        "token_ids": [0] * 6, "policy_logp_old": [], "prm_logp": [], "ref_logp": [], "advantage": []}
    records.write_rollouts(tmp_path, 1, [row])
    records.write_rollouts(tmp_path / "plain", 1, [{k: v for k, v in row.items() if k != "first_wrong_line"}])
    expected = [i for i, line in enumerate(token_lines(row["tokens"])) if line == 1]
    for run in (tmp_path, tmp_path / "plain"):
        app = [i for i, t in enumerate(data.rollout_tokens(run, 1, 7, 0)["tokens"]) if t.get("first_wrong")]
        section = rollout_section("imported", "why", records.read_rollouts(run, 1).iloc[0])
        report = [int(i) for i in re.findall(r"class='tok first-wrong' data-index='(\d+)'", section)]
        assert app == expected, run
        assert report == expected, (run, section[:500])


def test_the_token_view_of_a_rollout_row_by_hand():
    """views.token_view: what the app's token view and the report's heatmap both show."""
    row = pd.Series({"tokens": ["1 + 1 = 3", "\n", "Answer: 3"], "process_reward": [0.25, -0.5, 0.125],
                     "prm_logp": [-1.0, -2.0, -3.0], "ref_logp": [], "advantage": [0.5, 0.5, 0.5],
                     "first_wrong_line": 0, "outcome_reward": 0.0, "prompt": "p", "response": "r"})
    tokens, wrong = views.token_view(row)
    assert wrong == 0
    assert [t["q"] for t in tokens] == [0.25, -0.25, -0.125]
    assert [t["prm_logp"] for t in tokens] == [-1.0, -2.0, -3.0] and "ref_logp" not in tokens[0]
    assert [t["first_wrong"] for t in tokens] == [True, True, False]  # the newline ends line 0
    rloo = row.copy()
    rloo["process_reward"], rloo["first_wrong_line"], rloo["outcome_reward"] = [], None, 1.0
    tokens, wrong = views.token_view(rloo)
    assert wrong is None and [t["reward"] for t in tokens] == [0.0, 0.0, 0.0] and "first_wrong" not in tokens[0]
