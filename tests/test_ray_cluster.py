"""A real two-node Ray cluster: a head and a second node as separate processes, an MLflow server, the smoke sweep
joined to them, a worker killed by its process id inside a learned cell, the driver killed and the sweep resumed.

The cluster, its driver and its servers run inside a network namespace with only the loopback interface
(`unshare -n`), where Ray's node address is 127.0.0.1 (outside one Ray binds the machine's interface address even
when told 127.0.0.1); tests/ray_cluster_scenario.py does it and stops only what it started, by process group.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient
from ray_sweep import NUMBERS, SWEEP, numbers, reproduce

REPO = Path(__file__).resolve().parent.parent


def _namespaces() -> bool:
    probe = subprocess.run(["unshare", "-n", "sh", "-c", "ip link set lo up"], capture_output=True, text=True)
    return probe.returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("unshare") is None or not _namespaces(),
                    reason="needs unshare -n (a network namespace; the tests run as root here)")
def test_the_sweep_survives_a_killed_worker_and_a_killed_driver_on_a_two_node_cluster(
        londi_cache: Path, tmp_path: Path) -> None:
    serial = reproduce(results=tmp_path / "serial", uri=f"sqlite:///{tmp_path / 'serial.db'}",
                       state=tmp_path / "serial-state")
    assert serial.returncode == 0, serial.stderr[-3000:]
    results = tmp_path / "cluster"
    (results / "smoke").mkdir(parents=True)
    shutil.copy(tmp_path / "serial" / "smoke" / "calibration.json", results / "smoke")  # the same price book
    work = tmp_path / "work"
    work.mkdir()
    out = work / "facts.json"
    script = f"ip link set lo up && exec {sys.executable} {REPO / 'tests' / 'ray_cluster_scenario.py'} {work} {out}"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
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
    pd.testing.assert_frame_equal(numbers(tmp_path / "serial"), numbers(results), check_exact=True)
    assert NUMBERS

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
