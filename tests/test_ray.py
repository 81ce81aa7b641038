"""Sweeps on Ray: the same numbers as the serial sweep, cells spread over workers, errors that stop at once, and a
real two-node cluster that survives a killed worker and a killed driver.

The local Ray is the one `--executor ray` starts itself (bound to 127.0.0.1, stopped when the sweep ends). The
cluster (a head and a second node as separate processes, an MLflow server, the sweep joined to them) runs inside a
network namespace with only the loopback interface (`unshare -n`), where Ray's node address is 127.0.0.1 (outside
one, Ray binds the machine's interface address even when told 127.0.0.1); tests/ray_cluster_scenario.py does it
and stops only what it started, by process group.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient
from ray_sweep import SWEEP, numbers, reproduce

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def serial(smoke_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The smoke sweep run serially: its results folder (with the calibration the Ray runs reuse)."""
    root = tmp_path_factory.mktemp("serial")
    done = reproduce("--timeline", str(root / "results" / "timeline.csv"), results=root / "results",
                     uri=f"sqlite:///{root / 'mlflow.db'}", state=root / "state", cache=smoke_cache)
    assert done.returncode == 0, done.stderr[-3000:]
    return root / "results"


def _same_prices(serial: Path, results: Path) -> None:
    """The serial sweep's price book, so that priced seconds compare exactly too."""
    (results / "smoke").mkdir(parents=True)
    shutil.copy(serial / "smoke" / "calibration.json", results / "smoke")


@pytest.mark.slow
def test_a_sweep_on_a_local_ray_gives_the_serial_numbers(smoke_cache: Path, serial: Path, tmp_path: Path) -> None:
    _same_prices(serial, tmp_path / "ray")
    uri = f"sqlite:///{tmp_path / 'ray.db'}"
    on_ray = reproduce("--executor", "ray", "--ray-workers", "2", "--timeline", str(tmp_path / "timeline.csv"),
                       results=tmp_path / "ray", uri=uri, state=tmp_path / "ray-state", cache=smoke_cache)
    assert on_ray.returncode == 0, on_ray.stderr[-3000:]
    pd.testing.assert_frame_equal(numbers(serial), numbers(tmp_path / "ray"), check_exact=True)
    cells = re.findall(r"ray: \d+/\d+ \S+ \S+ seed \d+ on node \w+ pid (\d+)", on_ray.stderr)
    assert len(set(cells)) == 2, "the cells are spread over both workers"
    loaded = re.findall(r"pid (\d+) \(loaded its pair\)", on_ray.stderr)
    assert sorted(loaded) == sorted(set(loaded)) and len(loaded) <= 2, "each worker loads the pair once"
    client = MlflowClient(uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert runs and all(r.info.status == "FINISHED" for r in runs)
    report = pd.read_json(tmp_path / "ray" / "smoke" / "babyai.json", typ="series")
    assert report["context"]["executor"] == "ray" and report["context"]["ray nodes"] == 1

    # The timeline (--timeline): every cell once, where and when it ran, and what loading the pair took.
    before, after = pd.read_csv(serial / "timeline.csv"), pd.read_csv(tmp_path / "timeline.csv")
    assert sorted(before["cell"]) == sorted(after["cell"]) and before["cell"].is_unique
    assert set(before["worker"]) == {"driver"} and (before["load_s"] < 0.01).all()  # the driver loaded it before
    firsts = after[after["worker"].str.endswith("(loaded its pair)")]
    assert set(firsts["worker"].str.extract(r"pid (\d+)")[0]) == set(cells)
    assert firsts["load_s"].min() > after.drop(firsts.index)["load_s"].max()
    for table in (before, after):
        assert (table["seconds"] > table["load_s"]).all() and (table["start_s"] >= 0).all()
        assert (table["received_s"] >= table["start_s"] + table["seconds"] - 0.05).all()


def test_a_cell_that_raises_stops_the_sweep_at_once_without_retries(londi_cache: Path, tmp_path: Path) -> None:
    """A user router's bug on a worker: the sweep fails with that error the first time (Ray does not retry an
    exception), the finished cells are kept and the hint says how to resume."""
    (tmp_path / "broken_router.py").write_text(
        "from bench.router import Router\n\n"
        "class Broken(Router):\n    name = 'broken'\n\n    def route(self, view):\n"
        "        raise RuntimeError('my bug')\n")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(tmp_path)])}
    done = subprocess.run([sys.executable, "-m", "bench.reproduce", "--profile", "smoke", "--tasks", "babyai/GoToLocal",
                           "--routers", "quick_only", "broken_router:Broken", "--learned", "--ablation",
                           "--episodes", "2", "--seeds", "0", "--no-progress", "--executor", "ray", "--ray-workers",
                           "1", "--results-dir", str(tmp_path / "results"), "--tracking-uri", uri, "--state-dir",
                           str(tmp_path / "sweeps")], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "failed: RuntimeError: my bug" in done.stderr, done.stderr[-3000:]
    assert "--resume reproduce-smoke-" in done.stderr
    client = MlflowClient(uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    statuses = [r.info.status for r in runs]
    assert statuses.count("FAILED") == 1 and set(statuses) <= {"FAILED", "FINISHED"}, "one attempt, no retry"


def _namespaces() -> bool:
    probe = subprocess.run(["unshare", "-n", "sh", "-c", "ip link set lo up"], capture_output=True, text=True)
    return probe.returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("unshare") is None or not _namespaces(),
                    reason="needs unshare -n (a network namespace; the tests run as root here)")
def test_the_sweep_survives_a_killed_worker_and_a_killed_driver_on_a_two_node_cluster(
        smoke_cache: Path, serial: Path, tmp_path: Path) -> None:
    results = tmp_path / "cluster"
    _same_prices(serial, results)
    work = tmp_path / "work"
    work.mkdir()
    out = work / "facts.json"
    script = f"ip link set lo up && exec {sys.executable} {REPO / 'tests' / 'ray_cluster_scenario.py'} {work} {out}"
    env = {**os.environ, "PYTHONPATH": str(REPO), "LONDI_CACHE": str(smoke_cache)}
    done = subprocess.run(["unshare", "-n", "sh", "-c", script + " -- " + " ".join(
        f"'{a}'" for a in [*SWEEP, "--results-dir", str(results)])], env=env, capture_output=True, text=True,
        timeout=900)
    assert out.exists(), done.stderr[-4000:]
    facts = json.loads(out.read_text())
    context = json.dumps({k: v for k, v in facts.items() if k not in ("driver_log",)}, indent=1)[-6000:]
    assert done.returncode == 0, done.stderr[-3000:] + context
    assert facts["nodes"] == "['127.0.0.1', '127.0.0.1']", context  # two nodes, both on the loopback address

    # A local store with a second node: one error before any cell, no store written.
    assert facts["local_store"]["rc"] == 2 and not facts["local_store"]["db_exists"], context
    assert "error: a Ray cluster of 2 nodes" in facts["local_store"]["stderr"], context

    # A worker killed inside a learned cell, then the driver: the resumed sweep completes with the serial numbers.
    assert facts["worker_killed"] and facts["driver_alive_at_kill"] and facts["driver_alive_at_driver_kill"], context
    assert facts["resume"]["rc"] == 0, context
    pd.testing.assert_frame_equal(numbers(serial), numbers(results), check_exact=True)

    client = MlflowClient(f"sqlite:///{work / 'server.db'}")  # the server's own store, read after it stopped
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert not [r for r in runs if r.info.status == "RUNNING"], "no run is left RUNNING"
    killed = [r for r in runs if r.info.status == "KILLED"]
    assert killed and all("londi.resumed_in" in r.data.tags for r in killed), context
    assert any("marked KILLED when the sweep resumed" in r.data.tags.get("londi.stopped", "") for r in killed)
    finished = Counter(r.info.run_name.rsplit("__", 1)[0] for r in runs  # the name less its start time
                       if r.info.status == "FINISHED" and r.data.tags.get("londi.kind") in ("eval", "router_train"))
    assert finished and max(finished.values()) == 1, f"a part logged twice: {finished.most_common(3)}"
    assert not facts["left_running"], "everything the scenario started is stopped"
