"""The workbench in a real browser: Playwright driving Debian's chromium, headless, on the demo
run shipped in data/demo. Screenshots land in test-artifacts/ (kept by CI as artifacts)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
from pathlib import Path

import pytest
from synthetic import make_run

from workbench import data
from workbench.app import DEMO_RUNS, make_app

CHROMIUM = os.environ.get("PRIME_CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
TABS = {"Summary": "#claim-learn .claim", "Runs": "#runs-table table", "Training curves": ".curve .js-plotly-plot", "Filtering": "#filter-table table",
        "Token rewards": "#token-view .tok", "Playground": "#token-heatmap"}

pytestmark = [pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                 reason=f"chromium not found at {CHROMIUM}: `apt-get install chromium` (make setup does)"),
              pytest.mark.slow]  # a browser and a server per module: minutes in all


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(root: Path, **kwargs):
    app = make_app(root, refresh_s=2.0, **kwargs)
    port = free_port()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    return app, f"http://127.0.0.1:{port}/"


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def demo():
    app, url = serve(DEMO_RUNS)
    yield url
    app.close()


@pytest.fixture
def page(browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    yield page
    page.close()


@contextlib.contextmanager
def browser_page(url: str, height: int = 1000):
    """A fresh chromium page at `url` (for tests outside this module's fixtures)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        page = b.new_page(viewport={"width": 1400, "height": height})
        page.goto(url)
        yield page
        b.close()


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def open_tab(page, url: str, tab: str) -> None:
    page.goto(url)
    page.get_by_role("tab", name=tab).click()
    page.wait_for_selector(TABS[tab], timeout=60_000)


def test_demo_has_runs():
    assert {"prime", "rloo"} <= set(data.list_run_names(DEMO_RUNS))


@pytest.mark.parametrize("tab", list(TABS))
def test_each_tab_loads_on_the_demo(page, demo, tab):
    open_tab(page, demo, tab)
    assert "⚠" not in page.locator(".tabitem:visible").first.inner_text()
    shot(page, f"tab-{tab.lower().replace(' ', '-')}")


def _expected_view():
    """The rollout the token view shows first: first run, last step, first kept prompt, sample 0."""
    from workbench.filtering import step_choices
    from workbench.tokens import prompt_choices

    run = data.list_run_names(DEMO_RUNS)[0]
    step = step_choices(DEMO_RUNS, run)[-1]
    prompt_id = prompt_choices(DEMO_RUNS, run, step)[0][1]
    return run, step, prompt_id


def test_token_view_shows_every_response_token_with_its_recorded_reward(page, demo):
    run, step, prompt_id = _expected_view()
    df = data.rollouts(DEMO_RUNS / run, step)
    row = df[(df.prompt_id == prompt_id) & (df.sample_idx == 0)].iloc[0]
    assert row.filter_decision == "kept" and len(row.process_reward) == len(row.token_ids) > 0
    open_tab(page, demo, "Token rewards")
    page.wait_for_function(f"document.querySelectorAll('#token-view .tok').length === {len(row.token_ids)}", timeout=30_000)
    shown = [float(v) for v in page.eval_on_selector_all("#token-view .tok", "els => els.map(e => e.dataset.reward)")]
    assert shown == [float(v) for v in row.process_reward]  # repr round-trips float64 exactly
    assert "outcome" in page.locator("#token-summary").inner_text()
    shot(page, "token-view")


def _lines_and_labels(page, selector: str) -> tuple[list, dict]:
    """([(meta, subplot x axis, colour, showlegend)] of a plot's traces, {x axis: [label texts]})."""
    traces = page.eval_on_selector(selector, "el => el.data.map(t => [t.meta, t.xaxis || 'x', t.line && t.line.color, "
                                             "t.showlegend])")
    labels: dict[str, list[str]] = {}
    for xref, text in page.eval_on_selector(selector, "el => (el.layout.annotations || []).map(a => [a.xref, a.text])"):
        labels.setdefault(xref, []).append(text)
    return traces, labels


def test_curves_name_every_line_where_it_is_drawn(page, demo):
    """One metric per chart, a raw trace per selected run (and its smoothed line), baselines
    grey; every line named by a label in its own subplot, no legend needed."""
    from prime.views import BASELINE

    open_tab(page, demo, "Training curves")
    page.wait_for_function("[...document.querySelectorAll('.curve .js-plotly-plot')].some(p => (p.data || []).length > 0)",
                           timeout=30_000)
    selected = data.list_run_names(DEMO_RUNS)[:2]
    traces, labels = _lines_and_labels(page, ".curve .js-plotly-plot")
    assert {meta[0] for meta, *_ in traces if meta[2] != "baseline"} == set(selected)
    for metric in ("acc", "eval/acc", "eval/acc_sampled", "filter/kept_fraction", "filter/too_hard"):
        runs = [meta[0] for meta, *_ in traces if meta[1] == metric and meta[2] == "raw"]
        assert sorted(runs) == sorted(selected), metric  # exactly one trace per selected run
        assert len({axis for meta, axis, *_ in traces if meta[1] == metric}) == 1, metric  # a chart of its own
    assert [meta[0] for meta, *_ in traces if meta[1] == "reward_model/dpo_acc_before"] == ["prime", "prime"]  # raw, EMA
    for meta, axis, colour, showlegend in traces:
        assert not showlegend
        if meta[2] == "baseline":
            assert colour == BASELINE
            assert any(t.startswith(("reference", "chance")) for t in labels[axis]), meta
        else:
            assert meta[0] in labels[axis], (meta, labels[axis])  # the run's name is written in its chart
    assert "chance" in labels[next(a for m, a, *_ in traces if m[1] == "reward_model/dpo_acc_before")]
    note = page.locator("#curve-note").inner_text()
    assert "EMA of weight 0.8" in note and "raw" in note
    shot(page, "curves")


def test_a_corrupt_run_is_an_error_row_and_the_others_display(page, tmp_path):
    make_run(tmp_path, "good-1", steps=3, prompts=4)
    make_run(tmp_path, "good-2", steps=2, prompts=4, algo="rloo")
    bad = make_run(tmp_path, "broken", steps=2, prompts=4)
    (bad / "status.json").write_text("{not json")
    half = make_run(tmp_path, "half-written", steps=2, prompts=4)
    (half / "config.json").unlink()
    app, url = serve(tmp_path)
    try:
        open_tab(page, url, "Runs")
        page.wait_for_function("document.querySelector('#runs-table').innerText.includes('good-2')", timeout=30_000)
        text = page.locator("#runs-table").inner_text()
        assert "good-1" in text and "good-2" in text and "finished" in text
        assert "broken" in text and "not valid JSON" in text
        assert "half-written" in text and "config.json: missing" in text
        shot(page, "runs-with-corrupt")
        open_tab(page, url, "Training curves")  # the other tabs still work
    finally:
        app.close()


# ---------------------------------------------------------------------------- links, presenter polish

def _row(run: str, step: int, prompt_id: int, sample: int):
    df = data.rollouts(DEMO_RUNS / run, step)
    return df[(df.prompt_id == prompt_id) & (df.sample_idx == sample)].iloc[0]


def _wait_token_view(page, step: int, sample: int, row) -> list[float]:
    """Wait until the token view shows this rollout: its step, sample and prompt in the summary and
    exactly its recorded rewards in the heatmap (a link's selections arrive in several events, and
    the components of one view update one after another); the rewards shown, as numbers."""
    import json

    rewards = json.dumps([float(v) for v in row.process_reward] if len(row.process_reward) else [0.0] * len(row.tokens))
    page.wait_for_function(
        f"(() => {{ const s = document.querySelector('#token-summary');"
        f" const shown = [...document.querySelectorAll('#token-view .tok')].map(e => Number(e.dataset.reward));"
        f" return !!s && s.innerText.includes('step {step}, sample {sample}') && s.innerText.includes({json.dumps(row.prompt)})"
        f" && JSON.stringify(shown) === JSON.stringify({rewards}); }})()", timeout=90_000)
    return [float(v) for v in page.eval_on_selector_all("#token-view .tok", "els => els.map(e => e.dataset.reward)")]


def test_a_link_opens_the_token_view_it_names(browser, demo):
    from workbench.tokens import prompt_choices

    step = 7
    prompt_id = prompt_choices(DEMO_RUNS, "prime", step)[1][1]  # not the view's default (the first prompt)
    row = _row("prime", step, prompt_id, 2)
    context = browser.new_context(viewport={"width": 1400, "height": 1000})  # fresh: no state of other tests
    page = context.new_page()
    page.goto(f"{demo}?tab=tokens&run=prime&step={step}&prompt={prompt_id}&sample=2")
    assert _wait_token_view(page, step, 2, row) == [float(v) for v in row.process_reward]
    assert page.get_by_role("tab", name="Token rewards").get_attribute("aria-selected") == "true"
    shot(page, "link-token-view")
    context.close()


def test_the_address_of_a_view_reopens_it_in_a_fresh_browser(browser, demo):
    first = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = first.new_page()
    open_tab(page, demo, "Token rewards")
    page.get_by_text("The most blamed tokens of this step").click()
    page.locator("#jump-blamed").click()  # moves the view to another rollout: the most blamed token's
    run, step, _ = _expected_view()
    blamed = data.most_blamed(DEMO_RUNS / run, step, 1).iloc[0]
    row = _row(run, step, int(blamed.prompt_id), int(blamed["sample"]))
    shown = _wait_token_view(page, step, int(blamed["sample"]), row)
    page.wait_for_function(f"window.location.search.includes('prompt={int(blamed.prompt_id)}')", timeout=30_000)
    address = page.url
    first.close()
    assert f"prompt={int(blamed.prompt_id)}" in address and "tab=tokens" in address
    second = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = second.new_page()
    page.goto(address)
    assert _wait_token_view(page, step, int(blamed["sample"]), row) == shown == [
        float(v) for v in row.process_reward]
    assert min(shown) == float(blamed.reward)  # the jump landed on the step's most blamed token
    second.close()


def test_the_first_wrong_line_is_marked(page, demo):
    import json

    run = "prime"
    df = data.rollouts(DEMO_RUNS / run, 20)
    wrong = df[df.first_wrong_line.notna()].iloc[0] if "first_wrong_line" in df else None
    if wrong is None:  # records made before the column: the view runs the process check itself
        from prime.tasks.arith import first_wrong_line

        df = df[df.outcome_reward == 0]
        df = df.assign(first_wrong_line=[first_wrong_line(p, r) for p, r in zip(df.prompt, df.response)])
        wrong = df[df.first_wrong_line.notna()].iloc[0]
    page.goto(f"{demo}?tab=tokens&run={run}&step=20&prompt={int(wrong.prompt_id)}&sample={int(wrong.sample_idx)}")
    _wait_token_view(page, 20, int(wrong.sample_idx), wrong)
    from prime.math.localise import token_lines

    expected = [i for i, line in enumerate(token_lines(list(wrong.tokens))) if line == int(wrong.first_wrong_line)]
    assert expected
    page.wait_for_function(  # the heatmap of this rollout may replace an earlier one just after the summary
        f"JSON.stringify([...document.querySelectorAll('#token-view .tok.first-wrong')].map(e => Number(e.dataset.index)))"
        f" === '{json.dumps(expected, separators=(',', ':'))}'", timeout=60_000)
    page.wait_for_function(  # the summary renders on its own, a moment after the heatmap on a loaded machine
        f"document.querySelector('#token-summary').innerText.includes('line {int(wrong.first_wrong_line) + 1} is the "
        f"first wrong line')", timeout=30_000)
    assert "first wrong line" in page.locator("#token-steps").inner_text()
    shot(page, "first-wrong-line")


def test_filtering_histogram_has_one_bar_per_accuracy_value(page, demo):
    open_tab(page, demo, "Filtering")
    page.wait_for_function("[...document.querySelectorAll('#filter-histogram .js-plotly-plot')].some(p => (p.data || [])"
                           ".some(t => t.type === 'bar'))", timeout=30_000)
    bars = page.evaluate("[...document.querySelectorAll('#filter-histogram .js-plotly-plot')].flatMap(p => p.data || [])"
                         ".filter(t => t.type === 'bar').map(t => [t.name, Array.from(t.x), Array.from(t.y)])")
    from workbench.filtering import step_choices

    table = data.filtering_table(DEMO_RUNS / "prime", step_choices(DEMO_RUNS, "prime")[-1])  # the view's default: the last step
    assert all(x == [0, 0.25, 0.5, 0.75, 1] for _, x, _ in bars)  # K = 4
    for name, x, y in bars:
        part = table[table.decision == name]
        assert y == [int((abs(part.acc - v) < 1e-9).sum()) for v in x], name


def test_playground_opens_on_the_prime_runs_last_checkpoint(page, demo):
    open_tab(page, demo, "Playground")
    assert page.locator("#playground-run input").input_value() == "prime"
    last = data.checkpoint_steps(DEMO_RUNS / "prime")[-1]
    assert page.locator("#playground-step input").input_value() == str(last)


def test_score_and_rank_on_a_fresh_page(page, demo, capfd):
    """Score and Rank pressed on a fresh page, no accordion opened: the external-PRM boxes
    arrive as None (not given), Score scores with the preselected checkpoint, Rank (its own
    accordion opened, as a user must) says what it needs, and the server log has no traceback."""
    capfd.readouterr()
    open_tab(page, demo, "Playground")
    page.locator("#score-button").click()
    page.wait_for_function("document.querySelector('#score-summary').innerText.includes('r_φ(y)')", timeout=120_000)
    assert page.locator("#token-heatmap .tok").count() > 20
    assert page.locator(".error, .toast-wrap .error").count() == 0
    page.get_by_text("Rank K responses to this prompt").click()  # the external-PRM accordion stays closed
    page.locator("#rank-button").click()
    page.wait_for_function("document.querySelector('#rank-message').innerText.includes('two responses')",
                           timeout=120_000)
    assert "Traceback" not in capfd.readouterr().err


# ---------------------------------------------------------------------------- every action, fresh pages

@pytest.fixture(scope="module")
def runs_copy(tmp_path_factory):
    """The demo's runs copied into a runs directory of one's own (Train enabled), served."""
    root = tmp_path_factory.mktemp("runs")
    for name in ("prime", "rloo"):
        shutil.copytree(DEMO_RUNS / name, root / name)
    app, url = serve(root, train_off=None)
    yield root, url
    app.close()


@pytest.fixture(params=["demo", "runs-directory"])
def served(request, demo):
    """(root, url) of the demo, then of a runs directory of one's own."""
    return (DEMO_RUNS, demo) if request.param == "demo" else request.getfixturevalue("runs_copy")


def fresh(browser):
    """A page in a context of its own: no state of another test."""
    return browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()


def no_traceback(capfd) -> None:
    err = capfd.readouterr().err
    assert "Traceback" not in err, err[-3000:]


def test_summary_tells_the_story_from_the_records(browser, served, capfd):
    """The Summary tab, first on a fresh page: a claim per question, each with its chart and
    the sentences computed from the records; the two example links open the token views they
    name, with the first wrong line marked."""
    from prime import views

    root, url = served
    capfd.readouterr()
    page = fresh(browser)
    page.goto(url)
    page.wait_for_selector("#claim-learn .claim", timeout=60_000)
    assert page.get_by_role("tab", name="Summary").get_attribute("aria-selected") == "true"
    runs = data.run_views(root, data.list_run_names(root)[:4])
    expected = [t for claim in views.summary(runs) for t in claim["sentences"]]
    assert page.locator(".claim-sentence").all_inner_texts() == expected
    for claim in views.CLAIMS:
        page.wait_for_function(f"(document.querySelector('#claim-chart-{claim} .js-plotly-plot') || {{}}).data", timeout=30_000)
    traces, labels = _lines_and_labels(page, "#claim-chart-rank .js-plotly-plot")
    assert {m[1] for m, *_ in traces} >= {"reward_model/dpo_acc_before", "reward_model/ref_ll_pairwise_acc"}
    assert {"prime", "reference", "chance"} <= {t for texts in labels.values() for t in texts}
    examples = page.locator(".blame-example")
    assert sorted(e.get_attribute("data-kind") for e in examples.all()) == ["hit", "miss"]
    shot(page, f"summary-{'demo' if root == DEMO_RUNS else 'runs'}")
    href = page.locator(".blame-example[data-kind=hit] a").get_attribute("href")
    page.goto(url + href)  # as a click does, cold
    page.wait_for_selector("#token-view .tok.first-wrong", timeout=60_000)
    assert "is the first wrong line" in page.locator("#token-summary").inner_text()
    page.context.close()
    no_traceback(capfd)


def test_every_primary_action_on_a_fresh_page(browser, served, capfd):
    """Score at `initial` and at a checkpoint, each filter of the token view and its jump, a
    filter-table row, Write a report: each on a page of its own, the server log clean."""
    root, url = served
    capfd.readouterr()
    # Playground: `initial` (the PRM equals the reference: every reward 0), then a checkpoint
    for checkpoint, zero in (("initial", True), ("20", False)):
        page = fresh(browser)
        page.goto(f"{url}?tab=playground&run=prime&checkpoint={checkpoint}")
        page.wait_for_function(f"(document.querySelector('#playground-step input') || {{}}).value === '{checkpoint}'",
                               timeout=60_000)
        page.locator("#score-button").click()
        page.wait_for_function("document.querySelector('#score-summary').innerText.includes('r_φ(y)')", timeout=120_000)
        rewards = [float(v) for v in page.eval_on_selector_all("#token-heatmap .tok", "els => els.map(e => e.dataset.reward)")]
        assert len(rewards) > 20 and (all(r == 0 for r in rewards) if zero else any(r != 0 for r in rewards)), checkpoint
        page.context.close()
    # Token rewards: every filter, then the jump
    page = fresh(browser)
    open_tab(page, url, "Token rewards")
    page.get_by_text("The most blamed tokens of this step").click()
    for show in ("wrong only", "right only", "all"):
        page.locator("#token-show").get_by_text(show, exact=True).click()
        step = int(page.locator("#token-summary").inner_text().split("step ")[1].split(",")[0])
        worst = data.most_blamed(root / "prime", step, 10, show).reward.tolist()
        assert worst, show  # the demo's last step has right and wrong responses with rewards
        page.locator("#blamed-table").scroll_into_view_if_needed()
        page.wait_for_function(f"document.querySelector('#blamed-table').innerText.includes('{worst[0]!r}')",
                               timeout=30_000)  # the filter's own most blamed token heads the table
    page.locator("#jump-blamed").click()
    page.wait_for_selector("#token-view .tok", timeout=60_000)
    assert "⚠" not in page.locator("#token-summary").inner_text()
    page.context.close()
    # Filtering: the responses' place says what to do until a prompt is chosen, then shows its K responses
    page = fresh(browser)
    open_tab(page, url, "Filtering")
    assert "Select a prompt" in page.locator("#filter-hint").inner_text()
    assert not page.locator("#filter-responses").is_visible()
    page.locator("#filter-table .virtual-body [role=row]").first.locator("[role=gridcell]").first.click()
    page.wait_for_selector("#filter-responses .virtual-body [role=row]", timeout=30_000)
    assert page.locator("#filter-responses .virtual-body [role=row]").count() == 4  # K
    assert "its 4 responses" in page.locator("#filter-hint").inner_text()
    page.context.close()
    # Runs: Write a report
    page = fresh(browser)
    open_tab(page, url, "Runs")
    page.locator("#report-button").click()
    page.wait_for_function("document.querySelector('#report-message').innerText.includes('MB')", timeout=120_000)
    assert "report of 2 run(s)" in page.locator("#report-message").inner_text()
    page.context.close()
    no_traceback(capfd)


@pytest.mark.parametrize("tab", ["summary", "runs", "curves", "filtering", "tokens", "playground", "train"])
def test_a_link_opens_each_tab_cold(browser, served, capfd, tab):
    from workbench import links

    assert tab in links.TABS
    root, url = served
    capfd.readouterr()
    page = fresh(browser)
    page.goto(f"{url}?tab={tab}&run=prime")
    page.wait_for_function(f"(document.querySelector('button[role=tab][aria-selected=true]') || {{}}).dataset?.tabId "
                           f"=== '{tab}'", timeout=60_000)
    content = {"summary": "#claim-learn .claim", "runs": "#runs-table table", "curves": ".curve .js-plotly-plot",
               "filtering": "#filter-table table", "tokens": "#token-view .tok", "playground": "#score-button",
               "train": "#train-disabled" if root == DEMO_RUNS else "#train-start"}[tab]
    page.wait_for_selector(content, timeout=60_000)
    if tab == "train" and root == DEMO_RUNS:  # one consistent message: read-only, and how to train instead
        text = page.locator("#train-disabled").inner_text()
        assert "read-only" in text and "--runs runs/" in text and "data/demo" not in text
    page.context.close()
    no_traceback(capfd)


# ---------------------------------------------------------------------------- the report

def test_the_report_opens_offline_and_shows_the_records(browser, tmp_path):
    import json

    from prime import records
    from prime.report import MAX_BYTES, write_report

    runs = [DEMO_RUNS / "prime", DEMO_RUNS / "rloo"]
    out = tmp_path / "report.html"
    size = write_report(runs, out, "demo")
    assert size <= MAX_BYTES
    context = browser.new_context(offline=True, viewport={"width": 1400, "height": 1000})
    context.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file:") else route.abort())
    page = context.new_page()
    failed = []
    page.on("requestfailed", lambda r: failed.append(r.url))
    page.goto(out.as_uri())
    page.wait_for_selector("#report-curves .main-svg", timeout=30_000)
    assert failed == []  # nothing outside the file was asked for
    text = page.inner_text("body")
    for section in ("Summary", "Config", "Training curves", "Accuracy filter", "Token rewards, last step"):
        assert section in text
    # curves: every plotted point is the run's recorded value
    traces = page.evaluate("document.querySelector('#report-curves').data.map(t => [t.meta, t.x, t.y])")
    assert traces
    metrics = {r.name: {m["step"]: m for m in records.read_metrics(r)} for r in runs}
    for (run, metric, kind), xs, ys in traces:
        if kind == "raw":
            assert ys == [metrics[run][x][metric] for x in xs], (run, metric)
    assert {(run, metric) for (run, metric, kind), _, _ in traces if kind == "raw"} >= {
        ("prime", "acc"), ("rloo", "acc"), ("prime", "eval/acc"), ("prime", "reward_model/dpo_acc_before")}
    # config and filter tables
    for run in runs:
        config = json.loads((run / "config.json").read_text())
        assert f"full config of {run.name}" in text
        kept = sum(m.get("filter/kept", 0) for m in metrics[run.name].values())
        row = page.locator(f"table.filter[data-run='{run.name}'] tr", has_text="kept").first.inner_text()
        assert row.split("\t")[1].strip() == str(kept)
        assert config["samples_per_prompt"] == 4
    # token heatmaps: every token's value is the recorded one
    sections = page.eval_on_selector_all("section.rollout", "els => els.map(e => [e.dataset.run, +e.dataset.step, "
                                         "+e.dataset.prompt, +e.dataset.sample, [...e.querySelectorAll('.tok')].map(t => t.dataset.reward)])")
    assert len(sections) >= 2
    for run, step, prompt_id, sample, shown in sections:
        df = records.read_rollouts(DEMO_RUNS / run, step)
        row = df[(df.prompt_id == prompt_id) & (df.sample_idx == sample)].iloc[0]
        assert [float(v) for v in shown] == [float(v) for v in row.process_reward]
    title = page.locator("section.rollout .tok").first.get_attribute("title")
    assert "reward" in title and "log π_prm" in title
    shot(page, "report")
    context.close()


def test_the_report_opens_with_the_summary_tabs_numbers(browser, page, demo, tmp_path):
    """The report's first section: the Summary tab's sentences, word for word, in the same order."""
    from prime.report import write_report

    page.goto(demo)
    page.wait_for_selector("#claim-learn .claim", timeout=60_000)
    app = page.locator(".claim-sentence").all_inner_texts()
    out = tmp_path / "report.html"
    write_report([DEMO_RUNS / n for n in data.list_run_names(DEMO_RUNS)[:4]], out, "demo")
    report = fresh(browser)
    report.goto(out.as_uri())
    report.wait_for_selector("#summary-learn .main-svg", timeout=30_000)
    assert report.locator("h2").first.inner_text() == "Summary"
    assert report.locator(".claim-sentence").all_inner_texts() == app
    assert report.locator("section.rollout").first.inner_text().count("first wrong line") >= 1
    report.context.close()


def test_the_app_writes_the_same_report(page, demo):
    open_tab(page, demo, "Runs")
    page.locator("#report-button").click()
    page.wait_for_function("document.querySelector('#report-message').innerText.includes('MB')", timeout=120_000)
    assert "report of 2 run(s)" in page.locator("#report-message").inner_text()
    link = page.locator("#report-file a").first
    assert link.get_attribute("href")


# ---------------------------------------------------------------------------- the Train tab

def test_train_tab_starts_watches_and_stops_a_run(page, tmp_path, tiny_dir, capfd):
    import json

    from prime.trainer import latest_checkpoint

    app, url = serve(tmp_path, train_off=None)
    try:
        open_tab_by_id = lambda: page.get_by_role("tab", name="Train", exact=True).click()
        page.goto(url)
        open_tab_by_id()
        fill = lambda key, value: page.locator(f"#train-{key} input").fill(str(value))
        # bad settings are refused with the field named, and nothing starts
        fill("steps", 0)
        page.locator("#train-start").click()
        page.wait_for_function("document.querySelector('#train-message').innerText.includes('steps')", timeout=30_000)
        assert "expected an integer ≥ 1" in page.locator("#train-message").inner_text()
        assert not (tmp_path / "my-run").exists()
        # a real run: small and slow enough to be stopped in the middle
        for key, value in {"steps": 40, "prompts_per_step": 2, "eval_every": 0, "process_weight": 2}.items():
            fill(key, value)
        page.locator("#train-start").click()
        page.wait_for_function("document.querySelector('#train-message').innerText.includes('started')", timeout=30_000)
        page.locator("#train-start").click()  # one run at a time
        page.wait_for_function("document.querySelector('#train-message').innerText.includes('one run at a time')",
                               timeout=30_000)
        run = tmp_path / "my-run"
        page.wait_for_function("document.querySelector('#train-status').innerText.includes('running at step 1')",
                               timeout=240_000)  # the status line follows the run's records live
        page.locator("#train-stop").click()
        page.wait_for_function("document.querySelector('#train-status').innerText.includes('stopped at step')",
                               timeout=240_000)
        status = json.loads((run / "status.json").read_text())
        assert status["state"] == "stopped" and 1 <= status["step"] < 40
        assert latest_checkpoint(run).name == f"step_{status['step']:06d}"  # resumable from exactly there
        assert json.loads((run / "config.json").read_text())["process_weight"] == 2.0  # every field reaches the run
        # the other tabs see it: a link to its token view opens
        page.goto(f"{url}?tab=tokens&run=my-run&step=1")
        page.wait_for_selector("#token-view .tok", timeout=60_000)
        assert "step 1" in page.locator("#token-summary").inner_text()
        assert "Traceback" not in capfd.readouterr().err
    finally:
        app.close()


def test_train_tab_is_off_where_the_app_is_exposed(page, tmp_path):
    from workbench.app import train_off_reason

    assert train_off_reason(tmp_path, {"server_name": "127.0.0.1", "auth": None}) is None
    assert train_off_reason(tmp_path, {"server_name": "0.0.0.0", "auth": ("u", "p")}) is None
    reason = train_off_reason(tmp_path, {"server_name": "0.0.0.0", "auth": None})
    assert "without a password" in reason
    assert "read-only" in train_off_reason(DEMO_RUNS, {"server_name": "127.0.0.1", "auth": None})
    app, url = serve(tmp_path, train_off=reason)
    try:
        page.goto(url)
        page.get_by_role("tab", name="Train", exact=True).click()
        page.wait_for_selector("#train-disabled", timeout=30_000)
        assert "without a password" in page.locator("#train-disabled").inner_text()
        assert page.locator("#train-start").count() == 0
    finally:
        app.close()
