"""Tests for bench.models.lm: ActionLM on the smoke profile's real trained T5 pair (loading, likelihood
scores, batching, per-prompt cost and the analytic FLOPs) and on the hub's Flan-T5 where reachable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import (
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    BartConfig,
    BartForConditionalGeneration,
    PreTrainedTokenizerFast,
)

from bench.envs.babyai_text import ACTIONS
from bench.models.cache import load_demos
from bench.models.demos import Demo, pairs
from bench.models.hub import ModelUnavailableError, hub_unavailable
from bench.models.lm import LONDI_META, ActionLM, model_size
from bench.models.pair import ModelPair
from bench.models.profiles import get_profile
from bench.models.train import build_tokenizer

ROLES = ("quick", "deepthink")
HUB_MODEL = "google/flan-t5-small"


@pytest.fixture(scope="module")
def smoke_demos(smoke_cache: Path) -> list[Demo]:
    """The smoke profile's training demonstrations (read from the session's cache, not re-run)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LONDI_CACHE", str(smoke_cache))
        train_demos, _ = load_demos(get_profile("smoke"))
    return train_demos


def _prompts(lm: ActionLM, demos: list[Demo], n: int = 8) -> list[str]:
    """`n` prompts of real episodes in the model's own context, of different lengths (so batches pad)."""
    prompts = [prompt for prompt, _ in pairs(demos, lm.context)][:n]
    assert len({len(lm.tokenizer(p)["input_ids"]) for p in prompts}) > 1
    return prompts


def _token_counts(lm: ActionLM, texts: list[str] | tuple[str, ...]) -> np.ndarray:
    return np.array([len(lm.tokenizer(text)["input_ids"]) for text in texts])


@pytest.mark.parametrize("role", ROLES)
def test_trained_model_loads_with_plain_transformers_and_scores_identically(
    smoke_models: ModelPair, smoke_model_paths: tuple[Path, Path], smoke_demos: list[Demo],
    tmp_path: Path, role: str,
) -> None:
    lm = smoke_models.get(role)
    path = dict(zip(ROLES, smoke_model_paths, strict=True))[role]
    prompts = _prompts(lm, smoke_demos)
    expected, expected_cost = lm.score(prompts, ACTIONS)

    plain = ActionLM(AutoModelForSeq2SeqLM.from_pretrained(path), AutoTokenizer.from_pretrained(path), name=role)
    np.testing.assert_array_equal(plain.score(prompts, ACTIONS)[0], expected)

    lm.model.save_pretrained(tmp_path)
    lm.tokenizer.save_pretrained(tmp_path)
    (tmp_path / LONDI_META).write_text((path / LONDI_META).read_text())
    again = ActionLM.load(tmp_path)
    got, cost = again.score(prompts, ACTIONS)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(cost.flops, expected_cost.flops)
    assert again.tokenizer(prompts)["input_ids"] == lm.tokenizer(prompts)["input_ids"]
    assert (again.name, again.context) == (lm.name, lm.context) == (f"smoke-{role}", lm.meta["context"])


def test_load_takes_the_context_from_londi_json(smoke_models: ModelPair, smoke_model_paths: tuple[Path, Path]) -> None:
    profile = get_profile("smoke")
    assert smoke_models.quick.context == profile.quick.context == "reflex"
    assert smoke_models.deepthink.context == profile.deepthink.context == "memory"
    assert ActionLM.load(smoke_model_paths[0], context="history").context == "history"  # explicit wins


@pytest.mark.parametrize("role", ROLES)
def test_scores_are_log_probabilities(smoke_models: ModelPair, smoke_demos: list[Demo], role: str) -> None:
    lm = smoke_models.get(role)
    prompts = _prompts(lm, smoke_demos)
    scores, _ = lm.score(prompts, ACTIONS)
    assert scores.shape == (len(prompts), len(ACTIONS))
    assert np.isfinite(scores).all()
    assert (np.exp(scores) <= 1).all()
    # the six actions are distinct token sequences ending in </s>: disjoint events of one distribution
    assert (np.exp(scores).sum(axis=1) <= 1 + 1e-5).all()


@pytest.mark.parametrize("role", ROLES)
def test_score_is_the_sequence_log_likelihood_transformers_computes(
    smoke_models: ModelPair, smoke_demos: list[Demo], role: str,
) -> None:
    lm = smoke_models.get(role)
    prompt = _prompts(lm, smoke_demos)[3]
    scores, _ = lm.score([prompt], ACTIONS)
    for action, score in zip(ACTIONS, scores[0], strict=True):
        labels = lm.tokenizer([action], return_tensors="pt")["input_ids"]
        input_ids = lm.tokenizer([prompt], return_tensors="pt")["input_ids"]
        with torch.no_grad():
            mean_nll = lm.model(input_ids=input_ids, labels=labels).loss.item()
        assert score == pytest.approx(-mean_nll * labels.shape[1], abs=1e-4)


@pytest.mark.parametrize("role", ROLES)
def test_scores_and_costs_do_not_depend_on_the_batch(smoke_models: ModelPair, smoke_demos: list[Demo],
                                                     role: str) -> None:
    lm = smoke_models.get(role)
    prompts = _prompts(lm, smoke_demos, n=8)
    batched, batched_cost = lm.score(prompts, ACTIONS)
    alone = [lm.score([prompt], ACTIONS) for prompt in prompts]
    np.testing.assert_allclose(batched, np.concatenate([scores for scores, _ in alone]), atol=1e-4)
    np.testing.assert_array_equal(batched_cost.tokens_in, [cost.tokens_in[0] for _, cost in alone])
    np.testing.assert_allclose(batched_cost.flops, [cost.flops[0] for _, cost in alone])
    # nor on which other candidates are scored beside one (candidate padding is masked)
    for index, action in enumerate(ACTIONS):
        np.testing.assert_allclose(lm.score(prompts, [action])[0][:, 0], batched[:, index], atol=1e-4)


@pytest.mark.parametrize("role", ROLES)
def test_call_cost_counts_tokens_per_prompt(smoke_models: ModelPair, smoke_demos: list[Demo], role: str) -> None:
    lm = smoke_models.get(role)
    prompts = _prompts(lm, smoke_demos)
    _, cost = lm.score(prompts, ACTIONS)
    np.testing.assert_array_equal(cost.tokens_in, _token_counts(lm, prompts))  # </s> counted, padding not
    np.testing.assert_array_equal(cost.tokens_out, np.full(len(prompts), _token_counts(lm, ACTIONS).sum()))
    assert len(cost.flops) == len(prompts)


@pytest.mark.parametrize("role", ROLES)
def test_flops_grow_with_prompt_length_and_cover_every_parameter(
    smoke_models: ModelPair, smoke_demos: list[Demo], role: str,
) -> None:
    lm = smoke_models.get(role)
    prompts = _prompts(lm, smoke_demos)
    _, cost = lm.score(prompts, ACTIONS)
    order = np.argsort(cost.tokens_in, kind="stable")
    assert (np.diff(cost.flops[order]) >= 0).all()
    short, longer = prompts[0], prompts[0] + " You see a red ball 2 steps forward"
    assert lm.score([longer], ACTIONS)[1].flops[0] > lm.score([short], ACTIONS)[1].flops[0]
    # each token passes through every weight of its stack once: at least 2 FLOPs per weight per token
    size = lm.size
    floor = 2 * size.encoder_params * cost.tokens_in + 2 * size.decoder_params * cost.tokens_out
    assert (cost.flops >= floor).all()
    assert lm.flops_per_decision(int(cost.tokens_in[0]), ACTIONS) == pytest.approx(cost.flops[0])


@pytest.mark.parametrize("role", ROLES)
def test_analytic_flops_match_what_torch_executes(smoke_models: ModelPair, smoke_demos: list[Demo],
                                                  role: str) -> None:
    lm = smoke_models.get(role)
    _, candidate_mask = lm._candidates(ACTIONS)
    for prompt in _prompts(lm, smoke_demos, n=4):
        with FlopCounterMode(display=False, depth=None) as counter:
            _, cost = lm.score([prompt], ACTIONS)
        counts = counter.get_flop_counts()
        # torch counts the weight matmuls (the attention products are not counted on this backend);
        # the estimate leaves out the LM head by Kaplan et al.'s convention.
        head = sum(counts[f"{type(lm.model).__name__}.lm_head"].values())
        executed_linear = counter.get_total_flops() - head
        linear, attention = lm.flops_parts(cost.tokens_in, candidate_mask.sum(-1).numpy())
        assert linear[0] == pytest.approx(executed_linear, rel=0.02)
        assert cost.flops[0] == pytest.approx(linear[0] + attention[0])
        assert attention[0] > 0


def test_deepthink_costs_more_flops_per_decision_than_quick(smoke_models: ModelPair,
                                                            smoke_demos: list[Demo]) -> None:
    quick, deepthink = smoke_models.quick, smoke_models.deepthink
    quick_prompts = [prompt for prompt, _ in pairs(smoke_demos, quick.context)][:16]
    deepthink_prompts = [prompt for prompt, _ in pairs(smoke_demos, deepthink.context)][:16]
    _, quick_cost = quick.score(quick_prompts, ACTIONS)
    _, deepthink_cost = deepthink.score(deepthink_prompts, ACTIONS)
    assert (deepthink_cost.flops > quick_cost.flops).all()
    assert deepthink.size.non_embedding_params > quick.size.non_embedding_params


@pytest.mark.parametrize("role", ROLES)
def test_model_size_excludes_the_tied_embedding(smoke_models: ModelPair, role: str) -> None:
    lm = smoke_models.get(role)
    size = model_size(lm.model)
    shared = lm.model.get_input_embeddings().weight
    assert lm.model.config.tie_word_embeddings
    assert lm.model.get_output_embeddings().weight is shared
    assert size.total_params == sum(p.numel() for p in lm.model.parameters())
    assert size.non_embedding_params < size.total_params
    assert size.non_embedding_params == size.total_params - shared.numel()
    assert size.non_embedding_params == lm.meta["non_embedding_params"]
    config = lm.model.config
    assert (size.encoder_layers, size.decoder_layers) == (config.num_layers, config.num_decoder_layers)
    assert size.attention_width == config.num_heads * config.d_kv


def _tiny_bart(tie_word_embeddings: bool) -> tuple[BartForConditionalGeneration, PreTrainedTokenizerFast]:
    """A BART (learned positions, its own config names) with the harness's word-level tokenizer."""
    tokenizer = build_tokenizer(["Mission: go to the red ball. You see a wall 2 steps forward"])
    torch.manual_seed(0)
    model = BartForConditionalGeneration(BartConfig(
        vocab_size=len(tokenizer), d_model=8, encoder_layers=2, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=16, decoder_ffn_dim=16, max_position_embeddings=64,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.eos_token_id, decoder_start_token_id=tokenizer.eos_token_id,
        forced_eos_token_id=None, tie_word_embeddings=tie_word_embeddings,
    ))
    return model, tokenizer


def test_model_size_excludes_untied_token_embeddings_and_lm_head() -> None:
    model, _ = _tiny_bart(tie_word_embeddings=False)
    size = model_size(model)
    embeddings = {id(p): p.numel() for module in (model.get_input_embeddings(), model.get_encoder().embed_tokens,
                                                  model.get_decoder().embed_tokens, model.get_output_embeddings())
                  for p in module.parameters()}
    assert len(embeddings) == 4  # untied: four separate matrices
    positions = sum(p.numel() for stack in (model.get_encoder(), model.get_decoder())
                    for p in stack.embed_positions.parameters())
    without_tokens = size.total_params - sum(embeddings.values())
    # whether learned positions count as embeddings is left open; token embeddings and the head never count
    assert without_tokens - positions <= size.non_embedding_params <= without_tokens
    assert (size.encoder_layers, size.decoder_layers, size.attention_width) == (2, 1, 8)


def test_scores_with_another_seq2seq_architecture() -> None:
    model, tokenizer = _tiny_bart(tie_word_embeddings=True)
    lm = ActionLM(model, tokenizer, name="tiny-bart")
    prompts = ["Mission: go to the red ball", "Mission: go to the red ball. You see a wall 2 steps forward"]
    scores, cost = lm.score(prompts, ACTIONS)
    assert np.isfinite(scores).all() and (np.exp(scores).sum(axis=1) <= 1 + 1e-5).all()
    np.testing.assert_allclose(lm.score(prompts[1:], ACTIONS)[0][0], scores[1], atol=1e-5)
    np.testing.assert_array_equal(cost.tokens_in, _token_counts(lm, prompts))
    assert cost.flops[1] > cost.flops[0]


@pytest.mark.parametrize("where", ["absolute", "dot-relative", "deep-relative", "no-config"])
def test_load_of_a_missing_local_model_says_how_to_train_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    partial = tmp_path / "quick-abc.partial"
    partial.mkdir()
    path = {
        "absolute": str(tmp_path / "models" / "quick-missing"),
        "dot-relative": "./quick-missing",
        "deep-relative": "cache/models/cpu/quick-missing",  # deeper than a hub "owner/name"
        "no-config": str(partial),  # e.g. a training that never finished
    }[where]
    with pytest.raises(FileNotFoundError, match="make models") as caught:
        ActionLM.load(path)
    assert path in str(caught.value)


def test_load_a_hub_checkpoint_by_name(smoke_demos: list[Demo]) -> None:
    reason = hub_unavailable(HUB_MODEL)
    if reason:
        pytest.skip(f"{HUB_MODEL}: {reason}")
    try:
        lm = ActionLM.load(HUB_MODEL)
    except OSError as error:  # TCP got through but the hub refused or failed the download
        pytest.skip(f"Hugging Face hub reachable but {HUB_MODEL} could not be fetched: {error}")
    assert (lm.name, lm.context, lm.meta) == (HUB_MODEL, "history", {})
    prompt = next(pairs(smoke_demos, "history"))[0]
    scores, cost = lm.score([prompt], ACTIONS)
    assert scores.shape == (1, len(ACTIONS))
    assert np.isfinite(scores).all() and np.exp(scores).sum() <= 1 + 1e-5
    np.testing.assert_array_equal(cost.tokens_in, _token_counts(lm, [prompt]))
    assert lm.size.non_embedding_params < lm.size.total_params


def test_random_quick_is_a_seeded_uniform_policy_that_costs_nothing(smoke_models: ModelPair) -> None:
    """The paper's ablation: `--quick random` replaces QUICK by a uniformly random policy."""
    from scipy.stats import chisquare

    from baselines.quick_only import QuickOnly
    from bench.envs.tasks import get_task
    from bench.models.lm import RandomPolicy
    from bench.models.loader import load_model
    from bench.running.runner import run_episodes

    random_quick = load_model("random")
    assert isinstance(random_quick, RandomPolicy)
    pair = ModelPair(random_quick, smoke_models.deepthink)
    task = get_task("babyai/GoToLocal")
    seeds = task.eval_episode_seeds(0, 6)

    def actions(seed: int) -> list[list[str]]:
        results, _ = run_episodes(QuickOnly(), task, pair, seeds, batch_size=3, seed=seed, progress=False)
        assert all(r.usage["quick"].flops == 0 and r.usage["quick"].calls == r.steps for r in results)
        return [[s["action"] for s in r.trace] for r in results]

    first = actions(3)
    assert actions(3) == first and actions(4) != first
    taken = [a for episode in first for a in episode]
    counts = [taken.count(a) for a in ACTIONS]
    assert len(taken) > 200 and chisquare(counts).pvalue > 1e-3


def test_a_hub_name_without_the_hub_is_one_clear_error_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """No minute of retries and no chained tracebacks: the model, the reason and the ways out, in one sentence."""
    import time

    name = "google/flan-t5-small-not-cached-here"
    monkeypatch.setenv("HF_ENDPOINT", "https://127.0.0.1:9")  # a port nothing listens on: the hub is not there
    started = time.perf_counter()
    with pytest.raises(ModelUnavailableError) as caught:
        ActionLM.load(name)
    assert time.perf_counter() - started < 10
    message = str(caught.value)
    assert name in message and "unreachable" in message and "HF_HUB_OFFLINE=1" in message
    assert "local checkpoint directory" in message and "\n" not in message


def test_offline_mode_says_the_model_is_not_in_the_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelUnavailableError, match="HF_HUB_OFFLINE is set and it is not in the local"):
        ActionLM.load("google/flan-t5-small-not-cached-here")


def test_behind_a_proxy_the_hub_is_not_probed_directly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "https://127.0.0.1:9")
    assert hub_unavailable("google/flan-t5-small-not-cached-here") is not None
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:3128")  # the download will say; a direct probe cannot
    assert hub_unavailable("google/flan-t5-small-not-cached-here") is None


def test_a_sampled_policy_draws_from_the_softened_scores_with_its_own_seeded_generator(
        smoke_models: ModelPair, smoke_demos: list[Demo]) -> None:
    from scipy.stats import chisquare

    from baselines.quick_only import QuickOnly
    from bench.envs.tasks import get_task
    from bench.models.lm import SampledPolicy, softmax
    from bench.running.runner import run_episodes

    quick = smoke_models.quick
    prompts = _prompts(quick, smoke_demos, n=4)
    candidates = [ACTIONS] * len(prompts)
    greedy, greedy_cost = quick.decide(prompts, candidates)
    cold = SampledPolicy(quick, temperature=1e-4, role="quick")
    assert cold.decide(prompts, candidates)[0].actions == greedy.actions  # no temperature: the argmax
    assert cold.name == f"{quick.name}@t=0.0001" and cold.context == quick.context and cold.size == quick.size

    warm = SampledPolicy(quick, temperature=2.0, role="quick")
    warm.seed(3)
    draws = [warm.decide(prompts[:1] * 200, [ACTIONS] * 200)[0].actions for _ in range(3)]
    counts = np.array([sum(d.count(a) for d in draws) for a in ACTIONS])
    probs = softmax(np.asarray(greedy.scores[0], dtype=np.float64) / 2.0)
    expected = probs / probs.sum() * counts.sum()
    assert chisquare(counts, expected).pvalue > 1e-3  # the draws follow softmax(scores / T)
    assert (counts > 0).sum() >= 2  # and they are not the argmax alone
    _, cost = warm.decide(prompts, candidates)
    assert np.array_equal(cost.flops, greedy_cost.flops)  # a sampled call costs what the model's call costs

    with pytest.raises(ValueError, match="temperature must be > 0"):
        SampledPolicy(quick, temperature=0.0)
    with pytest.raises(ValueError, match="choose among candidate actions"):
        warm.decide(prompts, None)

    # Through the runner: the run seed fixes the draws; the greedy pair plays other episodes.
    task = get_task("babyai/GoToLocal")
    seeds = task.eval_episode_seeds(0, 4)

    def play(pair: ModelPair, seed: int) -> list[tuple[str, ...]]:
        results, _ = run_episodes(QuickOnly(), task, pair, seeds, batch_size=4, seed=seed, progress=False)
        return [tuple(step["action"] for step in r.trace) for r in sorted(results, key=lambda r: r.index)]

    sampled = ModelPair(SampledPolicy(quick, temperature=1.0, role="quick"), smoke_models.deepthink)
    assert play(sampled, 0) == play(sampled, 0) != play(sampled, 1)
    assert play(sampled, 0) != play(smoke_models, 0)
