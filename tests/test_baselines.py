"""Tests for the rule-based routers in baselines/: each routes where its rule says, on the real pair."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binomtest

from baselines.confidence_cascade import ConfidenceCascade
from baselines.follow_deepthink_where_they_differ import FollowDeepthinkWhereTheyDiffer
from baselines.random_switch import RandomSwitch
from baselines.swiftsage import SwiftSage, is_looping
from bench.envs.babyai_text import ACTIONS
from bench.envs.contexts import EpisodeHistory, get_context
from bench.envs.tasks import get_task
from bench.models.lm import margin_entropy, softmax
from bench.reporting.pair import replay
from bench.running.router import StepView, Transition
from bench.running.routers import router_spec
from bench.running.runner import EpisodeResult, ModelPair, run_episodes

TASK = "babyai/Mixed"


def run(router, models: ModelPair, episodes: int = 6, seed: int = 0) -> list[EpisodeResult]:
    task = get_task(TASK)
    results, _ = run_episodes(router, task, models, task.eval_episode_seeds(seed, episodes), batch_size=3,
                              seed=seed, progress=False)
    return results


def states(result: EpisodeResult) -> list[tuple[EpisodeHistory, str]]:
    """Every state of an episode (replayed exactly) with the model that acted there."""
    actions = [step["action"] for step in result.trace]
    return list(zip(replay(TASK, result.env_seed, actions), [step["model"] for step in result.trace], strict=True))


# ---------------------------------------------------------------- random switching


def test_random_switch_fraction_matches_p_and_the_seed_fixes_the_draws(smoke_models: ModelPair) -> None:
    results = run(RandomSwitch(p=0.3), smoke_models, episodes=9)
    calls = sum(r.usage["deepthink"].calls for r in results)
    steps = sum(r.steps for r in results)
    assert calls == sum(r.deepthink_acted for r in results)
    assert binomtest(calls, steps, 0.3).pvalue > 0.01, (calls, steps)
    again = run(RandomSwitch(p=0.3), smoke_models, episodes=9)
    assert [[s["model"] for s in r.trace] for r in again] == [[s["model"] for s in r.trace] for r in results]
    other = run(RandomSwitch(p=0.3), smoke_models, episodes=9, seed=1)
    assert [s["model"] for r in other for s in r.trace] != [s["model"] for r in results for s in r.trace]


@pytest.mark.parametrize("p", [0.0, 1.0])
def test_random_switch_extremes_are_the_single_model_baselines(smoke_models: ModelPair, p: float) -> None:
    results = run(RandomSwitch(p=p), smoke_models, episodes=3)
    assert all(s["model"] == ("deepthink" if p else "quick") for r in results for s in r.trace)


# ---------------------------------------------------------------- confidence cascade


def test_confidence_measures() -> None:
    probs = softmax(np.log(np.array([[0.7, 0.2, 0.1], [1 / 3, 1 / 3, 1 / 3]])))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    margin, entropy = margin_entropy(probs)
    np.testing.assert_allclose(margin, [0.5, 0.0], atol=1e-12)
    np.testing.assert_allclose(entropy, [-(0.7 * np.log(0.7) + 0.2 * np.log(0.2) + 0.1 * np.log(0.1)), np.log(3)])


@pytest.mark.parametrize("measure", ["margin", "entropy"])
def test_cascade_escalates_exactly_where_quick_is_unsure(smoke_models: ModelPair, measure: str) -> None:
    # The threshold: the median confidence of QUICK on its own states, so that both branches occur.
    context = get_context(smoke_models.quick.context)
    own = [h for r in run(ConfidenceCascade("margin", 0.0), smoke_models, episodes=3) for h, _ in states(r)]
    margin, entropy = margin_entropy(softmax(smoke_models.quick.score([context(h) for h in own], ACTIONS)[0]))
    values = np.unique(np.round(margin if measure == "margin" else entropy, 6))
    # Halfway between two observed confidences: no state sits on the threshold, where batched and one-by-one
    # scoring (float rounding apart) could fall on different sides.
    threshold = float(values[len(values) // 2 - 1:len(values) // 2 + 1].mean())
    results = run(ConfidenceCascade(measure, threshold), smoke_models)
    seen = set()
    for result in results:
        assert result.usage["quick"].calls == result.steps  # QUICK is paid at every step
        for history, model in states(result):
            scores, _ = smoke_models.quick.score([context(history)], ACTIONS)
            margin, entropy = margin_entropy(softmax(scores))
            unsure = margin[0] < threshold if measure == "margin" else entropy[0] > threshold
            assert (model == "deepthink") == unsure
            seen.add(model)
    assert seen == {"quick", "deepthink"}


@pytest.mark.parametrize(("threshold", "model"), [(0.0, "quick"), (1.01, "deepthink")])
def test_cascade_margin_extremes(smoke_models: ModelPair, threshold: float, model: str) -> None:
    results = run(ConfidenceCascade("margin", threshold), smoke_models, episodes=3)
    assert all(s["model"] == model for r in results for s in r.trace)


@pytest.mark.parametrize("fraction", [0.25, 0.6])
def test_a_cascade_calibrated_to_a_fraction_escalates_about_that_share(smoke_models: ModelPair,
                                                                      fraction: float) -> None:
    """In training the cascade plays its own episodes with the threshold so far, and QUICK's margins there set the
    threshold at their `fraction` quantile (up to ties); replayed on those episodes it escalates about that share."""
    cascade = ConfidenceCascade(fraction=fraction, train_episodes=6)
    assert cascade.needs_training()
    task = get_task(TASK)
    seeds = task.router_train_seeds(0, cascade.train_episodes)
    cascade.training = True
    trained, _ = run_episodes(cascade, task, smoke_models, seeds, batch_size=3, seed=0, progress=False)
    cascade.training = False
    models = {s["model"] for r in trained for s in r.trace}
    assert models == {"quick", "deepthink"}  # calibrating on its own episodes: it escalates as it goes
    assert len(cascade.seen) == sum(r.steps for r in trained) and not cascade.needs_training()
    seen = np.array(cascade.seen)
    share = np.mean(seen < cascade.threshold)
    # Tied margins (a state seen again) escalate together: the share is the nearest the steps seen allow.
    nearest = min(abs(np.mean(seen < t) - fraction) for t in np.append(np.unique(seen), np.inf))
    assert abs(share - fraction) == pytest.approx(nearest) and nearest < 0.25
    again, _ = run_episodes(cascade, task, smoke_models, seeds, batch_size=3, seed=0, progress=False)
    acted = sum(r.deepthink_acted for r in again) / sum(r.steps for r in again)
    # Calibrated on its own episodes, the share it escalates when it plays them again is near the one asked
    # (measured: 0.211 for 0.25, 0.612 for 0.6).
    assert abs(acted - fraction) < 0.1
    with pytest.raises(ValueError, match="fraction must be in"):
        ConfidenceCascade(fraction=1.5)


# ---------------------------------------------------------------- follow DEEPTHINK where they differ


def test_follow_deepthink_calls_both_and_follows_deepthink_where_they_differ(cpu_models: ModelPair) -> None:
    # The trained pair: the smoke pair's two barely trained models nearly never differ.
    results = run(FollowDeepthinkWhereTheyDiffer(), cpu_models)
    contexts = {role: get_context(cpu_models.get(role).context) for role in ("quick", "deepthink")}
    differ = 0
    for result in results:
        assert result.usage["quick"].calls == result.usage["deepthink"].calls == result.steps
        for (history, model), step in zip(states(result), result.trace, strict=True):
            choice = {role: int(cpu_models.get(role).score([contexts[role](history)], ACTIONS)[0].argmax())
                      for role in contexts}
            assert (model == "deepthink") == (choice["quick"] != choice["deepthink"])
            assert step["action"] == ACTIONS[choice["deepthink"]]  # it always acts as DEEPTHINK would
            differ += choice["quick"] != choice["deepthink"]
        assert result.deepthink_acted == sum(s["model"] == "deepthink" for s in result.trace)
    assert differ > 0


# ---------------------------------------------------------------- SwiftSage rules


class Script:
    """Drive a SwiftSage router through a hand-written episode in slot 0, one step at a time."""

    def __init__(self, router: SwiftSage, first_observation: str = "view 0") -> None:
        self.router = router
        self.history = EpisodeHistory([first_observation], [], [[]])
        router.start_episode(0, seed=0)

    def route(self) -> bool:
        view = StepView(slots=[0], histories=[self.history], infos=[{}], last_rewards=np.zeros(1),
                        steps=np.array([len(self.history.actions)]), meter=None, _decide=None)
        return bool(self.router.route(view)[0])

    def step(self, action: str, observation: str, reward: float = 0.0) -> bool:
        """Route, then apply the step; returns whether DEEPTHINK acted."""
        deepthink = self.route()
        after = EpisodeHistory(self.history.observations + [observation], self.history.actions + [action], [[]])
        self.router.observe([Transition(0, self.history, deepthink, reward, False, False, after)])
        self.history = after
        return deepthink


def test_swiftsage_calls_deepthink_when_quicks_action_did_nothing_then_gives_back() -> None:
    script = Script(SwiftSage(warmup=2, patience=100, window=4, max_deepthink=3))
    # Warm-up: QUICK even though its first action did nothing.
    assert [script.step("go forward", "view 0"), script.step("turn left", "view 1")] == [False, False]
    assert not script.step("go forward", "view 1")  # QUICK acted, the view did not change...
    assert [script.step("turn left", f"view {k}") for k in (2, 3, 4)] == [True, True, True]  # ...DEEPTHINK x3
    assert not script.step("go forward", "view 5")  # forced back to QUICK after max_deepthink
    assert script.router.fired == {"nothing": 1, "patience": 0, "loop": 0}


def test_swiftsage_calls_deepthink_after_patience_steps_without_reward() -> None:
    script = Script(SwiftSage(warmup=0, patience=3, window=4, max_deepthink=2))
    used = [script.step("go forward", f"view {k}") for k in range(1, 8)]
    assert used == [False, False, False, True, True, False, False]
    assert script.router.fired["patience"] == 1
    reward = Script(SwiftSage(warmup=0, patience=3, window=4, max_deepthink=2))
    assert not any(reward.step("go forward", f"view {k}", reward=0.5) for k in range(1, 8))


def test_swiftsage_detects_a_turning_loop_but_not_walking_straight() -> None:
    script = Script(SwiftSage(warmup=0, patience=100, window=4, max_deepthink=1), "view A")
    views = ["view B", "view A", "view B", "view A"]
    used = [script.step(action, view) for action, view in zip(["turn left", "turn right"] * 2, views, strict=True)]
    assert used == [False, False, False, False]
    assert script.step("turn left", "view B")  # left, right, left, right and back at view A: a loop
    assert script.router.fired["loop"] == 1
    assert not is_looping(["go forward"] * 4, [f"view {k}" for k in range(5)], 4)  # new views: progress
    assert is_looping(["go forward"] * 4, ["view 0"] * 5, 4)


def test_swiftsage_episodes_are_independent_per_slot() -> None:
    router = SwiftSage(warmup=0, patience=2, window=4, max_deepthink=5)
    first = Script(router)
    for k in range(3):
        first.step("go forward", f"view {k + 1}")
    assert first.route()
    router.start_episode(1, seed=1)  # another slot starting does not touch slot 0's state
    assert first.route()
    router.start_episode(0, seed=2)  # a new episode in slot 0 does
    assert not first.route()


# ---------------------------------------------------------------- router specs


def test_router_spec_options_are_typed_and_named() -> None:
    spec = router_spec("confidence_cascade[threshold=0.2, measure=entropy]")
    assert spec.options == {"threshold": 0.2, "measure": "entropy"}
    assert spec.label == "confidence_cascade[threshold=0.2,measure=entropy]"
    router = spec.make()
    assert router.params() == {"measure": "entropy", "threshold": 0.2, "fraction": None, "train_episodes": 20}
    assert router_spec("swiftsage[patience=5]").make().patience == 5
    assert router_spec("follow_deepthink_where_they_differ").label == "follow_deepthink_where_they_differ"


@pytest.mark.parametrize(("spec", "message"), [
    ("random_switch[q=1]", "has no option 'q'; its options: p"),
    ("random_switch[p=lots]", "option p='lots' is not a valid float"),
    ("random_switch[p=1.5]", "p must be a probability"),
    ("swiftsage[window=1]", "window must be >= 2"),
    ("confidence_cascade[measure=vibes]", "measure must be 'margin' or 'entropy'"),
    ("random_switch[p=0.3", "cannot read router spec"),
])
def test_router_spec_errors_name_the_problem(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(")):
        router_spec(spec).make()


# ---------------------------------------------------------------- stuck rule
def test_stuck_rule_calls_deepthink_exactly_where_the_episode_shows_it_is_stuck(cpu_models: ModelPair) -> None:
    from baselines.stuck_rule import StuckRule, stuck

    far = "go to the red ball\nyou see a wall 2 steps forward"
    near = "go to the red ball\nyou see a red ball 1 step forward"
    assert not stuck(EpisodeHistory(observations=[far]), seen=1, still=True)
    assert stuck(EpisodeHistory(observations=[far, far], actions=["go forward"]), seen=0, still=True)
    assert not stuck(EpisodeHistory(observations=[far, far], actions=["go forward"]), seen=0, still=False)
    looped = EpisodeHistory(observations=[far, near, far, near, far], actions=["turn left"] * 4)
    assert stuck(looped, seen=2, still=False) and not stuck(looped, seen=3, still=False)
    with pytest.raises(ValueError, match="seen must be >= 0"):
        StuckRule(seen=-1)

    played = [s for result in run(StuckRule(seen=1), cpu_models, episodes=4) for s in states(result)]
    called = [model == "deepthink" for _, model in played]
    assert called == [stuck(history, seen=1, still=True) for history, _ in played]
    assert 0 < sum(called) < len(called)  # the cpu pair gets stuck, and not everywhere
