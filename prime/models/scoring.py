"""Per-token log-probs of a transformers CausalLM on a batch (the LM head in chunks), and gradient
checkpointing for its decoder layers."""

from __future__ import annotations

import torch

from prime.math.logprobs import token_logprobs
from prime.models.batch import Batch
from prime.models.loading import output_head


def causal_lm_logprobs(lm, batch: Batch, device: torch.device, chunk_rows: int = 1024,
                       logit_scale: float = 1.0, hidden_states=None, recompute: bool = False) -> torch.Tensor:
    """log π(y_t | x, y_<t) of a transformers CausalLM on the response tokens of `batch`, (B, T).

    Position ids follow the attention mask, so left and right padding agree. The LM head runs
    only on response positions, a chunk of rows at a time (prime.math.logprobs). logit_scale ≠ 1
    multiplies the logits (a sharpened PRM: π ∝ π_lm^scale per token). hidden_states(ids, attn)
    -> (B, T, H) computes the final hidden states instead of the model's own decoder (the
    plain-torch path, prime.decoder.hidden_states). recompute: the LM head's chunks are computed
    again in the backward pass instead of keeping their logits (gradient checkpointing)."""
    ids, attn, resp = (t.to(device) for t in (batch.input_ids, batch.attention_mask, batch.response_mask))
    if hidden_states is None:
        position_ids = (attn.cumsum(-1) - 1).clamp(min=0)
        hidden = lm.get_decoder()(input_ids=ids, attention_mask=attn, position_ids=position_ids,
                                  use_cache=False).last_hidden_state
    else:
        hidden = hidden_states(ids, attn)
    head = output_head(lm)
    if logit_scale != 1.0:
        plain, head = head, lambda h: plain(h) * logit_scale
    return token_logprobs(hidden, head, ids, resp, chunk_rows, recompute)


def recompute_layers(lm) -> None:
    """Gradient checkpointing for a transformers decoder whatever its train/eval mode (its own
    switch acts only in training mode, which would also turn dropout on): each layer keeps only
    its inputs and runs again in the backward pass when gradients are on."""
    from torch.utils.checkpoint import checkpoint

    for layer in lm.get_decoder().layers:
        def forward(*args, _forward=layer.forward, **kwargs):
            if torch.is_grad_enabled():
                return checkpoint(_forward, *args, use_reentrant=False, **kwargs)
            return _forward(*args, **kwargs)

        layer.forward = forward
