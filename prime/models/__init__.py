"""Model loading: one 4-bit base carrying the policy and PRM as LoRA adapters (the only package
that imports transformers, peft and bitsandbytes, with prime.plan's meta-device shapes).

- cache: built-in models built once into the cache, names resolved to directories;
- loading: the tokenizer, the 4-bit base (one numeric path, dequantised once on a CPU), LoRA targets;
- batch: a padded batch of prompt + response ids;
- scoring: a CausalLM's per-token log-probs, gradient checkpointing of its layers;
- roles: policy, PRM and reference over one base, switching and log-probs;
- sampler: the merged full-precision sampler and the choice between it and the unmerged adapter;
- adapters: saving and loading both adapters;
- external: a released PRM and its reference as two full models.
Everything is importable from prime.models as before.
"""

from prime.models.adapters import PRM_HEAD_FILE, load_adapters, make_optimizer, prm_logit_scale_of, save_adapters
from prime.models.batch import Batch, make_batch
from prime.models.cache import (
    BUILTIN_MODELS,
    MANIFEST,
    cache_dir,
    check_model_dir,
    convert_gguf,
    convert_smollm2,
    resolve_model,
    smollm2_gguf_path,
    write_manifest,
)
from prime.models.external import ExternalPRM
from prime.models.loading import (
    DENSE_BUDGET_BYTES,
    LLAMA_STYLE,
    LORA_TARGETS,
    LoraSettings,
    default_device,
    dequantise_once,
    load_base,
    load_tokenizer,
    lora_targets,
    meta_model,
    model_config,
    one_numeric_path,
    output_head,
    require_causal_lm,
)
from prime.models.roles import ROLES, Roles, storage_bytes
from prime.models.sampler import MergedSampler, choose_sampler, merged_state_dict
from prime.models.scoring import causal_lm_logprobs, recompute_layers

__all__ = [
    "BUILTIN_MODELS",
    "DENSE_BUDGET_BYTES",
    "LLAMA_STYLE",
    "LORA_TARGETS",
    "MANIFEST",
    "PRM_HEAD_FILE",
    "ROLES",
    "Batch",
    "ExternalPRM",
    "LoraSettings",
    "MergedSampler",
    "Roles",
    "cache_dir",
    "causal_lm_logprobs",
    "check_model_dir",
    "choose_sampler",
    "convert_gguf",
    "convert_smollm2",
    "default_device",
    "dequantise_once",
    "load_adapters",
    "load_base",
    "load_tokenizer",
    "lora_targets",
    "make_batch",
    "make_optimizer",
    "merged_state_dict",
    "meta_model",
    "model_config",
    "one_numeric_path",
    "output_head",
    "prm_logit_scale_of",
    "recompute_layers",
    "require_causal_lm",
    "resolve_model",
    "save_adapters",
    "smollm2_gguf_path",
    "storage_bytes",
    "write_manifest",
]
