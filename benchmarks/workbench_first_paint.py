"""First paint of every workbench tab on a large run: 200 steps × 64 rollouts (16 prompts × K=4).

    python benchmarks/workbench_first_paint.py [--steps 200] [--prompts 16] [--repeats 3]

The run's records are synthetic (tests/synthetic.py, written with the engine's record
writers: same schema and sizes as a real run). For each tab, a fresh page loads the app (we time navigation → the
Runs table drawn: the first tab's first paint), waits until the page has drawn its first chart,
clicks the tab and times click → its content drawn (its data element visible): that tab's first
paint. Medians of --repeats, after a warm-up.
Results: benchmarks/results/workbench_first_paint.json. Not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from synthetic import make_run
from test_browser import CHROMIUM, TABS, free_port

from workbench.app import make_app

OUT = Path(__file__).resolve().parent / "results" / "workbench_first_paint.json"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        t = time.time()
        make_run(Path(tmp), "big-prime", steps=args.steps, prompts=args.prompts, tokens=80)
        make_run(Path(tmp), "big-rloo", steps=args.steps, prompts=args.prompts, tokens=80, algo="rloo", seed=1)
        build_s = time.time() - t
        size = sum(f.stat().st_size for f in Path(tmp).rglob("*") if f.is_file())
        app = make_app(Path(tmp))
        port = free_port()
        app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
        url = f"http://127.0.0.1:{port}/"
        results = {}
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
            for tab, selector in TABS.items():
                times = []
                for _ in range(args.repeats + 1):  # the first is a warm-up (imports, caches)
                    page = browser.new_page(viewport={"width": 1400, "height": 1000})
                    t = time.time()
                    page.goto(url)
                    page.wait_for_selector("#runs-table table", state="visible", timeout=120_000)
                    page_load = time.time() - t
                    page.wait_for_selector("#runs-overview .js-plotly-plot", state="visible", timeout=120_000)
                    t = time.time()
                    page.get_by_role("tab", name=tab).click()
                    page.wait_for_selector(selector, state="visible", timeout=120_000)
                    times.append((page_load, time.time() - t))
                    page.close()
                results[tab] = {"open_tab_median_s": statistics.median(t for _, t in times[1:]),
                                "page_load_median_s": statistics.median(p for p, _ in times[1:]),
                                "warmup_s": times[0], "all_s": times[1:]}
                print(f"{tab:16s} tab paint median {results[tab]['open_tab_median_s']:.2f} s; page load to the Runs table "
                      f"{results[tab]['page_load_median_s']:.2f} s", flush=True)
            browser.close()
        app.close()
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps({
        "date": time.strftime("%Y-%m-%d"), "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "runs": 2, "steps": args.steps, "rollouts_per_step": args.prompts * 4, "records_bytes": size,
        "build_records_s": build_s, "tabs": results}, indent=1))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
