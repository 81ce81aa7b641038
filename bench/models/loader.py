"""Any language model by name: a seq2seq or decoder-only checkpoint (hub name or local directory), a model behind an
OpenAI-compatible server (its base URL: bench.models.served), an instruction model prompted through its chat template
(`instruct:NAME`: bench.models.instruct), or `random`.

The architecture is read from the checkpoint's config: an encoder-decoder (T5, BART) loads as ActionLM, a
decoder-only model (GPT-2, Llama, Qwen2 ...) as CausalActionLM; both answer the same calls.
"""

from __future__ import annotations

from pathlib import Path

from transformers import AutoConfig

from bench.models.causal import CausalActionLM
from bench.models.instruct import InstructLM, is_instruct
from bench.models.lm import RANDOM_POLICY, ActionLM, RandomPolicy, require_checkpoint
from bench.models.served import ServedLM, is_served


def is_decoder_only(name_or_path: str | Path) -> bool:
    return not getattr(AutoConfig.from_pretrained(name_or_path), "is_encoder_decoder", False)


def load_lm(name_or_path: str | Path, device: str = "cpu", context: str | None = None) -> ActionLM:
    """A checkpoint as the model class its config calls for."""
    require_checkpoint(name_or_path)
    if is_decoder_only(name_or_path):
        return CausalActionLM.from_dir(name_or_path, device=device, context=context)
    return ActionLM.load(name_or_path, device=device, context=context)


def load_model(name_or_path: str | Path, device: str = "cpu") -> ActionLM | RandomPolicy | ServedLM:
    """`random` gives the random policy; an http(s) URL a served model; `instruct:NAME` an instruction model prompted
    through its chat template; anything else a checkpoint (hub name or local path)."""
    if str(name_or_path) == RANDOM_POLICY:
        return RandomPolicy()
    if is_served(name_or_path):
        return ServedLM(str(name_or_path))
    if is_instruct(name_or_path):
        return InstructLM.from_spec(str(name_or_path), device=device)
    return load_lm(name_or_path, device=device)
