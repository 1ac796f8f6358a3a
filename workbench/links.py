"""Links that point at a view: the app writes what is on screen into the URL query and reads it
back on load, so a copied address reopens the same tab, run, step, prompt, sample and checkpoint.

    http://127.0.0.1:7860/?tab=tokens&run=prime&step=20&prompt=417&sample=2
    http://127.0.0.1:7860/?tab=playground&run=prime&checkpoint=20

Writing is done in the browser (history.replaceState, no reload, no server round trip); reading
is one load event that validates every value against the records and ignores what does not
exist (a stale link opens the default view, never an error).
"""

from __future__ import annotations

import json
from pathlib import Path

import gradio as gr

from prime.errors import UserError
from workbench import data

KEYS = ("tab", "run", "step", "prompt", "sample", "checkpoint")
TABS = ("summary", "runs", "curves", "filtering", "tokens", "playground", "train")


def set_query_js(keys: list[str], fixed: dict | None = None) -> str:
    """A JS handler that writes its inputs (in `keys` order) and `fixed` into the URL query."""
    return (f"(...vals) => {{ if (!window.primeLinksReady) return []; const u = new URL(window.location.href); const keys = {json.dumps(keys)}; "
            f"const fixed = {json.dumps(fixed or {})}; "
            "keys.forEach((k, i) => { const v = vals[i]; if (v === null || v === undefined || v === '') "
            "u.searchParams.delete(k); else u.searchParams.set(k, String(v)); }); "
            "for (const [k, v] of Object.entries(fixed)) u.searchParams.set(k, v); "
            "history.replaceState(null, '', u); return []; }")


def write_on_change(components: dict, fixed: dict | None = None) -> None:
    """Keep the URL query in step with these components ({query key: component})."""
    keys, comps = list(components), list(components.values())
    for c in comps:
        c.change(None, comps, None, js=set_query_js(keys, fixed), queue=False)


READY_JS = ("() => { window.primeLinksReady = true; "
            "const b = document.querySelector('button[role=tab][aria-selected=true]'); const id = b && b.dataset.tabId; "
            "if (id) { const u = new URL(window.location.href); u.searchParams.set('tab', id); "
            "history.replaceState(null, '', u); } return []; }")
"""Run after the link has been restored: until then the app writes nothing into the URL (the first
paint's own events would otherwise overwrite the link being opened). It then writes the tab on
screen, which a click before this moment may have changed."""


def write_tab_on_select(tabs: list) -> None:
    for tab in tabs:
        tab.select(None, None, None, js=set_query_js([], {"tab": str(tab.id)}), queue=False)


def parse(query: dict, root: Path) -> dict:
    """The query's values that exist in the records under `root`, typed; everything else dropped."""
    from workbench.filtering import step_choices
    from workbench.playground import checkpoint_choices
    from workbench.tokens import prompt_choices, sample_choices

    out = {}
    if query.get("tab") in TABS:
        out["tab"] = query["tab"]
    run = query.get("run")
    if run not in data.list_run_names(root):
        return out
    out["run"] = run
    if query.get("checkpoint") in checkpoint_choices(root, run):
        out["checkpoint"] = query["checkpoint"]
    try:
        step = int(query.get("step", ""))
    except ValueError:
        return out
    if step not in step_choices(root, run):
        return out
    out["step"] = step
    try:
        prompt = int(query.get("prompt", ""))
    except ValueError:
        return out
    if prompt not in [v for _, v in prompt_choices(root, run, step)]:
        return out
    out["prompt"] = prompt
    try:
        sample = int(query.get("sample", ""))
    except ValueError:
        return out
    if sample in sample_choices(root, run, step, prompt):
        out["sample"] = sample
    return out


def restore(root: Path, request: gr.Request | None) -> dict:
    """The parsed query of the page's request ({} without one)."""
    try:
        return parse(dict(request.query_params) if request is not None else {}, root)
    except (UserError, OSError):
        return {}
