"""Tests for bench.reporting.area: the area under a router family's normalised cost-reward hull."""

from __future__ import annotations

import numpy as np
import pytest

from bench.reporting.area import family_area, hull_area


@pytest.mark.parametrize("costs, rewards, area", [
    ([1.0], [1.0], 0.5),  # DEEPTHINK-only alone: the straight line from QUICK-only
    ([0.3], [1.0], 0.15 + 0.7),  # DEEPTHINK's reward at 30% of its cost
    ([0.5], [0.5], 0.125 + 0.25),  # halfway on both: below mixing the two models
    ([0.5, 1.0], [0.5, 1.0], 0.5),  # on the line: the middle point adds nothing
    ([2.0], [1.0], 0.25),  # twice DEEPTHINK's cost: the hull reaches 0.5 at cost 1
    ([0.2, 0.6], [0.6, 1.0], 0.06 + 0.32 + 0.4),  # concave: both points on the hull
    ([0.2, 0.5], [0.6, 0.4], 0.06 + 0.8 * 0.6),  # a costlier, worse setting is dominated
    ([0.2, 0.4, 0.6], [0.6, 0.7, 1.0], 0.06 + 0.32 + 0.4),  # under the hull: mixing 0.2 and 0.6 does better
    ([-0.1], [0.2], 0.2),  # cheaper than QUICK-only counts from 0
])
def test_the_area_is_under_the_non_decreasing_concave_hull(costs, rewards, area) -> None:
    assert hull_area(costs, rewards) == pytest.approx(area)


def test_the_family_area_has_a_two_level_interval_and_can_fall_below_mixing() -> None:
    rng = np.random.default_rng(0)
    n, seeds = 60, np.repeat([0, 1, 2], 20)
    quick = (np.full(n, 1.0) + rng.normal(0, 0.05, n), (rng.random(n) < 0.3).astype(float))
    deep = (np.full(n, 3.0) + rng.normal(0, 0.05, n), (rng.random(n) < 0.8).astype(float))
    good = (quick[0] + 0.6, deep[1].copy())  # DEEPTHINK's rewards at 30% of the extra cost
    poor = (quick[0] + 1.0, np.where(rng.random(n) < 0.5, quick[1], deep[1]) * 0.9)  # half the cost, < half the gain
    estimate = family_area({"good": good}, quick, deep, seeds)
    cost = (good[0].mean() - quick[0].mean()) / (deep[0].mean() - quick[0].mean())
    assert cost == pytest.approx(0.3, abs=0.01) and estimate.mean == pytest.approx(hull_area([cost], [1.0]))
    assert estimate.low < estimate.mean < estimate.high and estimate.seeds == 3
    below = family_area({"poor": poor}, quick, deep, seeds)
    assert below.high < 0.5 < estimate.low  # a family worse than mixing the two models says so
    both = family_area({"good": good, "poor": poor}, quick, deep, seeds)
    assert both.mean == pytest.approx(estimate.mean)  # the poor setting is under the good one's hull
