"""Tests for bench.running.evaluate and bench.common.tracking: what one evaluation leaves in a real MLflow store
(params, summary and per-episode metrics, the episodes artifact, GPU honesty, run status)."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from baselines.quick_only import QuickOnly
from bench.common.tracking import DEFAULT_EXPERIMENT
from bench.envs.tasks import get_task
from bench.models.pair import ModelPair
from bench.running.evaluate import evaluate
from bench.running.router import Router, StepView

EPISODES = 3


def nvml_answers() -> bool:
    """Whether NVML works on this machine, asked independently of the harness."""
    try:
        import pynvml

        pynvml.nvmlInit()
        pynvml.nvmlShutdown()
        return True
    except Exception:  # noqa: BLE001  (any NVML failure means "no GPU reading here")
        return False


class FailsMidRun(Router):
    """QUICK-only router that raises a few steps into episode number `in_episode` (1-based)."""

    name = "fails_mid_run"

    def __init__(self, error: BaseException, in_episode: int) -> None:
        self.error = error
        self.in_episode = in_episode
        self.episodes_started = 0

    def start_episode(self, slot: int, seed: int) -> None:
        self.episodes_started += 1

    def route(self, view: StepView) -> np.ndarray:
        if self.episodes_started == self.in_episode and view.steps[0] == 3:
            raise self.error
        return np.zeros(len(view.slots), dtype=bool)


def only_run(uri: str) -> mlflow.entities.Run:
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name(DEFAULT_EXPERIMENT).experiment_id])
    assert len(runs) == 1
    return runs[0]


def test_evaluate_records_one_complete_run(smoke_models: ModelPair, tracking_uri: str, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # a store defaulting to the working dir would land here
    task = get_task("babyai/GoToLocal")
    results = evaluate(QuickOnly(), task, smoke_models, seed=1, episodes=EPISODES, batch_size=2, profile="smoke",
                       sweep="sweep-a", progress=False)  # no uri: MLFLOW_TRACKING_URI decides
    assert not (elsewhere / "mlflow.db").exists()

    runs = mlflow.search_runs(experiment_names=[DEFAULT_EXPERIMENT])
    assert len(runs) == 1
    row = runs.iloc[0]
    assert row["status"] == "FINISHED"
    assert row["tags.londi.sweep"] == "sweep-a" and row["tags.londi.kind"] == "eval"
    assert row["tags.mlflow.runName"].startswith("babyai/GoToLocal__quick_only__1__")
    expected_params = {
        "router": "quick_only", "task": "babyai/GoToLocal", "seed": "1", "profile": "smoke",
        "episodes": str(EPISODES), "batch_size": "2", "quick.name": smoke_models.quick.name,
        "deepthink.name": smoke_models.deepthink.name,
        "deepthink.non_embedding_params": str(smoke_models.deepthink.size.non_embedding_params),
        "quick.context": smoke_models.quick.context,
    }
    for name, value in expected_params.items():
        assert row[f"params.{name}"] == value, name

    assert row["metrics.episodes"] == EPISODES
    assert row["metrics.reward_ci_low"] <= row["metrics.reward"] <= row["metrics.reward_ci_high"]
    assert row["metrics.flops_ci_low"] <= row["metrics.flops"] <= row["metrics.flops_ci_high"]
    # The summary is the mean over the run's episodes, not the last episode's value.
    assert row["metrics.flops"] == pytest.approx(np.mean([r.metrics()["flops"] for r in results]))
    assert row["metrics.deepthink_calls"] == 0

    client = MlflowClient(tracking_uri)
    run_id = row["run_id"]
    for metric in ("reward", "flops", "deepthink_calls", "steps"):
        history = sorted(client.get_metric_history(run_id, f"episode/{metric}"), key=lambda p: p.step)
        assert [p.step for p in history] == list(range(EPISODES))
        assert [p.value for p in history] == [r.metrics()[metric] for r in results]

    if nvml_answers():
        assert row["metrics.gpu_available"] == 1 and "metrics.gpu_s" in runs.columns
    else:
        assert row["metrics.gpu_available"] == 0
        assert "metrics.gpu_s" not in runs.columns and "metrics.gpu_energy_j" not in runs.columns
        assert row["tags.londi.gpu"].startswith("unavailable")

    local = client.download_artifacts(run_id, "episodes.jsonl", str(tmp_path / "artifacts"))
    episodes = [json.loads(line) for line in Path(local).read_text().splitlines()]
    assert [e["episode"] for e in episodes] == list(range(EPISODES))
    assert [e["env_seed"] for e in episodes] == task.eval_episode_seeds(1, EPISODES)
    for logged, result in zip(episodes, results, strict=True):
        assert len(logged["trace"]) == logged["steps"] == result.steps
        assert logged["trace"] == result.trace
        assert logged["reward"] == result.reward


def test_a_router_error_fails_the_run_and_is_raised(smoke_models: ModelPair, tracking_uri: str) -> None:
    with pytest.raises(RuntimeError, match="router broke"):
        evaluate(FailsMidRun(RuntimeError("router broke"), in_episode=2), get_task("babyai/GoToLocal"), smoke_models,
                 seed=0, episodes=2, batch_size=1, profile="smoke", sweep="s", tracking_uri=tracking_uri,
                 progress=False)
    run = only_run(tracking_uri)
    assert run.info.status == "FAILED"
    assert run.data.tags["londi.error"] == "RuntimeError: router broke"
    # The episode that finished before the crash is on record.
    assert len(MlflowClient(tracking_uri).get_metric_history(run.info.run_id, "episode/reward")) == 1


def test_keyboard_interrupt_marks_the_run_killed(smoke_models: ModelPair, tracking_uri: str) -> None:
    with pytest.raises(KeyboardInterrupt):
        evaluate(FailsMidRun(KeyboardInterrupt(), in_episode=1), get_task("babyai/GoToLocal"), smoke_models,
                 seed=0, episodes=1, batch_size=1, profile="smoke", sweep="s", tracking_uri=tracking_uri,
                 progress=False)
    run = only_run(tracking_uri)
    assert run.info.status == "KILLED"
    assert "londi.error" not in run.data.tags


def test_make_ui_serves_the_projects_runs_over_its_rest_api(tmp_path: Path) -> None:
    """`make ui` starts the MLflow UI on 127.0.0.1 over a store; a run's params, metrics and artifacts read back
    through the server's REST API; the test stops only the server it started, by its process group."""
    import os
    import signal
    import socket
    import subprocess
    import time
    import urllib.request

    from bench.common.tracking import RunLogger

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with RunLogger("babyai/GoToLocal__ui_check__0", {"router": "quick_only", "seed": 0}, uri=uri) as run:
        run.log_metrics({"reward": 0.5})
        run.log_json_lines([{"episode": 0, "reward": 0.5}], "episodes.jsonl")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    repo = Path(__file__).resolve().parent.parent
    server = subprocess.Popen(["make", "-s", "ui", f"TRACKING={uri}", f"UI_PORT={port}"], cwd=repo,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    base = f"http://127.0.0.1:{port}"

    def get(path: str) -> dict:
        with urllib.request.urlopen(base + path, timeout=10) as answer:
            return json.loads(answer.read() or b"{}")

    try:
        deadline = time.monotonic() + 90
        while True:
            assert server.poll() is None, server.stderr.read().decode()
            try:
                urllib.request.urlopen(base + "/health", timeout=2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the UI did not answer within 90 s"
                time.sleep(0.5)
        got = get(f"/api/2.0/mlflow/runs/get?run_id={run.run_id}")["run"]
        assert {p["key"]: p["value"] for p in got["data"]["params"]} == {"router": "quick_only", "seed": "0"}
        assert {m["key"]: m["value"] for m in got["data"]["metrics"]} == {"reward": 0.5}
        files = get(f"/api/2.0/mlflow/artifacts/list?run_id={run.run_id}").get("files", [])
        assert [f["path"] for f in files] == ["episodes.jsonl"]
        with urllib.request.urlopen(base + "/", timeout=10) as page:  # the UI's own page is served too
            assert b"<html" in page.read(4096).lower()
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # only what this test started: make and the server under it
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
