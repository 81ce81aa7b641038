"""Tests for bench.running.runner: the lockstep episode loop, run with real BabyAI-Text envs and the smoke
QUICK/DEEPTHINK pair; who acted, what it cost, traces that replay, determinism and batching."""

from __future__ import annotations

import numpy as np
import pytest

from baselines.deepthink_only import DeepthinkOnly
from baselines.quick_only import QuickOnly
from bench.envs.babyai_text import ACTIONS
from bench.envs.tasks import get_task
from bench.running.router import Router, StepView, Transition
from bench.running.runner import EpisodeResult, ModelPair, run_episodes

TASKS = ("babyai/GoToLocal", "babyai/Mixed")
# GoToLocal evaluation seeds where the smoke pair reaches the goal (after 4 steps and 1 step), so a
# replayed trace has a non-zero reward to reproduce; 1000000 is an episode that runs out of steps.
REWARDING_SEEDS = [1_000_006, 1_000_000, 1_000_041]


class EvenSteps(Router):
    name = "even_steps"

    def route(self, view: StepView) -> np.ndarray:
        return view.steps % 2 == 0


class PeekQuickThenDeepthink(Router):
    """Asks QUICK for its scores (a cascade that always escalates), then lets DEEPTHINK act."""

    name = "peek_quick_then_deepthink"

    def route(self, view: StepView) -> np.ndarray:
        assert view.quick().shape == (len(view.slots), len(ACTIONS))
        return np.ones(len(view.slots), dtype=bool)


class PeekQuickTwiceThenQuick(Router):
    """Asks QUICK twice, then lets QUICK act: QUICK must be run (and paid for) once per step."""

    name = "peek_quick_twice"

    def route(self, view: StepView) -> np.ndarray:
        view.quick()
        view.quick([0])
        assert view.called("quick") == set(view.slots)
        return np.zeros(len(view.slots), dtype=bool)


class WrongShape(Router):
    name = "wrong_shape"

    def route(self, view: StepView) -> np.ndarray:
        return np.zeros(len(view.slots) + 1, dtype=bool)


def run(router: Router, models: ModelPair, task: str = "babyai/GoToLocal", seeds: list[int] | None = None,
        batch_size: int = 3, seed: int = 0) -> list[EpisodeResult]:
    spec = get_task(task)
    env_seeds = seeds if seeds is not None else spec.eval_episode_seeds(0, 3)
    results, _ = run_episodes(router, spec, models, env_seeds, batch_size=batch_size, seed=seed, progress=False)
    return results


@pytest.mark.parametrize("task", TASKS)
def test_quick_only_never_calls_deepthink(smoke_models: ModelPair, task: str) -> None:
    results = run(QuickOnly(), smoke_models, task)
    assert len(results) == 3
    for r in results:
        m = r.metrics()
        assert m["deepthink_calls"] == 0 and m["flops_deepthink"] == 0 and m["compute_s_deepthink"] == 0
        assert m["quick_calls"] == r.steps and m["flops_quick"] > 0
        assert m["deepthink_fraction"] == 0 and r.deepthink_acted == 0
        assert {row["model"] for row in r.trace} == {"quick"}


@pytest.mark.parametrize("task", TASKS)
def test_deepthink_only_calls_deepthink_at_every_step(smoke_models: ModelPair, task: str) -> None:
    results = run(DeepthinkOnly(), smoke_models, task)
    for r in results:
        m = r.metrics()
        assert m["deepthink_calls"] == r.steps == r.deepthink_acted
        assert m["quick_calls"] == 0 and m["flops_quick"] == 0
        assert m["deepthink_fraction"] == 1.0
        assert {row["model"] for row in r.trace} == {"deepthink"}


def test_trace_has_one_row_per_step(smoke_models: ModelPair) -> None:
    for r in run(EvenSteps(), smoke_models, "babyai/Mixed"):
        assert [row["step"] for row in r.trace] == list(range(1, r.steps + 1))
        assert [row["model"] for row in r.trace] == ["deepthink" if i % 2 == 0 else "quick" for i in range(r.steps)]
        assert all(row["action"] in ACTIONS for row in r.trace)
        assert r.trace[-1]["reward"] == r.reward
        assert r.trace[0]["observation"].startswith("Mission: ")


def test_replaying_a_trace_in_a_fresh_env_reproduces_its_rewards(smoke_models: ModelPair) -> None:
    task = get_task("babyai/GoToLocal")
    results = run(EvenSteps(), smoke_models, seeds=REWARDING_SEEDS)
    assert any(r.reward > 0 for r in results), "the smoke pair no longer reaches a goal on REWARDING_SEEDS"
    for r in results:
        env = task.make_env()
        observation, _ = env.reset(seed=r.env_seed)
        for row in r.trace:
            assert row["observation"] == observation
            observation, reward, terminated, truncated, info = env.step(ACTIONS.index(row["action"]))
            assert reward == row["reward"]
        assert terminated or truncated
        assert reward == r.reward and info["success"] == r.success
        if r.success:
            assert r.reward == pytest.approx(1 - 0.9 * r.steps / task.max_steps)
        env.close()


def without_timing(metrics: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if not k.startswith("compute_s")}


def test_same_seed_gives_the_same_episodes(priced_smoke_models: ModelPair) -> None:
    first = run(EvenSteps(), priced_smoke_models, "babyai/Mixed", seed=5)
    second = run(EvenSteps(), priced_smoke_models, "babyai/Mixed", seed=5)
    assert [without_timing(r.metrics()) for r in first] == [without_timing(r.metrics()) for r in second]
    assert [r.trace for r in first] == [r.trace for r in second]
    assert [r.level for r in first] == [r.level for r in second]


def test_a_router_that_asks_quick_pays_for_both_models(smoke_models: ModelPair) -> None:
    for r in run(PeekQuickThenDeepthink(), smoke_models):
        m = r.metrics()
        assert m["quick_calls"] == m["deepthink_calls"] == r.steps
        assert m["flops_quick"] > 0 and m["flops_deepthink"] > 0
        assert {row["model"] for row in r.trace} == {"deepthink"}


def test_cached_scores_are_not_computed_again(smoke_models: ModelPair) -> None:
    peeking = run(PeekQuickTwiceThenQuick(), smoke_models)
    plain = run(QuickOnly(), smoke_models)
    for p, q in zip(peeking, plain, strict=True):
        assert p.metrics()["quick_calls"] == p.steps
        assert p.metrics()["flops_quick"] == q.metrics()["flops_quick"]
        assert [row["action"] for row in p.trace] == [row["action"] for row in q.trace]


def test_wrong_shaped_mask_raises_naming_the_router(smoke_models: ModelPair) -> None:
    with pytest.raises(ValueError, match=r"router 'wrong_shape' returned shape \(4,\), expected \(3,\)"):
        run(WrongShape(), smoke_models)


def test_batch_size_does_not_change_episodes(smoke_models: ModelPair) -> None:
    one = run(EvenSteps(), smoke_models, seeds=REWARDING_SEEDS, batch_size=1)
    three = run(EvenSteps(), smoke_models, seeds=REWARDING_SEEDS, batch_size=3)
    assert [r.reward for r in one] == [r.reward for r in three]
    assert [r.env_seed for r in one] == [r.env_seed for r in three] == REWARDING_SEEDS
    assert [[row["action"] for row in r.trace] for r in one] == [[row["action"] for row in r.trace] for r in three]
    # Tokens and FLOPs are exact per prompt, whatever else shares (and pads) the batch.
    assert [r.metrics()["flops"] for r in one] == [r.metrics()["flops"] for r in three]


def test_results_are_sorted_by_index_with_the_tasks_eval_seeds(smoke_models: ModelPair) -> None:
    task = get_task("babyai/GoToLocal")
    # This block holds 1000041, which ends after one step: episodes finish out of order.
    env_seeds = task.eval_episode_seeds(10, 4)
    finished: list[int] = []
    results, _ = run_episodes(DeepthinkOnly(), task, smoke_models, env_seeds, batch_size=2, progress=False,
                              on_episode=lambda r: finished.append(r.index))
    assert [r.index for r in results] == [0, 1, 2, 3]
    assert sorted(finished) == [0, 1, 2, 3]
    assert [r.env_seed for r in results] == env_seeds == list(range(1_000_040, 1_000_044))
    assert all(s in task.eval_seeds and s not in task.train_seeds for s in env_seeds)


class RecordsOrder(Router):
    """QUICK everywhere; records the order of episode starts and observed transitions per slot."""

    name = "records_order"

    def __init__(self) -> None:
        self.events: list[tuple[str, int, bool]] = []

    def start_episode(self, slot: int, seed: int) -> None:
        self.events.append(("start", slot, False))

    def observe(self, transitions: list[Transition]) -> None:
        self.events.extend(("step", t.slot, t.terminated or t.truncated) for t in transitions)

    def route(self, view: StepView) -> np.ndarray:
        return np.zeros(len(view.slots), dtype=bool)


def test_a_router_sees_the_final_transition_before_the_slot_restarts(smoke_models: ModelPair) -> None:
    router = RecordsOrder()
    results, _ = run_episodes(router, get_task("babyai/Mixed"), smoke_models, list(range(1_000_000, 1_000_005)),
                              batch_size=2, progress=False)
    per_slot: dict[int, list[tuple[str, bool]]] = {}
    for kind, slot, done in router.events:
        per_slot.setdefault(slot, []).append((kind, done))
    episodes = 0
    for events in per_slot.values():
        assert events[0] == ("start", False)
        for before, after in zip(events, events[1:], strict=False):
            if after[0] == "start":
                assert before == ("step", True)  # the previous episode's end, already observed
        episodes += sum(kind == "start" for kind, _ in events)
    assert episodes == len(results) == 5
    assert sum(done for kind, _, done in router.events if kind == "step") == 5
