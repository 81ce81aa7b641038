"""Tests for bench.models.demos and bench.envs.contexts: BabyAIBot demonstrations on real minigrid levels, their
write-once cache, and the prompts the context builders make of an episode."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from bench.envs.babyai_text import ACTIONS, BabyAITextEnv
from bench.envs.contexts import CONTEXTS, EpisodeHistory, get_context, history_context, reflex_context
from bench.envs.tasks import BABYAI_LEVELS, BABYAI_MAX_STEPS
from bench.models import demos as demo_lib
from bench.models.demos import Demo, bot_episode, collect, load, pairs

GOTO = "BabyAI-GoToLocal-v0"
COLORS = ("red", "green", "blue", "purple", "yellow", "grey")


def _episode(steps: int) -> EpisodeHistory:
    """`steps` actions taken and `steps + 1` views, view k showing only a ball of colour COLORS[k]."""
    observations = [f"Mission: go to the box\nYou see a wall 3 steps forward\nYou see a {color} ball 1 step left"
                    for color in COLORS[:steps + 1]]
    return EpisodeHistory(observations=observations, actions=list(ACTIONS[:steps]))


# ---------------------------------------------------------------- contexts


def test_reflex_context_is_mission_current_view_and_last_action_only() -> None:
    prompt = reflex_context(_episode(3))
    assert "go to the box" in prompt
    assert "Last action: go forward." in prompt
    assert "purple ball 1 step left" in prompt  # the current (4th) view
    for earlier in ("red", "green", "blue"):
        assert earlier not in prompt
    for action in ACTIONS[:2]:
        assert action not in prompt


def test_reflex_context_of_the_first_step() -> None:
    prompt = reflex_context(_episode(0))
    assert "Last action: none." in prompt
    assert "red ball 1 step left" in prompt


def test_history_context_has_previous_view_and_last_four_actions() -> None:
    prompt = history_context(_episode(5))
    assert "go to the box" in prompt
    assert "Step" not in prompt  # no absolute step count: long evaluation episodes would be out of vocabulary
    assert "Actions: turn right, go forward, pick up, drop." in prompt
    assert "turn left" not in prompt  # the fifth action back is dropped
    assert "yellow ball" in prompt and "grey ball" in prompt
    assert prompt.index("yellow ball") < prompt.index("grey ball")  # previous view first, current view last
    for earlier in ("red", "green", "blue", "purple"):
        assert earlier not in prompt


def test_history_context_of_the_first_step() -> None:
    prompt = history_context(_episode(0))
    assert "Actions: none." in prompt
    assert "Before" not in prompt
    assert "red ball" in prompt


def test_history_context_counts_are_adjustable() -> None:
    episode = _episode(5)
    no_actions = history_context(episode, actions=0)
    assert "Actions: none." in no_actions
    assert not any(action in no_actions for action in ACTIONS)
    two_views = history_context(episode, actions=1, views=2)
    assert "Actions: drop." in two_views
    assert all(color in two_views for color in ("purple", "yellow", "grey"))
    assert "blue" not in two_views


def test_history_prompt_is_longer_than_reflex() -> None:
    episode = _episode(3)
    assert len(history_context(episode)) > len(reflex_context(episode))


def test_unknown_context_error_lists_known_contexts() -> None:
    with pytest.raises(ValueError, match=r"unknown context 'deep'; known contexts: reflex, history, memory, sw_now, "
                                         r"sw_history"):
        get_context("deep")
    assert set(CONTEXTS) == {"reflex", "history", "memory", "sw_now", "sw_history"}
    assert get_context("reflex") is reflex_context


# ---------------------------------------------------------------- demonstrations


@pytest.mark.parametrize("level", BABYAI_LEVELS.values())
def test_bot_episodes_succeed_with_text_actions(level: str) -> None:
    episodes = [bot_episode(level, seed, BABYAI_MAX_STEPS) for seed in range(3)]
    solved = [demo for demo in episodes if demo is not None]
    assert len(solved) >= 2, f"BabyAIBot solved only {len(solved)} of 3 episodes of {level}"
    for seed, demo in enumerate(episodes):
        if demo is None:
            continue
        assert (demo.level, demo.seed) == (level, seed)
        assert demo.reward > 0
        assert len(demo.actions) >= 1
        assert set(demo.actions) <= set(ACTIONS)
        assert len(demo.observations) == len(demo.actions)  # one observation before each action
        assert all(obs.startswith("Mission: ") for obs in demo.observations)


def test_bot_episode_replays_in_the_text_env() -> None:
    """A demonstration is the episode a user gets by stepping BabyAITextEnv with the same seed and actions."""
    demo = bot_episode(GOTO, 4, BABYAI_MAX_STEPS)
    assert demo is not None
    env = BabyAITextEnv(levels=(GOTO,), max_steps=BABYAI_MAX_STEPS)
    try:
        obs, info = env.reset(seed=4)
        for t, action in enumerate(demo.actions):
            assert obs == demo.observations[t]
            obs, reward, terminated, truncated, info = env.step(ACTIONS.index(action))
            assert terminated == (t == len(demo.actions) - 1)
    finally:
        env.close()
    assert info["success"]
    assert reward == demo.reward


def test_collect_writes_once_then_reads_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "demos" / "goto-3.jsonl.gz"
    first = collect([GOTO], range(3), BABYAI_MAX_STEPS, path)
    assert path.exists()
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left beside it
    assert [demo.seed for demo in first] == [0, 1, 2]
    assert load(path) == first

    def refuse(*args: object) -> Demo:
        raise AssertionError("bot_episode ran again although the demonstrations were cached")

    monkeypatch.setattr(demo_lib, "bot_episode", refuse)
    written = path.stat().st_mtime_ns
    second = collect([GOTO], range(3), BABYAI_MAX_STEPS, path)
    assert second == first
    assert path.stat().st_mtime_ns == written


def test_collect_interrupted_leaves_nothing_that_looks_cached(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "goto-2.jsonl.gz"
    real = demo_lib.bot_episode
    calls: list[int] = []

    def dies_on_second(level: str, seed: int, max_steps: int) -> Demo | None:
        calls.append(seed)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(level, seed, max_steps)

    monkeypatch.setattr(demo_lib, "bot_episode", dies_on_second)
    with pytest.raises(KeyboardInterrupt):
        collect([GOTO], range(2), BABYAI_MAX_STEPS, path)
    assert not path.exists()
    monkeypatch.setattr(demo_lib, "bot_episode", real)
    assert [demo.seed for demo in collect([GOTO], range(2), BABYAI_MAX_STEPS, path)] == [0, 1]


@pytest.fixture(scope="module")
def goto_demos() -> list[Demo]:
    demos = [bot_episode(GOTO, seed, BABYAI_MAX_STEPS) for seed in range(3)]
    return [demo for demo in demos if demo is not None]


@pytest.mark.parametrize("context", ["reflex", "history"])
def test_pairs_are_prompts_of_the_named_context_and_expert_actions(goto_demos: list[Demo], context: str) -> None:
    built = list(pairs(goto_demos, context))
    assert len(built) == sum(len(demo.actions) for demo in goto_demos)
    build = get_context(context)
    expected = [
        (build(EpisodeHistory(demo.observations[: t + 1], demo.actions[:t])), action)
        for demo in goto_demos for t, action in enumerate(demo.actions)
    ]
    assert built == expected


def test_pair_prompt_shows_the_view_the_expert_acted_on(goto_demos: list[Demo]) -> None:
    demo = max(goto_demos, key=lambda d: len(d.actions))
    assert len(demo.actions) >= 2
    prompts = [prompt for prompt, _ in pairs([demo], "reflex")]
    assert prompts[0].endswith(". ".join(demo.observations[0].split("\n")[1:]))
    assert "Last action: none." in prompts[0]
    assert f"Last action: {demo.actions[0]}." in prompts[1]
    assert prompts[1].endswith(". ".join(demo.observations[1].split("\n")[1:]))


def test_pairs_with_unknown_context_fail_clearly(goto_demos: list[Demo]) -> None:
    with pytest.raises(ValueError, match="unknown context 'nope'"):
        list(pairs(goto_demos, "nope"))


def test_pairs_accept_a_context_variant(goto_demos: list[Demo], monkeypatch: pytest.MonkeyPatch) -> None:
    """A new context is one entry in CONTEXTS; demonstrations need no change to train a model on it."""
    monkeypatch.setitem(CONTEXTS, "long-history", functools.partial(history_context, actions=8, views=3))
    prompts = [prompt for prompt, _ in pairs(goto_demos, "long-history")]
    assert max(len(demo.actions) for demo in goto_demos) >= 4
    assert any("Before 3:" in prompt for prompt in prompts)
    assert len(prompts) == sum(len(demo.actions) for demo in goto_demos)


# ---------------------------------------------------------------- renaming (issue 18)
def _circuit(target: str) -> Demo:
    task = f"Your task is to turn on the {target}. First, focus on the {target}."
    room = ("This room is called the workshop. In it, you see: a electric buzzer, which is off; a electric motor, "
            "which is off; a red light bulb, which is off; a green light bulb, which is off")
    return Demo("power-component", 3, [f"{task}\n{room}", f"{task}\nYou focus on the {target}."],
                ["look around", f"focus on {target}", f"connect black wire terminal 2 to cathode in {target}"], 1.0)


def test_a_swap_renames_both_objects_everywhere_and_keeps_the_scene() -> None:
    from bench.models.demos import swap_names

    demo = _circuit("red light bulb")
    swapped = swap_names(demo, "red light bulb", "electric motor")
    assert swapped.observations[0].startswith("Your task is to turn on the electric motor. First, focus on the "
                                              "electric motor.")
    assert "a red light bulb, which is off" in swapped.observations[0]  # the motor's place now holds the bulb
    assert "a electric motor, which is off; a electric motor" not in swapped.observations[0]
    assert swapped.actions == ["look around", "focus on electric motor",
                               "connect black wire terminal 2 to cathode in electric motor"]
    assert swap_names(swapped, "electric motor", "red light bulb") == demo  # a swap undone is the demonstration
    with pytest.raises(ValueError, match="two different object names"):
        swap_names(demo, "red light bulb", "red light bulb")


def test_renamed_copies_swap_the_target_with_every_other_object_of_its_kind_in_view() -> None:
    from bench.models.demos import renamed

    copies = renamed([_circuit("green light bulb"), Demo("find-living-thing", 0, ["Your task is x"], ["look"], 1.0)])
    targets = sorted(c.actions[1].removeprefix("focus on ") for c in copies)
    assert targets == ["electric buzzer", "electric motor", "red light bulb"]  # not the absent blue, orange, violet
    assert all(c.level == "power-component" and c.reward == 1.0 for c in copies)
