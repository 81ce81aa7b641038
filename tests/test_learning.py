"""Learning curves (bench.reporting.learning): the verdict says flat, still moving, or undecided, each on data
built to be so."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.common.stats import Estimate
from bench.reporting.learning import curve_verdict, flatness, flatness_markdown, plot_curves, read_curves, write_curves


def _curves(fraction, episodes: int = 200, seeds: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame([{"task": "t", "router": "r", "seed": s, "episode": e, "reward": float(rng.random() < 0.5),
                          "deepthink_fraction": fraction(e, rng), "steps": 5}
                         for s in range(seeds) for e in range(episodes)])


def test_a_flat_curve_is_flat_and_a_rising_one_is_not(tmp_path) -> None:
    flat = flatness(_curves(lambda e, rng: 0.3 + 0.02 * rng.standard_normal()))
    assert [r["verdict"] for r in flat] == ["flat"]
    rising = flatness(_curves(lambda e, rng: e / 200))
    assert [r["verdict"] for r in rising] == ["still moving"]
    assert rising[0]["quarters"]["deepthink_fraction"][3] > rising[0]["quarters"]["deepthink_fraction"][0] + 0.5
    assert "still moving" in flatness_markdown(rising)
    # a curve too short to split in quarters, and one too noisy to place within the tolerance, are undecided
    assert [r["verdict"] for r in flatness(_curves(lambda e, rng: 0.5, episodes=4))] == ["undecided"]
    noisy = flatness(_curves(lambda e, rng: float(rng.random() < 0.5), episodes=40))
    assert [r["verdict"] for r in noisy] == ["undecided"]


def test_verdict_on_intervals() -> None:
    assert curve_verdict({"f": Estimate(0.0, -0.05, 0.05, 10)}) == "flat"
    assert curve_verdict({"f": Estimate(0.2, 0.1, 0.3, 10)}) == "still moving"
    assert curve_verdict({"f": Estimate(-0.2, -0.3, -0.01, 10)}) == "still moving"
    assert curve_verdict({"f": Estimate(0.0, -0.2, 0.2, 10)}) == "undecided"
    assert curve_verdict({}) == "undecided"


def test_table_round_trip_and_plot(tmp_path) -> None:
    curves = _curves(lambda e, rng: e / 200, episodes=20)
    path = write_curves(curves, tmp_path, "s")
    assert path is not None and read_curves(tmp_path, "s").shape == curves.shape
    assert write_curves(curves.iloc[:0], tmp_path, "s") is None and not path.exists()  # none: a stale one goes
    assert read_curves(tmp_path, "s").empty
    assert plot_curves(curves, tmp_path / "c.png").stat().st_size > 0
