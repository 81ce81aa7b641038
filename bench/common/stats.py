"""Estimates with 95% intervals, from scipy's bootstrap (not hand-rolled).

Two kinds:
- one level (`mean_ci`, `ratio_ci`): episodes resampled, for one run's own
  summary (an MLflow run's metrics) and for the pair report;
- two levels (`seed_ci` and its wrappers `seed_mean_ci`, `seed_ratio_ci`, `seed_diff_ci`, `seed_gap_ci`): the
  report's intervals. Run seeds are resampled first (each a separately trained router, or another
  block of episodes), then episodes within each drawn seed, so an interval covers what varies from
  one trained Switcher to the next, not only from one episode to the next. This is the
  stratified-over-runs bootstrap of rliable (Agarwal et al. 2021), which does not run with the
  pinned pandas; scipy.stats.bootstrap draws the seeds, a generator of the same fixed seed the
  episodes within them. With one run seed the interval is over episodes only (conditional on that
  one seed), and says so through `seeds`.

Every interval has a fixed random state: the same numbers give the same interval. A single value
has no interval (NaN) rather than one that looks certain. A sample that did not vary gets no
zero-width interval where its values are rewards or successes in [0, 1]: the Wilson bound on how
many episodes could differ widens it (`bounded`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
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
    seeds: int = 0
    """Run seeds the interval resampled (two-level estimates); 0: a one-level, episode-only estimate."""

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


SEED_RESAMPLES = 2000


def _wilson_zero(n: int) -> float:
    """Wilson upper bound on a proportion seen 0 times in n: how large a share of episodes could differ unseen."""
    return wilson_ci(np.zeros(n)).high


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, NaN where the denominator is 0 (elementwise, for resampled means)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator == 0, np.nan, numerator / np.where(denominator == 0, 1, denominator))


def seed_ci(statistic: Callable[[dict[str, np.ndarray]], np.ndarray], columns: dict[str, Sequence[float]],
            seeds: Sequence[int], seed: int = 0, resamples: int = SEED_RESAMPLES) -> Estimate:
    """A function of the columns' means over the episodes (paired columns, one row per episode), with a two-level
    bootstrap interval.

    `statistic` receives each column's mean (a float for the point estimate, an array of one mean per resample for
    the interval) and returns the same shape: every statistic of the report is a function of means (a mean, a ratio
    of means, a difference), which lets each resample be a weight per episode and the bootstrap run vectorised.

    Outer level: scipy.stats.bootstrap resamples the run seeds (percentile interval). Inner level: each drawn seed's
    episodes are drawn again with replacement (a generator seeded with `seed`): a seed drawn k times contributes
    k x its episode count draws from its own episodes (a multinomial). With a single run seed scipy resamples the
    episodes directly. Rows of one seed stay together in both levels, so paired columns (a router and the
    reference on the same episodes) stay paired.
    """
    data = {name: np.asarray(values, dtype=np.float64) for name, values in columns.items()}
    labels = np.asarray(seeds)
    n = len(labels)
    if any(len(v) != n for v in data.values()):
        raise ValueError(f"every column needs one value per episode ({n}): got {[len(v) for v in data.values()]}")
    if n == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0, 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        point = float(statistic({name: float(values.mean()) for name, values in data.items()}))
    groups = [np.flatnonzero(labels == value) for value in dict.fromkeys(labels.tolist())]
    if n == 1 or point != point:
        return Estimate(point, float("nan"), float("nan"), n, len(groups))
    matrix = np.stack(list(data.values()), axis=1)  # episodes x columns
    inner = np.random.default_rng(seed)

    def on(weights: np.ndarray) -> np.ndarray:
        means = (weights @ matrix) / weights.sum(axis=1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.asarray(statistic({name: means[:, i] for i, name in enumerate(data)}), dtype=np.float64)

    def counts(drawn: np.ndarray, size: int) -> np.ndarray:
        rows = drawn.reshape(-1, drawn.shape[-1]).astype(np.int64)
        out = np.zeros((rows.shape[0], size))
        np.add.at(out, (np.arange(rows.shape[0])[:, None], rows), 1)
        return out

    if len(groups) == 1:
        def outer(drawn: np.ndarray, axis: int = -1) -> np.ndarray:
            return on(counts(drawn, n)).reshape(drawn.shape[:-1])
    else:
        def outer(drawn: np.ndarray, axis: int = -1) -> np.ndarray:
            times = counts(drawn, len(groups))  # resamples x seeds: how often each seed was drawn
            weights = np.zeros((times.shape[0], n))
            for g, members in enumerate(groups):
                weights[:, members] = inner.multinomial((times[:, g] * len(members)).astype(np.int64),
                                                        np.full(len(members), 1 / len(members)))
            return on(weights).reshape(drawn.shape[:-1])
    sample = np.arange(n) if len(groups) == 1 else np.arange(len(groups))
    result = _bootstrap((sample,), outer, confidence_level=CONFIDENCE, n_resamples=resamples,
                        method="percentile", vectorized=True, random_state=np.random.default_rng(seed))
    low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    spread = result.bootstrap_distribution[np.isfinite(result.bootstrap_distribution)]
    if low != low and spread.size and np.all(spread == spread[0]):  # scipy's NaN for a sample that never varied
        low = high = float(spread[0])
    return Estimate(point, low, high, n, len(groups))


def _widened(estimate: Estimate, scale: float = 1.0) -> Estimate:
    """A zero-width interval of values in [0, 1] widened by the Wilson bound on the share of episodes that could
    differ (each by at most 1, divided by `scale`): the sample did not vary, which is not certainty."""
    if estimate.n < 2 or estimate.low != estimate.high or estimate.mean != estimate.mean:
        return estimate
    room = _wilson_zero(estimate.n) / scale
    return Estimate(estimate.mean, estimate.mean - room, estimate.mean + room, estimate.n, estimate.seeds)


def _clip(estimate: Estimate, low: float, high: float) -> Estimate:
    return Estimate(estimate.mean, max(low, estimate.low), min(high, estimate.high), estimate.n, estimate.seeds)


def seed_mean_ci(values: Sequence[float], seeds: Sequence[int], bounded: bool = False, seed: int = 0) -> Estimate:
    """The mean of per-episode values, two-level interval; `bounded`: values in [0, 1] (rewards, successes)."""
    estimate = seed_ci(lambda m: m["x"], {"x": values}, seeds, seed)
    return _clip(_widened(estimate), 0.0, 1.0) if bounded else estimate


def seed_ratio_ci(numerator: Sequence[float], denominator: Sequence[float], seeds: Sequence[int],
                  bounded: bool = False, seed: int = 0) -> Estimate:
    """mean(numerator) / mean(denominator) over the same episodes (paired), two-level interval. `bounded`: both
    are rewards in [0, 1] (reward retained), so a ratio that did not vary is widened as `seed_mean_ci` is."""
    estimate = seed_ci(lambda m: _ratio(m["a"], m["b"]), {"a": numerator, "b": denominator}, seeds, seed)
    if bounded and estimate.mean == estimate.mean:
        estimate = _clip(_widened(estimate, scale=float(np.mean(denominator))), 0.0, float("inf"))
    return estimate


def seed_diff_ci(a: Sequence[float], b: Sequence[float], seeds: Sequence[int], bounded: bool = False,
                 seed: int = 0) -> Estimate:
    """mean(a - b) over the same episodes (paired), two-level interval; `bounded`: a and b in [0, 1]."""
    difference = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    estimate = seed_ci(lambda m: m["d"], {"d": difference}, seeds, seed)
    return _clip(_widened(estimate), -1.0, 1.0) if bounded else estimate


def seed_gap_ci(router: Sequence[float], quick: Sequence[float], deepthink: Sequence[float], seeds: Sequence[int],
                seed: int = 0) -> Estimate:
    """Gap recovered: (mean(router) - mean(quick)) / (mean(deepthink) - mean(quick)) on the same episodes (paired),
    two-level interval. NaN when QUICK and DEEPTHINK have the same mean reward: there is no gap to recover."""
    r, q, d = (np.asarray(x, dtype=np.float64) for x in (router, quick, deepthink))
    if not (r.size == q.size == d.size):
        raise ValueError(f"gap_recovered needs the same episodes for all three: {r.size}, {q.size}, {d.size}")

    def gap(m: dict[str, np.ndarray]) -> np.ndarray:
        return _ratio(m["r"] - m["q"], m["d"] - m["q"])

    return seed_ci(gap, {"r": r, "q": q, "d": d}, seeds, seed)
