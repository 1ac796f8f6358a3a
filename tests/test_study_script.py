"""The sample-efficiency study script (benchmarks/sample_efficiency.py): finished runs are kept
beside the results, so a later checkout without the runs directory skips them when training and
analyses them exactly as it did from the runs themselves."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def study(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("sample_efficiency", ROOT / "benchmarks" / "sample_efficiency.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "ARCHIVE", tmp_path / "archive")
    return module


def fake_run(run: Path, accs: list[float], state: str = "finished") -> None:
    """A run directory as `prime train` leaves it, with the metrics the analysis reads."""
    run.mkdir(parents=True)
    rows = [{"step": 0, "eval/acc": 0.4, "eval/acc_sampled": 0.25}]
    for step, acc in enumerate(accs, 1):
        rows.append({"step": step, "acc": acc, "time/wall_s": float(step), "reward_model/dpo_acc_before": None})
    rows.append({"step": len(accs), "eval/acc": 0.5, "eval/acc_sampled": 0.3 + accs[-1] / 10})
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run / "status.json").write_text(json.dumps({"state": state}))
    (run / "config.json").write_text(json.dumps({"seed": 0}))


def test_finished_runs_are_kept_and_analysed_without_the_runs_directory(study, tmp_path):
    setting = {"steps": 30, "result": "t", "arms": {"rloo": [], "prime": []}}
    runs = tmp_path / "runs"
    rloo = [0.2 + 0.01 * i for i in range(30)]
    fake_run(runs / "rloo-s0", rloo)
    fake_run(runs / "prime-s0", [0.2 + 0.02 * i for i in range(30)])
    fake_run(runs / "prime-s1", [0.2] * 12, state="running")  # interrupted: not kept
    first = study.analyse(setting, runs, ["rloo", "prime"], [0, 1], window=10, partial=False)

    # hand-computed: RLOO's final level = mean of its last 10 accuracies; prime's trailing mean reaches it
    target = sum(rloo[-10:]) / 10
    assert first["target_train_acc"] == pytest.approx(target)
    reached = next(i + 1 for i in range(9, 30) if sum(0.2 + 0.02 * j for j in range(i - 9, i + 1)) / 10 >= target)
    assert first["arms"]["prime"]["steps_to_target"] == {"0": reached}
    assert first["ratio_over_rloo_steps"]["prime"]["values"] == [reached / first["arms"]["rloo"]["steps_to_target"]["0"]]
    # at fixed levels: RLOO's trailing mean at step n ≥ 10 is 0.2 + 0.01·(n − 5.5): 0.40 from step 26;
    # prime's 0.2 + 0.02·(n − 5.5): from 16 (0.45 from 18; RLOO's never reaches 0.45 in 30 steps: no ratio)
    assert first["ratio_at_level"]["prime"] == {"0.40": study.bootstrap_mean_ci([16 / 26])}
    assert sorted(p.name for p in (tmp_path / "archive" / "t").iterdir()) == ["prime-s0", "rloo-s0"]

    # a fresh checkout: no runs directory; the kept runs are skipped by training and read by the analysis
    again = study.analyse(setting, tmp_path / "elsewhere", ["rloo", "prime"], [0, 1], window=10, partial=False)
    assert again == first
    assert study.launch(setting, "rloo", 0, tmp_path / "elsewhere", threads=1) is None

    # the lever table: a row per arm and seed; prime's trailing mean at step n ≥ 10 is 0.2 + 0.02·(n − 5.5):
    # ≥ 0.40 from step 16, ≥ 0.45 from step 18
    table = study.lever_table(first, {"prime": "steeper"}, {"prime-s0": {"process_share": 0.25}}).splitlines()
    assert [row.split(" | ")[0] for row in table[2:]] == ["| rloo 0", "| prime 0"]
    prime = table[3].split(" | ")
    assert prime[1:4] == ["steeper", "16 / 18", f"{sum(0.2 + 0.02 * i for i in range(20, 30)) / 10:.3f}"]
    assert prime[4] == "0.250 → 0.378 (+12.8)"  # 0.3 + 0.78 / 10 and prime[7] == "0.250"


def test_a_warm_started_arm_waits_for_its_pretraining(study, tmp_path, monkeypatch):
    """The seed's `prime prm pretrain` is launched first; the arm with --prm-init WARM only after it
    finished, with that run's last checkpoint in place of WARM."""
    setting = {"steps": 5, "eval_every": 5, "result": "t", "flags": ["--task", "arith"],
               "arms": {"plain": ["--algo", "rloo"], "warm": ["--algo", "prime", "--prm-init", study.WARM]},
               "warm_start": {"steps": 50, "flags": ["--prm-lr", "1e-3"]}}
    launched = []

    class Finishes:  # a `prime` child that finishes at once
        def __init__(self, argv, **_):
            launched.append(argv[3:])
            out = Path(argv[argv.index("--out") + 1]) if "--out" in argv else None
            if out is not None:
                out.mkdir(parents=True, exist_ok=True)
                for name in ("status.json", "config.json", "metrics.jsonl"):
                    (out / name).write_text(json.dumps({"state": "finished"}))
            self.returncode = 0

        def poll(self):
            return 0

    monkeypatch.setattr(study.subprocess, "Popen", Finishes)
    monkeypatch.setattr(study.time, "sleep", lambda _: None)
    runs = tmp_path / "runs"
    study.train_all(setting, ["warm", "plain"], runs, [3], jobs=2, threads=1)
    assert launched[0][:2] == ["prm", "pretrain"] and launched[0][-2:] == ["--prm-lr", "1e-3"]
    warm = next(argv for argv in launched if str(runs / "warm-s3") in argv)
    assert warm[warm.index("--prm-init") + 1] == str(runs / "prm-pretrain-s3" / "checkpoints" / "step_000050")
    assert launched.index(warm) > 0 and len(launched) == 3


def test_runs_kept_only_as_their_numbers_are_compared_like_the_runs_themselves(study, tmp_path, monkeypatch, capsys):
    """keep_summaries archives each run of an earlier result JSON as its per-seed numbers (runs whose
    metrics were lost); analysed from those alone, or beside new runs, every per-seed number, the
    steps to RLOO's level and the paired ratios are what the runs themselves gave. Training skips them."""
    setting = {"steps": 30, "result": "t", "arms": {"rloo": [], "prime": []}}
    runs = tmp_path / "runs"
    curves = {("rloo", 0): [0.2 + 0.01 * i for i in range(30)], ("rloo", 1): [0.25 + 0.008 * i for i in range(30)],
              ("prime", 0): [0.2 + 0.02 * i for i in range(30)], ("prime", 1): [0.2 + 0.012 * i for i in range(30)]}
    for (arm, s), accs in curves.items():
        fake_run(runs / f"{arm}-s{s}", accs)
    both = study.analyse(setting, runs, ["rloo", "prime"], [0, 1], window=10, partial=False)
    (tmp_path / "both.json").write_text(json.dumps(both))

    # seed 0's metrics lost, kept as the earlier result's numbers; seed 1 still kept with its metrics
    monkeypatch.setattr(study, "ARCHIVE", tmp_path / "archive2")
    for arm in ("rloo", "prime"):
        study.archive(setting, arm, 1, runs)
    written = study.keep_summaries(setting, tmp_path / "both.json", "both.json")
    assert sorted(p.name for p in written) == ["prime-s0", "rloo-s0"]  # seed 1 has its metrics: not replaced
    mixed = study.analyse(setting, tmp_path / "elsewhere", ["rloo", "prime"], [0, 1], window=10, partial=False)
    for key in ("target_train_acc", "ratio_over_rloo_steps"):
        assert mixed[key] == both[key]
    for arm in ("rloo", "prime"):
        new, old = mixed["arms"][arm], both["arms"][arm]
        assert new["summary_only_seeds"] == {"0": "both.json"}
        for key in ("seeds", "steps_to_target", "steps_to_level", "final_train_acc", "first_train_acc",
                    "eval_sampled_start", "eval_sampled_final", "eval_greedy_final", "steps_to_target_ci",
                    "poc_checks", "mean_curve", "seed_curves", "wall_s"):
            assert new[key] == old[key], (arm, key)
    assert study.launch(setting, "rloo", 0, tmp_path / "elsewhere", threads=1) is None

    # a summary of 30 steps is not comparable with runs cut at 20: left out, and said so
    setting["steps"] = 20
    shorter = study.analyse(setting, tmp_path / "elsewhere", ["rloo", "prime"], [0, 1], window=10, partial=False)
    assert shorter["arms"]["rloo"]["seeds"] == [1] and "rloo seed 0: kept as a summary of 30 steps" in capsys.readouterr().err
