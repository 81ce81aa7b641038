"""Tests for bench.common.stats: bootstrap intervals of means and ratios, as the report prints them."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from bench.common.stats import (
    Estimate,
    mean_ci,
    ratio_ci,
    seed_ci,
    seed_diff_ci,
    seed_gap_ci,
    seed_mean_ci,
    seed_ratio_ci,
)


def sample(n: int = 40, seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).normal(loc=2.0, scale=1.0, size=n)


def test_interval_contains_the_mean_and_has_width() -> None:
    data = sample()
    estimate = mean_ci(data)
    assert estimate.mean == data.mean()
    assert estimate.low < estimate.mean < estimate.high
    assert estimate.n == len(data)
    # A 95% interval of a mean of 40 unit-variance draws is about +-0.3 wide, far less than the spread.
    assert 0.2 < estimate.high - estimate.low < 1.5


def test_constant_sample_has_zero_width() -> None:
    assert mean_ci([1.0, 1.0, 1.0, 1.0]) == Estimate(1.0, 1.0, 1.0, 4)


def test_a_single_value_has_no_interval() -> None:
    single = mean_ci([0.25])
    assert (single.mean, single.n) == (0.25, 1) and math.isnan(single.low) and math.isnan(single.high)
    assert str(single) == "0.250 [n/a, n/a]"


def test_empty_sample_is_nan_not_zero() -> None:
    estimate = mean_ci([])
    assert estimate.n == 0 and math.isnan(estimate.mean) and math.isnan(estimate.low)
    assert str(estimate) == "n/a [n/a, n/a]"


def test_same_input_gives_the_same_interval() -> None:
    data = list(sample())
    assert mean_ci(data) == mean_ci(list(data))
    assert ratio_ci(data, [3.0, 1.0, 2.0, 5.0]) == ratio_ci(list(data), [3.0, 1.0, 2.0, 5.0])


def test_agrees_with_scipy_bootstrap_called_directly() -> None:
    data = sample(25, seed=11)
    direct = stats.bootstrap((data,), np.mean, confidence_level=0.95, n_resamples=2000, method="percentile",
                             random_state=np.random.default_rng(0)).confidence_interval
    estimate = mean_ci(data, seed=0)
    assert (estimate.low, estimate.high) == (direct.low, direct.high)


def test_ratio_point_value_is_the_ratio_of_means() -> None:
    numerator = [1.0, 2.0, 3.0, 2.0]
    denominator = [4.0, 6.0, 5.0]
    estimate = ratio_ci(numerator, denominator)
    assert estimate.mean == 2.0 / 5.0
    assert estimate.low < estimate.mean < estimate.high
    assert estimate.n == 3


def test_ratio_with_zero_denominator_is_nan() -> None:
    assert math.isnan(ratio_ci([1.0, 2.0], [0.0, 0.0]).mean)


def test_ratio_of_constant_samples_has_zero_width() -> None:
    assert ratio_ci([2.0, 2.0], [8.0, 8.0, 8.0]) == Estimate(0.25, 0.25, 0.25, 2)


def test_gap_recovered_is_the_paired_fraction_of_the_reward_gap() -> None:
    rng = np.random.default_rng(0)
    quick = rng.uniform(0, 0.4, 50)
    deepthink = quick + 0.4
    router = quick + 0.1
    seeds = np.repeat(np.arange(5), 10)
    estimate = seed_gap_ci(router, quick, deepthink, seeds)
    assert estimate.mean == pytest.approx(0.25)
    assert estimate.low == pytest.approx(0.25) and estimate.high == pytest.approx(0.25)  # paired: no noise
    assert math.isnan(seed_gap_ci(quick, quick, quick, seeds).mean)  # no gap to recover
    with pytest.raises(ValueError, match="same episodes"):
        seed_gap_ci(router[:3], quick, deepthink, seeds)


def test_wilson_interval_of_a_small_binary_sample_is_never_zero_width() -> None:
    from bench.common.stats import wilson_ci

    one = wilson_ci([1.0])
    assert one.mean == 1.0 and one.high == 1.0 and one.low == pytest.approx(0.2065, abs=1e-4)
    none = wilson_ci([0.0] * 8)
    assert none.low == 0.0 and none.high == pytest.approx(0.3244, abs=1e-4)  # 0 of 8 is not "certainly 0"
    three_of_four = wilson_ci([1, 0, 1, 1])
    assert (three_of_four.low, three_of_four.high) == pytest.approx((0.3006, 0.9544), abs=1e-4)
    assert wilson_ci([]).n == 0


def test_a_degenerate_bootstrap_stays_off_the_terminal(recwarn: pytest.WarningsRecorder) -> None:
    from bench.common.stats import ratio_ci

    ratio_ci([1.0, 2.0, 0.0], [0.0, 0.0, 1.0])  # resamples with a zero denominator give NaN statistics
    assert not [w for w in recwarn if "DegenerateData" in type(w.message).__name__]


def test_float_noise_prints_as_zero_and_small_values_keep_their_digits() -> None:
    from bench.common.stats import fmt

    assert fmt(3.47e-17) == "0.000" and fmt(-1.1e-16) == "0.000" and fmt(0.0) == "0.000"
    assert fmt(1e-5) == "1e-05" and fmt(0.25) == "0.250" and fmt(float("nan")) == "n/a"


# ---------------------------------------------------------------- two levels: run seeds, then episodes


def test_one_seed_is_scipys_episode_bootstrap() -> None:
    data = sample(60)
    two_level = seed_mean_ci(data, np.zeros(60, dtype=int))
    assert two_level.seeds == 1 and two_level.mean == pytest.approx(data.mean())
    direct = stats.bootstrap((data,), np.mean, confidence_level=0.95, n_resamples=2000, method="percentile",
                             random_state=np.random.default_rng(0)).confidence_interval
    assert two_level.low == pytest.approx(direct.low, abs=0.03)
    assert two_level.high == pytest.approx(direct.high, abs=0.03)


def test_the_interval_covers_what_varies_between_seeds() -> None:
    """Five separately trained routers whose means differ: pooling the episodes as if independent gives an interval
    far narrower than the spread between seeds; the two-level interval covers it."""
    rng = np.random.default_rng(1)
    seed_means = np.array([0.3, 0.45, 0.5, 0.55, 0.7])
    values = np.concatenate([rng.normal(m, 0.05, 40) for m in seed_means])
    seeds = np.repeat(np.arange(5), 40)
    pooled, two_level = mean_ci(values), seed_mean_ci(values, seeds)
    assert two_level.seeds == 5 and two_level.n == 200
    assert (two_level.high - two_level.low) > 3 * (pooled.high - pooled.low)
    assert two_level.low < 0.42 and two_level.high > 0.58  # the seed means' own spread


def test_pairs_stay_paired_within_a_seed() -> None:
    """a - b is exactly 0.1 on every episode: its interval has no width from episode noise that both share."""
    rng = np.random.default_rng(2)
    b = rng.random(100)
    diff = seed_diff_ci(b + 0.1, b, np.repeat(np.arange(4), 25))
    assert diff.mean == pytest.approx(0.1) and diff.low == pytest.approx(0.1) and diff.high == pytest.approx(0.1)
    ratio = seed_ratio_ci(2 * b, b, np.repeat(np.arange(4), 25))
    assert (ratio.low, ratio.mean, ratio.high) == pytest.approx((2.0, 2.0, 2.0))


def test_a_small_sample_that_did_not_vary_gets_no_zero_width_interval() -> None:
    """8 ScienceWorld episodes, 3 successes, the router's rewards equal DEEPTHINK-only's on each: reward retained is
    1 on every resample, which says nothing about the episodes not played."""
    reference = np.array([1.0, 1.0, 1.0, 0, 0, 0, 0, 0])
    retained = seed_ratio_ci(reference.copy(), reference, np.zeros(8, dtype=int), bounded=True)
    assert retained.mean == 1.0 and retained.low < 0.5 and retained.high > 1.0
    assert seed_mean_ci(np.ones(8), np.zeros(8, dtype=int), bounded=True).low < 0.75  # Wilson: 8 of 8
    assert seed_mean_ci(np.zeros(8), np.zeros(8, dtype=int), bounded=True).high > 0.25
    wide, narrow = (seed_mean_ci(np.ones(n), np.zeros(n, dtype=int), bounded=True) for n in (8, 800))
    assert narrow.low > wide.low  # more episodes, a tighter bound


def test_a_two_level_statistic_sees_the_means_of_every_column_of_the_drawn_episodes() -> None:
    columns = {"x": np.arange(10.0), "y": np.arange(10.0) * 2}
    estimate = seed_ci(lambda m: m["y"] / m["x"], columns, np.repeat(np.arange(2), 5))
    assert estimate.mean == 2.0 and estimate.low == pytest.approx(2.0) and estimate.high == pytest.approx(2.0)
    with pytest.raises(ValueError, match="one value per episode"):
        seed_ci(lambda d: 0.0, {"x": [1.0, 2.0]}, [0, 0, 1])
