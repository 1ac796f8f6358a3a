"""Token heatmap HTML: each response token coloured by its implicit reward. No gradio here.

Each token is `<span class="tok" data-reward="…" title="…">`, so tests and users can read
the exact numbers; the colour scale is diverging and centred at 0 (red blames, blue credits).
"""

from __future__ import annotations

import html


def colour(value: float, scale: float) -> str:
    """Diverging colour: white at 0, blue for positive, red for negative, saturating at ±scale."""
    a = 0.0 if scale <= 0 else min(1.0, abs(value) / scale)
    if value >= 0:
        r, g, b = int(255 - a * (255 - 33)), int(255 - a * (255 - 102)), int(255 - a * (255 - 172))
    else:
        r, g, b = int(255 - a * (255 - 178)), int(255 - a * (255 - 24)), int(255 - a * (255 - 43))
    return f"rgb({r},{g},{b})"


def _shown(text: str) -> str:
    """Make whitespace tokens visible without changing the text they stand for."""
    if text == "":
        return "<span class='empty'>∅</span>"
    body = html.escape(text).replace(" ", "&nbsp;")
    return body.replace("\n", "<span class='nl'>↵</span><br>")


def token_heatmap(tokens: list[dict], scale: float | None = None) -> str:
    """HTML for tokens [{text, reward, q?, prm_logp?, ref_logp?}] with a legend.

    scale: reward magnitude of full colour; default the largest |reward| (or 1e-6 when all 0).
    """
    rewards = [float(t["reward"]) for t in tokens]
    scale = scale or max([abs(r) for r in rewards] + [1e-6])
    spans = []
    for i, t in enumerate(tokens):
        tip = f"token {i}: {t['text']!r}\nreward {t['reward']:+.6f}"
        for key, label in (("q", "q_t"), ("prm_logp", "log π_prm"), ("ref_logp", "log π_ref")):
            if key in t:
                tip += f"\n{label} {t[key]:+.6f}"
        mark = " first-wrong" if t.get("first_wrong") else ""
        if mark:
            tip += "\non the first wrong line (the process check)"
        spans.append(f"<span class='tok{mark}' data-index='{i}' data-reward='{t['reward']!r}' "
                     f"style='background:{colour(t['reward'], scale)}' title='{html.escape(tip, quote=True)}'>{_shown(t['text'])}</span>")
    legend = (f"<div class='legend'><span style='background:{colour(-scale, scale)}'>&nbsp;−{scale:.3g} blamed&nbsp;</span>"
              f"<span style='background:#fff'>&nbsp;0&nbsp;</span>"
              f"<span style='background:{colour(scale, scale)}'>&nbsp;+{scale:.3g} credited&nbsp;</span>"
              + ("<span class='first-wrong-key'>&nbsp;first wrong line&nbsp;</span>" if any(t.get("first_wrong") for t in tokens) else "")
              + "</div>")
    return f"<div class='tokens'>{STYLE}{legend}<div class='tokline'>{''.join(spans)}</div></div>"


STYLE = """<style>
.tokens .tokline{font-family:ui-monospace,monospace;font-size:15px;line-height:1.9;}
.tokens .tok{border-radius:3px;padding:1px 0;margin:0 1px;border:1px solid #e5e5e5;color:#111;}
.tokens .tok .nl{color:#888;}
.tokens .tok.first-wrong{border-bottom:3px solid #7b1fa2;}
.tokens .first-wrong-key{border-bottom:3px solid #7b1fa2 !important;} .tokens .tok .empty{color:#bbb;}
.tokens .legend{font-size:12px;margin-bottom:6px;} .tokens .legend span{border:1px solid #ddd;margin-right:4px;color:#111;}
</style>"""
