"""Score one prompt and response token by token: the `prime score` path (PRIME_SPEC §1)."""

from __future__ import annotations

from pathlib import Path

from prime.errors import UserError
from prime.math.rewards import implicit_rewards, q_values
from prime.models import make_batch
from prime.rollout import encode_prompt
from prime.verifiers import verify_math


def token_texts(tokenizer, ids: list[int]) -> list[str]:
    """Each token's text exactly as it decodes in context: decode(ids[:t+1]) minus decode(ids[:t]).

    Byte-level tokens can be parts of one UTF-8 character; such a token shows as "" and the
    character appears on the token that completes it, so the texts always join to the whole.
    """
    texts, prev = [], ""
    for cur in _prefix_decodes(tokenizer, ids):
        if cur.startswith(prev) and "\ufffd" not in cur[len(prev):]:
            texts.append(cur[len(prev):])
            prev = cur
        else:
            texts.append("")
    return texts


def _prefix_decodes(tokenizer, ids: list[int]) -> list[str]:
    """decode(ids[:t+1]) for every t, without special-token skipping or space clean-up. A fast
    tokenizer whose decode is transformers' own (TokenizersBackend._decode: the Rust decoder,
    nothing after it when clean-up is off) decodes all prefixes in one Rust call; any other
    one prefix at a time through its decode()."""
    from transformers.tokenization_utils_tokenizers import TokenizersBackend

    prefixes = [ids[: t + 1] for t in range(len(ids))]
    if isinstance(tokenizer, TokenizersBackend) and type(tokenizer)._decode is TokenizersBackend._decode:
        return tokenizer.backend_tokenizer.decode_batch(prefixes, skip_special_tokens=False)
    return [tokenizer.decode(p, skip_special_tokens=False, clean_up_tokenization_spaces=False) for p in prefixes]


def line_steps(texts: list[str], rewards: list[float], q: list[float]) -> list[dict]:
    """Group tokens into steps, one per line (PRIME_SPEC §1, step view).

    A token belongs to the line it ends in: the newline token closes its step. A step's
    reward is the sum of its tokens' rewards; its value is q at its last token.
    """
    steps, start = [], 0
    for t, text in enumerate(texts):
        last = t == len(texts) - 1
        if "\n" in text or last:
            steps.append({"text": "".join(texts[start : t + 1]), "first_token": start, "last_token": t,
                          "reward": sum(rewards[start : t + 1]), "value": q[t]})
            start = t + 1
    return steps


def score(roles, question: str, response: str, answer: str | None = None, beta: float = 0.05,
          raw_prompt: bool = False, add_eos: bool = True) -> dict:
    """Per-token log π_prm, log π_ref, implicit reward r_t = β(log π_prm − log π_ref), q_t;
    per-line step sums; the total r_φ(y); the outcome verdict when `answer` is given."""
    tok = roles.tokenizer
    prompt_ids = tok(question, add_special_tokens=False)["input_ids"] if raw_prompt else encode_prompt(tok, question)
    response_ids = tok(response, add_special_tokens=False)["input_ids"]
    if not response_ids:
        raise UserError("--response is empty: it has zero tokens; give the text of a response to score")
    if add_eos:
        response_ids = response_ids + [tok.eos_token_id]
    n = len(prompt_ids) + len(response_ids)
    if roles.context_length and n > roles.context_length:
        raise UserError(f"prompt + response are {n} tokens, longer than the model's context of {roles.context_length}; "
                        "shorten the prompt or the response")
    batch = make_batch([prompt_ids], [response_ids], tok.pad_token_id)
    prm_logp = roles.logprobs("prm", batch)  # (1, T)
    ref_logp = roles.logprobs("ref", batch)  # (1, T)
    mask = batch.response_mask.float()
    rewards = implicit_rewards(prm_logp, ref_logp, mask, beta)
    q = q_values(rewards, mask)
    sel = batch.response_mask[0].bool()
    prm_l, ref_l, r_l, q_l = (x[0][sel].tolist() for x in (prm_logp, ref_logp, rewards, q))
    texts = token_texts(tok, response_ids)
    out = {
        "prompt": question, "response": response, "beta": beta,
        "tokens": [{"text": s, "token_id": i, "prm_logp": a, "ref_logp": b, "reward": r, "q": v}
                   for s, i, a, b, r, v in zip(texts, response_ids, prm_l, ref_l, r_l, q_l)],
        "steps": line_steps(texts, r_l, q_l),
        "total_reward": sum(r_l),
    }
    # EurusPRM's aggregations for best-of-N: the accumulated reward (Stage 2), the minimum step reward (Stage 1)
    out["min_step_reward"] = min(s["reward"] for s in out["steps"])
    if answer is not None:
        verdict = verify_math(response, answer)
        out["verdict"] = {"answer": answer, "score": verdict.score, "detail": verdict.detail}
    return out


def checkpoint_dir(run: Path, step: int | None) -> Path:
    """The run's checkpoint of `step` (records.RunDir); the latest one when `step` is None."""
    from prime.records import RunDir

    layout = RunDir(run)
    if not layout.checkpoints_dir.is_dir():
        raise UserError(f"run {run} has no checkpoints/ directory; is it a run directory made by `prime train`?")
    steps = layout.checkpoint_steps()
    if step is None:
        if not steps:
            raise UserError(f"run {run} has no checkpoints yet; wait for its first checkpoint")
        return layout.checkpoint(steps[-1])
    if step not in steps:
        have = ", ".join(str(s) for s in steps) or "none"
        raise UserError(f"run {run} has no checkpoint for step {step}; available steps: {have}")
    return layout.checkpoint(step)


RANK_BY = {"total": "total_reward", "min-step": "min_step_reward"}


def rank(scorer, question: str, responses: list[str], beta: float = 0.05, by: str = "total",
         raw_prompt: bool = False) -> list[dict]:
    """Best-of-N: the responses ordered by the PRM, best first. `by` = total (the accumulated
    implicit reward r_φ(y), EurusPRM-Stage2's use) or min-step (the lowest step reward,
    Stage 1's). Each entry: rank, index (in `responses`), both aggregates, the response."""
    if by not in RANK_BY:
        raise UserError(f"--by {by!r}: choose one of {', '.join(RANK_BY)}")
    if len(responses) < 2:
        raise UserError("ranking needs at least two responses (--response ... --response ..., or --responses FILE)")
    scored = [score(scorer, question, r, beta=beta, raw_prompt=raw_prompt) for r in responses]
    order = sorted(range(len(responses)), key=lambda i: -scored[i][RANK_BY[by]])
    return [{"rank": n + 1, "index": i, "total_reward": scored[i]["total_reward"],
             "min_step_reward": scored[i]["min_step_reward"], "response": responses[i]} for n, i in enumerate(order)]
