"""bench.scaling: the serial-against-Ray study says no when a configuration's numbers differ, reads overhead off the
timelines, counts a real tracking server's requests, and refuses options it sets itself."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric

from bench.reporting.executors import render
from bench.scaling import TrackingServer, _values, analyse, bound, paper_pair_load

REPO = Path(__file__).resolve().parent.parent


def table(reward: float) -> pd.DataFrame:
    return pd.DataFrame({"task": ["babyai/Mixed"] * 2, "router": ["quick_only", "deepthink_only"], "episodes": [4, 4],
                         "reward": [0.5, reward], "reward_ci_low": [0.4, reward - 0.1], "flops": [1e9, 2e9]})


def timeline(rows: list[tuple[str, int, str, float, float, float]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["cell", "batch", "worker", "start_s", "seconds", "load_s"])
    frame["received_s"] = frame["start_s"] + frame["seconds"] + 0.01
    frame["result_kb"] = 12.0
    return frame


REQUESTS = Counter({"POST runs/create": 5, "POST runs/log-batch": 20, "GET metrics/get-history": 50})
SERIAL = {"name": "serial", "wall_s": 100.0, "requests": REQUESTS,
          "tables": {"babyai": table(0.8)},
          "timeline": timeline([("a", 1, "driver", 10, 20, 0), ("b", 1, "driver", 30, 20, 0),
                                ("c", 1, "driver", 50, 20, 0), ("e", 1, "driver", 70, 20, 0),
                                ("d", 2, "driver", 90.5, 20, 0)])}


def ray_run(reward: float) -> dict:
    return {"name": "ray-2", "wall_s": 80.0, "requests": REQUESTS,
            "tables": {"babyai": table(reward)},
            "timeline": timeline([("a", 1, "node 1 pid 7 (loaded its pair)", 12, 33, 3),
                                  ("b", 1, "node 1 pid 8 (loaded its pair)", 12, 30, 3),
                                  ("c", 1, "node 1 pid 7", 45.5, 30, 0), ("d", 2, "node 1 pid 8", 76.0, 30, 0),
                                  ("e", 1, "node 2 pid 7", 12, 20, 0)])}


def test_a_configuration_whose_numbers_differ_is_a_no_and_the_report_says_so() -> None:
    same, moved = analyse(ray_run(0.8), SERIAL), analyse(ray_run(0.75), SERIAL)
    assert same["same_numbers"] is True and moved["same_numbers"] is False
    extra = {**ray_run(0.8), "tables": {"babyai": table(0.8), "scienceworld": table(0.1)}}
    assert analyse(extra, SERIAL)["same_numbers"] is False  # a report the serial sweep did not write
    assert analyse(ray_run(0.8), {**SERIAL, "tables": {}})["same_numbers"] is False  # nothing compared: not a yes
    configs = {"serial": analyse(SERIAL, None), "ray-2": moved}
    text = render({"configs": configs, "bound": bound(configs, []), "write_rate": [], "machine": "2 cores",
                   "command": "python -m bench.scaling", "git_commit": "abc", "date": "today"})
    assert "| ray-2 | 80.0 | 1.25 | **no** |" in text and "no bound" in text
    assert "| ray-2 | 80.0 | 1.25 | yes |" in render({"configs": {"serial": configs["serial"], "ray-2": same},
                                                       "bound": bound(configs, []), "write_rate": [], "machine": "",
                                                       "command": "", "git_commit": "", "date": ""})


def test_the_overhead_per_cell_is_read_off_the_timeline() -> None:
    got = analyse(ray_run(0.8), SERIAL)
    # Three lanes: pid 7 on two nodes is two workers.
    assert (got["cells"], got["workers"], got["pair_loads"], got["pair_load_s"]) == (5, 3, 2, 3.0)
    assert got["gap_between_cells_s_median"] == 0.5 and got["gap_between_cells_s_max"] == 0.5  # a -> c on pid 7
    assert got["barrier_wait_s_mean"] == 34.0  # b ends at 42, d (the next batch) starts at 76
    assert got["cell_slowdown_median"] == 1.5  # (33 - 3) / 20, (30 - 3) / 20, 30 / 20, 30 / 20, 20 / 20
    assert got["speed_up"] == 1.25 and got["requests_per_cell"] == 15.0
    assert got["busy"] == round(143 / (3 * (106 - 12)), 3)
    serial = analyse(SERIAL, None)
    assert serial["pair_loads"] == 0 and serial["gap_between_cells_s_median"] == 0.0 and serial["busy"] == round(
        100 / 100.5, 3) and serial["barrier_wait_s_mean"] == 0.5

    rates = [{"kind": "heavy", "clients": 1, "requests_per_s": 40.0}, {"kind": "heavy", "clients": 4,
                                                                       "requests_per_s": 50.0},
             {"kind": "light", "clients": 4, "requests_per_s": 500.0}]
    b = bound({"serial": serial, "ray-2": got}, rates)
    # 20 log_batch and 5 create over 5 cells; the 50 history reads are the driver's report, left out
    assert (b["heavy_requests_per_cell"], b["light_requests_per_cell"], b["report_reads_per_cell"]) == (4.0, 1.0, 10.0)
    assert b["cells_finishing_per_s"] == 1600 / 20 and b["server_s_per_cell"] == 4 / 50 + 1 / 500
    assert b["servers_needed"] == 7 and b["min_cell_s_for_one_server"] == 131.2 and b["pair_load_s"] == 3.0
    assert bound({"serial": serial}, [])["servers_needed"] is None  # no write rate measured: no bound claimed


def test_the_tracking_server_counts_the_requests_it_served_and_stops(tmp_path: Path) -> None:
    server = TrackingServer(tmp_path)
    try:
        client = MlflowClient(server.uri)
        run = client.create_run(client.create_experiment("x")).info.run_id
        for step in range(3):
            client.log_batch(run, metrics=[Metric("m", 1.0, 0, step)])
        counts = server.requests()
    finally:
        server.stop()
    assert counts["POST runs/create"] == 1 and counts["POST runs/log-batch"] == 3, counts
    assert server.proc.poll() is not None


def test_options_the_study_sets_itself_are_one_error_line(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for argv, problem in ((["--sweep=--profile smoke --results-dir x"], "--results-dir: set by bench.scaling"),
                          (["--sweep=--profile=smoke --executor=ray"], "--executor: set by bench.scaling"),
                          (["--workers", "0"], "--workers [0]: give one or more")):
        done = subprocess.run([sys.executable, "-m", "bench.scaling", "--out", str(tmp_path / "s"), *argv], cwd=REPO,
                              env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 2 and done.stderr.strip().splitlines()[-1].startswith("error: "), done.stderr
        assert problem in done.stderr
    assert not list(tmp_path.iterdir())


def test_the_paper_pair_is_built_from_its_configs_saved_and_loaded_in_a_fresh_process(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The measurement itself, on two tiny shapes in place of Flan-T5 small and large (the real ones are 3 GB)."""
    import bench.models.profiles as profiles

    monkeypatch.setattr(profiles, "FLAN_T5_SHAPES", {
        "tiny-shape": dict(d_model=32, d_ff=64, d_kv=8, num_heads=4, num_layers=1, num_decoder_layers=1),
        "less-tiny-shape": dict(d_model=64, d_ff=128, d_kv=16, num_heads=4, num_layers=2, num_decoder_layers=2)})
    rows = paper_pair_load(tmp_path)
    assert [r["model"] for r in rows] == ["tiny-shape", "less-tiny-shape"]
    assert rows[0]["params"] < rows[1]["params"] and all(r["load_s"] > 0 for r in rows)
    assert all(r["params"] * 4 <= r["bytes"] < r["params"] * 4 + 1e6 for r in rows)  # float32 weights and a header
    assert not list(tmp_path.iterdir()), "the checkpoints are removed once measured"
    serial = analyse(SERIAL, None)
    b = bound({"serial": serial}, [], [{"gb_on_disk": 0.3, "load_s": 1.0}, {"gb_on_disk": 3.1, "load_s": 4.0}])
    assert (b["paper_pair_gb"], b["paper_pair_load_s"]) == (3.4, 5.0)
    text = render({"configs": {"serial": serial}, "bound": b, "write_rate": [], "machine": "", "command": "",
                   "git_commit": "", "date": ""})
    assert "is 3.4 GB and loads in 5.0 s (every weight read once)" in text and "100 nodes read 340 GB" in text


def test_the_sweeps_list_options_are_read_for_its_price_book() -> None:
    options = ["--profile", "cpu", "--tasks", "babyai/Mixed", "scienceworld/power-component", "--seeds", "0", "1"]
    assert _values(options, "--tasks") == ["babyai/Mixed", "scienceworld/power-component"]
    assert _values(options, "--sweep-tasks") == [] and _values(options, "--seeds") == ["0", "1"]
