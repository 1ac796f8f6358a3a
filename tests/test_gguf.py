"""The GGUF conversion path of smollm2-135m (slow: about a minute; CI runs it)."""

import json

import pytest
import torch

from prime.models import MANIFEST, Roles, check_model_dir, convert_gguf, smollm2_gguf_path
from prime.score import score


@pytest.mark.slow
def test_gguf_conversion_loads_offline_in_4bit(tmp_path):
    out = convert_gguf(smollm2_gguf_path(), tmp_path / "smollm2-135m")
    check_model_dir(out, "smollm2-135m")
    config = json.loads((out / "config.json").read_text())
    assert "quantization_config" not in config  # a plain model: bitsandbytes can quantise it
    assert config["model_type"] == "llama" and (out / MANIFEST).is_file()
    assert not (tmp_path / "smollm2-135m.partial").exists()

    roles = Roles(out, quant="4bit", device=torch.device("cpu"))
    question = "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips did Natalia sell altogether in April and May?"
    response = "Natalia sold 48/2 = 24 clips in May.\nNatalia sold 48+24 = 72 clips altogether in April and May.\nThe answer is \\boxed{72}."
    out4 = score(roles, question, response, answer="72")
    assert out4["verdict"]["score"] == 1.0
    assert all(t["reward"] == 0.0 for t in out4["tokens"])
    mean_logp = sum(t["ref_logp"] for t in out4["tokens"]) / len(out4["tokens"])
    assert -2.5 < mean_logp < 0  # a real language model finds this text likely, not random (≈ −10.8)
