"""Tests for bench.running.metering: how a batched call's seconds, FLOPs and priced seconds are charged to episodes,
and the metric names a run logs; some tests meter real episodes of the smoke model pair."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pytest

from bench.envs.tasks import get_task
from bench.models.cost import CallCost
from bench.running.metering import COMPONENTS, PRICED, Meter, Usage, usage_metrics
from bench.running.pricing import LinearCost, PriceBooks, Prices, role_table
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


# --- priced costs: each call priced from its shape by price books (bench.running.pricing) -----------------------
def flat_book(label: str, seconds_per_prompt_token: float) -> Prices:
    """A book in which a call costs batch x prompt tokens x `seconds_per_prompt_token` (exact on a 2 x 2 grid, so
    interpolation is exact too), and the router 1 + FLOPs."""
    points = [{"batch": b, "prompt_tokens": t, "median_s": b * t * seconds_per_prompt_token}
              for b in (1, 8) for t in (5, 50)]
    return Prices(label, {role: role_table("score", points) for role in ("quick", "deepthink")}, LinearCost(1.0, 1.0))


def test_charge_prices_the_batch_at_its_longest_prompt_and_each_prompt_alone() -> None:
    books = PriceBooks(priced=flat_book("priced", 1.0), projected=flat_book("projected", 0.5))
    meter = Meter(n_slots=3, prices=books)
    meter.charge("deepthink", [0, 2], cost([1.0, 3.0], tokens_in=[10, 20]), seconds=4.0)
    first, third = meter.slots[0]["deepthink"], meter.slots[2]["deepthink"]
    # the batch: 2 prompts padded to 20 tokens = 40 s, split 1:3 by FLOPs like the wall seconds
    assert (first.priced_s, third.priced_s) == pytest.approx((10.0, 30.0))
    assert (first.priced_b1_s, third.priced_b1_s) == pytest.approx((10.0, 20.0))  # each alone: 1 x its own prompt
    assert (first.projected_gpu_s, third.projected_gpu_s) == pytest.approx((5.0, 15.0))
    assert (first.projected_gpu_b1_s, third.projected_gpu_b1_s) == pytest.approx((5.0, 10.0))
    assert meter.run["deepthink"].priced_s == pytest.approx(40.0)
    assert meter.slots[1]["deepthink"] == Usage()


def test_router_calls_are_priced_from_their_flops_and_a_call_without_flops_is_free() -> None:
    meter = Meter(n_slots=2, prices=PriceBooks(priced=flat_book("priced", 1.0)))
    meter.charge("router", [0, 1], cost([2.0, 6.0], tokens_in=[0, 0], tokens_out=[0, 0]), seconds=0.1)
    assert meter.run["router"].priced_s == pytest.approx(1.0 + 8.0)  # one call: overhead + all its FLOPs
    assert meter.run["router"].priced_b1_s == pytest.approx((1.0 + 2.0) + (1.0 + 6.0))  # two calls of their own
    meter.charge("quick", [0], cost([0.0]), seconds=0.1)  # the random policy: nothing computed
    assert meter.run["quick"].priced_s == 0.0 and meter.run["quick"].calls == 1


def test_without_price_books_priced_costs_are_nan_not_zero() -> None:
    meter = Meter(n_slots=1, prices=PriceBooks(priced=flat_book("priced", 1.0)))  # no projected book
    meter.charge("quick", [0], cost([1.0]), seconds=0.1)
    metrics = usage_metrics(meter.run)
    assert metrics["priced_s"] == pytest.approx(10.0) and metrics["priced_s_deepthink"] == 0.0  # never called: 0
    assert np.isnan(metrics["projected_gpu_s"]) and np.isnan(metrics["projected_gpu_s_quick"])
    unpriced = Meter(n_slots=1)
    unpriced.charge("quick", [0], cost([1.0]), seconds=0.1)
    metrics = usage_metrics(unpriced.run)
    for name in PRICED:
        assert np.isnan(metrics[name]) and np.isnan(metrics[f"{name}_quick"])
        assert metrics[f"{name}_router"] == 0.0


def test_usage_metrics_name_every_priced_figure_per_component_and_in_total() -> None:
    usage = {c: Usage(calls=1, priced_s=1.0, priced_b1_s=2.0, projected_gpu_s=3.0, projected_gpu_b1_s=4.0)
             for c in COMPONENTS}
    metrics = usage_metrics(usage)
    for value, name in enumerate(PRICED, start=1):
        assert metrics[name] == 3 * value
        for component in COMPONENTS:
            assert metrics[f"{name}_{component}"] == value
    assert set(PRICED) == {"priced_s", "priced_b1_s", "projected_gpu_s", "projected_gpu_b1_s"}


def test_a_pairs_price_books_meter_every_run_of_it(smoke_models: ModelPair) -> None:
    task = get_task("babyai/Mixed")
    books = PriceBooks(priced=flat_book("priced", 1e-3))
    results, meter = run_episodes(EvenStepsWithRouterCost(), task, replace(smoke_models, prices=books),
                                  task.eval_episode_seeds(0, 2), batch_size=2, progress=False)
    assert meter.prices is books
    for r in results:
        m = r.metrics()
        assert m["priced_s"] == pytest.approx(m["priced_s_quick"] + m["priced_s_deepthink"] + m["priced_s_router"])
        assert m["priced_s_deepthink"] > 0 and m["priced_b1_s_router"] == pytest.approx(r.steps * (1.0 + 11.0))
        assert m["priced_s_router"] <= m["priced_b1_s_router"]  # a batched call shares its overhead
        assert np.isnan(m["projected_gpu_s"])
    assert meter.run["quick"].priced_s == pytest.approx(sum(r.usage["quick"].priced_s for r in results))
