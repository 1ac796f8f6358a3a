"""A released implicit PRM and its reference as two full models (prime score --prm-model/--ref-model)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from prime.errors import UserError
from prime.models.batch import Batch
from prime.models.loading import default_device, dequantise_once, load_base, load_tokenizer
from prime.models.scoring import causal_lm_logprobs


@dataclass
class ExternalPRM:
    """A released implicit PRM and its reference as two full models (e.g. EurusPRM-Stage2 with
    Qwen2.5-Math-7B-Instruct), each a local Hugging Face directory, each 4-bit (or not). Scores
    like Roles: logprobs("prm") and logprobs("ref"); they must share one tokenizer."""

    prm_dir: Path
    ref_dir: Path
    quant: str = "4bit"
    device: torch.device | None = None

    def __post_init__(self):
        self.device = self.device or default_device()
        self.tokenizer = load_tokenizer(self.prm_dir)
        ref_tok = load_tokenizer(self.ref_dir)
        probe = "Step 1: 12 * 3 = 36.\nThe answer is \\boxed{36}."
        if self.tokenizer.get_vocab() != ref_tok.get_vocab() or self.tokenizer(probe)["input_ids"] != ref_tok(probe)["input_ids"]:
            raise UserError(f"the PRM ({self.prm_dir}) and the reference ({self.ref_dir}) tokenize differently; an implicit "
                            "reward log(π_prm/π_ref) needs one tokenizer: pick the reference the PRM was trained from")
        self.models = {"prm": load_base(self.prm_dir, self.quant, self.device),
                       "ref": load_base(self.ref_dir, self.quant, self.device)}
        for model in self.models.values():
            dequantise_once(model)
        self.context_length = min(getattr(m.config, "max_position_embeddings", None) or 10**9 for m in self.models.values())

    def logprobs(self, role: str, batch: Batch, grad: bool = False, chunk_rows: int = 1024) -> torch.Tensor:
        if role not in self.models:
            raise ValueError(f"an external PRM has roles prm and ref, not {role!r}")
        with torch.set_grad_enabled(grad):
            return causal_lm_logprobs(self.models[role], batch, self.device, chunk_rows)

    def describe(self) -> dict:
        return {"prm_dir": str(self.prm_dir), "ref_dir": str(self.ref_dir), "quant": self.quant, "device": str(self.device)}
