"""A two-node Ray cluster, an MLflow server and a smoke sweep on them, with faults: run by tests/test_ray_cluster.py
inside a network namespace that has only the loopback interface (there Ray's node address is 127.0.0.1).

    unshare -n sh -c 'ip link set lo up && exec python tests/ray_cluster_scenario.py WORK OUT.json -- SWEEP ARGS'

What it does, in order, writing what it saw to OUT.json for the test to judge:

1. starts a head node and a second node (`ray start --block`, one CPU each) and an MLflow server, each in its own
   process group, and waits until the cluster has both nodes;
2. runs the sweep against the cluster with a local sqlite store: it must stop before any cell with one error;
3. runs the sweep with the tracking server; once a learned cell has a checkpoint, kills the Ray worker running it
   by its process id (Ray retries the cell, which continues from the checkpoint); once that cell's training is
   finished, kills the driver (SIGKILL);
4. resumes the sweep (`--resume last`), which must skip every finished cell and complete;
5. stops everything it started, by process group, and nothing else.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check, timeout: float, what: str, poll: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(poll)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def cell_workers(pattern: str) -> list[int]:
    """Process ids of Ray workers executing a cell whose name contains `pattern` (Ray titles a worker
    `ray::<task name>` while it runs that task)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            title = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if title.startswith("ray::cell") and pattern in title:
            found.append(int(proc.name))
    return found


def main() -> None:
    work, out = Path(sys.argv[1]), Path(sys.argv[2])
    sweep_args = sys.argv[sys.argv.index("--") + 1:]
    # Token authentication (Ray's default since 2.5x): every process of the cluster and its drivers shares the
    # scenario's own token, never the one in ~/.ray.
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_USAGE_STATS_ENABLED": "0", "RAY_worker_niceness": "0",
           "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    env.pop("RAY_AUTH_TOKEN_PATH", None)
    started: dict[str, subprocess.Popen] = {}
    facts: dict = {"steps": []}

    def start(name: str, argv: list[str]) -> subprocess.Popen:
        log = (work / f"{name}.log").open("w")
        proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        started[name] = proc
        return proc

    def reproduce(*extra: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "bench.reproduce", *sweep_args, *extra], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=timeout)

    ray_tmp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # Ray's unix sockets need a short path (107 bytes)
    port, mlflow_port = free_port(), free_port()
    address = f"127.0.0.1:{port}"
    server = f"http://127.0.0.1:{mlflow_port}"
    try:
        began = time.monotonic()
        start("head", [str(BIN / "ray"), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
                       "--num-cpus=1", "--include-dashboard=false", f"--temp-dir={ray_tmp}", "--block"])
        start("mlflow", [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(mlflow_port),
                         "--backend-store-uri", f"sqlite:///{work / 'server.db'}", "--artifacts-destination",
                         str(work / "artifacts"), "--workers", "1"])

        def port_open(p: int) -> bool:
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", p)) == 0

        head = started["head"]
        wait_for(lambda: port_open(port) or head.poll() is not None, 60, "the Ray head")
        if head.poll() is not None:
            raise RuntimeError(f"the Ray head did not start: {(work / 'head.log').read_text()[-2000:]}")
        start("node2", [str(BIN / "ray"), "start", f"--address={address}", "--node-ip-address=127.0.0.1",
                        "--num-cpus=1", "--block"])

        def health() -> bool:
            try:
                return urllib.request.urlopen(f"{server}/health", timeout=2).status == 200
            except OSError:
                return False

        wait_for(health, 60, "the MLflow server")
        nodes = subprocess.run([sys.executable, "-c", (
            "import ray, time\n"
            f"ray.init(address='{address}', logging_level='ERROR')\n"
            "deadline = time.time() + 60\n"
            "while len([n for n in ray.nodes() if n['Alive']]) < 2 and time.time() < deadline: time.sleep(0.5)\n"
            "print(sorted(n['NodeManagerAddress'] for n in ray.nodes() if n['Alive']))\n")],
            env=env, capture_output=True, text=True, timeout=120)
        facts["nodes"] = nodes.stdout.strip()
        facts["cluster_up_s"] = round(time.monotonic() - began, 1)
        cluster = ["--executor", "ray", "--ray-address", address]

        # 2. A local store with a second node: refused before any cell.
        local = reproduce(*cluster, "--tracking-uri", f"sqlite:///{work / 'local.db'}", timeout=120)
        facts["local_store"] = {"rc": local.returncode, "stderr": local.stderr[-1500:],
                                "db_exists": (work / "local.db").exists()}

        # 3. The sweep on the server; a worker killed inside a learned cell, then the driver killed.
        state = work / "state"
        driver = subprocess.Popen([sys.executable, "-m", "bench.reproduce", *sweep_args, *cluster, "--tracking-uri",
                                   server, "--state-dir", str(state), "--checkpoint-s", "0"], cwd=REPO, env=env,
                                  stdout=(work / "driver.log").open("w"), stderr=subprocess.STDOUT,
                                  start_new_session=True)
        started["driver"] = driver
        sweep_began = time.monotonic()
        wait_for(lambda: list(state.glob("*/*londi_sac*__train.ckpt")) or driver.poll() is not None, 240,
                 "a learned cell's first checkpoint", poll=0.05)
        victims = cell_workers("londi_sac")
        facts["worker_killed"] = victims[:1]
        facts["driver_alive_at_kill"] = driver.poll() is None
        if victims:
            os.kill(victims[0], signal.SIGKILL)
            facts["steps"].append(f"killed worker {victims[0]} at {time.monotonic() - sweep_began:.1f} s")
        wait_for(lambda: list(state.glob("*/*londi_sac*__0__train.done")) or driver.poll() is not None, 240,
                 "the retried cell's training to finish")
        facts["driver_alive_at_driver_kill"] = driver.poll() is None
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait(timeout=30)
        facts["steps"].append(f"killed the driver at {time.monotonic() - sweep_began:.1f} s")
        facts["done_before_resume"] = sorted(p.name for p in state.glob("*/*.done"))

        # 4. Resumed from the driver: finished cells are skipped.
        resumed = reproduce("--resume", "last", "--state-dir", str(state), *cluster, timeout=300)
        facts["resume"] = {"rc": resumed.returncode, "stderr": resumed.stderr[-4000:]}
        facts["sweep_s"] = round(time.monotonic() - sweep_began, 1)
        facts["driver_log"] = (work / "driver.log").read_text()[-4000:]
        facts["server"] = server
    finally:
        # 5. Everything this scenario started, by its process group; the driver first, Ray's second node, the head.
        for name in ("driver", "node2", "head", "mlflow"):
            proc = started.get(name)
            if proc is None or proc.poll() is not None:
                continue
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        facts["left_running"] = [name for name, proc in started.items() if proc.poll() is None]
        shutil.rmtree(ray_tmp, ignore_errors=True)
        out.write_text(json.dumps(facts, indent=1))


if __name__ == "__main__":
    main()
