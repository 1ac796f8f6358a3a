"""Step time: one PRIME step of this project against one TRL GRPOTrainer step, on the CPU.

    pip install -r benchmarks/requirements-trl.txt     # TRL for this benchmark only
    python benchmarks/step_time_trl.py [--model smollm2-135m] [--prompts 4] [--k 4] [--max-new 128] [--steps 4]

Both sides get the same model in the same 4-bit NF4 form (prime.models.load_base), LoRA of
the same rank, alpha and target modules, the same GSM8K prompts in the same order (the
first `--steps` × `--prompts` rows of the order a PRIME run with seed 0 draws; TRL's dataset
shuffling is off), K samples per prompt at temperature 1, the same maximum response length,
the same policy learning rate, 0/1 rewards from the same math verifier, no KL term, one
optimiser step per batch. Differences, by design of each tool:
- PRIME also scores every response with the implicit PRM, updates the PRM, and computes the
  reference log-probs; GRPO (TRL default beta = 0) has no reward model and no reference pass.
- PRIME keeps every prompt here (filter band [0, 1]) so both steps train on P × K responses;
  its default accuracy filter would draw more prompts per step.
- PRIME samples from a merged full-precision copy of the policy (its default `--sampler
  merged`); TRL generates through the 4-bit model and its adapter. `--prime-sampler adapter`
  measures PRIME through the 4-bit path too.
Each side runs in its own child process with the same thread count. A step's time is from
the start of generation to the end of the optimiser step; the first step is a warm-up and
the reported time is the median of the rest (≥ 3). Mean response lengths are reported
because sampled lengths drive generation time.
Results: benchmarks/results/step_time_trl.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent / "results" / "step_time_trl.json"
LR = 2e-4


def prompt_rows(n: int) -> list[dict]:
    """The first n GSM8K training rows in the order a seed-0 PRIME run draws them."""
    from prime.tasks import load_task
    from prime.trainer import data_order

    rows = load_task("gsm8k", "train")
    return [rows[i] for i in data_order(len(rows), seed=0)[:n]]


def run_prime(args) -> dict:
    from prime.config import TrainConfig
    from prime.records import read_metrics
    from prime.trainer import train

    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(out=f"{tmp}/run", model=args.model, task="gsm8k", algo="prime", steps=args.steps,
                          prompts_per_step=args.prompts, samples_per_prompt=args.k, max_new_tokens=args.max_new,
                          filter_low=0.0, filter_high=1.0, policy_lr=LR, eval_every=0, checkpoint_every=10**6,
                          sampler=args.prime_sampler, seed=0)
        run = train(cfg, progress=False)
        metrics = [m for m in read_metrics(run) if "timing_s/step" in m]
    return {"step_s": [m["timing_s/step"] for m in metrics],
            "response_length_mean": [m["response_length/mean"] for m in metrics],
            "phases_s": [{k.removeprefix("timing_s/"): v for k, v in m.items() if k.startswith("timing_s/")} for m in metrics]}


def run_trl(args) -> dict:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from prime.models import LLAMA_STYLE, LoraSettings, load_base, load_tokenizer, resolve_model
    from prime.verifiers import verify

    path = resolve_model(args.model)
    tok = load_tokenizer(path)
    rows = prompt_rows(args.steps * args.prompts)
    by_prompt = {r["prompt"]: r for r in rows}
    if getattr(tok, "chat_template", None):  # TRL applies the chat template itself, as prime does
        data = [{"prompt": [{"role": "user", "content": r["prompt"]}], "question": r["prompt"]} for r in rows]
    else:
        data = [{"prompt": r["prompt"] + "\n", "question": r["prompt"]} for r in rows]

    def reward(completions, question, **_):
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        return [float(verify(t, by_prompt[q]).score or 0.0) for t, q in zip(texts, question)]

    times, lengths = [], []

    class StepTimer(TrainerCallback):
        def on_step_begin(self, *a, **kw):
            self.t = time.perf_counter()

        def on_step_end(self, *a, **kw):
            times.append(time.perf_counter() - self.t)

        def on_log(self, _args, _state, _control, logs=None, **kw):
            if logs and "completions/mean_length" in logs:
                lengths.append(logs["completions/mean_length"])

    lora = LoraSettings()
    n = args.prompts * args.k
    config = GRPOConfig(
        output_dir=tempfile.mkdtemp(), use_cpu=not torch.cuda.is_available(), bf16=torch.cuda.is_available(),
        per_device_train_batch_size=n, gradient_accumulation_steps=1, num_generations=args.k,
        generation_batch_size=n, num_iterations=1, max_completion_length=args.max_new,
        temperature=1.0, top_p=1.0, beta=0.0, learning_rate=LR, lr_scheduler_type="constant", warmup_steps=0,
        max_steps=args.steps, logging_steps=1, report_to="none", save_strategy="no", shuffle_dataset=False,
        gradient_checkpointing=False, seed=0, dataloader_num_workers=0)
    trainer = GRPOTrainer(
        model=load_base(path, "4bit"), reward_funcs=reward, args=config, train_dataset=Dataset.from_list(data),
        processing_class=tok,
        peft_config=LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                               target_modules=list(lora.targets or LLAMA_STYLE), bias="none"),  # SmolLM2 is a Llama
        callbacks=[StepTimer()])
    trainer.train()
    return {"step_s": times, "response_length_mean": lengths}


def child(side: str, args) -> None:
    result = run_prime(args) if side == "prime" else run_trl(args)
    print("RESULT " + json.dumps(result))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--prompts", type=int, default=4, help="P prompts per step")
    ap.add_argument("--k", type=int, default=4, help="samples per prompt")
    ap.add_argument("--max-new", type=int, default=128, help="maximum response tokens")
    ap.add_argument("--steps", type=int, default=4, help="steps per side; the first is a warm-up")
    ap.add_argument("--prime-sampler", default="merged", choices=("merged", "adapter"))
    ap.add_argument("--sides", nargs="+", default=["prime", "trl"])
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--child", choices=("prime", "trl"))
    args = ap.parse_args()
    if args.child:
        return child(args.child, args)
    import torch
    import trl

    result = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
              "device": "cuda" if torch.cuda.is_available() else "cpu", "torch_threads": torch.get_num_threads(),
              "trl_version": trl.__version__, "model": args.model, "quant": "4bit NF4", "prompts_per_step": args.prompts,
              "k": args.k, "max_new_tokens": args.max_new, "steps": args.steps, "prime_sampler": args.prime_sampler,
              "command": " ".join(["python benchmarks/step_time_trl.py", *sys.argv[1:]]), "sides": {}}
    for side in args.sides:
        cmd = [sys.executable, __file__, "--child", side, *sys.argv[1:]]
        t = time.time()
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True)
        if proc.returncode:
            sys.exit(f"{side} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        side_result = json.loads(next(l for l in proc.stdout.splitlines() if l.startswith("RESULT "))[7:])
        timed = side_result["step_s"][1:]
        side_result |= {"median_step_s": statistics.median(timed), "timed_steps": len(timed),
                        "process_wall_s": time.time() - t}
        result["sides"][side] = side_result
        print(f"{side}: median step {side_result['median_step_s']:.1f} s over {len(timed)} steps "
              f"(all: {[round(x, 1) for x in side_result['step_s']]}); mean lengths "
              f"{[round(x, 1) for x in side_result['response_length_mean']]}", flush=True)
    if {"prime", "trl"} <= result["sides"].keys():
        result["ratio_prime_over_trl"] = result["sides"]["prime"]["median_step_s"] / result["sides"]["trl"]["median_step_s"]
        print(f"PRIME / TRL step time: {result['ratio_prime_over_trl']:.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
