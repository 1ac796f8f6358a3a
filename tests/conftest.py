"""Shared fixtures: a micro Llama (random weights, the arith tokenizer) for fast model tests,
and the real `tiny` model from the cache (`make test` builds it first)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from prime import models
from prime.models import write_manifest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


@pytest.fixture(scope="session")
def micro_model_dir(tmp_path_factory) -> Path:
    """A 2-layer Llama with random weights and a BPE tokenizer trained on arith prompts."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from prime.tasks import load_task
    from prime.tiny import build_tokenizer

    out = tmp_path_factory.mktemp("micro") / "model"
    rows = load_task("arith", "train")[:2000]
    tok = build_tokenizer([r["prompt"] + "\n" + r["solution"] for r in rows], 300)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=4, intermediate_size=128, max_position_embeddings=128,
                      tie_word_embeddings=True, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    write_manifest(out, kind="micro-test-model")
    return out


@pytest.fixture(scope="session")
def tiny_dir() -> Path:
    path = models.cache_dir() / "tiny"
    if not (path / models.MANIFEST).is_file():
        pytest.skip("the tiny model is not built: run `make tiny` (make test does it first)")
    return path
