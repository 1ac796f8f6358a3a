"""prime.render: one .tok span per token, carrying the exact reward."""

import re

from prime.render import token_heatmap


def test_heatmap_spans_carry_rewards():
    tokens = [{"text": "1", "reward": 0.25}, {"text": " +\n", "reward": -0.125}, {"text": "<b>", "reward": 0.0}]
    html = token_heatmap(tokens)
    values = [float(v) for v in re.findall(r"class='tok'[^>]*data-reward='([^']+)'", html)]
    assert values == [0.25, -0.125, 0.0]
    assert "&lt;b&gt;" in html  # token text is escaped, never injected


def test_heatmap_all_zero_is_white():
    html = token_heatmap([{"text": "a", "reward": 0.0}])
    assert "background:rgb(255,255,255)" in html
