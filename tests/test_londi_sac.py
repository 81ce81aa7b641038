"""LONDI-SAC as a router on BabyAI-Text with the real smoke pair: online training logged apart from the
evaluation, the Switcher's compute metered, LONDI-B's budget never exceeded, save and reload."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

from algos.londi_b import LondiB
from algos.londi_sac import LondiSAC, cue_features, hashed_words, token_ids
from algos.switcher_sac import TokenSwitcherNet
from bench.common.tracking import DEFAULT_EXPERIMENT
from bench.envs.contexts import EpisodeHistory
from bench.envs.tasks import get_task
from bench.models.pair import ModelPair
from bench.running.evaluate import evaluate, train_router

TASK = get_task("babyai/GoToLocal")


def runs(uri: str, kind: str) -> list:
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(DEFAULT_EXPERIMENT).experiment_id
    return client.search_runs([experiment], f"tags.`londi.kind` = '{kind}'")


@pytest.fixture(scope="module")
def trained(smoke_models: ModelPair, tmp_path_factory: pytest.TempPathFactory) -> tuple[LondiSAC, str, Path]:
    uri = f"sqlite:///{tmp_path_factory.mktemp('londi-store') / 'mlflow.db'}"
    saved = tmp_path_factory.mktemp("switcher") / "switcher"
    router = LondiSAC(c=0.05, train_episodes=6)  # the step limit comes from the task, through the runner
    router.seed(0)
    train_router(router, TASK, smoke_models, 0, batch_size=3, profile="smoke", sweep="londi-test",
                 exp_name="londi_sac[c=0.05]", tracking_uri=uri, progress=False, save_dir=saved)
    return router, uri, saved


def test_training_is_its_own_mlflow_run_with_its_deepthink_calls_and_compute(trained: tuple) -> None:
    router, uri, _ = trained
    (run,) = runs(uri, "router_train")
    metrics, params = run.data.metrics, run.data.params
    assert params["train_episodes"] == "6" and params["router.c"] == "0.05"
    first, last = (int(v) for v in params["env_seeds"].split(".."))
    assert last - first == 5 and first >= TASK.train_seeds.start and last < TASK.eval_seeds.start
    assert metrics["total_deepthink_calls"] > 0 and metrics["total_quick_calls"] > 0  # both moved during training
    assert metrics["total_flops_router"] > 0 and metrics["router_transitions"] == router.stats["transitions"]
    assert router.stats["updates"] > 0 and not router.training
    artifacts = {a.path for a in MlflowClient(uri).list_artifacts(run.info.run_id)}
    assert {"switcher.pt", "switcher.json"} <= artifacts


def test_evaluation_is_greedy_metered_and_reproducible_from_the_saved_switcher(
        trained: tuple, smoke_models: ModelPair, tmp_path: Path) -> None:
    router, _, saved = trained
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    first = evaluate(router, TASK, smoke_models, 0, 4, 2, "smoke", "eval", tracking_uri=uri, progress=False)
    params = sum(p.numel() for p in router.sac.actor.parameters())
    for result in first:
        assert result.usage["router"].calls == result.steps
        assert result.usage["router"].flops == pytest.approx(2.0 * params * result.steps)
    assert router.limit == TASK.max_steps
    reloaded = LondiSAC(c=0.05, train_episodes=6, load=str(saved))
    assert not reloaded.needs_training()
    again = evaluate(reloaded, TASK, smoke_models, 0, 4, 2, "smoke", "eval", tracking_uri=uri, progress=False)
    assert [[s["model"] for s in r.trace] for r in again] == [[s["model"] for s in r.trace] for r in first]
    meta = json.loads((saved / "switcher.json").read_text())
    assert meta["c"] == 0.05 and meta["stats"]["transitions"] == router.stats["transitions"]


def test_londi_b_never_exceeds_its_budget_at_evaluation(smoke_models: ModelPair, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    router = LondiB(budget=2, c=0.0, train_episodes=4, max_steps=TASK.max_steps)
    router.seed(0)
    train_router(router, TASK, smoke_models, 0, 2, "smoke", "budget", "londi_b[budget=2]", tracking_uri=uri,
                 progress=False)
    # A Switcher that wants DEEPTHINK wherever it is allowed is the hard case for the mask.
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(router.sac, "probabilities", lambda states, masks: masks * [0.0, 1.0] + [1e-3, 0.0])
        results = evaluate(router, TASK, smoke_models, 1, 12, 4, "smoke", "budget", tracking_uri=uri, progress=False)
    assert all(r.deepthink_acted <= 2 for r in results)
    assert sum(r.deepthink_acted == 2 for r in results) == len(results)  # it spends the whole budget
    assert all(r.usage["deepthink"].calls == r.deepthink_acted for r in results)


def test_bad_switcher_options_and_paths_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="the DEEPTHINK cost c must be >= 0"):
        LondiSAC(c=-0.1)
    with pytest.raises(ValueError, match="budget must be >= 0 DEEPTHINK calls per episode"):
        LondiB(budget=-2)
    with pytest.raises(FileNotFoundError, match="no saved Switcher at .* train one first"):
        LondiSAC(load=str(tmp_path / "nothing"))


def test_hashed_words_are_stable_log_counts() -> None:
    v = hashed_words("You see a red ball. You see a red key 2", 64)
    assert v.shape == (64,) and v.max() == pytest.approx(1.0986, abs=1e-3)  # "you", "see", "a", "red": 2 each
    assert (v == hashed_words("you SEE a red ball you see a red key 2", 64)).all()


def test_loading_a_switcher_trained_with_other_options_is_refused(trained: tuple, smoke_models: ModelPair,
                                                                  tmp_path: Path) -> None:
    _, _, saved = trained
    with pytest.raises(ValueError, match="was trained with c=0.05, not 0.3"):
        LondiSAC(c=0.3, load=str(saved))
    # Its progress feature was measured against the task's 64 steps: a 20-step variant is refused before any episode.
    shorter = get_task("babyai/GoToLocal[max_steps=20]")
    with pytest.raises(ValueError, match="measured progress against 64 steps, this task has 20"):
        evaluate(LondiSAC(c=0.05, load=str(saved)), shorter, smoke_models, 0, 2, 2, "smoke", "eval",
                 tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", progress=False)
    with pytest.raises(RuntimeError, match="no step limit for the progress feature"):
        LondiSAC().state(EpisodeHistory(observations=["go to the red ball\nYou see a wall"]))


def test_cues_say_when_the_agent_is_stuck_and_whether_the_mission_is_in_sight() -> None:
    mission = "go to the red ball"
    far = f"{mission}\nYou see a wall 2 steps forward"
    near = f"{mission}\nYou see a red ball 1 step forward"
    assert cue_features(EpisodeHistory(observations=[far])).tolist() == [0.0, 0.0, 0.0, 0.0]
    # Walking into the wall: the same view three times, the same action twice.
    stuck = cue_features(EpisodeHistory(observations=[far, far, far], actions=["go forward", "go forward"]))
    assert stuck.tolist() == pytest.approx([np.log1p(2), 1.0, 0.5, 0.0])
    moving = cue_features(EpisodeHistory(observations=[far, near], actions=["turn left"]))
    assert moving.tolist() == pytest.approx([0.0, 0.0, 0.25, 0.4])  # "red" and "ball" of 5 mission words


def test_token_ids_are_the_first_words_hashed_and_padded() -> None:
    ids = token_ids("You see a red ball", buckets=64, length=8)
    assert ids.shape == (8,) and (ids[:5] > 0).all() and (ids[5:] == 0).all() and ids.max() < 64
    assert (token_ids("you see a red ball", 64, 5) == ids[:5]).all()


def test_the_papers_transformer_encoder_trains_and_is_metered_by_its_own_flops(smoke_models: ModelPair,
                                                                               tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    router = LondiSAC(c=0.01, train_episodes=4, encoder="transformer", tokens=32, max_steps=TASK.max_steps)
    router.seed(0)
    assert isinstance(router.sac.actor, TokenSwitcherNet)
    train_router(router, TASK, smoke_models, 0, 2, "smoke", "encoder", "londi_sac[encoder=transformer]",
                 tracking_uri=uri, progress=False, save_dir=tmp_path / "switcher")
    assert router.stats["updates"] > 0
    results = evaluate(router, TASK, smoke_models, 0, 3, 3, "smoke", "encoder", tracking_uri=uri, progress=False)
    per_decision = router.sac.actor.flops()
    # More than its MLP head alone (the attention and the token-wise layers), yet far below a QUICK call.
    assert per_decision > 2.0 * sum(p.numel() for p in router.sac.actor.head.parameters()) * 2
    for result in results:
        assert result.usage["router"].flops == pytest.approx(per_decision * result.steps)
    reloaded = LondiSAC(c=0.01, encoder="transformer", tokens=32, max_steps=TASK.max_steps,
                        load=str(tmp_path / "switcher"))
    again = evaluate(reloaded, TASK, smoke_models, 0, 3, 3, "smoke", "encoder", tracking_uri=uri, progress=False)
    assert [[s["model"] for s in r.trace] for r in again] == [[s["model"] for s in r.trace] for r in results]
    with pytest.raises(ValueError, match="was trained by londi_sac, not londi_b"):
        LondiB(budget=2, c=0.01, encoder="transformer", tokens=32, load=str(tmp_path / "switcher"))
