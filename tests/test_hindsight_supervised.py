"""Tests for algos/hindsight_supervised.py: LONDI's encoder trained on the hindsight search's labels, through the
real runner with the committed cpu pair on short BabyAI episodes."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from algos.hindsight_supervised import HindsightSupervised
from bench.envs.tasks import get_task
from bench.models.pair import ModelPair
from bench.running.hindsight import EXACT, HindsightSearch, frontiers, store_path
from bench.running.runner import run_episodes

TASK = "babyai/GoToLocal[max_steps=8]"
EPISODES = 24


@pytest.fixture(scope="module")
def labelled(cpu_models: ModelPair, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    task = get_task(TASK)
    search = HindsightSearch(task, cpu_models)
    folder = tmp_path_factory.mktemp("labels")
    found = frontiers(search, task.router_train_seeds(0, EPISODES), store=folder, progress=False)
    return store_path(folder, task, cpu_models, search), {f.env_seed: f for f in found}


def trained(labels: Path, models: ModelPair, **options: object) -> tuple[HindsightSupervised, list]:
    task = get_task(TASK)
    router = HindsightSupervised(labels=str(labels), train_episodes=EPISODES, max_steps=task.max_steps, **options)
    router.training = True
    results, _ = run_episodes(router, task, models, task.router_train_seeds(0, EPISODES), batch_size=8, seed=0,
                              progress=False)
    router.training = False
    return router, results


def test_it_plays_the_searchs_sequences_in_training_and_learns_where_they_call(labelled, cpu_models) -> None:
    labels, found = labelled
    router, results = trained(labels.parent.parent, cpu_models)  # the store's folder: its one file for the task
    for result in results:
        frontier = found[result.env_seed]
        called = {step["step"] for step in result.trace if step["model"] == "deepthink"}
        if frontier.status == EXACT:
            assert called == set(frontier.switches), result.env_seed
            if frontier.min_calls is not None:  # the fewest-calls success, replayed by the runner
                assert result.success and result.steps == frontier.min_steps
    assert router.stats["labelled_states"] == sum(r.steps for r in results)
    assert router.stats["labelled_calls"] == sum(r.deepthink_acted for r in results) > 0
    assert router.stats["search_decisions"] == sum(sum(f.decisions.values()) for f in found.values()) > 0
    # Fitted when training ended (so the updates are in the training's bill), and it learned the labels' pattern.
    assert router.fitted and router.stats["updates"] > 0 and router.stats["update_flops"] > 0
    p = router.probability(np.stack(router.states))
    targets = np.asarray(router.targets, dtype=bool)
    assert p[targets].mean() > p[~targets].mean() + 0.2
    # A sweep keeps a trained router by pickling it (bench.running.resume): nothing it holds may refuse.
    again = pickle.loads(pickle.dumps(router))
    assert again.labels_file == router.labels_file and again.fitted


def test_at_evaluation_the_threshold_decides(labelled, cpu_models) -> None:
    labels, _ = labelled
    task = get_task(TASK)
    seeds = task.eval_episode_seeds(0, 6)
    fractions = []
    for threshold in (0.0, 0.5, 1.0):
        router, _ = trained(labels, cpu_models, threshold=threshold)
        results, _ = run_episodes(router, task, cpu_models, seeds, batch_size=6, seed=0, progress=False)
        fractions.append(sum(r.deepthink_acted for r in results) / sum(r.steps for r in results))
        assert all(r.usage["router"].calls == r.steps for r in results)  # its forward pass is metered every step
    assert fractions[0] == 1.0 and fractions[2] == 0.0 and 0.0 <= fractions[1] <= 1.0


def test_without_the_searchs_results_it_says_how_to_make_them(labelled, cpu_models, tmp_path) -> None:
    task = get_task(TASK)
    with pytest.raises(FileNotFoundError, match="python -m bench.hindsight --split train"):
        trained(tmp_path / "none.jsonl", cpu_models)
    labels, _ = labelled
    router = HindsightSupervised(labels=str(labels), train_episodes=EPISODES)
    router.training = True
    with pytest.raises(ValueError, match="has no search of training episode"):
        unsearched = task.router_train_seeds(0, EPISODES + 1)[-1]
        run_episodes(router, task, cpu_models, [unsearched], batch_size=1, progress=False)
    with pytest.raises(RuntimeError, match="evaluated before training"):
        run_episodes(HindsightSupervised(labels=str(labels)), task, cpu_models, task.eval_episode_seeds(0, 1),
                     batch_size=1, progress=False)


def test_a_store_folder_with_several_files_for_the_task_is_refused(labelled, cpu_models, tmp_path) -> None:
    labels, _ = labelled
    folder = tmp_path / "store" / labels.parent.name
    folder.mkdir(parents=True)
    for name in ("a.jsonl", "b.jsonl"):
        shutil.copy(labels, folder / name)
    with pytest.raises(ValueError, match="holds 2 result files for babyai/GoToLocal.*give labels= the one"):
        trained(tmp_path / "store", cpu_models)


def test_the_training_bill_includes_the_search_on_its_training_episodes(tracking_uri: str) -> None:
    from mlflow import MlflowClient

    from bench.common.tracking import DEFAULT_EXPERIMENT
    from bench.reporting.report import training_frame

    client = MlflowClient(tracking_uri)
    experiment = client.create_experiment(DEFAULT_EXPERIMENT)
    bills = {"hindsight_supervised": {"router_search_priced_s": 2.0, "router_search_flops": 5e9},
             "londi_sac[c=0.01]": {}}
    for name, search in bills.items():
        run = client.create_run(experiment, tags={"londi.kind": "router_train", "londi.sweep": "s1"})
        for key, value in {"total_priced_s": 1.0, "total_flops": 1e9, "total_compute_s": 0.5,
                           "total_deepthink_calls": 3.0, "router_update_priced_s": 0.25, "router_update_flops": 1e8,
                           "router_update_s": 0.1, **search}.items():
            client.log_metric(run.info.run_id, key, value)
        for key, value in {"task": "babyai/Mixed", "exp_name": name, "seed": "0", "train_episodes": "40"}.items():
            client.log_param(run.info.run_id, key, value)
        client.set_terminated(run.info.run_id)
    frame = training_frame("s1", tracking_uri).set_index("router")
    assert frame.loc["hindsight_supervised", "train_priced_s"] == pytest.approx(1.0 + 0.25 + 2.0)
    assert frame.loc["hindsight_supervised", "train_flops"] == pytest.approx(1e9 + 1e8 + 5e9)
    assert frame.loc["londi_sac[c=0.01]", "train_priced_s"] == pytest.approx(1.25)  # no search, nothing added
