"""veRL's custom reward signature over our verifiers: what an export's reward.py hands veRL.

It lives in the package, not in reward.py, so that veRL can pickle it: veRL's PRIME reward manager
scores in a process pool, and a function defined in the file veRL loads by path pickles by a module
name no worker can import (verl 0.9.1: every score of such a function comes back 0.0, with a
"Task failed" line in the log).
"""

from __future__ import annotations

import json

from prime.verifiers import verify


def compute_score(data_source, solution_str, ground_truth, extra_info=None) -> float:
    """The outcome reward in [0, 1], as the trainer scores a response: 0/1 for math, the pass rate
    for code (its checks travel in extra_info.prime_checks); unscorable counts 0."""
    row = {"answer": ground_truth}
    if isinstance(extra_info, dict) and extra_info.get("prime_checks"):
        row.update(json.loads(extra_info["prime_checks"]))  # tests / io / entry_point / prelude
    return float(verify(solution_str, row).reward)
