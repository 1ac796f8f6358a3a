"""prime.models: one 4-bit base, two adapters, the reference with adapters disabled."""

import pytest
import torch

from prime.math.rewards import implicit_rewards
from prime.models import LoraSettings, Roles, load_base, make_batch
from prime.rollout import encode_prompt

SOLUTION = "5 * 3 = 15\n15 * 3 = 45\nThe answer is \\boxed{45}."
PROMPTS = ["Start with 5. Multiply by 3. Multiply by 3. What is the result?", "Start with 2. Add 1. What is the result?"]
RESPONSES = [SOLUTION, "2 + 1 = 3\nThe answer is \\boxed{3}."]


def _batch(roles, padding_side="right"):
    tok = roles.tokenizer
    prompts = [encode_prompt(tok, p) for p in PROMPTS]
    responses = [tok(r, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for r in RESPONSES]
    return make_batch(prompts, responses, tok.pad_token_id, padding_side)


@pytest.fixture(scope="module")
def roles(micro_model_dir):
    torch.manual_seed(0)
    return Roles(micro_model_dir, quant="4bit", device=torch.device("cpu"), lora=LoraSettings(r=4, alpha=8))


def _response_values(logp, batch):
    return [logp[b][batch.response_mask[b].bool()] for b in range(logp.shape[0])]


def test_base_is_4bit(roles):
    import bitsandbytes as bnb

    assert any(isinstance(m, bnb.nn.Linear4bit) for m in roles.shared.modules())


@pytest.mark.parametrize("role", ["policy", "prm", "ref"])
def test_left_and_right_padding_agree(roles, role):
    right, left = _batch(roles, "right"), _batch(roles, "left")
    assert not torch.equal(right.input_ids, left.input_ids)  # the rows really are padded differently
    for a, b in zip(_response_values(roles.logprobs(role, right), right), _response_values(roles.logprobs(role, left), left)):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_rewards_exactly_zero_before_any_prm_update(roles):
    batch = _batch(roles)
    prm, ref = roles.logprobs("prm", batch), roles.logprobs("ref", batch)
    assert torch.equal(prm, ref)
    assert (implicit_rewards(prm, ref, batch.response_mask.float(), 0.05) == 0).all()


def test_adapter_switching_and_prm_step(micro_model_dir):
    """One gradient step on the PRM adapter: PRM rewards move, policy and reference do not,
    and the quantized base bytes are untouched."""
    torch.manual_seed(0)
    roles = Roles(micro_model_dir, quant="4bit", device=torch.device("cpu"))
    batch = _batch(roles)
    base_bytes = {n: p.detach().clone() for n, p in roles.shared.named_parameters() if "lora_" not in n}
    policy0, ref0 = roles.logprobs("policy", batch), roles.logprobs("ref", batch)
    plain = Roles.__new__(Roles)  # the base without peft: what "adapters disabled" must equal
    plain.device, plain.layout, plain._lora_params, plain.plain = torch.device("cpu"), "separate", [], None
    plain.models = {"ref": load_base(micro_model_dir, "4bit", torch.device("cpu"))}
    torch.testing.assert_close(roles.logprobs("ref", batch), plain.logprobs("ref", batch))

    params = roles.adapter_parameters("prm")
    assert params and all(p.requires_grad for p in params)
    opt = torch.optim.SGD(params, lr=1.0)
    loss = -roles.logprobs("prm", batch, grad=True).sum()  # push the PRM towards these responses
    loss.backward()
    opt.step()

    prm1, ref1 = roles.logprobs("prm", batch), roles.logprobs("ref", batch)
    rewards = implicit_rewards(prm1, ref1, batch.response_mask.float(), 0.05)
    assert rewards[batch.response_mask.bool()].abs().min() > 0  # every response token moved
    assert rewards[batch.response_mask == 0].abs().max() == 0  # prompt and padding get nothing
    torch.testing.assert_close(roles.logprobs("policy", batch), policy0)  # the policy adapter is untouched
    torch.testing.assert_close(ref1, ref0)
    for n, p in roles.shared.named_parameters():
        if "lora_" not in n:
            assert torch.equal(p.detach(), base_bytes[n]), n


def test_adapters_save_and_load(micro_model_dir, tmp_path):
    torch.manual_seed(0)
    a = Roles(micro_model_dir, device=torch.device("cpu"))
    with torch.no_grad():
        for p in a.adapter_parameters("prm"):
            p.add_(0.01 * torch.randn_like(p))
    a.save_adapters(tmp_path)
    assert (tmp_path / "prm" / "adapter_model.safetensors").is_file()
    b = Roles(micro_model_dir, device=torch.device("cpu"))
    b.load_adapters(tmp_path)
    batch = _batch(a)
    torch.testing.assert_close(b.logprobs("prm", batch), a.logprobs("prm", batch))
    torch.testing.assert_close(b.logprobs("ref", batch), a.logprobs("ref", batch))


def test_separate_and_unquantized_layouts(micro_model_dir, roles):
    batch = _batch(roles)
    sep = Roles(micro_model_dir, quant="4bit", layout="separate", device=torch.device("cpu"))
    assert len({id(m) for m in sep.models.values()}) == 3
    for role in ("policy", "prm", "ref"):
        torch.testing.assert_close(sep.logprobs(role, batch), roles.logprobs("ref", batch))
    full = Roles(micro_model_dir, quant="none", device=torch.device("cpu"))
    diff = (full.logprobs("ref", batch) - roles.logprobs("ref", batch)).abs()[batch.response_mask.bool()]
    assert 0 < diff.mean() < 0.5  # 4-bit is close to, but not the same as, full precision
    # the footprint of the packed 4-bit base (on a CPU the roles also keep its weights dequantised
    # once, for speed: `dequantise`, counted by memory_bytes)
    packed = Roles(micro_model_dir, quant="4bit", device=torch.device("cpu"), dequantise=False)
    sep_packed = Roles(micro_model_dir, quant="4bit", layout="separate", device=torch.device("cpu"), dequantise=False)
    assert packed.memory_bytes() < full.memory_bytes() and packed.memory_bytes() < sep_packed.memory_bytes()
    assert roles.memory_bytes() > packed.memory_bytes()


def test_merged_sampler_equals_the_4bit_policy(micro_model_dir):
    """The full-precision sampler computes the same log-probs as base(4-bit) + policy adapter."""
    torch.manual_seed(0)
    roles = Roles(micro_model_dir, device=torch.device("cpu"))
    with torch.no_grad():
        for p in roles.adapter_parameters("policy"):
            p.add_(0.05 * torch.randn_like(p))
    batch = _batch(roles)
    sampler = roles.sampler()
    with torch.no_grad():
        logits = sampler(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    logp = torch.log_softmax(logits[:, :-1], -1).gather(-1, batch.input_ids[:, 1:, None])[..., 0]
    expected = roles.logprobs("policy", batch)[:, 1:]
    m = batch.response_mask[:, 1:].bool()
    torch.testing.assert_close(logp[m], expected[m], atol=1e-4, rtol=1e-4)


def test_dequantised_once_gives_the_kernels_bits(micro_model_dir):
    """prime.models.dequantise_once: every 4-bit layer computes the same bits as bitsandbytes'
    own kernel (dequantise, then matmul), forward and backward."""
    import bitsandbytes as bnb

    from prime.models import dequantise_once

    packed, dense = (load_base(micro_model_dir, "4bit", torch.device("cpu")) for _ in range(2))
    kept = dequantise_once(dense)
    layers = [(a, b) for a, b in zip(packed.modules(), dense.modules()) if isinstance(a, bnb.nn.Linear4bit)]
    assert layers and len(kept) == len(layers)
    torch.manual_seed(0)
    for a, b in layers:
        x = torch.randn(7, a.in_features, requires_grad=True)
        y = x.detach().clone().requires_grad_(True)
        out_a, out_b = a(x), b(y)
        assert torch.equal(out_a, out_b)
        grad = torch.randn_like(out_a)
        out_a.backward(grad)
        out_b.backward(grad)
        assert torch.equal(x.grad, y.grad)
    assert not dequantise_once(packed, budget_bytes=0)  # over the budget: left packed


@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_plain_path_equals_peft_and_transformers(micro_model_dir, padding_side):
    """The Llama-family plain-torch path (prime.decoder.hidden_states) against peft + transformers
    on the same weights, with adapters that are not zero: every role's log-probs and the
    gradients on every adapter matrix agree to float rounding."""
    torch.manual_seed(0)
    roles = Roles(micro_model_dir, quant="4bit", device=torch.device("cpu"), lora=LoraSettings(r=4, alpha=8))
    assert roles.plain is not None and roles.describe()["forward"] == "plain"
    with torch.no_grad():
        for name, p in roles.shared.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.05)
    batch = _batch(roles, padding_side)
    plain = {r: roles.logprobs(r, batch) for r in ("policy", "prm", "ref")}
    grads = {}
    for path in ("plain", "peft"):
        if path == "peft":
            roles.plain = None  # the fallback every other family takes
        for p in roles.adapter_parameters("prm"):
            p.grad = None
        roles.logprobs("prm", batch, grad=True).sum().backward()
        grads[path] = [p.grad.clone() for p in roles.adapter_parameters("prm")]
    for role, logp in plain.items():
        torch.testing.assert_close(logp, roles.logprobs(role, batch), atol=1e-5, rtol=1e-5)
    assert all(g.abs().sum() > 0 for g in grads["plain"])  # gradient on every adapter matrix
    for a, b in zip(grads["plain"], grads["peft"]):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_reset_prm_makes_every_process_reward_zero(tiny_dir):
    """After reset_prm a PRM that had moved (and was sharpened) equals the reference again:
    its log-probs are the reference's, exactly."""
    import torch

    from prime.models import Roles, make_batch

    roles = Roles(tiny_dir)
    with torch.no_grad():
        for p in roles.adapter_parameters("prm"):
            p.normal_(std=0.05)
    roles.prm_logit_scale = 2.0
    tok = roles.tokenizer
    batch = make_batch([tok("Start with 2. Add 3.")["input_ids"]], [tok(" 2 + 3 = 5")["input_ids"]], tok.pad_token_id)
    assert not torch.equal(roles.logprobs("prm", batch), roles.logprobs("ref", batch))
    roles.reset_prm()
    assert roles.prm_logit_scale == 1.0
    assert torch.equal(roles.logprobs("prm", batch), roles.logprobs("ref", batch))
