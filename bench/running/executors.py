"""Where a sweep's cells run: in the driver's process one after another (the default), or as Ray tasks.

`SerialExecutor` is the sweep as it always ran: each cell in turn, in this process, with the pairs the driver
loaded. `RayExecutor` sends every cell to a Ray cluster as a task, either a local Ray that it starts (bound to
127.0.0.1, as many CPUs as asked) or a running cluster given by address (`--ray-address`, else RAY_ADDRESS).

Why Ray tasks rather than Tune trials: a cell is a function of its job and nothing else, with its own MLflow runs
and its own checkpoints in the sweep state; some cells wait for others (a matched control needs its learned
setting's validation fraction), which the driver handles by submitting them when their inputs are in. Tune would
bring its own experiment tracking, checkpointing and trial scheduler, each a second copy of what the harness already
does, and a search space this grid does not have.

Each task declares what it needs: a CPU (`cpus_per_cell`), a GPU fraction where the models run on CUDA
(`gpus_per_cell`), and memory for ScienceWorld's JVMs (one capped heap per environment in lockstep). A worker
process keeps the pairs it loaded (bench.running.sweep.pair_for): models are loaded once per worker, not per
cell. A task whose worker dies (killed, out of memory, a lost node) is retried (`max_retries`), and the retry
continues from the cell's last checkpoint in the sweep state; a task that raises (a user error, a bug) is not
retried: the sweep stops at once with that error.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common.errors import UserError
from bench.common.provenance import REPO_ROOT
from bench.running.runner import ModelPair
from bench.running.sweep import CellJob, CellOutcome, SweepContext, finished_before, run_cell

EXECUTORS = ("serial", "ray")
JVM_MEMORY = 450 * 2**20
"""Bytes a ScienceWorld environment needs: its JVM's capped heap (-Xmx512m, under 400 MB resident) and the client."""
SCIENCEWORLD_SLOTS = 8
"""ScienceWorld environments a cell steps in lockstep at most (bench.envs.tasks.SCIENCEWORLD_MAX_SLOTS)."""


class Executor:
    """Runs cells; `run` yields each outcome as it is ready (in any order)."""

    name = "executor"

    def run(self, ctx: SweepContext, jobs: Iterable[CellJob]) -> Iterator[CellOutcome]:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """What the report's context records about where the cells ran."""
        return {"executor": self.name}

    def use_pairs(self, pairs: dict[str, ModelPair]) -> None:
        """The pairs the driver loaded (by suite), for an executor that runs cells in the driver's process."""

    def check_shared(self, paths: Iterable[Path]) -> None:
        """Fail before any cell starts when a worker could not see `paths` (the serial executor is the driver)."""

    def close(self) -> None:
        """Release what the executor started."""


class SerialExecutor(Executor):
    """Each cell in this process, in the order given, with the driver's own pairs (loaded once)."""

    name = "serial"

    def __init__(self) -> None:
        self.pairs: dict[str, ModelPair] = {}

    def use_pairs(self, pairs: dict[str, ModelPair]) -> None:
        self.pairs = pairs

    def run(self, ctx: SweepContext, jobs: Iterable[CellJob]) -> Iterator[CellOutcome]:
        for job in jobs:
            yield finished_before(ctx, job) or run_cell(ctx, job, self.pairs.get(job.suite))


def _remote_cell(ctx: SweepContext, job: CellJob) -> CellOutcome:
    """The body of a Ray task: one cell on this worker, with the pairs this worker process keeps."""
    import ray
    import torch

    from bench.running.sweep import loaded_pairs

    # As many torch threads as the CPUs the task was given (Ray's OMP_NUM_THREADS may come after torch's pool).
    torch.set_num_threads(max(1, int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1))))
    began = loaded_pairs()
    outcome = run_cell(ctx, job)
    node = ray.get_runtime_context().get_node_id()[:8]
    outcome.worker = f"node {node} pid {os.getpid()}" + (" (loaded its pair)" if loaded_pairs() > began else "")
    return outcome


@dataclass
class RayOptions:
    """How cells are sent to Ray."""

    address: str | None = None
    """a running cluster (ray://... or HOST:PORT); None: RAY_ADDRESS, else a local Ray started here"""
    workers: int = 2
    """CPUs of the local Ray started here (ignored on a cluster: its nodes say what they have)"""
    cpus_per_cell: float = 1.0
    gpus_per_cell: float = 0.0
    """GPU fraction per cell where the models run on CUDA (0.25: four cells share a GPU)"""
    max_retries: int = 2
    """retries of a cell whose worker died (never of one that raised)"""


def _memory_for(job: CellJob, batch_size: int) -> int:
    if job.suite != "scienceworld":
        return 0
    return min(batch_size, SCIENCEWORLD_SLOTS) * JVM_MEMORY


class RayExecutor(Executor):
    """Cells as Ray tasks, on a local Ray bound to 127.0.0.1 or on the cluster at `address`."""

    name = "ray"

    def __init__(self, options: RayOptions, tracking_uri: str, progress: Callable[[str], None] | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise UserError("--executor ray needs Ray: pip install 'ray==2.60.0' (requirements.txt pins it)") from None
        self.ray, self.options = ray, options
        self.say = progress or (lambda line: print(line, file=sys.stderr))
        address = options.address or os.environ.get("RAY_ADDRESS")
        self.started_here = address is None
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        # Ray starts its workers at niceness 15: on a machine where anything else runs they get what is left (a smoke
        # cell took 18 s against 5.5 s in this process, beside two busy processes on 2 cores; 0.9 s at niceness 0).
        # The cells are the sweep's work, so a Ray started here runs them at the driver's priority.
        os.environ.setdefault("RAY_worker_niceness", "0")
        # Workers import the harness, its routers and the user's (module:Class) from the driver's paths: the
        # checkout is at the same path on every node, like the model cache (check_shared).
        paths = [os.getcwd(), str(REPO_ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
        # MLflow prints a "View run ... at URL" line per run through a tracking server; from every worker they would
        # bury the sweep's progress lines (set MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT=false to have them).
        runtime_env = {"env_vars": {"PYTHONPATH": os.pathsep.join(dict.fromkeys(paths)),
                                    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": os.environ.get(
                                        "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")}}
        try:
            if address is None:
                ray.init(num_cpus=options.workers, include_dashboard=False, _node_ip_address="127.0.0.1",
                         logging_level="WARNING", log_to_driver=True, runtime_env=runtime_env)
            else:
                ray.init(address=address, logging_level="WARNING", log_to_driver=True, runtime_env=runtime_env)
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise UserError(f"cannot join the Ray cluster at {address} ({error}); start it with `ray start --head` "
                            f"or give --ray-address HOST:PORT of a running head") from None
        self.nodes = [n for n in ray.nodes() if n.get("Alive")]
        try:
            check_tracking_for_cluster(tracking_uri, len(self.nodes), address)
        except UserError:
            ray.shutdown()  # the driver leaves the cluster it joined before saying why
            raise
        self.remote = ray.remote(_remote_cell)
        # Start every worker now, importing the harness (torch, transformers), while the driver loads its pairs and
        # prices: Ray starts a worker process only when a task needs one, and on a busy machine each takes seconds.
        # Not for GPU cells: Ray does not give a CPU-only task's worker to a task that asks for a GPU.
        slots = (int(ray.cluster_resources().get("CPU", 0) // options.cpus_per_cell)
                 if options.cpus_per_cell > 0 and options.gpus_per_cell == 0 else 0)
        self.warming = [ray.remote(_warm).options(num_cpus=options.cpus_per_cell).remote() for _ in range(slots)]

    def describe(self) -> dict[str, Any]:
        resources = self.ray.cluster_resources()
        return {"executor": "ray", "ray nodes": len(self.nodes), "ray CPUs": resources.get("CPU", 0),
                "ray GPUs": resources.get("GPU", 0),
                "ray cluster": "started here (local, 127.0.0.1)" if self.started_here else "joined"}

    def check_shared(self, paths: Iterable[Path]) -> None:
        """Every node must see the sweep state and the models (a shared folder: NFS, a cluster file system); asked
        of each node by a task pinned to it, before any cell starts. On one machine this always holds."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        wanted = sorted({str(p) for p in paths})
        probe = self.ray.remote(_missing)
        refs = {node["NodeID"][:8]: probe.options(num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(
            node["NodeID"], soft=False)).remote(wanted) for node in self.nodes}
        for node, ref in refs.items():
            missing = self.ray.get(ref, timeout=120)
            if missing:
                raise UserError(f"node {node} of the Ray cluster does not see {', '.join(missing)}: the sweep state "
                                f"(--state-dir) and the model cache ($LONDI_CACHE, checkpoints/) must be on storage "
                                f"every node mounts at the same path")

    def run(self, ctx: SweepContext, jobs: Iterable[CellJob]) -> Iterator[CellOutcome]:
        ray = self.ray
        pending: dict[Any, CellJob] = {}
        skipped = 0
        for job in jobs:
            outcome = finished_before(ctx, job)
            if outcome is not None:  # finished before the sweep was resumed, wherever it ran
                skipped += 1
                yield outcome
                continue
            ref = self.remote.options(
                num_cpus=self.options.cpus_per_cell,
                num_gpus=self.options.gpus_per_cell if ctx.device.startswith("cuda") else 0,
                memory=_memory_for(job, ctx.batch_size) or None,
                max_retries=self.options.max_retries, retry_exceptions=False, name=f"cell {job.name}",
            ).remote(ctx, job)
            pending[ref] = job
        total, done, began = len(pending), 0, time.monotonic()
        self.say(f"ray: {total} cells sent to {len(self.nodes)} node(s)"
                 + (f", {skipped} finished before and skipped" if skipped else ""))
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=30)
                if not ready:
                    self.say(f"ray: {done}/{total} cells done, {len(pending)} queued or running, "
                             f"{time.monotonic() - began:.0f} s")
                    continue
                ref = ready[0]
                job = pending.pop(ref)
                try:
                    outcome = ray.get(ref)
                except ray.exceptions.RayTaskError as error:
                    raise _cause(error) from None
                except ray.exceptions.WorkerCrashedError as error:
                    raise RuntimeError(f"cell {job.name}: its worker died {self.options.max_retries + 1} times "
                                       f"({error}); the sweep state keeps what finished") from None
                done += 1
                self.say(f"ray: {done}/{total} {job.name} on {outcome.worker} ({outcome.seconds:.0f} s)")
                yield outcome
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)

    def close(self) -> None:
        if self.ray.is_initialized():
            self.ray.shutdown()


def _warm() -> int:
    """A worker's first task: import what a cell needs, so that the first cell sent to it does not wait for that."""
    import bench.models.cache  # noqa: F401 - the imports are the point (torch, transformers, the harness)
    import bench.running.sweep  # noqa: F401

    return os.getpid()


def _missing(paths: list[str]) -> list[str]:
    """The body of the shared-storage probe: which of `paths` this node cannot see."""
    return [p for p in paths if not Path(p).exists()]


def _cause(error: Any) -> BaseException:
    """The exception a cell raised on its worker, as that exception (a UserError stays one line)."""
    cause = getattr(error, "cause", None)
    return cause if isinstance(cause, BaseException) else error


def check_tracking_for_cluster(uri: str, nodes: int, address: str | None) -> None:
    """A cluster of several nodes must log to a tracking server every node reaches: a local file store (sqlite or a
    folder) with remote workers would leave each node's runs on its own disk. One error, before any cell starts."""
    local = not uri.startswith(("http://", "https://", "databricks"))
    if nodes > 1 and local:
        raise UserError(
            f"a Ray cluster of {nodes} nodes{f' at {address}' if address else ''} needs an MLflow tracking server "
            f"every node reaches, not the local store {uri}: start one (`mlflow server --host 0.0.0.0 --port 5000 "
            f"--backend-store-uri sqlite:///mlflow.db`) and pass --tracking-uri http://HEAD:5000")


def make_executor(name: str, tracking_uri: str, ray_options: RayOptions | None = None) -> Executor:
    if name == "serial":
        return SerialExecutor()
    if name == "ray":
        return RayExecutor(ray_options or RayOptions(), tracking_uri)
    raise UserError(f"--executor {name!r}: choose one of {', '.join(EXECUTORS)}")
