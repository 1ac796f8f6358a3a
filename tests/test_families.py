"""The model families people RL-train, not only Llama: small random-weight models of each,
saved as local directories (Qwen's with a ChatML chat template, the others with a plain prompt),
scored with `prime score` and trained for one 4-bit PRIME step.

Each family's LoRA targets come from prime.models.LORA_TARGETS (Phi-3 fuses q/k/v and
gate/up). Gemma 2 caps its final logits, which our LM-head-on-response-tokens path must do too:
every family's reference log-probs are checked against the model's own forward.
"""

from __future__ import annotations

import json

import pytest
import torch

from prime.models import write_manifest

SMALL = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
             "max_position_embeddings": 256}
FAMILIES = {  # name -> (config class, extra config fields, LoRA targets expected)
    "llama": ("LlamaConfig", {}, 7),
    "qwen2": ("Qwen2Config", {}, 7),  # q/k/v carry biases
    "qwen3": ("Qwen3Config", {"head_dim": 16}, 7),
    "mistral": ("MistralConfig", {"sliding_window": None}, 7),
    "gemma2": ("Gemma2Config", {"head_dim": 16, "final_logit_softcapping": 3.0, "attn_logit_softcapping": 50.0,
                                "query_pre_attn_scalar": 16, "sliding_window": 64}, 7),
    "phi3": ("Phi3Config", {"pad_token_id": None}, 4),  # qkv_proj, o_proj, gate_up_proj, down_proj
}
CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")  # the form Qwen's tokenizers ship
CHAT_FAMILIES = ("qwen2", "qwen3")  # saved with a chat template; the others use the plain prompt
PROMPT, RESPONSE = "Start with 2. Add 3. What is the result?", "2 + 3 = 5\nThe answer is \\boxed{5}."


pytestmark = pytest.mark.slow  # builds and trains six small model families


@pytest.fixture(scope="module")
def family_dirs(tmp_path_factory, micro_model_dir):
    """One local model directory per family, with the micro model's arith tokenizer."""
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(micro_model_dir)
    out = {}
    for name, (config_cls, extra, _) in FAMILIES.items():
        cfg = getattr(transformers, config_cls)(**{**SMALL, "vocab_size": len(tok), "tie_word_embeddings": True,
                                                   "eos_token_id": tok.eos_token_id, "bos_token_id": None,
                                                   "pad_token_id": tok.pad_token_id, **extra})
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(cfg)
        path = tmp_path_factory.mktemp(name) / "model"
        model.save_pretrained(path)
        tok.chat_template = CHATML if name in CHAT_FAMILIES else None
        tok.save_pretrained(path)
        write_manifest(path, kind=f"random {name} for tests")
        out[name] = path
    return out


@pytest.mark.parametrize("family", FAMILIES)
def test_family_scores_and_matches_its_own_forward(family, family_dirs, capsys):
    from prime import cli
    from prime.models import LoraSettings, Roles, make_batch
    from prime.rollout import encode_prompt, format_prompt

    assert cli.main(["score", "--model", str(family_dirs[family]), "--prompt", PROMPT, "--response", RESPONSE,
                     "--answer", "5", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["tokens"] and all(t["reward"] == 0.0 for t in out["tokens"])  # PRM = reference at init
    torch.manual_seed(0)
    roles = Roles(family_dirs[family], quant="4bit", device=torch.device("cpu"), lora=LoraSettings(r=4, alpha=8))
    assert len(roles.targets) == FAMILIES[family][2], roles.targets
    prompt_text = format_prompt(roles.tokenizer, PROMPT)
    assert prompt_text == (f"<|im_start|>user\n{PROMPT}<|im_end|>\n<|im_start|>assistant\n" if family in CHAT_FAMILIES
                           else PROMPT + "\n")
    # the LM head on response positions equals the model's own forward (softcapping included)
    tok = roles.tokenizer
    batch = make_batch([encode_prompt(tok, PROMPT)], [tok(RESPONSE, add_special_tokens=False)["input_ids"]], tok.pad_token_id)
    ours = roles.logprobs("ref", batch)
    with roles.role("ref") as model, torch.no_grad():
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    theirs = torch.log_softmax(logits[:, :-1].float(), -1).gather(-1, batch.input_ids[:, 1:, None])[..., 0]
    m = batch.response_mask[:, 1:].bool()
    torch.testing.assert_close(ours[:, 1:][m], theirs[m], atol=1e-4, rtol=1e-4)
    # the merged full-precision sampler equals the 4-bit policy
    with torch.no_grad():
        for p in roles.adapter_parameters("policy"):
            p.add_(0.05 * torch.randn_like(p))
        sampled = roles.sampler()(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    logp = torch.log_softmax(sampled[:, :-1].float(), -1).gather(-1, batch.input_ids[:, 1:, None])[..., 0]
    torch.testing.assert_close(logp[m], roles.logprobs("policy", batch)[:, 1:][m], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("family", FAMILIES)
def test_family_trains_one_4bit_prime_step(family, family_dirs, tmp_path):
    """One step through the whole loop (filter opened so random models' all-wrong groups are
    kept): the PRM adapter of every adapted projection moves, records are complete."""
    from safetensors.torch import load_file

    from prime.config import TrainConfig
    from prime.records import read_metrics, read_rollouts
    from prime.trainer import train

    run = tmp_path / family
    train(TrainConfig(out=str(run), model=str(family_dirs[family]), steps=1, prompts_per_step=2, max_new_tokens=12,
                      eval_every=0, filter_low=0.0, filter_high=1.0, prm_lr=1e-2, lora_r=4), progress=False)
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["model_type"] == family and len(config["model"]["lora"]["targets"]) == FAMILIES[family][2]
    prm = load_file(run / "checkpoints" / "step_000001" / "prm" / "adapter_model.safetensors")
    lora_b = [k for k in prm if "lora_B" in k]
    assert len(lora_b) == 2 * FAMILIES[family][2] and all(prm[k].abs().sum() > 0 for k in lora_b)
    assert len(read_rollouts(run, 1).query("filter_decision == 'kept'")) == 8
    assert read_metrics(run)[-1]["reward_model/loss"] > 0


def test_an_architecture_that_cannot_be_adapted_is_a_clear_error(tmp_path, micro_model_dir):
    """T5 is an encoder-decoder: no policy / PRM / reference can be made of it. The error names
    the architecture, on the command line too (exit 2, one line)."""
    from transformers import AutoTokenizer, T5Config, T5ForConditionalGeneration

    from prime import cli
    from prime.errors import UserError
    from prime.models import Roles

    tok = AutoTokenizer.from_pretrained(micro_model_dir)
    path = tmp_path / "t5"
    T5ForConditionalGeneration(T5Config(vocab_size=len(tok), d_model=32, d_ff=64, num_layers=1, num_heads=2,
                                        d_kv=16)).save_pretrained(path)
    tok.save_pretrained(path)
    with pytest.raises(UserError, match=r"cannot adapt T5ForConditionalGeneration \(model_type 't5'\)"):
        Roles(path, quant="4bit", device=torch.device("cpu"))
    assert cli.main(["score", "--model", str(path), "--prompt", PROMPT, "--response", RESPONSE]) == 2
