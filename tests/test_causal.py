"""Decoder-only models behind the ActionLM interface: exact log-probabilities against an unbatched reference (left
padding, the prompt's cache reused per candidate, left truncation), greedy generation, FLOPs against torch's counter,
and loading by architecture. The models are tiny GPT-2 and Llama configurations with random weights and the
harness's own word-level tokenizer: what is checked is arithmetic, not skill."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    T5Config,
    T5ForConditionalGeneration,
)

from bench.envs.babyai_text import ACTIONS
from bench.models.cache import model_dir
from bench.models.causal import CausalActionLM, causal_size
from bench.models.lm import ActionLM
from bench.models.loader import load_lm
from bench.models.profiles import get_profile, with_pair
from bench.models.train import ModelRecipe, build_model, build_tokenizer, causal_batch, step_accuracy, train

PROMPTS = [
    "go to the red ball. Now: You see a wall 2 steps forward.",
    "pick up the blue key. Actions: turn left, go forward. Now: You see a blue key 1 step left. You see a wall 3 "
    "steps right.",
    "open the door.",
    "go to the grey box. Actions: go forward, go forward, turn right, pick up. Before 1: You see a grey box 4 steps "
    "forward. Now: You see a grey box 3 steps forward. You see a red ball 1 step left.",
]
ARCHS = ["gpt2", "llama", "qwen2"]
EQUAL = ("turn left", "turn right", "go forward", "pick up")  # two words each: equal token lengths


def _tokenizer():  # noqa: ANN202
    return build_tokenizer(PROMPTS)


def _model(arch: str, vocab: int, special: dict[str, int], positions: int = 128) -> torch.nn.Module:
    torch.manual_seed(0)
    if arch == "gpt2":
        config = GPT2Config(vocab_size=vocab, n_positions=positions, n_embd=32, n_layer=2, n_head=4,
                            resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, **special)
        return GPT2LMHeadModel(config)
    shape = {"vocab_size": vocab, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
             "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": positions, **special}
    if arch == "qwen2":  # Llama's shape with biases on the query, key and value projections
        return Qwen2ForCausalLM(Qwen2Config(**shape))
    return LlamaForCausalLM(LlamaConfig(**shape))


def _lm(arch: str, positions: int = 128) -> CausalActionLM:
    tokenizer = _tokenizer()
    special = {"bos_token_id": tokenizer.eos_token_id, "eos_token_id": tokenizer.eos_token_id,
               "pad_token_id": tokenizer.pad_token_id}
    model = _model(arch, len(tokenizer), special, positions)
    return CausalActionLM(model, tokenizer, name=f"tiny-{arch}", context="history")


def _reference(lm: CausalActionLM, prompt: str, candidate: str) -> float:
    """Summed log-probability of the candidate's tokens after the prompt: one unpadded sequence, no cache."""
    prompt_ids = lm.encode(prompt)[-(lm.max_positions - len(lm.encode(candidate))):]
    ids = prompt_ids + lm.encode(candidate)
    with torch.no_grad():
        logits = lm.model(input_ids=torch.tensor([ids])).logits[0].float()
    logp = torch.log_softmax(logits, dim=-1)
    return float(sum(logp[i - 1, ids[i]] for i in range(len(prompt_ids), len(ids))))


@pytest.mark.parametrize("arch", ARCHS)
def test_batched_scores_are_the_unbatched_log_probabilities(arch: str) -> None:
    lm = _lm(arch)
    assert len({len(lm.encode(p)) for p in PROMPTS}) == len(PROMPTS)  # every batch pads
    assert len({len(lm.encode(a)) for a in ACTIONS}) > 1  # candidates of different lengths
    scores, cost = lm.score(PROMPTS, ACTIONS)
    assert scores.shape == (len(PROMPTS), len(ACTIONS))
    for i, prompt in enumerate(PROMPTS):
        for j, action in enumerate(ACTIONS):
            assert scores[i, j] == pytest.approx(_reference(lm, prompt, action), abs=1e-4)
    np.testing.assert_array_equal(cost.tokens_in, [len(lm.encode(p)) for p in PROMPTS])
    # one prompt alone scores as it does in the batch
    np.testing.assert_allclose(lm.score(PROMPTS[1:2], ACTIONS)[0][0], scores[1], atol=1e-5)


@pytest.mark.parametrize("arch", ARCHS)
def test_a_long_prompt_loses_its_beginning_not_its_end(arch: str) -> None:
    lm = _lm(arch, positions=24)
    longest = max(len(lm.encode(a)) for a in ACTIONS)
    prompt = PROMPTS[3]
    assert len(lm.encode(prompt)) > 24
    scores, cost = lm.score([prompt, PROMPTS[2]], ACTIONS)
    assert cost.tokens_in[0] == 24 - longest
    for j, action in enumerate(ACTIONS):
        kept = lm.encode(prompt)[-(24 - longest):]
        with torch.no_grad():
            ids = kept + lm.encode(action)
            logp = torch.log_softmax(lm.model(input_ids=torch.tensor([ids])).logits[0].float(), dim=-1)
        expected = float(sum(logp[i - 1, ids[i]] for i in range(len(kept), len(ids))))
        assert scores[0, j] == pytest.approx(expected, abs=1e-4)
    # the end of the prompt (its current view and the separator) is what is read
    assert kept[-6:] == lm.encode(prompt)[-6:]
    with pytest.raises(ValueError, match="no room for a prompt"):
        _lm(arch, positions=2).score(PROMPTS[:1], ACTIONS)


@pytest.mark.parametrize("arch", ARCHS)
def test_generation_is_the_greedy_continuation_after_the_separator(arch: str) -> None:
    lm = _lm(arch)
    decision, cost = lm.generate(PROMPTS, max_tokens=5)
    for i, prompt in enumerate(PROMPTS):
        ids = lm.encode(prompt)
        produced: list[int] = []
        with torch.no_grad():
            for _ in range(5):
                nxt = int(lm.model(input_ids=torch.tensor([ids + produced])).logits[0, -1].argmax())
                produced.append(nxt)
                if nxt == lm.eos:
                    break
        assert decision.actions[i] == " ".join(lm.tokenizer.decode(produced, skip_special_tokens=True).split())
        assert cost.tokens_out[i] == len(produced)
    assert np.isfinite(decision.margin).all() and (decision.margin >= 0).all()
    forced, forced_cost = lm.generate(PROMPTS[:2], max_tokens=4, min_tokens=4)
    assert (forced_cost.tokens_out == 4).all()
    assert (forced_cost.flops > lm.generation_flops(forced_cost.tokens_in, np.array([1, 1]))).all()


@pytest.mark.parametrize("arch", ARCHS)
def test_analytic_flops_are_the_weight_matmuls_torch_executes(arch: str) -> None:
    """Candidates of one length (no padding executed): the estimate's linear part is what torch's counter sees,
    the LM head apart (left out by the convention) and 2 FLOPs per token for each bias and norm weight (which the
    estimate counts with the parameters and the counter, counting matrix products only, does not); the attention
    products are not counted on this backend."""
    lm = _lm(arch)
    vectors = sum(p.numel() for p in lm.model.parameters() if p.ndim == 1)
    for prompt in PROMPTS:
        with FlopCounterMode(display=False, depth=None) as counter:
            _, cost = lm.score([prompt], EQUAL)
        head = sum(counter.get_flop_counts()[f"{type(lm.model).__name__}.lm_head"].values())
        lengths = np.array([len(lm.encode(c)) for c in EQUAL])
        linear, attention = lm.flops_parts(cost.tokens_in, lengths)
        tokens = cost.tokens_in[0] + (lengths - 1).sum()
        assert linear[0] - 2 * vectors * tokens == pytest.approx(counter.get_total_flops() - head, rel=1e-9)
        assert cost.flops[0] == pytest.approx(linear[0] + attention[0]) and attention[0] > 0
        # the head ran on the prompt's last position and each candidate's fed tokens only
        d, vocab = lm.model.config.n_embd if arch == "gpt2" else lm.model.config.hidden_size, len(lm.tokenizer)
        assert head == 2 * d * vocab * (1 + (lengths - 1).sum())
        assert lm.flops_per_decision(int(cost.tokens_in[0]), EQUAL) == pytest.approx(cost.flops[0])
    # reusing the prompt: the same decision without a cache would run the prompt once per candidate
    p = int(cost.tokens_in[0])
    assert cost.flops[0] < lm.size.decoder_params * 2 * p * len(EQUAL)


def test_size_leaves_out_token_and_position_embeddings_and_the_head() -> None:
    lm = _lm("gpt2")
    model = lm.model
    size = causal_size(model)
    embeddings = model.transformer.wte.weight.numel() + model.transformer.wpe.weight.numel()
    assert model.lm_head.weight is model.transformer.wte.weight  # tied: counted once in the total
    assert size.total_params == sum(p.numel() for p in model.parameters())
    assert size.non_embedding_params == size.total_params - embeddings
    assert (size.encoder_params, size.decoder_layers, size.attention_width) == (0, 2, 32)


def test_the_loader_reads_the_architecture_from_the_checkpoint(tmp_path: Path) -> None:
    tokenizer = _tokenizer()
    causal = _lm("llama")
    causal.model.save_pretrained(tmp_path / "causal")
    tokenizer.save_pretrained(tmp_path / "causal")
    t5 = T5ForConditionalGeneration(T5Config(vocab_size=len(tokenizer), d_model=16, d_kv=4, d_ff=32, num_layers=1,
                                             num_heads=4, pad_token_id=tokenizer.pad_token_id,
                                             eos_token_id=tokenizer.eos_token_id,
                                             decoder_start_token_id=tokenizer.pad_token_id))
    t5.save_pretrained(tmp_path / "t5")
    tokenizer.save_pretrained(tmp_path / "t5")
    loaded = load_lm(tmp_path / "causal")
    assert type(loaded) is CausalActionLM
    assert type(load_lm(tmp_path / "t5")) is ActionLM
    np.testing.assert_allclose(loaded.score(PROMPTS, ACTIONS)[0], causal.score(PROMPTS, ACTIONS)[0], atol=1e-6)
    decision, cost = loaded.decide(PROMPTS, [ACTIONS] * len(PROMPTS))
    assert all(a in ACTIONS for a in decision.actions) and (cost.flops > 0).all()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_lm(tmp_path / "missing")


def test_a_causal_recipe_trains_on_the_action_tokens_only_and_loads_back(tmp_path: Path) -> None:
    tokenizer = _tokenizer()
    batch = causal_batch(tokenizer, PROMPTS[:2], ["go forward", "pick up"])
    for row, labels, mask, prompt, action in zip(batch["input_ids"], batch["labels"], batch["attention_mask"],
                                                 PROMPTS[:2], ["go forward", "pick up"], strict=True):
        head = list(tokenizer(prompt, add_special_tokens=False)["input_ids"]) + [tokenizer.eos_token_id]
        answer = list(tokenizer(action, add_special_tokens=False)["input_ids"]) + [tokenizer.eos_token_id]
        n = int(mask.sum())
        assert row[:n].tolist() == head + answer  # right-padded: prompt, separator, action, end
        assert labels[:n].tolist() == [-100] * len(head) + answer and (labels[n:] == -100).all()
    recipe = ModelRecipe(role="quick", context="history", d_model=16, d_ff=32, layers=1, heads=2, steps=50,
                         batch_size=4, lr=3e-3, warmup_steps=2, arch="gpt2")
    data = [(p, a) for p in PROMPTS for a in ("go forward", "turn left")][:6]
    meta = train(recipe, data, data, tmp_path / "m", name="tiny", progress=False)
    lm = load_lm(tmp_path / "m")
    assert type(lm) is CausalActionLM and lm.model.config.n_layer == 2  # the encoder's and the decoder's layers
    assert meta["non_embedding_params"] == lm.size.non_embedding_params
    assert meta["heldout_step_accuracy"] == step_accuracy(lm, data)
    assert len(meta["log"]) == 2 and meta["log"][-1]["loss"] < meta["log"][0]["loss"]
    with pytest.raises(ValueError, match="unknown model architecture"):
        build_model(dataclasses.replace(recipe, arch="mamba"), tokenizer)


def test_a_profile_pair_keeps_its_recipes_and_changes_only_the_architecture() -> None:
    cpu = get_profile("cpu")
    causal, mixed = with_pair(cpu, "causal"), with_pair(cpu, "mixed")
    assert with_pair(cpu, "t5") is cpu
    assert causal.quick == dataclasses.replace(cpu.quick, arch="llama") and causal.sw_deepthink.arch == "llama"
    assert (mixed.quick, mixed.deepthink) == (cpu.quick, causal.deepthink)
    names = {model_dir(p, r).name for p in (cpu, causal, mixed) for r in (p.quick, p.deepthink)}
    assert len(names) == 4 and model_dir(causal, causal.deepthink).name.startswith("llama-deepthink-")
    assert model_dir(cpu, cpu.quick) == model_dir(mixed, mixed.quick)  # the T5 QUICK is the same model, not retrained
    with pytest.raises(ValueError, match="unknown model pair 'bert'; pairs: t5, causal, mixed"):
        with_pair(cpu, "bert")
