"""Tests for bench.reporting.pair: the model pair's report, built from a real sweep of the smoke pair in MLflow."""

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
from bench.envs.babyai_text import ACTIONS
from bench.envs.contexts import get_context
from bench.envs.tasks import get_task
from bench.models.pair import ModelPair
from bench.reporting.pair import (
    GOALS,
    TaskPair,
    agreement_per_episode,
    deepthink_traces,
    goal_rows,
    replay,
    replayed_states,
    write_pair_report,
)
from bench.reporting.report import episodes_frame
from bench.running.evaluate import evaluate

SWEEP = "pair-test"
PLAN = {"babyai/GoToLocal": (0,), "babyai/Mixed": (0, 1)}
EPISODES = 3


@dataclass
class Sweep:
    uri: str
    episodes: pd.DataFrame
    traces: pd.DataFrame


@pytest.fixture(scope="module")
def sweep(smoke_models: ModelPair, tmp_path_factory: pytest.TempPathFactory) -> Sweep:
    uri = f"sqlite:///{tmp_path_factory.mktemp('pair-store') / 'mlflow.db'}"
    for task_name, seeds in PLAN.items():
        for router in (QuickOnly, DeepthinkOnly):
            for seed in seeds:
                evaluate(router(), get_task(task_name), smoke_models, seed, EPISODES, batch_size=2, profile="smoke",
                         sweep=SWEEP, tracking_uri=uri, progress=False)
    return Sweep(uri, episodes_frame(SWEEP, uri), deepthink_traces(SWEEP, uri))


def logged_episodes(uri: str) -> list[dict]:
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(DEFAULT_EXPERIMENT).experiment_id
    rows = []
    for run in client.search_runs([experiment], "params.router = 'deepthink_only'"):
        path = Path(client.download_artifacts(run.info.run_id, "episodes.jsonl"))
        rows += [json.loads(line) | {"task": run.data.params["task"]} for line in path.read_text().splitlines()]
    return rows


def test_traces_are_every_deepthink_episode_of_the_sweep(sweep: Sweep) -> None:
    expected = sum(len(seeds) for seeds in PLAN.values()) * EPISODES
    assert len(sweep.traces) == expected
    deep = sweep.episodes[sweep.episodes.router_class == "deepthink_only"]
    assert sorted(sweep.traces.env_seed) == sorted(deep.env_seed.astype(int))
    assert (sweep.traces.actions.map(len).sort_values().to_numpy()
            == deep.sort_values("steps").steps.astype(int).to_numpy()).all()


def test_replay_rebuilds_exactly_the_states_deepthink_was_in(sweep: Sweep) -> None:
    for episode in logged_episodes(sweep.uri):
        actions = [step["action"] for step in episode["trace"]]
        states = replay(episode["task"], episode["env_seed"], actions)
        assert len(states) == len(actions)
        assert [h.current() for h in states] == [step["observation"] for step in episode["trace"]]
        assert [h.actions for h in states] == [actions[:t] for t in range(len(actions))]


def test_agreement_counts_the_states_where_quick_picks_deepthinks_action(sweep: Sweep,
                                                                          smoke_models: ModelPair) -> None:
    states = replayed_states(sweep.traces)
    agree, visited = agreement_per_episode(smoke_models.quick, states, len(sweep.traces), batch_size=7)
    context = get_context(smoke_models.quick.context)
    manual_agree = np.zeros(len(sweep.traces))
    for episode, history, action in states:
        scores, _ = smoke_models.quick.score([context(history)], ACTIONS)
        manual_agree[episode] += int(scores.argmax() == action)
    assert (agree == manual_agree).all()
    assert (visited == sweep.traces.actions.map(len).to_numpy()).all()


def test_report_files_agree_with_each_other(sweep: Sweep, smoke_models: ModelPair, tmp_path: Path) -> None:
    paths, markdown, metrics = write_pair_report(
        sweep.episodes, SWEEP, {"quick": smoke_models.quick, "deepthink": smoke_models.deepthink}, tmp_path,
        {"command": "test"}, tracking_uri=sweep.uri)
    assert [p.name for p in paths] == ["pair.md", "pair.json", "pair_success.png"]
    assert all(p.stat().st_size > 0 for p in paths)
    report = json.loads((tmp_path / "pair.json").read_text())
    assert {t["task"] for t in report["tasks"]} == set(PLAN)
    for task in report["tasks"]:
        on_task = sweep.episodes[(sweep.episodes.task == task["task"])]
        deep = on_task[on_task.router_class == "deepthink_only"]
        assert task["deepthink_success"]["mean"] == pytest.approx(deep.success.mean())
        assert task["states"] == int(deep.steps.sum())
        assert metrics[f"pair.{task['task']}.agreement"] == pytest.approx(task["agreement"]["mean"])
        assert f"| {task['task']} | {task['episodes']} |" in markdown
    models = {m["model"]: m for m in report["models"]}
    deep = sweep.episodes
    assert models["DEEPTHINK"]["flops_per_decision"] == pytest.approx(
        deep.flops_deepthink.sum() / deep.deepthink_calls.sum())
    assert models["QUICK"]["ms_per_decision_batch1"] > 0
    assert {g["goal"] for g in report["goals"]} >= {name for name, *_ in GOALS}
    assert (tmp_path / "pair.md").read_text() == markdown


def _pair(quick: float, deep: float, agreement: float) -> TaskPair:
    def e(v: float) -> Estimate:
        return Estimate(v, v, v, 10)

    return TaskPair("babyai/Mixed", 10, e(quick), e(deep), e(quick), e(deep), e(deep - quick), e(agreement), 100)


def test_goals_are_marked_with_their_margin() -> None:
    models = [{"flops_per_decision": 1.0}, {"flops_per_decision": 12.0}]
    rows = {g["goal"]: g for g in goal_rows([_pair(0.40, 0.65, 0.55)], models)}
    gap_must = rows["DEEPTHINK succeeds >= 20 points more often than QUICK"]
    assert gap_must["met"] and gap_must["kind"] == "must" and gap_must["margin"] == pytest.approx(0.05)
    assert rows["QUICK picks DEEPTHINK's action on >= 50% of DEEPTHINK's states"]["met"]
    assert not rows["DEEPTHINK success >= 80%"]["met"]
    assert rows["DEEPTHINK success >= 80%"]["margin"] == pytest.approx(-0.15)
    assert not rows["agreement >= 60%"]["met"]
    flops = next(g for g in rows.values() if "FLOPs" in g["goal"])
    assert flops["measured"] == pytest.approx(12.0) and flops["met"]
    missed = {g["goal"]: g for g in goal_rows([_pair(0.40, 0.50, 0.45)], models)}
    assert not missed["DEEPTHINK succeeds >= 20 points more often than QUICK"]["met"]
    assert missed["DEEPTHINK succeeds >= 20 points more often than QUICK"]["margin"] == pytest.approx(-0.10)


def test_a_sweep_without_deepthink_only_runs_is_a_clear_error(sweep: Sweep) -> None:
    with pytest.raises(ValueError, match="sweep 'other' has no finished deepthink_only runs"):
        deepthink_traces("other", sweep.uri)
