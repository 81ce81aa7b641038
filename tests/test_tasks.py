"""Tests for bench.envs.tasks: the task registry (names, errors, registration), the seed ranges that keep
evaluation episodes apart from demonstrations, and the real BabyAI-Text environments it builds."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bench.envs import tasks
from bench.envs.babyai_text import ACTIONS, BabyAITextEnv
from bench.envs.tasks import (
    SCIENCEWORLD_DEMO_ONLY,
    SCIENCEWORLD_TASKS,
    TaskSpec,
    UnknownTaskError,
    get_task,
    register,
    task_names,
)
from bench.models.profiles import PROFILES

GOTO = "BabyAI-GoToLocal-v0"


def _goto_env() -> BabyAITextEnv:
    return BabyAITextEnv(levels=(GOTO,), max_steps=8)


def _spec(train_seeds: range, eval_seeds: range, name: str = "test/tiny") -> TaskSpec:
    return TaskSpec(name=name, suite="test", make_env=_goto_env, max_steps=8,
                    train_seeds=train_seeds, eval_seeds=eval_seeds)


def _overlap(a: range, b: range) -> int:
    return max(0, min(a.stop, b.stop) - max(a.start, b.start))


def test_unknown_task_error_names_the_task_and_lists_every_known_one() -> None:
    with pytest.raises(UnknownTaskError) as caught:
        get_task("babyai/goto")
    message = str(caught.value)
    # a sentence, not KeyError's repr with quotes around the whole message
    assert message.startswith("unknown task 'babyai/goto'; known tasks: ")
    for name in task_names():
        assert name in message
    assert isinstance(caught.value, KeyError)  # callers that catch KeyError keep working


def test_babyai_suite_has_the_four_levels_and_the_mixed_task() -> None:
    assert set(task_names("babyai")) == {
        "babyai/GoToLocal", "babyai/PickupLoc", "babyai/PutNextLocal", "babyai/OpenDoor", "babyai/Mixed",
    }
    assert task_names("no-such-suite") == []
    single_levels = {level for name in task_names("babyai") if name != "babyai/Mixed"
                     for level in get_task(name).levels}
    assert set(get_task("babyai/Mixed").levels) == single_levels


@pytest.mark.parametrize("name", task_names("babyai"))
def test_every_babyai_task_builds_an_env_that_resets_to_text(name: str) -> None:
    spec = get_task(name)
    env = spec.make_env()
    try:
        obs, info = env.reset(seed=spec.eval_seeds[0])
        assert isinstance(obs, str)
        assert obs.startswith("Mission: ")
        assert env.observation_space.contains(obs)
        assert env.action_space.n == len(ACTIONS)
        assert info["level"] in spec.levels
        obs, *_ = env.step(ACTIONS.index("turn left"))
        assert obs.startswith("Mission: ")
    finally:
        env.close()


def test_episodes_are_truncated_at_the_tasks_step_limit() -> None:
    spec = get_task("babyai/GoToLocal")
    env = spec.make_env()
    try:
        env.reset(seed=spec.eval_seeds[0])
        steps, terminated, truncated = 0, False, False
        while not (terminated or truncated):
            _, _, terminated, truncated, _ = env.step(ACTIONS.index("turn left"))  # never reaches the goal
            steps += 1
            assert steps <= spec.max_steps, "the episode ran past the task's max_steps"
        assert truncated and not terminated
        assert steps == spec.max_steps
    finally:
        env.close()


def test_mixed_task_draws_several_levels_over_evaluation_episodes() -> None:
    spec = get_task("babyai/Mixed")
    env = spec.make_env()
    try:
        levels = {env.reset(seed=seed)[1]["level"] for seed in spec.eval_episode_seeds(0, 20)}
    finally:
        env.close()
    assert len(levels) >= 2
    assert levels <= set(spec.levels)


@pytest.mark.parametrize("name", task_names())
def test_train_and_eval_seed_ranges_are_disjoint(name: str) -> None:
    spec = get_task(name)
    assert _overlap(spec.train_seeds, spec.eval_seeds) == 0
    assert len(spec.train_seeds) > 0 and len(spec.eval_seeds) > 0


@pytest.mark.parametrize("profile", PROFILES.values(), ids=list(PROFILES))
def test_profiles_never_evaluate_on_a_demonstration_episode(profile) -> None:
    from bench.models.cache import scienceworld_demo_jobs

    sw_demos: dict[str, list[int]] = {task: [] for task in SCIENCEWORLD_TASKS}
    for part in scienceworld_demo_jobs(profile).values():  # what bench.models.cache collects
        for task, variation in part:
            sw_demos.setdefault(task, []).append(variation)
    assert set(sw_demos) <= set(SCIENCEWORLD_TASKS) | set(SCIENCEWORLD_DEMO_ONLY)
    for name in profile.tasks:
        spec = get_task(name)
        if spec.suite == "scienceworld":  # gold paths of train and dev variations; evaluation on test ones
            demo_seeds = sw_demos[spec.levels[0]]
            assert not set(demo_seeds) & set(spec.eval_seeds)
            # a learned router trains on variations the pair was not cloned from (issue 18)
            cloned = {v for task, v in scienceworld_demo_jobs(profile)["train"] if task == spec.levels[0]}
            routers = spec.router_train_seeds(0, profile.train_episodes_for(spec))
            assert routers and not cloned & set(routers)
        else:
            demo_seeds = range(profile.demo_seeds + profile.heldout_seeds)
            assert _overlap(demo_seeds, spec.train_seeds) == len(demo_seeds)
        for run_seed in profile.seeds_for(spec):
            episode_seeds = spec.eval_episode_seeds(run_seed, profile.episodes_for(spec))
            assert all(seed in spec.eval_seeds for seed in episode_seeds)
            assert not set(episode_seeds) & set(demo_seeds)


def test_eval_episode_seeds_give_each_run_seed_its_own_block() -> None:
    spec = get_task("babyai/GoToLocal")
    blocks = [spec.eval_episode_seeds(run_seed, 40) for run_seed in range(5)]
    for block in blocks:
        assert len(block) == len(set(block)) == 40
        assert all(seed in spec.eval_seeds for seed in block)
    assert len(set().union(*blocks)) == 5 * 40
    assert spec.eval_episode_seeds(3, 40) == blocks[3]  # reproducible


def test_eval_episode_seeds_refuse_a_block_past_the_range() -> None:
    spec = _spec(range(0, 10), range(10, 20))
    assert spec.eval_episode_seeds(0, 10) == list(range(10, 20))
    assert spec.eval_episode_seeds(1, 5) == list(range(15, 20))
    with pytest.raises(ValueError, match=r"'test/tiny' has 10 evaluation seeds; run seed 2 with 5 episodes "
                                         r"needs 15: use fewer episodes or seeds"):
        spec.eval_episode_seeds(2, 5)
    with pytest.raises(ValueError, match="has 10 evaluation seeds"):
        spec.eval_episode_seeds(0, 11)


@pytest.mark.parametrize("run_seed, episodes", [(-1, 4), (0, 0)])
def test_eval_episode_seeds_refuse_a_negative_seed_or_no_episodes(run_seed: int, episodes: int) -> None:
    spec = _spec(range(0, 10), range(10, 20))
    with pytest.raises(ValueError, match="run seed must be >= 0 and episodes >= 1"):
        spec.eval_episode_seeds(run_seed, episodes)


@pytest.mark.parametrize("train_seeds, eval_seeds", [
    (range(0, 10), range(5, 15)),
    (range(5, 15), range(0, 10)),
    (range(0, 100), range(10, 20)),
    (range(10, 20), range(0, 100)),
])
def test_task_with_overlapping_seed_ranges_is_refused(train_seeds: range, eval_seeds: range) -> None:
    with pytest.raises(ValueError, match=r"task 'test/tiny': train and eval seeds overlap"):
        _spec(train_seeds, eval_seeds)


def test_adjacent_seed_ranges_are_accepted() -> None:
    spec = _spec(range(0, 10), range(10, 20))
    assert spec.eval_seeds == range(10, 20)


@pytest.fixture
def scratch_task() -> Iterator[TaskSpec]:
    spec = _spec(range(0, 100), range(100, 200), name="test/GoToLocal-short")
    yield spec
    tasks._REGISTRY.pop(spec.name, None)  # the registry is process-wide; leave it as other tests found it


def test_registering_a_task_is_one_call(scratch_task: TaskSpec) -> None:
    assert scratch_task.name not in task_names()
    assert register(scratch_task) is scratch_task
    assert scratch_task.name in task_names()
    assert task_names("test") == [scratch_task.name]
    assert scratch_task.name not in task_names("babyai")
    assert get_task(scratch_task.name) is scratch_task
    env = get_task(scratch_task.name).make_env()
    try:
        obs, _ = env.reset(seed=scratch_task.eval_episode_seeds(0, 1)[0])
    finally:
        env.close()
    assert obs.startswith("Mission: ")
    with pytest.raises(ValueError, match="'test/GoToLocal-short' is already registered"):
        register(scratch_task)


@pytest.mark.parametrize("name", ["babyai/GoToObj", "babyai/BabyAI-GoToObj-v0"])
def test_any_minigrid_level_is_a_task_by_its_short_name_or_its_id(name: str) -> None:
    task = get_task(name)
    assert task.name == "babyai/GoToObj" and task.levels == ("BabyAI-GoToObj-v0",) and task.suite == "babyai"
    assert task.eval_seeds == get_task("babyai/GoToLocal").eval_seeds  # the registered levels' split
    assert task.max_steps == get_task("babyai/GoToLocal").max_steps
    assert "babyai/GoToObj" not in task_names()  # used, not registered: the registry and cache keys are unchanged
    env = task.make_env()
    obs, info = env.reset(seed=task.eval_episode_seeds(0, 1)[0])
    assert info["level"] == "BabyAI-GoToObj-v0" and obs.startswith("Mission: go to")
    env.close()


def test_a_mixed_task_over_chosen_levels_draws_only_those() -> None:
    task = get_task("babyai/Mixed[levels=GoToObj+BabyAI-Unlock-v0]")
    assert task.name == "babyai/Mixed[levels=GoToObj+Unlock]"
    assert task.levels == ("BabyAI-GoToObj-v0", "BabyAI-Unlock-v0")
    env = task.make_env()
    drawn = {env.reset(seed=s)[1]["level"] for s in task.eval_episode_seeds(0, 12)}
    env.close()
    assert drawn == set(task.levels)
    assert get_task("babyai/Mixed").levels == tuple(tasks.BABYAI_LEVELS.values())  # the registered mix is unchanged


def test_a_babyai_step_limit_is_a_task_option() -> None:
    task = get_task("babyai/GoToObj[max_steps=3]")
    assert task.name == "babyai/GoToObj[max_steps=3]" and task.max_steps == 3
    env = task.make_env()
    env.reset(seed=task.eval_episode_seeds(0, 1)[0])
    ends = [env.step(ACTIONS.index("turn left"))[2:4] for _ in range(3)]
    env.close()
    assert ends[-1] == (False, True)  # truncated at its own limit


@pytest.mark.parametrize("name, message", [
    ("babyai/NoSuchLevel", "unknown task 'babyai/NoSuchLevel'; known tasks: .*any minigrid BabyAI level.*GoToObj"),
    ("babyai/Mixed[levels=GoToObj+Nope]", "unknown BabyAI level 'Nope'; minigrid's levels: .*Unlock"),
    ("babyai/Mixed[levels=+]", "levels= needs level names joined by \\+"),
    ("babyai/GoToObj[levels=GoToLocal]", "unknown option 'levels'; its options: max_steps"),
    ("babyai/GoToObj[max_steps=0]", "max_steps must be a positive number of steps"),
])
def test_a_wrong_babyai_level_or_option_says_what_exists(name: str, message: str) -> None:
    with pytest.raises((UnknownTaskError, ValueError), match=message):
        get_task(name)


def test_babyai_text_is_registered_with_gymnasium_and_passes_its_checker_with_rendering() -> None:
    import gymnasium
    from gymnasium.utils.env_checker import check_env

    env = gymnasium.make("BabyAIText-GoToLocal-v0", render_mode="ansi")
    assert env.spec is not None and env.spec.id == "BabyAIText-GoToLocal-v0"
    assert env.unwrapped.levels == (GOTO,)
    check_env(env.unwrapped)  # with the render-mode check this time
    env.close()
    unlock = gymnasium.make("BabyAIText-Unlock-v0")  # every minigrid level, not only the harness's four
    assert unlock.reset(seed=0)[0].startswith("Mission: open the")
    unlock.close()


@pytest.mark.parametrize("written, name", [
    ("babyai/Mixed[]", "babyai/Mixed"),
    ("babyai/GoToLocal[max_steps=64]", "babyai/GoToLocal"),
    ("babyai/GoToObj[max_steps=064]", "babyai/GoToObj"),
    ("babyai/Mixed[levels=GoToLocal+PickupLoc+PutNextLocal+OpenDoor]", "babyai/Mixed"),
    ("babyai/Mixed[max_steps=32,levels=BabyAI-Unlock-v0+GoToObj]", "babyai/Mixed[levels=Unlock+GoToObj,max_steps=32]"),
    ("scienceworld/power-component[simplifications=easy]", "scienceworld/power-component"),
    ("scienceworld/power-component[max_steps=020,simplifications=openDoors+teleportAction]",
     "scienceworld/power-component[simplifications=openDoors+teleportAction]"),
])
def test_one_setting_has_one_name_however_it_is_written(written: str, name: str) -> None:
    assert get_task(written).name == name
