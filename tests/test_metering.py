"""Tests for bench.running.metering: how a batched call's seconds and FLOPs are charged to episodes, and the
metric names a run logs; the last test meters real episodes of the smoke model pair."""

from __future__ import annotations

import time

import numpy as np
import pytest

from bench.envs.tasks import get_task
from bench.models.cost import CallCost
from bench.running.metering import COMPONENTS, Meter, Usage, usage_metrics
from bench.running.router import Router, StepView
from bench.running.runner import ModelPair, run_episodes


def cost(flops: list[float], tokens_in: list[int] | None = None, tokens_out: list[int] | None = None) -> CallCost:
    n = len(flops)
    return CallCost(
        tokens_in=np.asarray(tokens_in or [10] * n, dtype=np.int64),
        tokens_out=np.asarray(tokens_out or [4] * n, dtype=np.int64),
        flops=np.asarray(flops, dtype=np.float64),
    )


def test_call_splits_its_measured_seconds_by_flops_share() -> None:
    meter = Meter(n_slots=3)

    def batched_call() -> tuple[str, CallCost]:
        time.sleep(0.05)
        return "scores", cost([1.0, 3.0], tokens_in=[7, 9], tokens_out=[2, 2])

    assert meter.call("deepthink", [0, 2], batched_call) == "scores"

    first, third = meter.slots[0]["deepthink"], meter.slots[2]["deepthink"]
    total = meter.run["deepthink"].compute_s
    assert total >= 0.05
    assert first.compute_s + third.compute_s == pytest.approx(total)
    assert third.compute_s == pytest.approx(3 * first.compute_s)
    assert (first.flops, third.flops) == (1.0, 3.0)
    assert (first.tokens_in, third.tokens_in, first.tokens_out) == (7, 9, 2)
    assert first.calls == third.calls == 1
    assert meter.slots[1]["deepthink"] == Usage()
    assert meter.run["quick"] == Usage()


def test_charge_gives_each_slot_its_share_of_the_seconds() -> None:
    meter = Meter(n_slots=2)
    meter.charge("quick", [1, 0], cost([2.0, 6.0]), seconds=4.0)
    assert meter.slots[1]["quick"].compute_s == pytest.approx(1.0)
    assert meter.slots[0]["quick"].compute_s == pytest.approx(3.0)
    assert meter.run["quick"].compute_s == pytest.approx(4.0)
    assert meter.run["quick"].flops == 8.0
    assert meter.run["quick"].calls == 2


def test_charge_without_flops_splits_seconds_evenly() -> None:
    meter = Meter(n_slots=2)
    meter.charge("router", [0, 1], cost([0.0, 0.0]), seconds=1.0)
    assert meter.slots[0]["router"].compute_s == pytest.approx(0.5)
    assert meter.slots[1]["router"].compute_s == pytest.approx(0.5)


def test_take_returns_a_slots_usage_since_the_last_take_and_resets_it() -> None:
    meter = Meter(n_slots=2)
    meter.charge("quick", [0, 1], cost([1.0, 1.0]), seconds=2.0)
    meter.charge("deepthink", [0], cost([5.0]), seconds=1.0)

    taken = meter.take(0)
    assert taken["quick"].flops == 1.0 and taken["deepthink"].flops == 5.0
    assert taken["deepthink"].compute_s == pytest.approx(1.0)
    assert all(u == Usage() for u in meter.take(0).values())
    assert meter.slots[1]["quick"].flops == 1.0  # another slot is untouched
    assert meter.run["quick"].flops == 2.0  # the run keeps counting after a take

    meter.charge("quick", [0], cost([7.0]), seconds=0.5)
    assert meter.take(0)["quick"].flops == 7.0


def test_unknown_component_is_rejected_before_the_call_runs() -> None:
    meter = Meter(n_slots=1)
    ran = []

    def batched_call() -> tuple[None, CallCost]:
        ran.append(True)
        return None, cost([1.0])

    with pytest.raises(ValueError, match=r"unknown component 'oracle'.*quick.*deepthink.*router"):
        meter.call("oracle", [0], batched_call)
    assert not ran
    assert all(u == Usage() for u in meter.run.values())


def test_usage_metrics_names_and_totals() -> None:
    usage = {
        "quick": Usage(calls=3, tokens_in=30, tokens_out=12, flops=100.0, compute_s=0.25),
        "deepthink": Usage(calls=2, tokens_in=40, tokens_out=8, flops=1000.0, compute_s=0.5),
        "router": Usage(calls=5, tokens_in=0, tokens_out=0, flops=10.0, compute_s=0.125),
    }
    metrics = usage_metrics(usage)
    assert metrics["flops"] == 1110.0
    assert metrics["compute_s"] == pytest.approx(0.875)
    assert metrics["quick_calls"] == 3 and metrics["deepthink_calls"] == 2 and metrics["router_calls"] == 5
    assert metrics["flops_quick"] == 100.0 and metrics["flops_deepthink"] == 1000.0 and metrics["flops_router"] == 10.0
    assert metrics["compute_s_deepthink"] == 0.5
    assert metrics["tokens_in_deepthink"] == 40 and metrics["tokens_out_quick"] == 12
    for component in COMPONENTS:
        for prefix in ("flops_", "compute_s_", "tokens_in_", "tokens_out_"):
            assert prefix + component in metrics


class EvenStepsWithRouterCost(Router):
    """DEEPTHINK on even steps; charges a fixed cost per episode for its own (pretend) encoder."""

    name = "even_steps_metered"
    ROUTER_FLOPS = 11.0

    def route(self, view: StepView) -> np.ndarray:
        n = len(view.slots)
        view.meter.call("router", view.slots, lambda: (None, cost([self.ROUTER_FLOPS] * n, [3] * n, [0] * n)))
        return view.steps % 2 == 0


def test_run_totals_equal_the_sum_of_every_episodes_usage(smoke_models: ModelPair) -> None:
    task = get_task("babyai/Mixed")
    # Two slots for three episodes: a slot is reused, so take() at episode boundaries matters.
    results, meter = run_episodes(EvenStepsWithRouterCost(), task, smoke_models, task.eval_episode_seeds(0, 3),
                                  batch_size=2, progress=False)
    assert len(results) == 3
    for component in COMPONENTS:
        run = meter.run[component]
        episodes = [r.usage[component] for r in results]
        assert run.calls == sum(u.calls for u in episodes)
        assert run.tokens_in == sum(u.tokens_in for u in episodes)
        assert run.flops == pytest.approx(sum(u.flops for u in episodes))
        assert run.compute_s == pytest.approx(sum(u.compute_s for u in episodes))
        assert run.calls > 0
    for r in results:
        m = r.metrics()
        assert m["router_calls"] == r.steps
        assert m["flops_router"] == r.steps * EvenStepsWithRouterCost.ROUTER_FLOPS
        assert m["flops"] == pytest.approx(m["flops_quick"] + m["flops_deepthink"] + m["flops_router"])
        assert m["compute_s"] == pytest.approx(m["compute_s_quick"] + m["compute_s_deepthink"] + m["compute_s_router"])
        assert m["deepthink_calls"] == (r.steps + 1) // 2
