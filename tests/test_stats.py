"""Tests for bench.common.stats: bootstrap intervals of means and ratios, as the report prints them."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from bench.common.stats import Estimate, gap_recovered_ci, mean_ci, ratio_ci


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
    estimate = gap_recovered_ci(router, quick, deepthink)
    assert estimate.mean == pytest.approx(0.25)
    assert estimate.low == pytest.approx(0.25) and estimate.high == pytest.approx(0.25)  # paired: no noise
    assert math.isnan(gap_recovered_ci(quick, quick, quick).mean)  # no gap to recover
    with pytest.raises(ValueError, match="same episodes"):
        gap_recovered_ci(router[:3], quick, deepthink)


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
