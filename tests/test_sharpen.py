"""prm_sharpen: a PRM that starts as the sharpened reference, π_φ ∝ π_ref^(1+c) per token."""

import pytest
import torch

from prime.models import LoraSettings, Roles, make_batch
from prime.rollout import encode_prompt


def _batch(tok):
    prompts = ["Start with 5. Multiply by 3. What is the result?", "Start with 2. Add 1. What is the result?"]
    responses = ["5 * 3 = 15\nThe answer is \\boxed{15}.", "2 + 1 = 4\nThe answer is \\boxed{4}."]
    return make_batch([encode_prompt(tok, p) for p in prompts],
                      [tok(r, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for r in responses], tok.pad_token_id)


def test_sharpened_prm_log_probs_by_hand_and_through_checkpoints(micro_model_dir, tmp_path):
    c = 1.5
    roles = Roles(micro_model_dir, quant="none", device=torch.device("cpu"), lora=LoraSettings(r=4, alpha=8),
                  prm_logit_scale=1 + c)
    batch = _batch(roles.tokenizer)
    mask = batch.response_mask.bool()
    prm, ref = roles.logprobs("prm", batch), roles.logprobs("ref", batch)
    # by hand: log softmax((1 + c) · logits) of the reference model (the fresh adapter adds exactly 0)
    with roles.role("ref") as model, torch.no_grad():
        logits = roles.causal_lm(model)(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    by_hand = torch.log_softmax((1 + c) * logits[:, :-1].float(), -1).gather(-1, batch.input_ids[:, 1:, None])[..., 0]
    torch.testing.assert_close(prm[:, 1:][mask[:, 1:]], by_hand[mask[:, 1:]], atol=1e-5, rtol=0)
    assert not torch.equal(prm, ref)  # rewards are not 0 at init: the PRM already ranks
    # the policy and the reference are untouched by the PRM's scale
    torch.testing.assert_close(roles.logprobs("policy", batch), ref, atol=0, rtol=0)
    # the scale travels with the adapter: a fresh Roles that loads the checkpoint scores the same
    roles.save_adapters(tmp_path / "ckpt")
    again = Roles(micro_model_dir, quant="none", device=torch.device("cpu"), lora=LoraSettings(r=4, alpha=8))
    assert again.prm_logit_scale == 1.0
    again.load_adapters(tmp_path / "ckpt", roles=("prm",))
    assert again.prm_logit_scale == pytest.approx(1 + c)
    torch.testing.assert_close(again.logprobs("prm", batch), prm, atol=1e-6, rtol=0)


def test_a_bad_scale_file_is_a_clear_error(tmp_path):
    from prime.errors import UserError
    from prime.models import PRM_HEAD_FILE, prm_logit_scale_of

    assert prm_logit_scale_of(tmp_path) == 1.0  # checkpoints from before the option
    (tmp_path / "prm").mkdir()
    (tmp_path / "prm" / PRM_HEAD_FILE).write_text('{"logit_scale": -2}')
    with pytest.raises(UserError, match="logit_scale"):
        prm_logit_scale_of(tmp_path)


def test_config_range_check():
    from prime.config import TrainConfig
    from prime.errors import UserError

    with pytest.raises(UserError, match="prm_sharpen"):
        TrainConfig(prm_sharpen=-1.0)
