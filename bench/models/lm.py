"""One interface for any Hugging Face seq2seq checkpoint as an acting policy.

`ActionLM.load(name_or_path)` takes a hub name (google/flan-t5-small, where the hub is
reachable) or a local directory, including the checkpoints the harness trains itself. An
action is chosen by scoring every candidate action's log-likelihood under the model: the
encoder runs once per prompt, the decoder once per (prompt, candidate) pair, all batched.

Every call returns its cost per prompt (tokens in and out, analytic FLOPs) so the runner can
charge each environment for exactly what it asked; wall seconds are measured by the caller.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase
from transformers.utils import logging as hf_logging

from bench.common.seeding import generator
from bench.models.cost import CallCost
from bench.models.hub import require_hub_model

# transformers' per-file progress bars ("Loading weights", "Writing model shards") would bury the
# harness's own progress bars under lines for checkpoints that load in milliseconds.
hf_logging.disable_progress_bar()

LONDI_META = "londi.json"
# Cross-attention key/value projections (T5: EncDecAttention.k/.v; BART-likes: encoder_attn.k_proj/.v_proj).
CROSS_KV = re.compile(r"(EncDecAttention\.[kv]|encoder_attn\.[kv]_proj)\.")


@dataclass(frozen=True)
class Decision:
    """What a model decided for each prompt of one call: its action and how sure it was.

    Where a fixed candidate list was scored (BabyAI-Text) `scores` holds every candidate's
    log-likelihood and margin/entropy are those of the softmax over candidates. Where the action was
    generated (ScienceWorld) `scores` is None and margin/entropy are per generated token: the smallest
    top-1 minus top-2 probability and the largest entropy along the generation.
    """

    actions: list[str]
    margin: np.ndarray
    entropy: np.ndarray
    scores: list[np.ndarray] | None = None


def softmax(scores: np.ndarray) -> np.ndarray:
    shifted = scores - scores.max(axis=-1, keepdims=True)
    probs = np.exp(shifted)
    return probs / probs.sum(axis=-1, keepdims=True)


def margin_entropy(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Top-1 minus top-2 probability and entropy of each row of a probability table."""
    top = np.sort(probs, axis=-1)
    second = top[..., -2] if probs.shape[-1] > 1 else np.zeros(probs.shape[:-1])
    return top[..., -1] - second, -(probs * np.log(np.clip(probs, 1e-12, None))).sum(axis=-1)


def choose(scores_per_prompt: Sequence[np.ndarray], candidates: Sequence[Sequence[str]]) -> Decision:
    """The decision of a model that scored candidate lists (one list per prompt, lengths may differ)."""
    actions, margins, entropies = [], [], []
    for row, options in zip(scores_per_prompt, candidates, strict=True):
        m, e = margin_entropy(softmax(np.asarray(row, dtype=np.float64)))
        actions.append(options[int(np.argmax(row))])
        margins.append(float(m))
        entropies.append(float(e))
    return Decision(actions, np.array(margins), np.array(entropies), [np.asarray(r) for r in scores_per_prompt])


def generation_decision(tokenizer: PreTrainedTokenizerBase, generated: torch.Tensor, scores: Sequence[torch.Tensor],
                        eos: int, pad: int) -> tuple[Decision, np.ndarray]:
    """A greedy generation's decision and the tokens each prompt really produced (up to and including its first
    end-of-sequence token): the text, and per prompt the smallest top-1 minus top-2 probability and the largest
    entropy along the tokens produced."""
    finished_before = torch.cumsum((generated == eos).int(), dim=1) - (generated == eos).int()
    produced = (finished_before == 0) & ~((generated == pad) & (finished_before > 0))
    probs = torch.stack([torch.softmax(step.float(), dim=-1) for step in scores], dim=1).cpu().numpy()
    margins, entropies = margin_entropy(probs)  # [prompts, steps]
    mask = produced.cpu().numpy()
    texts = [" ".join(t.split()) for t in tokenizer.batch_decode(generated, skip_special_tokens=True)]
    decision = Decision(texts, np.where(mask, margins, np.inf).min(axis=1),
                        np.where(mask, entropies, -np.inf).max(axis=1))
    return decision, mask.sum(axis=1)


def require_checkpoint(name_or_path: str | Path) -> None:
    """Raise at once, with the way out, when `name_or_path` is neither a local checkpoint directory nor a hub model
    this machine can get. A hub id is "name" or "owner/name"; a deeper path can only be a local directory."""
    path = Path(name_or_path)
    looks_local = path.is_absolute() or str(name_or_path).startswith(".") or path.exists() or len(path.parts) > 2
    if looks_local and not (path / "config.json").exists():
        raise FileNotFoundError(
            f"no model at {str(name_or_path)!r} (no config.json there): train the offline models "
            f"with `make models`, or pass a Hugging Face checkpoint name such as google/flan-t5-small"
        )
    if not looks_local:
        require_hub_model(str(name_or_path))


@dataclass(frozen=True)
class ModelSize:
    """Parameter counts that the FLOPs estimate uses (embeddings and the LM head excluded)."""

    total_params: int
    encoder_params: int
    decoder_params: int
    encoder_layers: int
    decoder_layers: int
    attention_width: int
    cross_kv_params: int = 0
    """Decoder parameters projecting the prompt's encoder states to cross-attention keys and values."""

    @property
    def non_embedding_params(self) -> int:
        return self.encoder_params + self.decoder_params


def model_size(model: PreTrainedModel) -> ModelSize:
    """Count non-embedding parameters of an encoder-decoder model, per stack."""
    embedding_ids: set[int] = set()
    # Each stack's own token embedding too: an untied config gives the encoder and decoder their own copies.
    for module in (model, model.get_encoder(), model.get_decoder()):
        embedding_ids |= {id(p) for p in module.get_input_embeddings().parameters()}
    output = model.get_output_embeddings()
    if output is not None:
        embedding_ids |= {id(p) for p in output.parameters()}

    def count(module: torch.nn.Module) -> int:
        return sum(p.numel() for p in module.parameters() if id(p) not in embedding_ids)

    cross_kv = sum(p.numel() for name, p in model.get_decoder().named_parameters() if CROSS_KV.search(name))
    config = model.config
    heads = getattr(config, "num_heads", None) or config.encoder_attention_heads
    d_kv = getattr(config, "d_kv", None) or config.d_model // heads
    return ModelSize(
        total_params=sum(p.numel() for p in model.parameters()),
        encoder_params=count(model.get_encoder()),
        decoder_params=count(model.get_decoder()),
        encoder_layers=getattr(config, "num_layers", None) or config.encoder_layers,
        decoder_layers=getattr(config, "num_decoder_layers", None) or config.decoder_layers,
        attention_width=heads * d_kv,
        cross_kv_params=cross_kv,
    )


class ActionLM:
    """A seq2seq language model that picks among candidate actions by likelihood."""

    measure = staticmethod(model_size)
    """How the model's parameters are counted for FLOPs (a decoder-only model counts its one stack)."""

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        name: str,
        context: str = "history",
        device: str | torch.device = "cpu",
        meta: dict | None = None,
        source: str | None = None,
    ) -> None:
        self.device = torch.device(device)
        self.source = source or name  # the hub name or local path it was loaded from
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.name = name
        self.context = context
        self.meta = meta or {}
        self.size = self.measure(model)
        self._candidate_cache: dict[tuple[str, ...], tuple[torch.Tensor, torch.Tensor]] = {}

    @classmethod
    def load(cls, name_or_path: str | Path, device: str = "cpu", context: str | None = None) -> ActionLM:
        """Load a seq2seq hub checkpoint by name or a local directory (with its `londi.json` if present).
        bench.models.loader.load_lm takes decoder-only checkpoints too."""
        require_checkpoint(name_or_path)
        path = Path(name_or_path)
        meta = json.loads((path / LONDI_META).read_text()) if (path / LONDI_META).exists() else {}
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
        model = AutoModelForSeq2SeqLM.from_pretrained(name_or_path)
        return cls(
            model, tokenizer, name=meta.get("name", str(name_or_path)),
            context=context or meta.get("context", "history"), device=device, meta=meta,
            source=str(name_or_path),
        )

    def _candidates(self, candidates: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        key = tuple(candidates)
        if key not in self._candidate_cache:
            encoded = self.tokenizer(list(candidates), padding=True, return_tensors="pt")
            labels = encoded["input_ids"].to(self.device)
            mask = encoded["attention_mask"].to(self.device)
            self._candidate_cache[key] = (labels, mask)
        return self._candidate_cache[key]

    @torch.inference_mode()
    def score(self, prompts: Sequence[str], candidates: Sequence[str]) -> tuple[np.ndarray, CallCost]:
        """Log-likelihood of each candidate after each prompt: an array [prompts, candidates]."""
        encoded = self.tokenizer(list(prompts), padding=True, truncation=True, return_tensors="pt")
        input_ids = encoded["input_ids"].to(self.device)
        attention_mask = encoded["attention_mask"].to(self.device)
        labels, label_mask = self._candidates(candidates)
        n_prompts, n_cands = len(prompts), len(candidates)

        encoder_out = self.model.get_encoder()(input_ids=input_ids, attention_mask=attention_mask)
        hidden = encoder_out.last_hidden_state.repeat_interleave(n_cands, dim=0)
        expanded_mask = attention_mask.repeat_interleave(n_cands, dim=0)
        tiled_labels = labels.repeat(n_prompts, 1)
        tiled_label_mask = label_mask.repeat(n_prompts, 1)
        decoder_input_ids = self.model.prepare_decoder_input_ids_from_labels(
            labels=tiled_labels.masked_fill(tiled_label_mask == 0, self.tokenizer.pad_token_id)
        )
        logits = self.model(
            encoder_outputs=(hidden,),
            attention_mask=expanded_mask,
            decoder_input_ids=decoder_input_ids,
        ).logits
        token_logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, tiled_labels.unsqueeze(-1)).squeeze(-1)
        scores = (token_logp * tiled_label_mask).sum(-1).view(n_prompts, n_cands)
        return scores.cpu().numpy(), self._cost(attention_mask.sum(-1).cpu().numpy(), label_mask.sum(-1).cpu().numpy())

    needs_candidates = False
    """Generation needs no candidate list; a model that must be given one (the random policy) says so."""

    def decide(self, prompts: Sequence[str], candidates: Sequence[Sequence[str]] | None) -> tuple[Decision, CallCost]:
        """One action per prompt: the best of its candidates by likelihood, or (candidates None) generated."""
        if candidates is None:
            return self.generate(prompts)
        groups: dict[tuple[str, ...], list[int]] = {}
        for i, options in enumerate(candidates):
            groups.setdefault(tuple(options), []).append(i)
        rows: list[np.ndarray] = [np.zeros(0)] * len(prompts)
        tokens_in, tokens_out, flops = (np.zeros(len(prompts), dtype=np.int64), np.zeros(len(prompts), dtype=np.int64),
                                        np.zeros(len(prompts)))
        for options, members in groups.items():  # one batched call per distinct list (BabyAI: one in all)
            table, cost = self.score([prompts[i] for i in members], options)
            for j, i in enumerate(members):
                rows[i] = table[j]
                tokens_in[i], tokens_out[i], flops[i] = cost.tokens_in[j], cost.tokens_out[j], cost.flops[j]
        return choose(rows, candidates), CallCost(tokens_in, tokens_out, flops)

    @torch.inference_mode()
    def generate(self, prompts: Sequence[str], max_tokens: int = 24, min_tokens: int = 0) -> tuple[Decision, CallCost]:
        """Greedy generation of one action per prompt (the encoder once, the decoder with its key/value cache).

        `min_tokens` holds the end-of-sequence token back until that many tokens are generated: with `max_tokens`
        the same, every prompt generates exactly that many (how bench.running.calibrate times a length)."""
        encoded = self.tokenizer(list(prompts), padding=True, truncation=True, return_tensors="pt")
        input_ids = encoded["input_ids"].to(self.device)
        attention_mask = encoded["attention_mask"].to(self.device)
        forced = {"min_new_tokens": min_tokens} if min_tokens > 0 else {}
        out = self.model.generate(input_ids=input_ids, attention_mask=attention_mask, max_new_tokens=max_tokens,
                                  do_sample=False, num_beams=1, output_scores=True, return_dict_in_generate=True,
                                  **forced)
        decision, out_tokens = generation_decision(self.tokenizer, out.sequences[:, 1:], out.scores,  # after the start
                                                   eos=self.tokenizer.eos_token_id, pad=self.tokenizer.pad_token_id)
        prompt_tokens = attention_mask.sum(-1).cpu().numpy()
        return decision, CallCost(prompt_tokens.astype(np.int64), out_tokens.astype(np.int64),
                                  self.generation_flops(prompt_tokens, out_tokens))

    def generation_flops(self, prompt_tokens: np.ndarray, out_tokens: np.ndarray) -> np.ndarray:
        """Analytic forward FLOPs of a greedy generation, per prompt: the encoder over the prompt, the
        cross-attention keys/values once over the prompt, and per generated token the rest of the decoder,
        attending to the tokens before it and to the prompt."""
        s = self.size
        p = np.asarray(prompt_tokens, dtype=np.float64)
        t = np.asarray(out_tokens, dtype=np.float64)
        linear = 2 * s.encoder_params * p + 2 * s.cross_kv_params * p + 2 * (s.decoder_params - s.cross_kv_params) * t
        attention = (2 * s.encoder_layers * p**2 * s.attention_width
                     + 2 * s.decoder_layers * s.attention_width * (t * (t + 1) / 2 + t * p))
        return linear + attention

    def _cost(self, prompt_tokens: np.ndarray, candidate_tokens: np.ndarray) -> CallCost:
        """Analytic forward FLOPs of what `score` executes, per prompt.

        2 x non-embedding params x tokens (Kaplan et al. 2020), plus the attention-context term
        2 x layers x n_ctx x attention width per token. The decoder runs once per candidate and
        recomputes the cross-attention keys and values over the whole prompt each time, so those
        projections are charged per prompt token per candidate, the rest per decoder token.
        """
        linear, attention = self.flops_parts(prompt_tokens, candidate_tokens)
        decoder_tokens = candidate_tokens.sum()
        return CallCost(
            tokens_in=prompt_tokens.astype(np.int64),
            tokens_out=np.full(len(prompt_tokens), int(decoder_tokens), dtype=np.int64),
            flops=linear + attention,
        )

    def flops_parts(self, prompt_tokens: np.ndarray, candidate_tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per prompt: FLOPs of the weight matmuls, and of the attention-context term."""
        s = self.size
        prompt = prompt_tokens.astype(np.float64)
        cand = candidate_tokens.astype(np.float64)
        decoder_tokens = cand.sum()
        linear = (
            2 * s.encoder_params * prompt
            + 2 * (s.decoder_params - s.cross_kv_params) * decoder_tokens
            + 2 * s.cross_kv_params * prompt * len(cand)
        )
        attention = (
            2 * s.encoder_layers * prompt**2 * s.attention_width
            + 2 * s.decoder_layers * s.attention_width * ((cand**2).sum() + decoder_tokens * prompt)
        )
        return linear, attention

    def flops_per_decision(self, prompt_tokens: int, candidates: Sequence[str]) -> float:
        """FLOPs of one decision for a prompt of `prompt_tokens` tokens (for reports)."""
        _, mask = self._candidates(candidates)
        return float(self._cost(np.array([prompt_tokens]), mask.sum(-1).cpu().numpy()).flops[0])


RANDOM_POLICY = "random"


class RandomPolicy:
    """A stand-in for a language model that picks uniformly at random: the paper's ablation with QUICK
    replaced by a random policy (`--quick random`). Its scores come from its own generator, which the
    runner seeds with the run seed (`seed`), so a run is reproducible; it costs no FLOPs."""

    def __init__(self, context: str = "reflex") -> None:
        self.rng = generator(0, "random_policy")
        self.device = torch.device("cpu")
        self.name = self.source = RANDOM_POLICY
        self.context = context
        self.meta: dict = {}
        self.size = ModelSize(total_params=0, encoder_params=0, decoder_params=0, encoder_layers=0,
                              decoder_layers=0, attention_width=0)

    needs_candidates = True
    """It picks among the valid actions, so even a generating task must list them for it."""

    def seed(self, seed: int) -> None:
        self.rng = generator(seed, "random_policy")  # not the router's or the Switcher's stream

    def score(self, prompts: Sequence[str], candidates: Sequence[str]) -> tuple[np.ndarray, CallCost]:
        n = len(prompts)
        scores = self.rng.random((n, len(candidates)))
        zeros = np.zeros(n)
        return scores, CallCost(zeros, zeros.copy(), zeros.copy())

    def decide(self, prompts: Sequence[str], candidates: Sequence[Sequence[str]] | None) -> tuple[Decision, CallCost]:
        if candidates is None:
            raise ValueError("the random policy needs the candidate actions of each prompt")
        rows = [self.rng.random(len(options)) for options in candidates]
        zeros = np.zeros(len(prompts))
        return choose(rows, candidates), CallCost(zeros, zeros.copy(), zeros.copy())

    def flops_per_decision(self, prompt_tokens: int, candidates: Sequence[str]) -> float:
        return 0.0


class SampledPolicy:
    """A model's actions sampled instead of taken by argmax: its candidates' likelihoods, softened by `temperature`,
    drawn from its own generator (seeded by the runner with the run seed, like the random policy). The control for
    "mixing two greedy models helps because it breaks loops": if any noise breaks them, a sampled single model does
    as well. Everything else (cost, FLOPs, context, name for the meter) is the wrapped model's. Tasks whose models
    generate their actions are refused: a sampled generation would draw from torch's global generator."""

    def __init__(self, lm: ActionLM, temperature: float, role: str = "model") -> None:
        if not temperature > 0:
            raise ValueError(f"sampling temperature must be > 0 (argmax is the model itself), got {temperature}")
        self.lm, self.temperature, self.role = lm, float(temperature), role
        self.name = f"{lm.name}@t={self.temperature:g}"
        self.rng = generator(0, f"sampled_policy:{role}")

    def __getattr__(self, name: str) -> object:  # cost, size, context, device, meta: the wrapped model's
        if name == "lm":  # not set yet (a copy being built): no recursion through the lookup below
            raise AttributeError(name)
        return getattr(self.lm, name)

    def seed(self, seed: int) -> None:
        self.rng = generator(seed, f"sampled_policy:{self.role}")

    def decide(self, prompts: Sequence[str], candidates: Sequence[Sequence[str]] | None) -> tuple[Decision, CallCost]:
        if candidates is None:
            raise ValueError("a sampled policy needs a task whose models choose among candidate actions (BabyAI-Text)")
        greedy, cost = self.lm.decide(prompts, candidates)
        actions = []
        for row, options in zip(greedy.scores, candidates, strict=True):
            probs = softmax(np.asarray(row, dtype=np.float64) / self.temperature)
            actions.append(options[int(self.rng.choice(len(options), p=probs))])
        return Decision(actions, greedy.margin, greedy.entropy, greedy.scores), cost

