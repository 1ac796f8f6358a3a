"""prime.score.token_texts: every token's text in context, fast (one Rust call for all prefixes)
and plain (one decode() per prefix) giving the same strings, byte-level tokens included."""

from __future__ import annotations

import pytest

from prime.score import _prefix_decodes, token_texts

TEXT = "Step 1: 12 × 3 = 36 → naïve café ü 日本語 🙂\\boxed{36}\n  spaces  and\ttabs"


@pytest.fixture(scope="module")
def byte_level_tokenizer():
    """A small byte-level BPE (as GPT-2, Llama 3, Qwen and SmolLM2 use): multi-byte characters
    split across tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(["hello world, step one", "the answer is 42"] * 10,
                            trainers.BpeTrainer(vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                special_tokens=["<eos>"]))
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>")


class PlainDecode:
    """The same tokenizer seen only through decode(): forces the one-prefix-at-a-time path."""

    def __init__(self, tok):
        self.tok = tok

    def decode(self, ids, **kw):
        return self.tok.decode(ids, **kw)


def test_fast_and_plain_prefix_decodes_agree(byte_level_tokenizer, tiny_dir):
    from prime.models import load_tokenizer

    for tok in (byte_level_tokenizer, load_tokenizer(tiny_dir)):
        ids = tok(TEXT, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        fast, plain = _prefix_decodes(tok, ids), _prefix_decodes(PlainDecode(tok), ids)
        assert fast == plain
        texts = token_texts(tok, ids)
        assert texts == token_texts(PlainDecode(tok), ids)
        assert "".join(texts) == tok.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)


def test_partial_characters_show_empty_until_complete(byte_level_tokenizer):
    ids = byte_level_tokenizer("日", add_special_tokens=False)["input_ids"]
    assert len(ids) > 1  # one character, several byte tokens
    assert token_texts(byte_level_tokenizer, ids) == [""] * (len(ids) - 1) + ["日"]
