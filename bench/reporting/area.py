"""One number per router family: the area under its cost-reward hull (in the spirit of RouterBench's AIQ).

A family is a router's settings (LONDI's c, random switching's p, the cascade's threshold). Each setting is a point
(cost, reward), both normalised so that QUICK-only is (0, 0) and DEEPTHINK-only is (1, 1) (cost: priced seconds per
episode; reward: reward per episode; a setting may lie beyond 1 on either axis). Settings can be mixed (route an
episode by one setting or another at random), and spending less never hurts (a cheaper setting can be kept), so what
a family can reach is the non-decreasing concave hull of its points, anchored at QUICK-only (every family can spend
nothing). The area under that hull over costs 0..1 is the family's number: 0.5 is the straight line from QUICK-only to
DEEPTHINK-only (mixing the two models by episode); 1 is DEEPTHINK-only's reward for free.

Its interval is the report's two-level bootstrap: the family's settings ran on the same episodes as the two
references, so every resample reweights all of them together (run seeds, then episodes within each) and recomputes
the area from the resampled means.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bench.common.stats import Estimate, seed_ci


def hull_area(costs: Sequence[float], rewards: Sequence[float]) -> float:
    """Area over x in [0, 1] under the non-decreasing upper concave hull of the points and (0, 0), flat beyond its
    last point. Points with a cost below 0 (cheaper than QUICK-only) count from 0."""
    points = sorted({(0.0, 0.0), *((max(0.0, float(c)), float(r)) for c, r in zip(costs, rewards, strict=True))})
    hull: list[tuple[float, float]] = []
    for x, y in points:
        if hull and y <= hull[-1][1]:
            continue  # non-decreasing: a point no better than a cheaper one adds nothing
        while len(hull) >= 2:
            (x1, y1), (x2, y2) = hull[-2], hull[-1]
            if (y2 - y1) * (x - x1) <= (y - y1) * (x2 - x1):
                hull.pop()
            else:
                break
        hull.append((x, y))
    area = 0.0
    for (x1, y1), (x2, y2) in zip(hull, [*hull[1:], (np.inf, hull[-1][1])], strict=True):
        left, right = min(x1, 1.0), min(x2, 1.0)
        if right <= left:
            continue
        slope = 0.0 if x2 == np.inf else (y2 - y1) / (x2 - x1)
        area += (right - left) * (y1 + slope * ((left + right) / 2 - x1))
    return area


Episodes = tuple[Sequence[float], Sequence[float]]
"""(cost per episode, reward per episode) of one router on the sweep's episodes"""


def family_area(family: dict[str, Episodes], quick: Episodes, deepthink: Episodes, seeds: Sequence[int],
                seed: int = 0) -> Estimate:
    """The family's area with its interval. Each entry is (cost per episode, reward per episode) on the same episodes
    in the same order (one row per (run seed, env seed)), `seeds` the run seed of each row."""
    columns = {"qc": quick[0], "qr": quick[1], "dc": deepthink[0], "dr": deepthink[1]}
    names = sorted(family)
    for i, name in enumerate(names):
        columns[f"c{i}"], columns[f"r{i}"] = family[name]

    def statistic(means: dict[str, np.ndarray]) -> np.ndarray:
        scalar = np.ndim(means["qc"]) == 0
        m = {k: np.atleast_1d(np.asarray(v, dtype=np.float64)) for k, v in means.items()}
        out = np.empty(len(m["qc"]))
        for j in range(len(out)):
            cost_span, reward_span = m["dc"][j] - m["qc"][j], m["dr"][j] - m["qr"][j]
            if cost_span <= 0 or reward_span <= 0:
                out[j] = np.nan  # no cost or no reward between the two models: nothing to normalise by
                continue
            out[j] = hull_area([(m[f"c{i}"][j] - m["qc"][j]) / cost_span for i in range(len(names))],
                               [(m[f"r{i}"][j] - m["qr"][j]) / reward_span for i in range(len(names))])
        return out[0] if scalar else out

    return seed_ci(statistic, columns, seeds, seed)
