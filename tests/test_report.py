"""Tests for bench.reporting.report: a sweep of QUICK-only and DEEPTHINK-only on the smoke pair, logged to a
real MLflow store, read back into the pooled table, savings and results files."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from baselines.deepthink_only import DeepthinkOnly
from baselines.quick_only import QuickOnly
from bench.common.stats import Estimate
from bench.common.tracking import DEFAULT_EXPERIMENT
from bench.envs.tasks import get_task
from bench.models.pair import ModelPair
from bench.reporting.report import (
    ABLATION,
    Cell,
    ablation_markdown,
    ablation_rows,
    episodes_frame,
    head_to_head,
    head_to_head_markdown,
    model_costs,
    plot_cost_reward,
    summarize,
    verdict_markdown,
    verdicts,
    write_results,
)
from bench.running.evaluate import evaluate
from bench.running.router import Router, StepView

SWEEP = "report-test"
EPISODES = 2
# (task, run seeds): two seeds on GoToLocal so that a cell pools runs, one on Mixed.
PLAN = {"babyai/GoToLocal": (0, 1), "babyai/Mixed": (0,)}


class CrashesInSecondEpisode(Router):
    name = "crashes"

    def __init__(self) -> None:
        self.started = 0

    def start_episode(self, slot: int, seed: int) -> None:
        self.started += 1

    def route(self, view: StepView) -> np.ndarray:
        if self.started == 2:
            raise RuntimeError("crash")
        return np.zeros(len(view.slots), dtype=bool)


@dataclass
class Sweep:
    uri: str
    episodes: pd.DataFrame
    cells: list[Cell]


@pytest.fixture(scope="module")
def sweep(smoke_models: ModelPair, tmp_path_factory: pytest.TempPathFactory) -> Sweep:
    uri = f"sqlite:///{tmp_path_factory.mktemp('report-store') / 'mlflow.db'}"
    for task_name, seeds in PLAN.items():
        task = get_task(task_name)
        for router in (QuickOnly, DeepthinkOnly):
            for seed in seeds:
                evaluate(router(), task, smoke_models, seed, EPISODES, batch_size=2, profile="smoke", sweep=SWEEP,
                         tracking_uri=uri, progress=False)
    with pytest.raises(RuntimeError):
        evaluate(CrashesInSecondEpisode(), get_task("babyai/GoToLocal"), smoke_models, 0, EPISODES, batch_size=1,
                 profile="smoke", sweep=SWEEP, tracking_uri=uri, progress=False)
    episodes = episodes_frame(SWEEP, uri)
    return Sweep(uri, episodes, summarize(episodes))


def by_key(cells: list[Cell]) -> dict[tuple[str, str], Cell]:
    return {(c.task, c.router): c for c in cells}


def histories(uri: str, task: str, router: str, metric: str) -> np.ndarray:
    """Every episode's value of `metric` for (task, router), read straight from MLflow."""
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(DEFAULT_EXPERIMENT).experiment_id
    runs = client.search_runs([experiment], f"params.task = '{task}' and params.router = '{router}'")
    return np.array([p.value for r in runs for p in client.get_metric_history(r.info.run_id, f"episode/{metric}")])


def test_one_cell_per_task_and_router_with_pooled_episodes(sweep: Sweep) -> None:
    cells = by_key(sweep.cells)
    assert set(cells) == {(t, r) for t in PLAN for r in ("quick_only", "deepthink_only")}
    for (task, _), cell in cells.items():
        assert cell.seeds == len(PLAN[task])
        assert cell.episodes == EPISODES * len(PLAN[task])
        reward = cell.values["reward"]
        assert reward.low <= reward.mean <= reward.high


def test_failed_runs_are_left_out(sweep: Sweep) -> None:
    assert "crashes" not in set(sweep.episodes["router"])
    assert len(sweep.episodes) == sum(EPISODES * len(seeds) * 2 for seeds in PLAN.values())


def test_quick_only_saving_is_against_deepthink_only_on_the_same_task(sweep: Sweep) -> None:
    cells = by_key(sweep.cells)
    for task in PLAN:
        saving = cells[(task, "quick_only")].values["saving_flops"]
        quick = histories(sweep.uri, task, "quick_only", "flops")
        deepthink = histories(sweep.uri, task, "deepthink_only", "flops")
        assert 0 < saving.mean < 1
        assert saving.mean == pytest.approx(1 - quick.mean() / deepthink.mean())
        assert saving.low <= saving.mean <= saving.high
        assert "saving_flops" not in cells[(task, "deepthink_only")].values


def test_results_files_match_mlflow(sweep: Sweep, tmp_path: Path) -> None:
    costs = model_costs(sweep.episodes)
    paths = write_results(sweep.cells, costs, tmp_path, "babyai", {"profile": "smoke"})
    paths.append(plot_cost_reward(sweep.cells, tmp_path / "babyai_cost_reward.png"))
    assert [p.name for p in paths] == ["babyai.md", "babyai.csv", "babyai.json", "babyai_cost_reward.png"]
    assert all(p.stat().st_size > 0 for p in paths)
    assert paths[3].read_bytes().startswith(b"\x89PNG")

    table = pd.read_csv(paths[1])
    assert len(table) == len(sweep.cells)
    for row in table.itertuples():
        assert row.episodes == len(histories(sweep.uri, row.task, row.router, "reward"))
        for metric in ("reward", "steps", "deepthink_fraction", "flops"):
            assert getattr(row, metric) == pytest.approx(histories(sweep.uri, row.task, row.router, metric).mean())
        assert row.flops_ci_low <= row.flops <= row.flops_ci_high

    report = json.loads(paths[2].read_text())
    assert report["context"] == {"profile": "smoke"}
    assert len(report["cells"]) == len(sweep.cells)
    decisions = {c["model"]: c["decisions"] for c in report["model_costs"]}
    assert decisions["quick"] == int(sweep.episodes["quick_calls"].sum())
    assert decisions["deepthink"] == int(sweep.episodes["deepthink_calls"].sum())

    markdown = paths[0].read_text()
    for cell in sweep.cells:
        assert f"| {cell.task} | {cell.router} | {cell.episodes} |" in markdown


def test_unknown_sweep_is_a_clear_error(sweep: Sweep) -> None:
    with pytest.raises(ValueError, match="no finished evaluation runs with tag londi.sweep='nope'"):
        episodes_frame("nope", sweep.uri)


def test_savings_pair_the_same_episodes(smoke_models: ModelPair, tmp_path: Path) -> None:
    """A reference that ran fewer episodes is compared only on the episodes both ran (same env seeds)."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    task = get_task("babyai/GoToLocal")
    evaluate(QuickOnly(), task, smoke_models, 0, 4, batch_size=4, profile="smoke", sweep="pairs",
             tracking_uri=uri, progress=False)
    evaluate(DeepthinkOnly(), task, smoke_models, 0, 2, batch_size=2, profile="smoke", sweep="pairs",
             tracking_uri=uri, progress=False)
    episodes = episodes_frame("pairs", uri)
    cells = by_key(summarize(episodes))
    saving = cells[("babyai/GoToLocal", "quick_only")].values["saving_flops"]
    assert saving.n == 2
    quick = episodes[episodes.router == "quick_only"].set_index("env_seed")["flops"]
    deepthink = episodes[episodes.router == "deepthink_only"].set_index("env_seed")["flops"]
    shared = sorted(set(quick.index) & set(deepthink.index))
    assert shared == list(task.eval_episode_seeds(0, 2))
    assert saving.mean == pytest.approx(1 - quick.loc[shared].mean() / deepthink.loc[shared].mean())


def _cell(router: str, saving: float, retained: float, task: str = "babyai/Mixed") -> Cell:
    def e(v: float) -> Estimate:
        return Estimate(v, v - 0.05, v + 0.05, 120)

    return Cell(task, router, 120, 3, {"saving_compute_s": e(saving), "saving_flops": e(saving + 0.1),
                                       "reward_retained": e(retained)})


def test_verdict_is_the_largest_saving_at_95_percent_of_the_reward() -> None:
    cells = [_cell("confidence_cascade[threshold=0.3]", 0.40, 0.97), _cell("random_switch[p=0.25]", 0.80, 0.90),
             _cell("oracle", 0.50, 1.00), _cell("londi_sac[c=0.1]", 0.25, 0.96), _cell("londi_sac[c=0.5]", 0.6, 0.8),
             Cell("babyai/Mixed", "deepthink_only", 120, 3, {})]
    (row,) = verdicts(cells)
    assert row["best"]["router"] == "confidence_cascade[threshold=0.3]"  # random: too little reward; oracle: excluded
    assert row["best_londi"]["router"] == "londi_sac[c=0.1]" and row["londi_settings_run"] == 2
    text = verdict_markdown([row])
    assert "| babyai/Mixed | confidence_cascade[threshold=0.3]: 40.0% [35.0, 45.0] of compute seconds" in text
    assert text.rstrip().endswith("| no: saving under 30% |")
    (none_run,) = verdicts(cells[:3])
    assert none_run["best_londi"] is None and "no LONDI setting run" in verdict_markdown([none_run])


def test_report_command_rebuilds_the_results_from_mlflow_alone(sweep: Sweep, tmp_path: Path) -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "bench.reporting.report", "--sweep", SWEEP,
                           "--tracking-uri", sweep.uri,
                           "--results-dir", str(tmp_path)], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parent.parent, timeout=300)
    assert done.returncode == 0, done.stderr
    table = pd.read_csv(tmp_path / "smoke" / "babyai.csv")
    assert set(zip(table.task, table.router, strict=True)) == {(c.task, c.router) for c in sweep.cells}
    assert (tmp_path / "smoke" / "babyai_cost_reward.png").stat().st_size > 0
    assert "## Verdict" in (tmp_path / "smoke" / "babyai.md").read_text()
    # The flat layout's command still runs (bench/__init__.py: MOVED), help included.
    helped = subprocess.run([sys.executable, "-m", "bench.report", "--help"], capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parent.parent, timeout=300)
    assert helped.returncode == 0 and "--sweep" in helped.stdout, helped.stderr
    unknown = subprocess.run([sys.executable, "-m", "bench.report", "--sweep", "nope", "--tracking-uri", sweep.uri,
                              "--results-dir", str(tmp_path)], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parent.parent, timeout=300)
    assert unknown.returncode == 2 and "no finished evaluation runs with tag londi.sweep='nope'" in unknown.stderr


def _frame(rows: dict[str, tuple[list[float], list[int], list[int]]], task: str = "babyai/Mixed") -> pd.DataFrame:
    """Episodes of several settings on the same env seeds: router -> (rewards, DEEPTHINK acted, steps)."""
    records = []
    for router, (rewards, acted, steps) in rows.items():
        for i, (reward, a, n) in enumerate(zip(rewards, acted, steps, strict=True)):
            records.append({"task": task, "router": router, "router_class": router.split("[")[0].split("@")[0],
                            "seed": 0, "episode": i, "env_seed": 1_000_000 + i, "reward": reward,
                            "success": float(reward > 0), "steps": n, "deepthink_calls": a, "deepthink_acted": a,
                            "deepthink_fraction": a / n, "flops": 1.0 + a, "compute_s": 0.1 + a / 100,
                            "quick_calls": n - a})
    return pd.DataFrame(records)


def test_head_to_head_meets_random_at_londis_fraction_on_the_same_episodes() -> None:
    n = 40
    episodes = _frame({
        "deepthink_only": ([0.8] * n, [10] * n, [10] * n),
        "quick_only": ([0.2] * n, [0] * n, [10] * n),
        "londi_sac[c=0.01]": ([0.7] * n, [3] * n, [10] * n),                      # fraction 0.30
        "random_switch[p=0.300]": ([0.7] * (n // 2) + [0.3] * (n // 2), [3] * n, [10] * n),
        "random_switch[p=0.600]": ([0.8] * n, [6] * n, [10] * n),                 # too far from 0.30
        "swiftsage": ([0.7] * n, [2] * n, [10] * n),                              # same rewards: no difference
    })
    rows = head_to_head(episodes, summarize(episodes))
    pairs = {(r["londi"], r["other"]) for r in rows}
    assert pairs == {("londi_sac[c=0.01]", "random_switch[p=0.300]"), ("londi_sac[c=0.01]", "swiftsage")}
    random_row = next(r for r in rows if r["other"].startswith("random"))
    assert random_row["episodes"] == n and random_row["londi_fraction"] == pytest.approx(0.3)
    assert random_row["reward_diff"]["mean"] == pytest.approx(0.2)
    assert random_row["reward_diff"]["low"] > 0
    text = head_to_head_markdown(rows)
    assert "| babyai/Mixed | londi_sac[c=0.01] | 0.300 | random_switch[p=0.300] | 0.300 |" in text
    assert "LONDI better" in text and "no clear difference" in text


def test_ablation_rows_and_references_keep_the_random_quick_apart() -> None:
    n = 20
    episodes = _frame({
        "deepthink_only": ([0.8] * n, [10] * n, [10] * n),
        "quick_only": ([0.4] * n, [0] * n, [10] * n),
        "quick_only" + ABLATION: ([0.0] * n, [0] * n, [10] * n),
        "londi_sac[c=0.01]": ([0.6] * n, [2] * n, [10] * n),
        "londi_sac[c=0.01]" + ABLATION: ([0.7] * n, [8] * n, [10] * n),
    })
    cells = {c.router: c for c in summarize(episodes)}
    # gap recovered is measured from the real QUICK-only (0.4), never from the random one (0.0).
    assert cells["londi_sac[c=0.01]"].values["gap_recovered"].mean == pytest.approx(0.5)
    rows = {r["router"]: r for r in ablation_rows(list(cells.values()))}
    assert set(rows) == {"quick_only", "londi_sac[c=0.01]"}
    londi = rows["londi_sac[c=0.01]"]
    assert londi["deepthink_acted_fraction_real_quick"]["mean"] == pytest.approx(0.2)
    assert londi["deepthink_acted_fraction_random_quick"]["mean"] == pytest.approx(0.8)
    assert "| babyai/Mixed | londi_sac[c=0.01] | 0.200" in ablation_markdown(list(rows.values()))
    (verdict,) = verdicts(list(cells.values()))
    assert verdict["londi_settings_run"] == 1  # the ablation's run is not a LONDI setting of the verdict


def test_a_saving_counts_only_where_both_the_clock_and_the_flops_show_it() -> None:
    """Noisy seconds alone (a router calling DEEPTHINK on every step, 0 FLOPs saved) neither win the verdict nor
    reach the paper's claim."""
    def cell(router: str, seconds: float, flops: float) -> Cell:
        e = lambda v: Estimate(v, v - 0.05, v + 0.05, 8)  # noqa: E731
        return Cell("scienceworld/x", router, 8, 1, {"saving_compute_s": e(seconds), "saving_flops": e(flops),
                                                     "reward_retained": e(1.0)})

    cells = [cell("random_switch[p=1.0]", 0.54, 0.0), cell("londi_sac[c=0.01]", 0.44, 0.0),
             cell("londi_b[budget=6]", 0.39, 0.50)]
    (row,) = verdicts(cells)
    assert row["best"]["router"] == "londi_b[budget=6]" and row["best"]["saving"] == pytest.approx(0.39)
    assert verdict_markdown([row]).rstrip().endswith("| yes |")
    (alone,) = verdicts(cells[:2])
    assert alone["best_londi"]["saving"] == 0.0
    assert verdict_markdown([alone]).rstrip().endswith("| no: saving under 30% |")


def test_the_report_takes_the_sweeps_profile_and_keeps_results_it_did_not_make(sweep: Sweep, tmp_path: Path) -> None:
    """Rebuilding a smoke sweep goes to results/smoke, and never silently over results of another profile or commit."""
    from bench.reporting.report import rebuild_results

    with pytest.raises(ValueError, match="ran the smoke profile, not cpu: drop --profile"):
        rebuild_results(SWEEP, profile="cpu", results_dir=tmp_path, tracking_uri=sweep.uri)
    committed = tmp_path / "smoke" / "babyai.json"
    committed.parent.mkdir(parents=True)
    committed.write_text(json.dumps({"context": {"profile": "smoke", "git commit": "0000000",
                                                 "sweep (MLflow tag londi.sweep)": "an-older-sweep"}}))
    with pytest.raises(ValueError, match="made at commit 0000000 .*--results-dir DIR, or replace them with --over"):
        rebuild_results(SWEEP, results_dir=tmp_path, tracking_uri=sweep.uri)
    assert json.loads(committed.read_text())["context"]["git commit"] == "0000000"  # untouched
    paths = rebuild_results(SWEEP, results_dir=tmp_path, tracking_uri=sweep.uri, overwrite=True)
    assert committed in paths
    assert json.loads(committed.read_text())["context"]["sweep (MLflow tag londi.sweep)"] == SWEEP
    rebuild_results(SWEEP, results_dir=tmp_path, tracking_uri=sweep.uri)  # its own results: rebuilt without a flag
    made = json.loads(committed.read_text())
    made["context"]["git commit"] = "1111111"  # the same sweep's results, written at another commit
    committed.write_text(json.dumps(made))
    rebuild_results(SWEEP, results_dir=tmp_path, tracking_uri=sweep.uri)
    side = rebuild_results(SWEEP, results_dir=tmp_path, tracking_uri=sweep.uri, report_as="side_study")
    assert tmp_path / "smoke" / "side_study.json" in side  # a side study is rebuilt under its own name


def test_runs_of_two_seeds_on_the_same_environment_seeds_are_paired_episode_by_episode() -> None:
    """ScienceWorld's few test variations are played by every run seed: pairing on the env seed alone kept one
    seed's episodes and could report none of DEEPTHINK-only's reward kept where the means are equal."""
    records = []
    for router, by_seed in {"deepthink_only": {0: 1.0, 1: 0.0}, "quick_only": {0: 0.0, 1: 0.0},
                            "londi_sac[c=0.01]": {0: 0.0, 1: 1.0}}.items():
        for seed, reward in by_seed.items():
            for variation in range(5):  # both seeds play the same five variations
                records.append({"task": "scienceworld/power-component", "router": router,
                                "router_class": router.split("[")[0], "seed": seed, "episode": variation,
                                "env_seed": 15 + variation, "reward": reward, "success": reward,
                                "steps": 10, "deepthink_calls": 5, "deepthink_acted": 5,
                                "deepthink_fraction": 0.5, "flops": 2.0, "compute_s": 0.2, "quick_calls": 5})
    cells = {c.router: c for c in summarize(pd.DataFrame(records))}
    londi = cells["londi_sac[c=0.01]"]
    assert londi.episodes == 10 and londi.seeds == 2
    assert londi.values["reward_retained"].mean == pytest.approx(1.0)  # 0.5 of 0.5: every episode kept its pair
    assert londi.values["saving_flops"].mean == pytest.approx(0.0)
