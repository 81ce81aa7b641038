"""LONDI's verdict pooled over a suite's sweep tasks (issue 18: ScienceWorld per task and pooled).

On each task LONDI's setting is the one chosen on that task's validation episodes (bench.reporting.report.verdicts);
pooled, each task weighs the same: reward retained is the sum over tasks of LONDI's mean reward over the sum of
DEEPTHINK-only's, the saving one minus the ratio of the summed mean priced costs (LONDI's training priced and
amortised over VERDICT_EPISODES episodes per task for the aim). The interval is a two-level bootstrap: run seeds
resampled once for every task together (a seed's Switchers share a draw), then each task's episodes within each
seed, paired with DEEPTHINK-only's on the same episodes."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.common.stats import CONFIDENCE, Estimate

DRAWS = 2000


def _percentiles(values: np.ndarray) -> tuple[float, float]:
    tail = 100 * (1 - CONFIDENCE) / 2
    return float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))


def pooled_londi(episodes: pd.DataFrame, verdict_rows: list[dict], training: pd.DataFrame, cost: str,
                 reference: str, retained_goal: float, paper_saving: float, aim_saving: float,
                 amortised_over: int, seed: int = 0) -> dict | None:
    """The pooled verdict over the tasks of `verdict_rows` (None with fewer than two tasks): reward retained and
    saving (and amortised saving) with intervals, and the paper's claim and the aim, each yes or no."""
    tasks = sorted(row["task"] for row in verdict_rows)
    if len(tasks) < 2:
        return None
    chosen = {row["task"]: row["londi"]["chosen"] for row in verdict_rows}
    out: dict = {"tasks": tasks, "chosen": chosen}
    missing = [task for task in tasks if chosen[task] is None]
    if missing:
        return {**out, "paper_claim": False, "aim": False,
                "evidence": f"no LONDI setting kept the reward on the validation episodes of {', '.join(missing)}"}
    test = episodes[episodes["split"].fillna("test") == "test"] if "split" in episodes else episodes
    pairs: dict[str, pd.DataFrame] = {}
    train_cost: dict[str, float] = {}
    for task in tasks:
        here = test[test.task == task]
        mine = here[here.router == chosen[task]][["seed", "env_seed", "reward", cost]]
        theirs = here[here.router == reference][["seed", "env_seed", "reward", cost]]
        pairs[task] = mine.merge(theirs, on=["seed", "env_seed"], suffixes=("", "_ref"))
        if pairs[task].empty:
            return {**out, "paper_claim": False, "aim": False,
                    "evidence": f"{chosen[task]} and {reference} share no test episode on {task}"}
        bills = training[(training.task == task) & (training.router == chosen[task])][f"train_{cost}"]
        train_cost[task] = float(bills.mean()) if len(bills) else 0.0
    seeds = sorted(set.intersection(*(set(p.seed) for p in pairs.values())))
    if not seeds:
        return {**out, "paper_claim": False, "aim": False, "evidence": "the tasks share no run seed"}

    columns = ("reward", "reward_ref", cost, f"{cost}_ref")
    # task -> seed -> (episodes x 4) array of the paired columns
    arrays = {t: {s: p[p.seed == s][list(columns)].to_numpy(np.float64) for s in seeds} for t, p in pairs.items()}
    amortised_train = sum(train_cost.values()) / amortised_over

    def statistic(means: dict[str, np.ndarray]) -> tuple[float, float, float]:
        reward, reward_ref, spent, spent_ref = (sum(m[k] for m in means.values()) for k in range(4))
        nan = float("nan")
        return (reward / reward_ref if reward_ref > 0 else nan, 1 - spent / spent_ref if spent_ref > 0 else nan,
                1 - (spent + amortised_train) / spent_ref if spent_ref > 0 else nan)

    point = statistic({t: np.concatenate(list(a.values())).mean(axis=0) for t, a in arrays.items()})
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(DRAWS):
        drawn = rng.choice(seeds, size=len(seeds), replace=True)
        means = {}
        for task in tasks:
            parts = [arrays[task][s] for s in drawn]
            means[task] = np.concatenate([a[rng.integers(0, len(a), len(a))] for a in parts]).mean(axis=0)
        draws.append(statistic(means))
    table = np.array(draws, dtype=np.float64)
    names = ("reward_retained", "saving", "saving_amortised")
    estimates = {}
    for k, name in enumerate(names):
        finite = table[:, k][np.isfinite(table[:, k])]
        low, high = _percentiles(finite) if finite.size else (float("nan"), float("nan"))
        estimates[name] = Estimate(point[k], low, high, sum(len(p) for p in pairs.values()), len(seeds))
    retained = estimates["reward_retained"]
    non_inferior = bool(retained.low >= retained_goal)
    return {**out, **{k: e.__dict__ for k, e in estimates.items()}, "non_inferior": non_inferior,
            "retained_margin": retained.low - retained_goal,
            "paper_claim": bool(non_inferior and estimates["saving"].mean >= paper_saving),
            "paper_margin": estimates["saving"].mean - paper_saving,
            "aim": bool(non_inferior and estimates["saving_amortised"].mean >= aim_saving),
            "aim_margin": estimates["saving_amortised"].mean - aim_saving, "cost": cost}
