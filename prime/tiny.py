"""The `tiny` model: a small Llama trained from scratch on `arith`, with its own tokenizer.

Weak on purpose: after SFT it solves some problems when sampling at temperature 1, so RL
has something to fix, and it is small enough that many PRIME steps run on a CPU.
"""

from __future__ import annotations

import math
import random
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from prime.models import write_manifest
from prime.tasks import load_task

EOS, PAD = "</s>", "<pad>"


@dataclass
class TinySettings:
    """How `prime models build tiny` trains. Changing any field changes the model."""

    seed: int = 0
    """one seed for the tokenizer, the init, the data order"""
    vocab_size: int = 320
    """BPE vocabulary, bytes included"""
    hidden: int = 128
    layers: int = 4
    heads: int = 4
    intermediate: int = 384
    context: int = 256
    """max positions; arith prompts + solutions take < 150 tokens"""
    steps: int = 600
    """optimizer steps of supervised training"""
    batch_size: int = 32
    lr: float = 5e-3
    """peak AdamW lr, linear warm-up then cosine decay to 10%"""
    warmup: int = 30


def build_tokenizer(texts: list[str], vocab_size: int):
    """Byte-level BPE with single-digit pre-splitting (numbers tokenise digit by digit, which
    is what makes carries learnable), saved as a PreTrainedTokenizerFast."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        # one digit per piece, keeping a leading space with it (" 15" -> " 1", "5")
        pre_tokenizers.Split(Regex(r" ?[0-9]"), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[PAD, EOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, pad_token=PAD, clean_up_tokenization_spaces=False)


def sft_examples(tokenizer, rows: list[dict]) -> list[tuple[list[int], int]]:
    """(ids, prompt_length): prompt "question\\n", then the worked solution and EOS."""
    from prime.rollout import encode_prompt

    out = []
    for r in rows:
        p = encode_prompt(tokenizer, r["prompt"])
        s = tokenizer(r["solution"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        out.append((p + s, len(p)))
    return out


def lr_at(step: int, s: TinySettings) -> float:
    """Linear warm-up, then cosine decay to 10% of the peak (as nanoGPT's get_lr)."""
    if step < s.warmup:
        return s.lr * (step + 1) / s.warmup
    frac = (step - s.warmup) / max(1, s.steps - s.warmup)
    return s.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))


def train_tiny(s: TinySettings, log=print):
    """Tokenizer and supervised model, deterministic for `s.seed` on a given machine."""
    from transformers import LlamaConfig, LlamaForCausalLM

    random.seed(s.seed)
    torch.manual_seed(s.seed)
    rows = load_task("arith", "train")
    tokenizer = build_tokenizer([r["prompt"] + "\n" + r["solution"] for r in rows], s.vocab_size)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=s.hidden, num_hidden_layers=s.layers, num_attention_heads=s.heads,
        num_key_value_heads=s.heads, intermediate_size=s.intermediate, max_position_embeddings=s.context,
        tie_word_embeddings=True, bos_token_id=None, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    examples = sft_examples(tokenizer, rows)
    opt = torch.optim.AdamW(model.parameters(), lr=s.lr, weight_decay=0.01, betas=(0.9, 0.95))
    order = torch.randperm(len(examples), generator=torch.Generator().manual_seed(s.seed)).tolist()
    model.train()
    t0 = time.time()
    for step in range(s.steps):
        idx = [order[(step * s.batch_size + i) % len(order)] for i in range(s.batch_size)]
        batch = [examples[i] for i in idx]
        T = max(len(ids) for ids, _ in batch)
        ids = torch.full((len(batch), T), tokenizer.pad_token_id)
        labels = torch.full((len(batch), T), -100)
        attn = torch.zeros((len(batch), T), dtype=torch.long)
        for b, (x, plen) in enumerate(batch):
            ids[b, : len(x)] = torch.tensor(x)
            labels[b, plen : len(x)] = torch.tensor(x[plen:])  # loss on the solution and EOS only
            attn[b, : len(x)] = 1
        for g in opt.param_groups:
            g["lr"] = lr_at(step, s)
        loss = model(input_ids=ids, attention_mask=attn, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 50 == 0 or step == s.steps - 1:
            log(f"tiny sft step {step + 1}/{s.steps} loss {loss.item():.3f} ({time.time() - t0:.0f}s)")
    model.eval()
    return model, tokenizer


def build_tiny(out_dir: Path, s: TinySettings | None = None, log=print) -> dict:
    """Train and save the tiny model into `out_dir` (atomically: temporary dir, then rename)."""
    s = s or TinySettings()
    t0 = time.time()
    model, tokenizer = train_tiny(s, log)
    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    info = {"kind": "tiny", "settings": asdict(s), "build_seconds": round(time.time() - t0, 1),
            "parameters": sum(p.numel() for p in model.parameters())}
    write_manifest(tmp, **info)
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp.rename(out_dir)
    return info
