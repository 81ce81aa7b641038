"""LONDI's verdict pooled over the sweep tasks (bench.reporting.pooled): yes where the data says yes, no where it
says no, and no where a task has no chosen setting."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bench.reporting.pooled import pooled_londi
from bench.reporting.report import pooled_claims, pooled_markdown

TASKS = ("sw/a", "sw/b")


def _episodes(londi_reward: float, londi_cost: float, seeds: int = 3, n: int = 30) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for task in TASKS:
        for seed in range(seeds):
            for env_seed in range(n):
                solved = float(rng.random() < 0.8)
                rows.append({"split": "test", "task": task, "router": "deepthink_only", "seed": seed,
                             "env_seed": env_seed, "reward": solved, "priced_s": 1.0})
                kept = solved if rng.random() < londi_reward else 0.0
                rows.append({"split": "test", "task": task, "router": "londi_b[budget=2]", "seed": seed,
                             "env_seed": env_seed, "reward": kept, "priced_s": londi_cost})
    return pd.DataFrame(rows)


def _rows(chosen: str | None = "londi_b[budget=2]") -> list[dict]:
    return [{"task": task, "londi": {"chosen": chosen if task == "sw/a" else "londi_b[budget=2]"}} for task in TASKS]


TRAINING = pd.DataFrame([{"task": t, "router": "londi_b[budget=2]", "seed": s, "train_priced_s": 100.0}
                         for t in TASKS for s in range(3)])


def _pooled(episodes: pd.DataFrame, rows: list[dict]) -> dict | None:
    return pooled_londi(episodes, rows, TRAINING, "priced_s", "deepthink_only", 0.95, 0.30, 0.50, 1000)


def test_pooled_says_yes_when_londi_keeps_the_reward_for_less() -> None:
    pooled = _pooled(_episodes(1.0, 0.4), _rows())
    assert pooled["non_inferior"] and pooled["paper_claim"] and pooled["aim"]
    assert pooled["saving"]["mean"] == pytest.approx(0.6)
    assert pooled["saving_amortised"]["mean"] == pytest.approx(0.6 - 2 * 100 / 1000 / 2)  # 0.2 s per task-episode
    assert pooled["reward_retained"]["seeds"] == 3
    assert [v for _, v, _ in pooled_claims(pooled)] == ["yes", "yes"]


def test_pooled_says_no_when_reward_is_lost_or_a_task_has_no_setting() -> None:
    lost = _pooled(_episodes(0.7, 0.4), _rows())
    assert not lost["non_inferior"] and not lost["paper_claim"] and lost["retained_margin"] < 0
    assert [v for _, v, _ in pooled_claims(lost)] == ["no", "no"]
    dear = _pooled(_episodes(1.0, 0.9), _rows())
    assert dear["non_inferior"] and not dear["paper_claim"] and dear["paper_margin"] == pytest.approx(-0.2)
    none = _pooled(_episodes(1.0, 0.4), _rows(chosen=None))
    assert not none["paper_claim"] and "sw/a" in none["evidence"]
    assert "**no**" in pooled_markdown(none)
    assert _pooled(_episodes(1.0, 0.4), _rows()[:1]) is None  # one task: nothing to pool
