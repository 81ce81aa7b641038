"""The report's hindsight section (issue 17): every router against the minimum, LONDI's verdict against the 1.5x goal
(tested saying no), the area per family, and the head-to-head's flag for pairs not at the same DEEPTHINK fraction.
Synthetic episodes and frontiers: what is checked is the arithmetic and the verdicts, on numbers worked by hand."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.reporting.hindsight import (
    calls_verdict,
    hindsight_section,
    read_frontiers,
    write_frontiers,
)
from bench.reporting.report import BEST_EFFORT, _fraction_option, _matched, _p, family, head_to_head_markdown, is_londi
from bench.running.hindsight import Frontier

TASK = "babyai/Mixed"
SEEDS = (0, 1, 2)
EPISODES = range(10, 30)


def frontier(env_seed: int) -> Frontier:
    """Every episode: reward 0 without DEEPTHINK, 0.8 with one call (its fewest), 0.9 with two."""
    return Frontier(env_seed=env_seed, level="BabyAI-GoToLocal-v0", best=[0.0, 0.8, 0.9], best_steps=[64, 20, 12],
                    min_calls=1, lower=1, upper=1, min_steps=20, switches=(3,), deepthink_reward=0.9,
                    deepthink_success=True, deepthink_steps=12, deepthink_calls=5)


def episodes(calls: dict[str, int]) -> pd.DataFrame:
    """Each router's episodes: `calls` DEEPTHINK calls per episode (one more in a fifth of them), reward 0.8 where it
    called at all; QUICK-only (0 calls, reward 0) and DEEPTHINK-only (12 calls, 0.9) beside them; priced cost 1 +
    calls."""
    rng = np.random.default_rng(0)
    rows = []
    for router, k in {"quick_only": 0, "deepthink_only": 12, **calls}.items():
        for seed in SEEDS:
            for env_seed in EPISODES:
                n = k if k in (0, 12) else k + int(rng.random() < 0.2)  # a fifth call one more
                reward = 0.0 if n == 0 else 0.9 if router == "deepthink_only" else 0.8
                rows.append({"split": "test", "task": TASK, "router": router, "seed": seed, "env_seed": env_seed,
                             "episode": env_seed, "reward": reward, "success": reward > 0, "steps": 20,
                             "deepthink_calls": n, "priced_s": 1.0 + n})
    return pd.DataFrame(rows)


def section(calls: dict[str, int], chosen: str, tmp_path: Path) -> tuple[str, dict]:
    found = {TASK: [frontier(s) for s in EPISODES]}
    text, data, paths = hindsight_section(episodes(calls), found, {TASK: 64}, {TASK: chosen}, family, tmp_path,
                                          "babyai")
    assert [p.name for p in paths] == ["babyai_hindsight_babyai_Mixed.png"] and paths[0].stat().st_size > 0
    return text, data[TASK]


def test_calls_within_the_goal_need_the_whole_interval_and_the_verdict_says_no_otherwise() -> None:
    assert calls_verdict(1.1, 1.0, 1.4) == "met"
    assert calls_verdict(2.0, 1.6, 2.5) == "missed"
    assert calls_verdict(1.4, 1.2, 1.7) == "undecided"
    assert calls_verdict(float("nan"), float("nan"), float("nan")) == "n/a"
    assert calls_verdict(1.3, 1.25, 1.35, goal=1.2) == "missed"


def test_londi_at_the_minimum_meets_the_goal_and_londi_at_three_times_it_misses(tmp_path: Path) -> None:
    text, data = section({"londi_sac[c=0.01]": 1, "londi_sac[c=0.001]": 3}, "londi_sac[c=0.01]", tmp_path)
    regret = {r["router"]: r for r in data["regret"]}
    # One call (two in a fifth of the episodes) for a reward one call reaches: the minimum is 1 per episode.
    assert regret["londi_sac[c=0.01]"]["min_calls"] == pytest.approx(1.0)
    assert 1.0 <= regret["londi_sac[c=0.01]"]["calls_ratio"] <= 1.5
    assert data["londi"]["goal_verdict"] == "met" and data["londi"]["setting"] == "londi_sac[c=0.01]"
    assert regret["londi_sac[c=0.001]"]["within"] == "missed" and regret["londi_sac[c=0.001]"]["calls_ratio"] > 3
    assert regret["deepthink_only"]["calls_ratio"] == pytest.approx(6.0)  # 12 calls for the 0.9 two reach
    assert "within 1.5x **met**" in text

    text, data = section({"londi_sac[c=0.001]": 3}, "londi_sac[c=0.001]", tmp_path)
    assert data["londi"]["goal_verdict"] == "missed" and data["londi"]["aim_verdict"] == "missed"
    assert "within 1.5x **missed**" in text


def test_the_area_ranks_a_family_that_reaches_deepthinks_reward_cheaply_above_mixing(tmp_path: Path) -> None:
    _, data = section({"londi_sac[c=0.01]": 1, "random_switch[p=0.5]": 6}, "londi_sac[c=0.01]", tmp_path)
    areas = {r["family"]: r for r in data["areas"]}
    # LONDI: cost ~1.2 / 12 = 0.1 of the span for 0.8 / 0.9 of the reward span: well above 0.5.
    assert areas["londi_sac"]["area"] > 0.75 and areas["londi_sac"]["area_low"] > 0.5
    assert areas["random_switch"]["area"] < areas["londi_sac"]["area"]
    assert data["areas"][0]["family"] == "londi_sac"  # ranked by the area


def test_the_searched_episodes_round_trip_through_the_results_folder(tmp_path: Path) -> None:
    found = {TASK: [frontier(s) for s in EPISODES]}
    path = write_frontiers(found, tmp_path, "babyai")
    assert path.name == "babyai_hindsight.jsonl" and len(path.read_text().splitlines()) == len(EPISODES)
    assert json.loads(path.read_text().splitlines()[0])["task"] == TASK
    assert read_frontiers(tmp_path, "babyai") == found
    assert read_frontiers(tmp_path, "other") == {}


def test_the_no_cues_control_and_the_sampled_models_are_families_of_their_own() -> None:
    assert family("londi_sac[c=0.01,cues=False]") == "londi_sac[cues=false]" != family("londi_sac[c=0.01]")
    assert family("londi_sac[c=0]") == family("londi_sac[c=0.0,train_episodes=4]") == "londi_sac[c=0]"
    assert family("londi_sac[c=0.001]") == "londi_sac" and family("londi_b[budget=2,c=0]") == "londi_b"
    assert not is_londi("londi_sac[c=0.01,cues=False]") and not is_londi("londi_sac[c=0]")
    assert is_londi("londi_sac[c=0.001]") and is_londi("londi_b[budget=2]")
    assert family("quick_only@sampled[t=0.3]") == family("quick_only@sampled[t=1]") == "quick_only@sampled"
    assert family("londi_sac[c=0.01]@quick=random") == "londi_sac@quick=random"


def test_the_head_to_head_says_when_a_pair_is_not_at_the_same_fraction() -> None:
    diff = {"mean": 0.1, "low": 0.05, "high": 0.15, "n": 60}
    rows = [{"task": TASK, "londi": "londi_sac[c=0.01]", "other": other, "londi_fraction": 0.25,
             "other_fraction": fraction, "reward_londi": 0.5, "reward_other": 0.4, "reward_diff": diff,
             "success_diff": diff, "verdict": "LONDI better", "same_fraction": abs(0.25 - fraction) <= 0.02}
            for other, fraction in (("random_switch[p=0.25]", 0.25), ("confidence_cascade[fraction=0.25]", 0.93))]
    text = head_to_head_markdown(rows)
    assert "| LONDI better |" in text and "LONDI better (fractions differ by 0.680)" in text


def test_without_a_londi_setting_chosen_the_best_on_validation_is_judged_and_labelled(tmp_path: Path) -> None:
    label = "londi_sac[c=0.001]" + BEST_EFFORT
    text, data = section({"londi_sac[c=0.001]": 3}, label, tmp_path)
    assert data["londi"]["setting"] == "londi_sac[c=0.001]" and data["londi"]["goal_verdict"] == "missed"
    assert "(`londi_sac[c=0.001]`, the best reward retained on validation, where no LONDI setting kept" in text
    assert data["londi"]["how"] == BEST_EFFORT.strip()[1:-1]


def test_an_unpriced_episode_makes_the_area_fall_back_to_flops_not_count_as_free(tmp_path: Path) -> None:
    frame = episodes({"londi_sac[c=0.01]": 1})
    frame["flops"] = frame["priced_s"] * 1e9
    frame.loc[(frame.router == "londi_sac[c=0.01]") & (frame.env_seed == 10), "priced_s"] = np.nan
    frame = pd.concat([frame, frame[frame.router == "quick_only"].head(3)])  # a duplicated row is read once
    found = {TASK: [frontier(s) for s in EPISODES]}
    _, data, _ = hindsight_section(frame, found, {TASK: 64}, {TASK: None}, family, tmp_path, "babyai")
    (area,) = data[TASK]["areas"]
    assert area["cost"] == "flops" and area["episodes"] == len(SEEDS) * len(EPISODES)


def test_each_londi_setting_meets_the_controls_made_at_its_validation_fraction() -> None:
    randoms = ["random_switch[p=0.25]", "random_switch[p=0.137]", "random_switch[p=0.5]"]
    cascades = ["confidence_cascade[fraction=0.137,train_episodes=20]", "confidence_cascade[threshold=0.5]"]
    assert _matched(0.13749, randoms, _p) == "random_switch[p=0.137]"  # printed to 3 decimals by bench.reproduce
    assert _matched(0.13749, cascades, _fraction_option) == cascades[0]
    assert _matched(0.139, randoms, _p) is None and _matched(0.2, cascades, _fraction_option) is None
