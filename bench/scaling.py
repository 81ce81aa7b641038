"""How much a sweep gains from Ray on this machine, what each cell pays for being sent there, and what would bound
a cluster of many nodes.

    python -m bench.scaling --out results/cpu/executors --workers 2 --sweep="--profile cpu --tasks babyai/Mixed ..."

(`make scaling`.) The same sweep (`bench.reproduce` with the options of `--sweep`) runs once serially and
once on a local Ray per `--workers` count, one after another, each into its own results folder, sweep state and
MLflow server (started here on 127.0.0.1 with a fresh store, stopped by its process id: the tracking a cluster
needs, so its requests can be counted), with one price book made before any run is timed (the committed
calibration, measured again for the sweep's suites where it does not describe this machine), so that no run
measures prices in its wall time and priced costs compare exactly.
Then:

- **same numbers**: every configuration's report must equal the serial one's on the place-invariant columns
  (rewards, DEEPTHINK fractions, FLOPs, priced costs); a difference is a "no" and the exit status is 1;
- **wall time** of each whole command (the clock of a shared machine: a labelled measurement, never a ranking of
  routers), cell-seconds, and how busy the workers were;
- **overhead per cell** from the sweeps' `--timeline`: Ray's start before the first cell, loading the pair (a
  worker's first cell), the gap between two cells on one worker (scheduling and shipping the job), the outcome's
  trip back to the driver and its size, and how much slower a cell ran beside others than alone;
- **tracking load**: the MLflow requests each cell made (counted in the server's access log) and, with
  `--tracking-bench`, the write rate one server sustains (log_batch requests per second from 1, 4 and 16 clients);
- **a 100-node bound**: the requests per second, pair loads and outcomes a driver and one tracking server would
  face, from the measurements above.

Writes OUT.json, OUT.md and OUT_timeline.png (each configuration's cells on their workers over time).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import tyro

from bench.common.errors import user_errors
from bench.common.provenance import REPO_ROOT, git_commit
from bench.common.tracking import FLUSH_EVERY
from bench.reporting.executors import place_invariant, plot, render

NODES, CELLS_PER_NODE = 100, 16
"""The cluster the bound is worked out for: 100 nodes of 16 cells each (a 16-core or 8-GPU node)."""


@dataclass
class Args:
    out: Path
    """where the study goes: OUT.json, OUT.md, OUT_timeline.png (e.g. results/cpu/executors)"""
    sweep: str = "--profile smoke"
    """bench.reproduce's options for the sweep, as one string; --results-dir, --tracking-uri, --state-dir,
    --executor, --ray-workers and --timeline are set here for each run"""
    workers: list[int] = field(default_factory=lambda: [2])
    """local Ray sizes to run the sweep on (CPUs; a cell takes one), each after the serial run"""
    tracking_bench: bool = True
    """also measure one MLflow server's write rate (log_batch requests per second from 1, 4 and 16 clients)"""
    paper_load: bool = True
    """also measure the size and loading time of the paper profile's pair (Flan-T5 small and large shapes)"""
    work: Path | None = None
    """where the runs keep their results, stores and logs (kept); unset: a temporary folder, removed"""


SET_HERE = ("--results-dir", "--tracking-uri", "--state-dir", "--executor", "--ray-workers", "--ray-address",
            "--timeline", "--resume")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TrackingServer:
    """An MLflow server on 127.0.0.1 with a fresh sqlite store, started here and stopped by its process group."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.log = root / "server.log"
        mlflow = Path(sys.executable).with_name("mlflow")
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(
                [str(mlflow), "server", "--host", "127.0.0.1", "--port", str(self.port), "--backend-store-uri",
                 f"sqlite:///{root / 'server.db'}", "--artifacts-destination", str(root / "artifacts"), "--workers",
                 "1"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            self._wait_healthy(120)
        except BaseException:  # a timeout, a bad answer, Ctrl-C or SIGTERM: never leave the server behind
            self.stop()
            raise

    def _wait_healthy(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the MLflow server did not start: {self.log.read_text()[-2000:]}")
            try:
                if urllib.request.urlopen(f"{self.uri}/health", timeout=2).status == 200:
                    return
            except (OSError, http.client.HTTPException):
                time.sleep(0.5)
        raise RuntimeError(f"the MLflow server did not answer /health within {seconds:.0f} s")

    def requests(self) -> Counter:
        """The requests it served, by method and endpoint (its access log): `POST runs/log-batch`, `PUT artifacts`."""
        found = re.findall(r'"(GET|POST|PUT|PATCH|DELETE) (/[^ ?"]*)[^"]*" \d{3}', self.log.read_text())
        return Counter(f"{method} " + ("artifacts" if "mlflow-artifacts" in path else path.split("/mlflow/", 1)[-1])
                       for method, path in found if path != "/health")

    def stop(self) -> None:
        _stop_group(self.proc, signal.SIGTERM)


def _option(options: list[str], name: str, default: str) -> str:
    """The value of `name` in bench.reproduce's options, given as `--name value` or `--name=value`."""
    for i, option in enumerate(options):
        if option == name and i + 1 < len(options):
            return options[i + 1]
        if option.startswith(name + "="):
            return option.split("=", 1)[1]
    return default


def _stop_group(proc: subprocess.Popen, first: int) -> None:
    """Stop a child started in its own session, and everything it started: `first`, then SIGKILL after 60 s."""
    if proc.poll() is None:
        os.killpg(proc.pid, first)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _values(options: list[str], name: str) -> list[str]:
    """The values of a list option (`--tasks a b`), or [] where it is not given."""
    if name not in options:
        return []
    values = []
    for option in options[options.index(name) + 1:]:
        if option.startswith("--"):
            break
        values.append(option)
    return values


def price_book(options: list[str], root: Path) -> Path:
    """The calibration every run prices with, made before any run is timed: the committed one, measured again
    (bench.calibrate) for the sweep's suites where it does not describe this machine."""
    profile = _profile(options)
    folder = root / "prices"
    shutil.rmtree(folder, ignore_errors=True)
    (folder / profile).mkdir(parents=True)
    committed = REPO_ROOT / "results" / profile / "calibration.json"
    if committed.exists():
        shutil.copy(committed, folder / profile)
    suites = sorted({task.split("/", 1)[0] for task in _values(options, "--tasks") + _values(options, "--sweep-tasks")})
    argv = [sys.executable, "-m", "bench.calibrate", "--profile", profile, "--results-dir", str(folder),
            "--tracking-uri", f"sqlite:///{folder / 'mlflow.db'}", "--no-progress",
            *(["--suites", *suites] if suites else [])]
    print(f"scaling: prices: {' '.join(argv[3:])}", file=sys.stderr, flush=True)
    done = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    if done.returncode != 0:
        raise RuntimeError(f"bench.calibrate exited {done.returncode}: {done.stderr[-3000:]}")
    return folder / profile / "calibration.json"


def _profile(options: list[str]) -> str:
    return _option(options, "--profile", "cpu")


def run_config(name: str, options: list[str], executor: list[str], root: Path, calibration: Path) -> dict[str, Any]:
    """One run of the sweep, with the price book `calibration` (where it exists): its wall time, its timeline, the
    requests it made of its own tracking server."""
    folder = root / name
    shutil.rmtree(folder, ignore_errors=True)  # a fresh store and results folder, even in a reused --work
    results = folder / "results"
    profile = _profile(options)
    if calibration.exists():
        (results / profile).mkdir(parents=True, exist_ok=True)
        shutil.copy(calibration, results / profile)
    server = TrackingServer(folder / "tracking")
    try:
        argv = [sys.executable, "-m", "bench.reproduce", *options, *executor, "--results-dir", str(results),
                "--tracking-uri", server.uri, "--state-dir", str(folder / "state"), "--timeline",
                str(folder / "timeline.csv"), "--no-progress"]
        print(f"scaling: {name}: {' '.join(argv[3:])}", file=sys.stderr, flush=True)
        began = time.monotonic()
        with (folder / "reproduce.log").open("w") as log:
            child = subprocess.Popen(argv, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                                     env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, start_new_session=True)
            try:
                returncode = child.wait()
            except BaseException:  # Ctrl-C or SIGTERM here: the sweep stops as it would (its Ray, its runs closed)
                _stop_group(child, signal.SIGINT)
                raise
        wall = time.monotonic() - began
        requests = server.requests()
    finally:
        server.stop()
    if returncode != 0:
        raise RuntimeError(f"{name}: bench.reproduce exited {returncode}: "
                           f"{(folder / 'reproduce.log').read_text()[-3000:]}")
    print(f"scaling: {name}: {wall:.0f} s", file=sys.stderr, flush=True)
    tables = {path.stem: place_invariant(pd.read_csv(path)) for path in sorted((results / profile).glob("*.csv"))
              if (path.with_suffix(".json")).exists() and path.stem not in ("calibration", "pair")
              and not path.stem.endswith(("_training", "_londi_where"))}
    if not tables:
        raise RuntimeError(f"{name}: the sweep wrote no report table under {results / profile}: nothing to compare")
    return {"name": name, "wall_s": wall, "timeline": pd.read_csv(folder / "timeline.csv"), "requests": requests,
            "tables": tables}


def analyse(run: dict[str, Any], serial: dict[str, Any] | None) -> dict[str, Any]:
    """What one configuration's timeline says about its cells and their overhead."""
    t = run["timeline"].copy()
    t["end_s"] = t["start_s"] + t["seconds"]
    t["lane"] = t["worker"].str.replace(" (loaded its pair)", "", regex=False)  # node and pid, or the driver
    if "batch" not in t:
        t["batch"] = 1
    gaps, barrier = [], []  # between two cells of a batch on one worker; from a worker's last cell of a batch to
    for _, lane in t.sort_values("start_s").groupby("lane"):  # its first of the next (the wait for the others)
        ends, starts, batch = lane["end_s"].to_numpy(), lane["start_s"].to_numpy(), lane["batch"].to_numpy()
        for i in range(1, len(lane)):
            (gaps if batch[i] == batch[i - 1] else barrier).append(float(starts[i] - ends[i - 1]))
    span = float(t["end_s"].max() - t["start_s"].min())
    lanes = t["lane"].nunique()
    out = {
        "wall_s": round(run["wall_s"], 1),
        "cells": len(t),
        "workers": lanes,
        "cell_seconds": round(float(t["seconds"].sum()), 1),
        "first_cell_start_s": round(float(t["start_s"].min()), 1),
        "cells_span_s": round(span, 1),
        "busy": round(float(t["seconds"].sum()) / (lanes * span), 3) if span > 0 else float("nan"),
        "pair_loads": int((t["load_s"] > 0.01).sum()),
        "pair_load_s": round(float(t.loc[t["load_s"] > 0.01, "load_s"].median()), 2) if (t["load_s"] > 0.01).any()
        else 0.0,
        "gap_between_cells_s_median": round(statistics.median(gaps), 3) if gaps else float("nan"),
        "gap_between_cells_s_max": round(max(gaps), 3) if gaps else float("nan"),
        "barrier_wait_s_mean": round(statistics.mean(barrier), 1) if barrier else 0.0,
        "return_s_median": round(float((t["received_s"] - t["end_s"]).median()), 3),
        "result_kb_median": round(float(t["result_kb"].median()), 1),
        "result_kb_max": round(float(t["result_kb"].max()), 1),
        "requests": sum(run["requests"].values()),
        "requests_per_cell": round(sum(run["requests"].values()) / len(t), 1),
        "requests_by_endpoint": dict(run["requests"].most_common()),
    }
    if serial is not None:
        alone = serial["timeline"].set_index("cell")["seconds"]
        ratio = (t.set_index("cell")["seconds"] - t.set_index("cell")["load_s"]) / alone.reindex(t["cell"]).to_numpy()
        out["cell_slowdown_median"] = round(float(ratio.median()), 3)
        out["speed_up"] = round(serial["wall_s"] / run["wall_s"], 3)
        out["same_numbers"] = bool(serial["tables"]) and set(run["tables"]) == set(serial["tables"]) and all(
            table.equals(run["tables"][name]) for name, table in serial["tables"].items())
    return out


HEAVY = ("POST runs/log-batch", "PUT artifacts")
"""Requests that write many rows or a file: every log_batch (metrics, params or tags) and artifact upload."""
REPORT_READS = ("GET metrics/get-history", "GET artifacts")
"""Requests only the driver makes, once, reading the finished sweep for its report: left out of the per-cell load.
Every other request (create, update, set-tag, get, search) is light, the driver's few searches included."""


def tracking_bench(root: Path, clients: tuple[int, ...] = (1, 4, 16), seconds: float = 10.0) -> list[dict[str, Any]]:
    """Requests per second one MLflow server (1 worker, sqlite) sustains from 1, 4 and 16 clients: heavy ones
    (log_batch of FLUSH_EVERY metrics, as a cell's runs send them) and light ones (set_tag)."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    server = TrackingServer(root / "bench-tracking")
    rows = []
    try:
        client = MlflowClient(server.uri)
        experiment = client.create_experiment("write-rate")
        for kind in ("heavy", "light"):
            for k in clients:
                runs = [client.create_run(experiment).info.run_id for _ in range(k)]
                counts = [0] * k
                stop = time.monotonic() + seconds

                def write(i: int, runs: list[str] = runs, counts: list[int] = counts, stop: float = stop,
                          kind: str = kind) -> None:
                    mine = MlflowClient(server.uri)
                    while time.monotonic() < stop:
                        if kind == "heavy":
                            now = int(time.time() * 1000)
                            mine.log_batch(runs[i], metrics=[Metric(f"m{j}", float(j), now, counts[i])
                                                             for j in range(FLUSH_EVERY)])
                        else:
                            mine.set_tag(runs[i], f"t{counts[i] % 50}", str(counts[i]))
                        counts[i] += 1

                threads = [threading.Thread(target=write, args=(i,), daemon=True) for i in range(k)]
                began = time.monotonic()
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
                took = time.monotonic() - began
                rows.append({"kind": kind, "clients": k, "requests_per_s": round(sum(counts) / took, 1)})
                print(f"scaling: tracking server: {kind} requests, {k} clients: {rows[-1]['requests_per_s']}/s",
                      file=sys.stderr, flush=True)
    finally:
        server.stop()
    return rows


def paper_pair_load(root: Path) -> list[dict[str, Any]]:
    """The paper profile's models (Flan-T5 small and large, built from their configs: no hub here), saved as a
    checkpoint and loaded again in a fresh process: their size on disk and the seconds `from_pretrained` and reading
    every weight once take, from this machine's page cache (the file was just written), as a worker loads its
    pair."""
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    from bench.models.profiles import FLAN_T5_SHAPES

    rows = []
    for name, shape in FLAN_T5_SHAPES.items():
        path = root / name
        torch.manual_seed(0)
        model = T5ForConditionalGeneration(T5Config(vocab_size=32128, feed_forward_proj="gated-gelu",
                                                    tie_word_embeddings=False, **shape))
        params = sum(p.numel() for p in model.parameters())
        model.save_pretrained(path)
        del model
        size = sum(f.stat().st_size for f in path.iterdir())
        # Loaded, then every weight read once: a lazily mapped file is not in memory until its pages are touched.
        probe = ("import sys, time, torch\nfrom transformers import T5ForConditionalGeneration\n"
                 "t = time.perf_counter()\nm = T5ForConditionalGeneration.from_pretrained(sys.argv[1])\n"
                 "with torch.no_grad():\n    sum(float(p.float().sum()) for p in m.parameters())\n"
                 "print(time.perf_counter() - t)")
        done = subprocess.run([sys.executable, "-c", probe, str(path)], capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            raise RuntimeError(f"loading {name} failed: {done.stderr[-2000:]}")
        rows.append({"model": name, "params": params, "bytes": size, "gb_on_disk": round(size / 1e9, 2),
                     "load_s": round(float(done.stdout.strip().splitlines()[-1]), 2)})
        shutil.rmtree(path)
        print(f"scaling: {name}: {rows[-1]['gb_on_disk']} GB, loaded in {rows[-1]['load_s']} s", file=sys.stderr,
              flush=True)
    return rows


def bound(configs: dict[str, dict[str, Any]], write_rate: list[dict[str, Any]],
          paper_load: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """What a sweep on NODES x CELLS_PER_NODE workers would ask of one tracking server and the driver, at the
    measured cell length, requests per cell (heavy and light, each at its measured best rate), outcome size and
    pair load."""
    serial = configs["serial"]
    cell_s = serial["cell_seconds"] / serial["cells"]
    workers = NODES * CELLS_PER_NODE
    by_endpoint = serial["requests_by_endpoint"]
    heavy = sum(n for name, n in by_endpoint.items() if name in HEAVY) / serial["cells"]
    light = sum(n for name, n in by_endpoint.items() if name not in HEAVY + REPORT_READS) / serial["cells"]
    best = {kind: max((r["requests_per_s"] for r in write_rate if r.get("kind", "heavy") == kind), default=0.0)
            for kind in ("heavy", "light")}
    # Seconds of one server's time a cell's requests take at the best measured rates (None: not measured).
    server_s = (heavy / best["heavy"] + light / best["light"]) if best["heavy"] > 0 and best["light"] > 0 else None
    load = [c for c in configs.values() if c.get("pair_loads")]
    return {
        "nodes": NODES, "cells_per_node": CELLS_PER_NODE,
        "mean_cell_s_here": round(cell_s, 2),
        "requests_per_cell": serial["requests_per_cell"],
        "heavy_requests_per_cell": round(heavy, 1), "light_requests_per_cell": round(light, 1),
        "report_reads_per_cell": round(sum(by_endpoint.get(name, 0) for name in REPORT_READS) / serial["cells"], 1),
        "best_requests_per_s": best,
        "cells_finishing_per_s": round(workers / cell_s, 1),
        "server_s_per_cell": None if server_s is None else round(server_s, 3),
        "servers_needed": None if server_s is None else int(-(-workers * server_s // cell_s)),
        "min_cell_s_for_one_server": None if server_s is None else round(workers * server_s, 1),
        "result_mb_per_s_to_driver": round(workers / cell_s * serial["result_kb_median"] / 1024, 1),
        "pair_load_s": load[0]["pair_load_s"] if load else float("nan"),
        "paper_pair_gb": round(sum(r["gb_on_disk"] for r in paper_load), 2) if paper_load else None,
        "paper_pair_load_s": round(sum(r["load_s"] for r in paper_load), 2) if paper_load else None,
    }


def _machine() -> str:
    model = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text()) if Path("/proc/cpuinfo").exists() \
        else None
    return f"{os.cpu_count()} cores" + (f", {model.group(1).strip()}" if model else "")


def main(args: Args) -> dict[str, Any]:
    options = shlex.split(args.sweep)
    given = [o.split("=", 1)[0] for o in options if o.split("=", 1)[0] in SET_HERE]
    if given:
        raise ValueError(f"{', '.join(given)}: set by bench.scaling for each run; leave it out of the sweep's options")
    if not args.workers or min(args.workers) < 1:
        raise ValueError(f"--workers {args.workers}: give one or more local Ray sizes of at least 1 CPU")
    root = args.work or Path(tempfile.mkdtemp(prefix="londi-scaling-"))
    try:
        # One price book for every run, made before any is timed, so that no run measures prices in its wall time
        # and priced costs compare exactly.
        prices = price_book(options, root)
        runs = [run_config("serial", options, [], root, prices)]
        runs += [run_config(f"ray-{n}", options, ["--executor", "ray", "--ray-workers", str(n)], root, prices)
                 for n in args.workers]
        configs = {run["name"]: analyse(run, None if run["name"] == "serial" else runs[0]) for run in runs}
        write_rate = tracking_bench(root) if args.tracking_bench else []
        paper_load = paper_pair_load(root) if args.paper_load else []
        study = {"command": "python -m bench.scaling " + " ".join(sys.argv[1:]), "git_commit": git_commit(),
                 "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                 "machine": _machine(), "configs": configs, "write_rate": write_rate,
                 "paper_load": paper_load, "bound": bound(configs, write_rate, paper_load)}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".json").write_text(json.dumps(study, indent=1, default=str))
        args.out.with_suffix(".md").write_text(render(study))
        plot(runs, args.out.with_name(args.out.name + "_timeline.png"))
        print(render(study))
        print(f"wrote {args.out}.json, {args.out}.md, {args.out}_timeline.png", file=sys.stderr)
        return study
    finally:
        if args.work is None:
            shutil.rmtree(root, ignore_errors=True)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM stops like Ctrl-C: the tracking server this study started is stopped too


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _interrupt)
    with user_errors():
        study = main(tyro.cli(Args))
    sys.exit(0 if all(c.get("same_numbers", True) for c in study["configs"].values()) else 1)
