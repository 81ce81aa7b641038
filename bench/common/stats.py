"""Means with 95% intervals, from scipy's bootstrap (not hand-rolled).

Episodes of all seeds of a (task, router) cell are pooled; the interval is scipy.stats.bootstrap's
percentile interval of the mean with a fixed random state, so the same numbers give the same
interval. A constant sample (all successes, say) has a zero-width interval by definition; a
single value has no interval (NaN), rather than one that looks certain.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats
from scipy.stats import DegenerateDataWarning

CONFIDENCE = 0.95
RESAMPLES = 2000


@dataclass(frozen=True)
class Estimate:
    mean: float
    low: float
    high: float
    n: int

    def __str__(self) -> str:
        return f"{fmt(self.mean)} [{fmt(self.low)}, {fmt(self.high)}]"


NEGLIGIBLE = 1e-9
"""Below this a value is float noise (a ScienceWorld score summed from hundredths), printed as 0."""


def fmt(value: float) -> str:
    if value != value:  # NaN
        return "n/a"
    magnitude = abs(value)
    if magnitude < NEGLIGIBLE:
        return "0.000"
    if magnitude != 0 and (magnitude >= 1e5 or magnitude < 1e-3):
        return f"{value:.3g}"
    return f"{value:.3f}" if magnitude < 10 else f"{value:.1f}"


def _bootstrap(*args: object, **kwargs: object) -> object:
    """scipy's bootstrap, its DegenerateDataWarning kept off the terminal: a degenerate sample gives a NaN bound,
    which the report prints as n/a."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateDataWarning)
        return stats.bootstrap(*args, **kwargs)


def wilson_ci(successes: Sequence[float]) -> Estimate:
    """A success rate with its Wilson score 95% interval: a small binary sample (one episode, or all successes)
    still gets an honest, non-zero-width interval."""
    data = np.asarray(successes, dtype=np.float64)
    n = int(data.size)
    if n == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0)
    p = float(data.mean())
    z = float(stats.norm.ppf(0.5 + CONFIDENCE / 2))
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return Estimate(p, max(0.0, centre - half), min(1.0, centre + half), n)


def mean_ci(values: Sequence[float], seed: int = 0) -> Estimate:
    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0)
    mean = float(data.mean())
    if data.size == 1:  # one value says nothing about its spread
        return Estimate(mean, float("nan"), float("nan"), 1)
    if np.all(data == data[0]):
        return Estimate(mean, mean, mean, int(data.size))
    result = _bootstrap(
        (data,), np.mean, confidence_level=CONFIDENCE, n_resamples=RESAMPLES,
        method="percentile", random_state=np.random.default_rng(seed),
    )
    interval = result.confidence_interval
    return Estimate(mean, float(interval.low), float(interval.high), int(data.size))


def ratio_ci(numerator: Sequence[float], denominator: Sequence[float], seed: int = 0, paired: bool = False) -> Estimate:
    """mean(numerator) / mean(denominator), bootstrapped jointly.

    With `paired`, entry i of both samples is the same episode (same task and env seed), and
    episodes are resampled together, which removes the between-episode variance both share.
    """
    a = np.asarray(numerator, dtype=np.float64)
    b = np.asarray(denominator, dtype=np.float64)
    if paired and a.size != b.size:
        raise ValueError(f"paired samples differ in length: {a.size} and {b.size}")
    if a.size == 0 or b.size == 0 or b.mean() == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), int(min(a.size, b.size)))
    point = float(a.mean() / b.mean())
    if a.size == 1 or b.size == 1:
        return Estimate(point, float("nan"), float("nan"), int(min(a.size, b.size)))
    if np.all(a == a[0]) and np.all(b == b[0]):
        return Estimate(point, point, point, int(min(a.size, b.size)))

    def statistic(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
        denominator_mean = y.mean(axis=axis)
        return x.mean(axis=axis) / np.where(denominator_mean == 0, np.nan, denominator_mean)

    result = _bootstrap(
        (a, b), statistic, confidence_level=CONFIDENCE, n_resamples=RESAMPLES, method="percentile",
        paired=paired, vectorized=True, random_state=np.random.default_rng(seed),
    )
    interval = result.confidence_interval
    return Estimate(point, float(interval.low), float(interval.high), int(min(a.size, b.size)))


def gap_recovered_ci(router: Sequence[float], quick: Sequence[float], deepthink: Sequence[float],
                     seed: int = 0) -> Estimate:
    """(mean(router) - mean(quick)) / (mean(deepthink) - mean(quick)) on the same episodes (paired).

    NaN when QUICK and DEEPTHINK have the same mean reward: there is no gap to recover.
    """
    r, q, d = (np.asarray(x, dtype=np.float64) for x in (router, quick, deepthink))
    if not (r.size == q.size == d.size):
        raise ValueError(f"gap_recovered needs the same episodes for all three: {r.size}, {q.size}, {d.size}")
    if r.size == 0 or d.mean() == q.mean():
        return Estimate(float("nan"), float("nan"), float("nan"), int(r.size))
    point = float((r.mean() - q.mean()) / (d.mean() - q.mean()))
    if r.size == 1:
        return Estimate(point, float("nan"), float("nan"), 1)

    def statistic(x: np.ndarray, y: np.ndarray, z: np.ndarray, axis: int = -1) -> np.ndarray:
        gap = z.mean(axis=axis) - y.mean(axis=axis)
        return (x.mean(axis=axis) - y.mean(axis=axis)) / np.where(gap == 0, np.nan, gap)

    result = _bootstrap(
        (r, q, d), statistic, confidence_level=CONFIDENCE, n_resamples=RESAMPLES, method="percentile",
        paired=True, vectorized=True, random_state=np.random.default_rng(seed),
    )
    interval = result.confidence_interval
    return Estimate(point, float(interval.low), float(interval.high), int(r.size))
