"""Decoder-only language models (GPT-2, Llama, Qwen2 and the like) as acting policies, behind ActionLM's interface.

A prompt and an action are one sequence: the prompt's tokens, an end-of-sequence token that separates them, the
action's tokens and an end-of-sequence token that ends it (the layout the harness's own word-level and BPE
tokenizers give each text, so a causal model trained here reads exactly what the T5 pair reads). A candidate's score
is the summed log-probability of its tokens (its end token included) after the prompt.

Scoring runs the prompt once per state: one batched forward pass over the prompts, left-padded, keeps their keys and
values; that cache is repeated once per candidate and the candidates' tokens run on top of it. The first candidate
token's log-probability comes from the prompt's last position, so the candidate pass feeds every candidate token
but its last. Positions count from each prompt's first real token (left padding shifts no position).

A prompt longer than the model's positions allow (less the longest candidate, or the generation budget) loses its
beginning, never its end: the contexts put the current view last.

FLOPs follow the encoder-decoder convention (Kaplan et al. 2020; ActionLM): 2 x non-embedding parameters per token
processed, plus 2 x layers x context x attention width per token; token and position embeddings and the LM head are
left out. Only the work a decision needs is charged: the prompt once, each candidate's tokens but its last, no
padding.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from bench.models.cost import CallCost
from bench.models.lm import LONDI_META, ActionLM, Decision, ModelSize, generation_decision


def causal_size(model: PreTrainedModel) -> ModelSize:
    """Non-embedding parameters of a decoder-only model (every nn.Embedding and the LM head left out), its layers and
    its attention width (query heads x head size: what a token's attention over its context multiplies)."""
    excluded = {id(p) for m in model.modules() if isinstance(m, torch.nn.Embedding) for p in m.parameters()}
    head = model.get_output_embeddings()
    if head is not None:
        excluded |= {id(p) for p in head.parameters()}
    body = sum(p.numel() for p in model.parameters() if id(p) not in excluded)
    config = model.config
    layers = getattr(config, "num_hidden_layers", None) or config.n_layer
    heads = getattr(config, "num_attention_heads", None) or config.n_head
    width = getattr(config, "hidden_size", None) or config.n_embd
    head_dim = getattr(config, "head_dim", None) or width // heads
    return ModelSize(total_params=sum(p.numel() for p in model.parameters()), encoder_params=0, decoder_params=body,
                     encoder_layers=0, decoder_layers=layers, attention_width=heads * head_dim)


def max_positions(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> int:
    """The longest sequence the model can read: its position table, else the tokenizer's stated limit."""
    config = model.config
    limit = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    return int(limit or tokenizer.model_max_length)


class CausalActionLM(ActionLM):
    """A decoder-only model that picks among candidate actions by likelihood, or generates one."""

    measure = staticmethod(causal_size)

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, name: str, context: str = "history",
                 device: str | torch.device = "cpu", meta: dict | None = None, source: str | None = None) -> None:
        super().__init__(model, tokenizer, name, context, device, meta, source)
        self.eos = tokenizer.eos_token_id
        if self.eos is None:
            raise ValueError(f"{name}: a causal model's tokenizer needs an end-of-sequence token (it separates the "
                             f"prompt from the action and ends the action)")
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos
        self.prompt_end: list[int] = [self.eos]
        """Tokens after a prompt, before the action: the separator of the models trained here (a chat-templated
        prompt ends with the template's own turn marker instead: bench.models.instruct)."""
        self.max_positions = max_positions(model, tokenizer)
        self._candidate_ids: dict[tuple[str, ...], list[list[int]]] = {}

    @classmethod
    def from_dir(cls, name_or_path: str | Path, device: str = "cpu", context: str | None = None) -> CausalActionLM:
        path = Path(name_or_path)
        meta = json.loads((path / LONDI_META).read_text()) if (path / LONDI_META).exists() else {}
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
        model = AutoModelForCausalLM.from_pretrained(name_or_path)
        return cls(model, tokenizer, name=meta.get("name", str(name_or_path)),
                   context=context or meta.get("context", "history"), device=device, meta=meta,
                   source=str(name_or_path))

    # --- tokens -----------------------------------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        """A text's tokens and one end-of-sequence token (the separator after a prompt, the end of an action)."""
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"]) + [self.eos]

    def encode_prompt(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"]) + self.prompt_end

    def _candidates(self, candidates: Sequence[str]) -> list[list[int]]:  # type: ignore[override]
        key = tuple(candidates)
        if key not in self._candidate_ids:
            self._candidate_ids[key] = [self.encode(c) for c in candidates]
        return self._candidate_ids[key]

    def _prompts(self, prompts: Sequence[str], room: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompts left-truncated to leave `room` positions, left-padded: (input ids, attention mask), [P, L]."""
        limit = self.max_positions - room
        if limit < 1:
            raise ValueError(f"{self.name}: {room} tokens of action leave no room for a prompt in "
                             f"{self.max_positions} positions")
        ids = [self.encode_prompt(p)[-limit:] for p in prompts]
        length = max(len(i) for i in ids)
        input_ids = torch.full((len(ids), length), self.pad, dtype=torch.long)
        mask = torch.zeros((len(ids), length), dtype=torch.long)
        for row, tokens in enumerate(ids):
            input_ids[row, length - len(tokens):] = torch.tensor(tokens)
            mask[row, length - len(tokens):] = 1
        return input_ids.to(self.device), mask.to(self.device)

    # --- scoring ----------------------------------------------------------------------------------------------
    @torch.inference_mode()
    def score(self, prompts: Sequence[str], candidates: Sequence[str]) -> tuple[np.ndarray, CallCost]:
        """Log-likelihood of each candidate after each prompt: an array [prompts, candidates]."""
        cand = self._candidates(candidates)
        n_prompts, n_cands, longest = len(prompts), len(cand), max(len(c) for c in cand)
        input_ids, mask = self._prompts(prompts, room=longest)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = self.model(input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=True,
                         logits_to_keep=1)
        first = torch.log_softmax(out.logits[:, -1].float(), dim=-1)  # [P, V]: the token after the separator
        tokens = torch.full((n_cands, longest), self.pad, dtype=torch.long, device=self.device)
        cand_mask = torch.zeros((n_cands, longest), dtype=torch.long, device=self.device)
        for row, ids in enumerate(cand):
            tokens[row, :len(ids)] = torch.tensor(ids)
            cand_mask[row, :len(ids)] = 1
        scores = first[:, tokens[:, 0]]  # [P, C]
        if longest > 1:
            cache = out.cache
            cache.batch_repeat_interleave(n_cands)  # row p * C + c: prompt p, candidate c
            feed = tokens[:, :-1].repeat(n_prompts, 1)
            full_mask = torch.cat([mask.repeat_interleave(n_cands, dim=0), cand_mask[:, :-1].repeat(n_prompts, 1)], 1)
            start = mask.sum(-1).repeat_interleave(n_cands)[:, None]
            steps = torch.arange(longest - 1, device=self.device)[None, :]
            logits = self.model(input_ids=feed, attention_mask=full_mask, position_ids=start + steps,
                                cache=cache, use_cache=False).logits
            target = tokens[:, 1:].repeat(n_prompts, 1)
            logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, target.unsqueeze(-1)).squeeze(-1)
            scores = scores + (logp * cand_mask[:, 1:].repeat(n_prompts, 1)).sum(-1).view(n_prompts, n_cands)
        lengths = np.array([len(c) for c in cand])
        return scores.cpu().numpy(), self._cost(mask.sum(-1).cpu().numpy(), lengths)

    def _cost(self, prompt_tokens: np.ndarray, candidate_tokens: np.ndarray) -> CallCost:
        linear, attention = self.flops_parts(prompt_tokens, candidate_tokens)
        return CallCost(tokens_in=np.asarray(prompt_tokens, dtype=np.int64),
                        tokens_out=np.full(len(prompt_tokens), int(np.sum(candidate_tokens)), dtype=np.int64),
                        flops=linear + attention)

    def flops_parts(self, prompt_tokens: np.ndarray, candidate_tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per prompt: FLOPs of the weight matmuls, and of the attention-context term. The prompt runs once (token i
        attends to i tokens); each candidate feeds all its tokens but the last on top of the prompt."""
        s = self.size
        p = np.asarray(prompt_tokens, dtype=np.float64)
        k = np.asarray(candidate_tokens, dtype=np.float64) - 1  # tokens fed per candidate
        fed = k.sum()
        linear = 2 * s.decoder_params * (p + fed)
        context = p * (p + 1) / 2 + fed * p + (k * (k + 1) / 2).sum()
        return linear, 2 * s.decoder_layers * s.attention_width * context

    def flops_per_decision(self, prompt_tokens: int, candidates: Sequence[str]) -> float:
        lengths = np.array([len(c) for c in self._candidates(candidates)])
        return float(self._cost(np.array([prompt_tokens]), lengths).flops[0])

    # --- generation -------------------------------------------------------------------------------------------
    @torch.inference_mode()
    def generate(self, prompts: Sequence[str], max_tokens: int = 24, min_tokens: int = 0) -> tuple[Decision, CallCost]:
        """Greedy generation of one action per prompt after its separator, with the key/value cache; it ends at the
        end-of-sequence token. `min_tokens` as in ActionLM.generate."""
        input_ids, mask = self._prompts(prompts, room=max_tokens)
        forced = {"min_new_tokens": min_tokens} if min_tokens > 0 else {}
        out = self.model.generate(input_ids=input_ids, attention_mask=mask, max_new_tokens=max_tokens,
                                  do_sample=False, num_beams=1, output_scores=True, return_dict_in_generate=True,
                                  pad_token_id=self.pad, eos_token_id=self.eos, **forced)
        decision, out_tokens = generation_decision(self.tokenizer, out.sequences[:, input_ids.shape[1]:], out.scores,
                                                   eos=self.eos, pad=self.pad)
        prompt_tokens = mask.sum(-1).cpu().numpy()
        return decision, CallCost(prompt_tokens.astype(np.int64), out_tokens.astype(np.int64),
                                  self.generation_flops(prompt_tokens, out_tokens))

    def generation_flops(self, prompt_tokens: np.ndarray, out_tokens: np.ndarray) -> np.ndarray:
        """The prompt once, then every generated token but the last fed back, each attending to all before it."""
        s = self.size
        p = np.asarray(prompt_tokens, dtype=np.float64)
        k = np.maximum(np.asarray(out_tokens, dtype=np.float64) - 1, 0)
        context = p * (p + 1) / 2 + k * p + k * (k + 1) / 2
        return 2 * s.decoder_params * (p + k) + 2 * s.decoder_layers * s.attention_width * context
