"""Sweeps on Ray: the same numbers as the serial sweep, cells spread over workers, errors that stop at once.

The local Ray here is the one `--executor ray` starts itself (bound to 127.0.0.1, stopped when the sweep ends);
the two-node cluster with a tracking server, a killed worker and a resumed driver is tests/test_ray_cluster.py.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient
from ray_sweep import numbers, reproduce

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_a_sweep_on_a_local_ray_gives_the_serial_numbers(londi_cache: Path, tmp_path: Path) -> None:
    serial = reproduce(results=tmp_path / "serial", uri=f"sqlite:///{tmp_path / 'serial.db'}",
                       state=tmp_path / "serial-state")
    assert serial.returncode == 0, serial.stderr[-3000:]
    # The same price book, so that priced seconds compare exactly too.
    (tmp_path / "ray" / "smoke").mkdir(parents=True)
    shutil.copy(tmp_path / "serial" / "smoke" / "calibration.json", tmp_path / "ray" / "smoke")
    uri = f"sqlite:///{tmp_path / 'ray.db'}"
    on_ray = reproduce("--executor", "ray", "--ray-workers", "2", results=tmp_path / "ray", uri=uri,
                       state=tmp_path / "ray-state")
    assert on_ray.returncode == 0, on_ray.stderr[-3000:]
    pd.testing.assert_frame_equal(numbers(tmp_path / "serial"), numbers(tmp_path / "ray"), check_exact=True)
    cells = re.findall(r"ray: \d+/(\d+) (\S+ \S+) seed \d+ on node \w+ pid (\d+)", on_ray.stderr)
    assert len({pid for *_, pid in cells}) == 2, "the cells are spread over both workers"
    assert {int(total) for total, *_ in cells} and len(cells) == sum({int(t) for t, *_ in cells})
    loaded = re.findall(r"pid (\d+) \(loaded its pair\)", on_ray.stderr)
    assert sorted(loaded) == sorted(set(loaded)) and len(loaded) <= 2, "each worker loads the pair once"
    client = MlflowClient(uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert runs and all(r.info.status == "FINISHED" for r in runs)
    report = pd.read_json(tmp_path / "ray" / "smoke" / "babyai.json", typ="series")
    assert report["context"]["executor"] == "ray" and report["context"]["ray nodes"] == 1


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
