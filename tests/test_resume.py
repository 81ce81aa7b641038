"""Stop and resume (bench.running.resume): a run stopped mid-way continues from its checkpoint to exactly the metrics
of a run that never stopped, the MLflow runs say what happened, and a stopped sweep resumes from the command
line after a SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from mlflow import MlflowClient

from algos.londi_sac import LondiSAC
from baselines.random_switch import RandomSwitch
from bench.common.tracking import experiment_id
from bench.envs.tasks import get_task
from bench.running.cell import train_and_evaluate
from bench.running.evaluate import evaluate
from bench.running.resume import Checkpointer, SweepState
from bench.running.router import Router, StepView
from bench.running.runner import EpisodeResult, ModelPair, run_episodes

REPO = Path(__file__).resolve().parent.parent
TIMINGS = ("compute_s", "compute_s_quick", "compute_s_deepthink", "compute_s_router")
STOP = {"at_call": -1, "calls": 0}  # module state, so that a restored router does not carry the stop with it


def stop_at(call: int) -> None:
    STOP.update(at_call=call, calls=0)


def maybe_stop() -> None:
    STOP["calls"] += 1
    if STOP["calls"] == STOP["at_call"]:
        raise KeyboardInterrupt


class StoppingRandomSwitch(RandomSwitch):
    name = "random_switch"

    def route(self, view: StepView) -> np.ndarray:
        maybe_stop()
        return super().route(view)


class StoppingLondi(LondiSAC):
    """Counts (and stops at) the steps of its training only."""

    name = "londi_sac"

    def route(self, view: StepView) -> np.ndarray:
        if self.training:
            maybe_stop()
        return super().route(view)


class Unpicklable(Router):
    name = "unpicklable"

    def __init__(self) -> None:
        self.hook = lambda: None  # a lambda cannot be pickled

    def route(self, view: StepView) -> np.ndarray:
        return np.zeros(len(view.slots), dtype=bool)


def outcome(results: list[EpisodeResult]) -> list[dict]:
    """Everything an episode produced except the seconds it took."""
    return [{**{k: v for k, v in r.metrics().items() if k not in TIMINGS}, "index": r.index, "env_seed": r.env_seed,
             "actions": [(row["model"], row["action"], row["reward"]) for row in r.trace]} for r in results]


def test_a_stopped_loop_continues_to_the_uninterrupted_episodes(priced_smoke_models: ModelPair, tmp_path: Path) -> None:
    """Random switching draws from one generator over every slot in lockstep: only restoring the router, the
    episodes in flight and the random states gives the same draws after the stop."""
    task = get_task("babyai/Mixed")
    seeds = task.eval_episode_seeds(3, 7)
    stop_at(-1)
    whole, _ = run_episodes(StoppingRandomSwitch(p=0.5), task, priced_smoke_models, seeds, batch_size=3, seed=3,
                            progress=False)
    checkpoint = Checkpointer(tmp_path / "run.ckpt", every_s=0)
    stop_at(STOP["calls"] * 2 // 3)  # two thirds of the way
    with pytest.raises(KeyboardInterrupt):
        run_episodes(StoppingRandomSwitch(p=0.5), task, priced_smoke_models, seeds, batch_size=3, seed=3,
                     progress=False,
                     checkpoint=checkpoint)
    assert checkpoint.saves > 0
    stop_at(-1)
    replayed: list[EpisodeResult] = []
    resumed, _ = run_episodes(StoppingRandomSwitch(p=0.5), task, priced_smoke_models, seeds, batch_size=3, seed=3,
                              progress=False, checkpoint=checkpoint, on_episode=replayed.append)
    assert 0 < checkpoint.restored < len(seeds)  # some episodes came back finished, the rest ran after the stop
    assert outcome(resumed) == outcome(whole)
    assert sorted(r.index for r in replayed) == list(range(len(seeds)))  # every episode reaches on_episode once


def test_a_checkpoint_of_another_run_is_refused(tmp_path: Path) -> None:
    checkpoint = Checkpointer(tmp_path / "run.ckpt", every_s=0)
    checkpoint.save({"fingerprint": {"task": "babyai/GoToLocal", "env_seeds": [1, 2], "seed": 0}, "results": []})
    with pytest.raises(ValueError, match=r"belongs to another run \(its env_seeds differ\).* delete it to start over"):
        checkpoint.load({"task": "babyai/GoToLocal", "env_seeds": [3, 4], "seed": 0})
    assert checkpoint.load({"task": "babyai/GoToLocal", "env_seeds": [1, 2], "seed": 0}) is not None
    with pytest.raises(ValueError, match="made by another version of the harness: delete it"):
        checkpoint.load({"task": "babyai/GoToLocal", "env_seeds": [1, 2], "seed": 0, "format": 2})


def test_a_router_that_cannot_be_pickled_runs_with_a_warning(smoke_models: ModelPair, tmp_path: Path) -> None:
    task = get_task("babyai/GoToLocal")
    checkpoint = Checkpointer(tmp_path / "run.ckpt", every_s=0)
    with pytest.warns(UserWarning, match="cannot checkpoint run.ckpt .* not be resumable"):
        results, _ = run_episodes(Unpicklable(), task, smoke_models, task.eval_episode_seeds(0, 4), batch_size=2,
                                  progress=False, checkpoint=checkpoint)
    assert len(results) == 4 and not checkpoint.exists()


def test_a_learned_router_resumes_its_training_and_its_runs_say_what_happened(
        priced_smoke_models: ModelPair, tracking_uri: str, tmp_path: Path) -> None:
    """LONDI-SAC stopped (Ctrl-C) in its online training continues from its last checkpoint (networks,
    optimiser, replay buffer, generator): the same Switcher and the same evaluation as without the stop."""
    task = get_task("babyai/Mixed")

    def go(state: SweepState) -> tuple[list[EpisodeResult], LondiSAC]:
        router = StoppingLondi(c=0.01, train_episodes=8)
        results = train_and_evaluate(router, task, priced_smoke_models, seed=0, episodes=4, batch_size=4,
                                     profile="smoke",
                                     sweep=state.root.name, exp_name="londi_sac[c=0.01]", tracking_uri=tracking_uri,
                                     progress=False, state=state)
        return results, router

    stop_at(-1)
    whole, whole_router = go(SweepState(tmp_path / "whole", every_s=0))
    assert STOP["calls"] > 0
    state = SweepState(tmp_path / "stopped", every_s=0)
    stop_at(STOP["calls"] * 2 // 3)  # two thirds into the training
    with pytest.raises(KeyboardInterrupt):
        go(state)
    assert state.checkpointer(task.name, "londi_sac[c=0.01]", 0, "train").exists()
    stop_at(-1)
    resumed, resumed_router = go(state)
    assert outcome(resumed) == outcome(whole)
    for mine, theirs in zip(resumed_router.sac.actor.parameters(), whole_router.sac.actor.parameters(), strict=True):
        assert torch.equal(mine, theirs)
    assert resumed_router.stats == whole_router.stats

    client = MlflowClient(tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name("londi-bench").experiment_id],
                              "tags.`londi.sweep` = 'stopped'")
    trains = sorted((r for r in runs if r.data.tags["londi.kind"] == "router_train"), key=lambda r: r.info.start_time)
    assert [r.info.status for r in trains] == ["KILLED", "FINISHED"]
    assert trains[0].data.tags["londi.resumed_in"] == trains[1].info.run_id
    assert trains[1].data.tags["londi.resumed_from"] == trains[0].info.run_id
    assert int(trains[1].data.tags["londi.resumed_episodes"]) > 0
    evals = [r for r in runs if r.data.tags["londi.kind"] == "eval"]
    assert len(evals) == 1 and evals[0].info.status == "FINISHED" and "londi.resumed_from" not in evals[0].data.tags
    # A finished part is not run again: the sweep state hands back the trained router and the episodes.
    again, _ = go(state)
    assert outcome(again) == outcome(whole)
    assert len(client.search_runs([client.get_experiment_by_name("londi-bench").experiment_id],
                                  "tags.`londi.sweep` = 'stopped'")) == len(runs)


def test_a_run_left_running_before_its_checkpoint_named_it_is_marked_killed_by_the_next_run_of_its_part(
        smoke_models: ModelPair, tracking_uri: str, tmp_path: Path) -> None:
    """A process killed between creating its MLflow run and writing the run's id beside the checkpoint leaves a
    RUNNING run no checkpoint names: the next run of the same part of the same sweep marks it KILLED. A RUNNING run
    of another part, or of another sweep, is left alone (it may still be going)."""
    task = get_task("babyai/Mixed")
    state = SweepState(tmp_path / "sweep-a", every_s=0)
    client = MlflowClient(tracking_uri)
    part = state.checkpointer(task.name, "random_switch[p=0.5]", 0, "eval").path.stem
    other = state.checkpointer(task.name, "random_switch[p=0.5]", 1, "eval").path.stem
    exp_id = experiment_id(client)  # with its artifacts beside the store, as the harness makes it
    orphan, same_part_other_sweep, other_part = (
        client.create_run(exp_id, tags={"londi.sweep": sweep, "londi.part": name, "londi.kind": "eval"}).info.run_id
        for sweep, name in (("sweep-a", part), ("sweep-b", part), ("sweep-a", other)))
    evaluate(RandomSwitch(p=0.5), task, smoke_models, seed=0, episodes=2, batch_size=2, profile="smoke",
             sweep="sweep-a", exp_name="random_switch[p=0.5]", tracking_uri=tracking_uri, progress=False,
             checkpoint=state.checkpointer(task.name, "random_switch[p=0.5]", 0, "eval"))
    status = {run: client.get_run(run).info.status for run in (orphan, same_part_other_sweep, other_part)}
    assert status == {orphan: "KILLED", same_part_other_sweep: "RUNNING", other_part: "RUNNING"}
    tags = client.get_run(orphan).data.tags
    assert "SIGKILL" in tags["londi.stopped"]
    assert client.get_run(tags["londi.resumed_in"]).data.tags["londi.part"] == part


def test_a_sigkilled_sweep_resumes_from_the_command_line(londi_cache: Path, tracking_uri: str, tmp_path: Path) -> None:
    """`python -m bench.reproduce` killed with SIGKILL mid-sweep, then `--resume last`: the report equals an
    uninterrupted sweep's, and the run the kill left RUNNING is marked KILLED."""
    common = ["--profile", "smoke", "--tasks", "babyai/Mixed", "--routers", "random_switch[p=0.5]",
              "--learned", "londi_sac[c=0.01]", "--ablation", "--no-match-random", "--no-match-cascade",
              "--train-episodes", "8", "--episodes", "4", "--checkpoint-s", "0", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def reproduce(*args: str, results: Path) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "bench.reproduce", *common, "--results-dir", str(results),
                                 *args], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    whole = reproduce(results=tmp_path / "whole")
    assert whole.wait(timeout=300) == 0, whole.stderr.read()

    stopped = reproduce(results=tmp_path / "stopped")
    sweeps = londi_cache / "sweeps"
    deadline = time.monotonic() + 240
    while not list(sweeps.glob("*/babyai_Mixed__londi_sac*__train.ckpt")):  # killed inside the training
        assert stopped.poll() is None and time.monotonic() < deadline, stopped.stderr.read()
        time.sleep(0.05)
    stopped.send_signal(signal.SIGKILL)
    stopped.wait(timeout=30)
    resumed = reproduce("--resume", "last", results=tmp_path / "stopped")
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()

    columns = ["task", "router", "episodes", "reward", "success", "deepthink_fraction", "flops"]
    tables = [pd.read_csv(tmp_path / part / "smoke" / "babyai.csv")[columns] for part in ("whole", "stopped")]
    pd.testing.assert_frame_equal(*tables)
    client = MlflowClient(tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name("londi-bench").experiment_id])
    killed = [r for r in runs if r.info.status == "KILLED"]
    assert len(killed) == 1 and "SIGKILL" in killed[0].data.tags["londi.stopped"]
    assert not any(r.info.status == "RUNNING" for r in runs)
    assert not list(sweeps.glob("*")), "a completed sweep leaves no state behind"
