"""Tests for bench.models.dagger: rollouts labelled by the real BabyAIBot, and the BC-then-DAgger recipe."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from minigrid.utils.baby_ai_bot import BabyAIBot

from bench.envs.babyai_text import ACTIONS, BabyAITextEnv
from bench.envs.contexts import EpisodeHistory, get_context
from bench.models.dagger import rollouts
from bench.models.demos import Demo, bot_episode, pairs
from bench.models.lm import LONDI_META
from bench.models.pair import ModelPair
from bench.models.train import bucketed_batches

JOBS = [("BabyAI-GoToLocal-v0", 3), ("BabyAI-PickupLoc-v0", 4), ("BabyAI-PutNextLocal-v0", 5),
        ("BabyAI-OpenDoor-v0", 6)]


def test_with_beta_one_the_rollouts_are_the_bots_own_demonstrations(smoke_models: ModelPair) -> None:
    episodes, stats = rollouts(smoke_models.deepthink, JOBS, beta=1.0, max_steps=64,
                               rng=np.random.default_rng(0), batch_size=3, progress=False)
    assert stats.episodes == len(JOBS) and stats.bot_errors == 0
    by_job = {(d.level, d.seed): d for d in episodes}
    for level, seed in JOBS:
        demo = bot_episode(level, seed, 64)
        assert demo is not None
        rolled = by_job[(level, seed)]
        assert rolled.actions == rolled.labels == demo.actions
        assert rolled.observations == demo.observations
        assert rolled.memories == demo.memories
    assert stats.successes == len(JOBS)


@pytest.fixture(scope="module")
def learner_rollouts(smoke_models: ModelPair) -> tuple[list[Demo], object]:
    return rollouts(smoke_models.deepthink, JOBS, beta=0.0, max_steps=64, rng=np.random.default_rng(0),
                    batch_size=4, progress=False)


def test_with_beta_zero_the_learner_acts_and_the_bot_labels(smoke_models: ModelPair,
                                                            learner_rollouts: tuple[list[Demo], object]) -> None:
    episodes, stats = learner_rollouts
    lm = smoke_models.deepthink
    context = get_context(lm.context)
    agree = states = 0
    for demo in episodes:
        assert len(demo.observations) == len(demo.memories) == len(demo.labels) == len(demo.actions)
        # Executed: the learner's own top action on the state it was in.
        prompts = [context(EpisodeHistory(demo.observations[: t + 1], demo.actions[:t], demo.memories[: t + 1]))
                   for t in range(len(demo.actions))]
        scores, _ = lm.score(prompts, ACTIONS)
        assert [ACTIONS[i] for i in scores.argmax(axis=1)] == demo.actions
        # Labelled: what a bot that saw exactly those actions taken says in each state.
        env = BabyAITextEnv(levels=(demo.level,), max_steps=64)
        obs, _ = env.reset(seed=demo.seed)
        bot = BabyAIBot(env.minigrid_env)
        taken = None
        for t, action in enumerate(demo.actions):
            assert obs == demo.observations[t]
            label = bot.replan(taken)
            assert ACTIONS[int(label)] == demo.labels[t]
            obs, *_ = env.step(ACTIONS.index(action))
            taken = env.minigrid_env.actions(ACTIONS.index(action))
        env.close()
        agree += sum(a == b for a, b in zip(demo.actions, demo.labels, strict=True))
        states += len(demo.actions)
    assert stats.states == states and stats.learner_agrees == agree
    # The smoke learner is nearly untrained: its choices are not simply the bot's.
    assert any(demo.actions != demo.labels for demo in episodes)


def test_pairs_of_a_rollout_read_the_executed_history_and_target_the_label(
        learner_rollouts: tuple[list[Demo], object]) -> None:
    demo = next(d for d in learner_rollouts[0] if d.actions != d.labels)
    built = list(pairs([demo], "reflex"))
    assert [a for _, a in built] == demo.labels
    t = next(t for t in range(1, len(demo.actions)) if demo.actions[t - 1] != demo.labels[t - 1])
    assert f"Last action: {demo.actions[t - 1]}." in built[t][0]


def test_smoke_deepthink_was_trained_by_bc_then_dagger(smoke_model_paths: tuple[Path, Path]) -> None:
    meta = json.loads((smoke_model_paths[1] / LONDI_META).read_text())
    recipe = meta["recipe"]
    assert [s["stage"] for s in meta["stages"]] == ["bc"] + [f"dagger{k}" for k in range(len(recipe["dagger_betas"]))]
    assert meta["total_steps"] == recipe["steps"] + len(recipe["dagger_betas"]) * recipe["dagger_steps"]
    rounds = [s for s in meta["stages"] if "rollouts" in s]
    assert all(r["rollouts"]["episodes"] == 4 * recipe["dagger_episodes"] for r in rounds)
    assert meta["stages"][-1]["train_pairs"] > meta["stages"][0]["train_pairs"]  # the labelled states were added
    steps = [row["step"] for row in meta["log"]]
    assert steps == sorted(set(steps)) and steps[-1] == meta["total_steps"] - 1
    assert not list(smoke_model_paths[1].parent.glob("*.bc")), "intermediate checkpoints are removed"


def test_bucketed_batches_cover_an_epoch_once_with_similar_lengths() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 200, size=1000)
    batches = bucketed_batches(lengths, 16, np.random.default_rng(1))
    flat = np.concatenate(batches)
    assert len(flat) == len(set(flat.tolist())) and all(len(b) == 16 for b in batches)
    assert len(flat) >= 1000 - 16 * 2  # only the ragged end of a bucket is left for the next epoch
    spread = np.mean([np.ptp(lengths[b]) for b in batches])
    assert spread < 0.25 * np.ptp(lengths)  # a bucketed batch pads far less than a random one would
    again = bucketed_batches(lengths, 16, np.random.default_rng(1))
    assert all((a == b).all() for a, b in zip(batches, again, strict=True))
