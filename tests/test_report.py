"""Tests for bench.reporting.report: a sweep of QUICK-only and DEEPTHINK-only on the smoke pair, logged to a
real MLflow store, read back into the pooled table, savings and results files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from baselines.deepthink_only import DeepthinkOnly
from baselines.quick_only import QuickOnly
from bench.common.tracking import DEFAULT_EXPERIMENT
from bench.envs.tasks import get_task
from bench.models.pair import ModelPair
from bench.reporting.report import (
    ABLATION,
    AMORTISED,
    Cell,
    ablation_markdown,
    ablation_rows,
    budget_markdown,
    budget_rows,
    claim_sentences,
    episodes_frame,
    head_to_head,
    head_to_head_markdown,
    select_settings,
    summarize,
    verdict_markdown,
    verdicts,
    write_results,
)
from bench.running.evaluate import evaluate
from bench.running.router import Router, StepView

ROOT = Path(__file__).resolve().parent.parent
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


def test_results_files_match_mlflow_and_rebuild_from_the_tables_alone(sweep: Sweep, tmp_path: Path) -> None:
    paths, report = write_results(sweep.episodes, None, tmp_path, "babyai", {"profile": "smoke"})
    assert [p.name for p in paths] == ["babyai_episodes.csv.gz", "babyai_training.csv", "babyai.md", "babyai.csv",
                                       "babyai.json", "babyai_cost_reward.png"]
    assert all(p.stat().st_size > 0 for p in paths)
    assert paths[-1].read_bytes().startswith(b"\x89PNG")

    table = pd.read_csv(paths[3])
    assert len(table) == len(report.cells) == len(sweep.cells)
    for row in table.itertuples():
        assert row.episodes == len(histories(sweep.uri, row.task, row.router, "reward"))
        for metric in ("reward", "steps", "deepthink_fraction", "flops"):
            assert getattr(row, metric) == pytest.approx(histories(sweep.uri, row.task, row.router, metric).mean())
        assert row.flops_ci_low <= row.flops <= row.flops_ci_high

    made = json.loads(paths[4].read_text())
    assert made["context"] == {"profile": "smoke"}
    assert len(made["cells"]) == len(sweep.cells)
    decisions = {c["model"]: c["decisions"] for c in made["model_costs"]}
    assert decisions["quick"] == int(sweep.episodes["quick_calls"].sum())
    assert decisions["deepthink"] == int(sweep.episodes["deepthink_calls"].sum())
    markdown = paths[2].read_text()
    for cell in sweep.cells:
        assert f"| {cell.task} | {cell.router} | {cell.episodes} ({cell.seeds}) |" in markdown

    # Every episode is in the committed table, and the report rebuilt from it alone (no MLflow) is the same.
    episodes = pd.read_csv(paths[0])
    assert len(episodes) == len(sweep.episodes)
    assert {"split", "seed", "env_seed", "router", "reward", "success", "steps", "quick_calls", "deepthink_calls",
            "flops_quick", "flops_deepthink", "priced_s", "compute_s"} <= set(episodes.columns)
    before = {p.name: p.read_bytes() for p in paths[2:5]}
    for p in paths[2:5]:
        p.unlink()
    done = subprocess.run([sys.executable, "-m", "bench.report", "--tables", str(tmp_path)], capture_output=True,
                          text=True, cwd=ROOT, timeout=300, env={**os.environ, "MLFLOW_TRACKING_URI": "file:///nowhere"})
    assert done.returncode == 0, done.stderr
    # The context is kept from the JSON: gone here, so only the context lines may differ.
    assert (tmp_path / "babyai.csv").read_bytes() == before["babyai.csv"]
    assert json.loads((tmp_path / "babyai.json").read_text())["cells"] == made["cells"]


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


def _frame(rows: dict[str, tuple[list[float], list[int], list[int]]], task: str = "babyai/Mixed", split: str = "test",
           seeds: int = 1) -> pd.DataFrame:
    """Episodes of several settings on the same env seeds: router -> (rewards, DEEPTHINK acted, steps), the episodes
    spread over `seeds` run seeds. Priced seconds: 0.01 per QUICK call, 0.05 per DEEPTHINK call; the wall clock
    deliberately disagrees (it favours calling DEEPTHINK), so a test can see which one a verdict reads."""
    records = []
    for router, (rewards, acted, steps) in rows.items():
        for i, (reward, a, n) in enumerate(zip(rewards, acted, steps, strict=True)):
            records.append({"split": split, "task": task, "router": router,
                            "router_class": router.split("[")[0].split("@")[0], "seed": i % seeds, "episode": i,
                            "env_seed": (1_000_000 if split == "test" else 1_100_000) + i, "reward": reward,
                            "success": float(reward > 0), "steps": n, "deepthink_calls": a, "deepthink_acted": a,
                            "deepthink_fraction": a / n, "flops": 1.0 + a, "priced_s": 0.01 * (n - a) + 0.05 * a,
                            "compute_s": 1.0 - a / 100, "quick_calls": n - a})
    return pd.DataFrame(records)


def _both_splits(rows: dict, valid: dict | None = None, seeds: int = 5) -> pd.DataFrame:
    return pd.concat([_frame(valid or rows, split="valid", seeds=seeds), _frame(rows, seeds=seeds)],
                     ignore_index=True)


def _verdict(episodes: pd.DataFrame, training: pd.DataFrame | None = None) -> dict:
    cells = summarize(episodes, training)
    (row,) = verdicts(cells, select_settings(summarize(episodes, split="valid")))
    return row


N = 200
KEEPS = ([0.8] * N, [3] * N, [10] * N)
"""A setting with DEEPTHINK-only's reward on 30% of its calls."""


def test_the_verdict_says_yes_only_where_the_lower_bound_keeps_the_reward_and_the_priced_saving_is_there() -> None:
    rows = {"deepthink_only": ([0.8] * N, [10] * N, [10] * N), "quick_only": ([0.2] * N, [0] * N, [10] * N),
            "londi_sac[c=0.01]": KEEPS}
    row = _verdict(_both_splits(rows))
    assert row["londi"]["chosen"] == "londi_sac[c=0.01]" and row["londi"]["non_inferior"]
    assert row["londi"]["saving"]["mean"] == pytest.approx(1 - 0.22 / 0.5)  # priced: (7 x 0.01 + 3 x 0.05) / 0.5
    assert row["londi"]["paper_claim"] and row["londi"]["paper_margin"] == pytest.approx(0.56 - 0.30)
    claims = claim_sentences(row)
    assert claims[0][1] == "yes" and "+26.0 points against 30%" in claims[0][2]
    # The same router losing a fifth of the reward on the test episodes: the interval's lower bound says no.
    loses = {**rows, "londi_sac[c=0.01]": ([0.8, 0.8, 0.8, 0.8, 0.0] * (N // 5), [3] * N, [10] * N)}
    row = _verdict(_both_splits(loses, valid=rows))
    assert row["londi"]["chosen"] == "londi_sac[c=0.01]"  # chosen on validation, where it kept the reward
    assert not row["londi"]["non_inferior"] and not row["londi"]["paper_claim"]
    assert claim_sentences(row)[0][1] == "no"
    assert "| **no** |" in verdict_markdown([row])


def test_settings_are_chosen_on_validation_not_on_the_test_episodes() -> None:
    rows = {"deepthink_only": ([0.8] * N, [10] * N, [10] * N), "quick_only": ([0.2] * N, [0] * N, [10] * N),
            "londi_sac[c=0.001]": ([0.8] * N, [6] * N, [10] * N), "londi_sac[c=0.1]": KEEPS}
    # On validation c=0.1 loses reward, so c=0.001 is chosen although c=0.1 saves more on the test episodes.
    valid = {**rows, "londi_sac[c=0.1]": ([0.4] * N, [3] * N, [10] * N)}
    row = _verdict(_both_splits(rows, valid=valid))
    assert row["londi"]["chosen"] == "londi_sac[c=0.001]"
    family = next(f for f in row["families"] if f["family"] == "londi_sac")
    assert family["chosen"] == "londi_sac[c=0.001]"
    # Nothing passes on validation: no LONDI setting is put forward, and both claims say no.
    nothing = {**valid, "londi_sac[c=0.001]": ([0.4] * N, [6] * N, [10] * N)}
    row = _verdict(_both_splits(rows, valid=nothing))
    assert row["londi"]["chosen"] is None
    assert [verdict for _, verdict, _ in claim_sentences(row)] == ["no", "no"]
    # Without validation episodes there is no verdict at all, and the report says why.
    assert verdicts(summarize(_frame(rows)), select_settings([])) == []
    assert "no verdict" in verdict_markdown([])


def test_the_wall_clock_never_decides_a_verdict() -> None:
    """_frame's wall clock favours DEEPTHINK calls, its priced seconds QUICK's: the clock would pick SwiftSage (and
    call every saving negative); the priced verdict picks the cascade, which calls DEEPTHINK least."""
    rows = {"deepthink_only": ([0.8] * N, [10] * N, [10] * N), "confidence_cascade[threshold=0.5]": KEEPS,
            "swiftsage": ([0.8] * N, [6] * N, [10] * N)}
    cells = {c.router: c for c in summarize(_both_splits(rows))}
    wall = {name: cells[name].values["saving_compute_s"].mean for name in ("confidence_cascade[threshold=0.5]",
                                                                           "swiftsage")}
    assert wall["confidence_cascade[threshold=0.5]"] < wall["swiftsage"] < 0
    row = _verdict(_both_splits(rows))
    assert row["best"]["chosen"] == "confidence_cascade[threshold=0.5]"
    assert row["best"]["saving_cost"] == "priced_s" and row["best"]["saving"]["mean"] == pytest.approx(0.56)


def test_training_is_in_the_bill_amortised_and_with_its_break_even() -> None:
    rows = {"deepthink_only": ([0.8] * N, [10] * N, [10] * N), "londi_sac[c=0.01]": KEEPS}
    episodes = _both_splits(rows)
    training = pd.DataFrame([{"task": "babyai/Mixed", "router": "londi_sac[c=0.01]", "seed": s, "train_episodes": 200,
                              "train_priced_s": 56.0, "train_flops": 1e9, "train_compute_s": 99.0,
                              "train_deepthink_calls": 500} for s in range(5)])
    cell = next(c for c in summarize(episodes, training) if c.router == "londi_sac[c=0.01]")
    per_episode = 0.22  # priced: 7 QUICK calls at 0.01 and 3 DEEPTHINK calls at 0.05, against 0.5 for DEEPTHINK-only
    for n in AMORTISED:
        assert cell.values[f"saving_amortised_{n}"].mean == pytest.approx(1 - (per_episode + 56.0 / n) / 0.5)
    assert cell.training["break_even_episodes"] == pytest.approx(56.0 / (0.5 - per_episode))
    assert cell.values["saving_amortised_100"].mean < 0 < cell.values["saving_amortised_10000"].mean
    row = _verdict(episodes, training)
    assert row["londi"]["saving_amortised"]["mean"] == pytest.approx(1 - (per_episode + 0.056) / 0.5)
    assert row["londi"]["aim"] is False  # 44.8% amortised: short of the 50% aim
    assert claim_sentences(row)[1][1] == "no" and "-5.2 points against 50%" in claim_sentences(row)[1][2]


def test_budget_rows_count_the_calls_each_episode_used() -> None:
    episodes = _frame({"londi_b[budget=2]": ([1.0] * 4, [0, 1, 2, 2], [10] * 4),
                       "londi_b[budget=1]": ([1.0] * 4, [0, 1, 2, 0], [10] * 4)})
    rows = {r["router"]: r for r in budget_rows(episodes)}
    assert rows["londi_b[budget=2]"]["kept"] and rows["londi_b[budget=2]"]["max_calls"] == 2
    assert not rows["londi_b[budget=1]"]["kept"] and rows["londi_b[budget=1]"]["mean_calls"] == 0.75
    assert "| babyai/Mixed | londi_b[budget=1] | 1 | 0.75 | 2 | no |" in budget_markdown(list(rows.values()))


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
    rows = {r["router"]: r for r in ablation_rows(episodes, list(cells.values()))}
    assert set(rows) == {"quick_only", "londi_sac[c=0.01]"}
    londi = rows["londi_sac[c=0.01]"]
    assert londi["deepthink_acted_fraction_real_quick"]["mean"] == pytest.approx(0.2)
    assert londi["deepthink_acted_fraction_random_quick"]["mean"] == pytest.approx(0.8)
    assert londi["fraction_diff"]["mean"] == pytest.approx(0.6) and londi["calls_more"]
    assert not rows["quick_only"]["calls_more"]  # QUICK-only calls DEEPTHINK never, with either QUICK
    assert "| babyai/Mixed | londi_sac[c=0.01] | 0.200" in ablation_markdown(list(rows.values()))
    # Overlapping fractions with no paired difference: the ablation's verdict says no.
    same = _frame({"londi_sac[c=0.01]": ([0.6] * n, [2, 3] * (n // 2), [10] * n),
                   "londi_sac[c=0.01]" + ABLATION: ([0.6] * n, [3, 2] * (n // 2), [10] * n)})
    (row,) = ablation_rows(same, summarize(same))
    assert row["fraction_diff"]["mean"] == pytest.approx(0.0) and not row["calls_more"]


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
