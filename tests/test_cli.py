"""Tests of the command lines a user runs: a baseline's --help, `python -m bench.reproduce --profile
smoke` end to end (with a user router from its own file), and its errors for unknown names."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient

from bench.evaluate import EvalArgs
from bench.tasks import task_names

REPO = Path(__file__).resolve().parent.parent
USER_ROUTER = '''
import numpy as np

from bench.router import Router, StepView


class EvenSteps(Router):
    """DEEPTHINK on even steps, QUICK on odd ones."""

    name = "even_steps"

    def route(self, view: StepView) -> np.ndarray:
        return view.steps % 2 == 0
'''


def run_module(module: str, *args: str, extra_path: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)  # carries LONDI_CACHE and MLFLOW_TRACKING_URI set by the fixtures
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in (REPO, extra_path) if p is not None)
    env["COLUMNS"] = "200"
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)


def logged_runs(uri: str) -> list:
    path = Path(uri.removeprefix("sqlite:///"))
    if not path.exists():
        return []
    client = MlflowClient(uri)
    return client.search_runs([e.experiment_id for e in client.search_experiments()])


def test_baseline_help_shows_every_option() -> None:
    done = run_module("baselines.quick_only", "--help")
    assert done.returncode == 0, done.stderr
    for field in dataclasses.fields(EvalArgs):
        assert f"--{field.name.replace('_', '-')}" in done.stdout, field.name
    assert "babyai/Mixed" in done.stdout  # the default task is shown


@pytest.mark.parametrize(("module", "options"), [
    ("baselines.random_switch", ("--p",)),
    ("baselines.confidence_cascade", ("--measure", "--threshold")),
    ("baselines.oracle", ()),
    ("baselines.swiftsage", ("--warmup", "--patience", "--window", "--max-deepthink")),
    ("algos.londi_sac", ("--c", "--budget", "--train-episodes", "--load")),
])
def test_every_router_file_is_a_command_line_with_its_options(module: str, options: tuple[str, ...]) -> None:
    done = run_module(module, "--help")
    assert done.returncode == 0, done.stderr
    for option in ("--task", "--seeds", "--episodes", *options):
        assert option in done.stdout, option


def test_reproduce_smoke_writes_the_report_with_a_user_router(londi_cache: Path, tracking_uri: str,
                                                              tmp_path: Path) -> None:
    user_dir = tmp_path / "user"
    user_dir.mkdir()
    (user_dir / "mymod.py").write_text(USER_ROUTER)
    results = tmp_path / "results"
    done = run_module("bench.reproduce", "--profile", "smoke", "--results-dir", str(results), "--no-progress",
                      "--routers", "quick_only", "deepthink_only", "mymod:EvenSteps", "random_switch[p=0.25]",
                      extra_path=user_dir)
    assert done.returncode == 0, done.stderr

    tasks = ("babyai/GoToLocal", "babyai/Mixed")
    for task in tasks:
        for router in ("quick_only", "deepthink_only", "even_steps", "random_switch[p=0.25]"):
            assert f"| {task} | {router} | 4 |" in done.stdout
    out = results / "smoke"
    for name in ("babyai.md", "babyai.csv", "babyai.json", "babyai_cost_reward.png"):
        assert (out / name).stat().st_size > 0, name

    table = pd.read_csv(out / "babyai.csv").set_index(["task", "router"])
    routers = ("quick_only", "deepthink_only", "even_steps", "random_switch[p=0.25]")
    assert set(table.index) == {(t, r) for t in tasks for r in routers}
    for task in tasks:
        assert table.loc[(task, "even_steps"), "deepthink_fraction"] == pytest.approx(0.5, abs=0.05)
        assert table.loc[(task, "quick_only"), "deepthink_fraction"] == 0
        assert table.loc[(task, "deepthink_only"), "deepthink_fraction"] == 1
        assert 0 < table.loc[(task, "even_steps"), "saving_flops"] < table.loc[(task, "quick_only"), "saving_flops"]

    runs = logged_runs(tracking_uri)
    evals = [r for r in runs if r.data.tags.get("londi.kind") == "eval"]
    assert len(evals) == 8 and all(r.info.status == "FINISHED" for r in evals)
    random_runs = [r for r in evals if r.data.params["exp_name"] == "random_switch[p=0.25]"]
    assert len(random_runs) == 2 and all(r.data.params["router.p"] == "0.25" for r in random_runs)
    assert sum(r.data.tags.get("londi.kind") == "report" for r in runs) == 1


def test_unknown_task_fails_before_any_run(londi_cache: Path, tracking_uri: str, tmp_path: Path) -> None:
    done = run_module("bench.reproduce", "--profile", "smoke", "--tasks", "babyai/Nope",
                      "--results-dir", str(tmp_path))
    assert done.returncode != 0
    assert "unknown task 'babyai/Nope'" in done.stderr
    assert all(name in done.stderr for name in task_names())
    assert logged_runs(tracking_uri) == []


def test_unknown_router_fails_before_any_run(londi_cache: Path, tracking_uri: str, tmp_path: Path) -> None:
    done = run_module("bench.reproduce", "--profile", "smoke", "--routers", "quick_only", "nope",
                      "--results-dir", str(tmp_path))
    assert done.returncode != 0
    assert "unknown router 'nope'" in done.stderr
    assert "quick_only" in done.stderr and "deepthink_only" in done.stderr and "module:Class" in done.stderr
    assert logged_runs(tracking_uri) == []


@pytest.mark.parametrize("args, message", [
    (("--tasks", "babyai/Nope"), "unknown task 'babyai/Nope'"),
    (("--episodes", "0"), "--episodes must be a positive number"),
    (("--seeds", "-1"), "run seed -1"),
    (("--profile", "huge"), "unknown profile 'huge'; known profiles: smoke, cpu, paper"),
])
def test_bad_input_is_one_error_line_and_exit_2(args: tuple[str, ...], message: str, londi_cache: Path,
                                                 tracking_uri: str, tmp_path: Path) -> None:
    done = run_module("bench.reproduce", "--profile", "smoke", *args, "--results-dir", str(tmp_path))
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], done.stderr
    assert logged_runs(tracking_uri) == []


def test_missing_model_path_names_the_fix(londi_cache: Path, tracking_uri: str, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    done = run_module("baselines.quick_only", "--profile", "smoke", "--task", "babyai/GoToLocal",
                      "--quick", str(missing), "--deepthink", str(missing), "--episodes", "1")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert str(missing) in done.stderr and "make models" in done.stderr
