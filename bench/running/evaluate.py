"""An evaluation or a training of a router as one MLflow run: what gets logged and how a run is closed.

One MLflow run per (task, router, seed), named cleanrl-style `{task}__{exp_name}__{seed}__{time}`,
with every parameter, per-episode metrics (`episode/<metric>`, MLflow step = episode index),
summary metrics under the plain names with 95% intervals, NVML readings where a GPU answers, and
`episodes.jsonl` (every step of every episode: observation, which model acted, action, reward)
as an artifact. A learned router's training is its own run (kind `router_train`). With a checkpoint
the run is linked to the stopped run it continues (bench.running.resume).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from mlflow.exceptions import MlflowException

from bench.common.provenance import git_commit
from bench.common.stats import mean_ci
from bench.common.tracking import CURVE_METRICS, DEFAULT_EXPERIMENT, EPISODE_PREFIX, TRAIN_EPISODE_PREFIX, RunLogger
from bench.envs.tasks import TaskSpec
from bench.running.gpu import GpuMonitor, GpuReading, nvml_index
from bench.running.metering import PRICED, usage_metrics
from bench.running.pricing import PriceBooks, Prices
from bench.running.resume import Checkpointer
from bench.running.router import Router
from bench.running.runner import EpisodeResult, ModelPair, run_episodes

SUMMARY_METRICS = (
    "reward", "success", "steps", "deepthink_calls", "deepthink_fraction", "deepthink_acted",
    "quick_calls", "flops", "flops_quick", "flops_deepthink", "flops_router",
    "compute_s", "compute_s_quick", "compute_s_deepthink", "compute_s_router",
    *(f"{name}{part}" for name in PRICED for part in ("", "_quick", "_deepthink", "_router")),
    "tokens_in_quick", "tokens_in_deepthink", "tokens_out_quick", "tokens_out_deepthink",
)


def summary_metrics(results: list[EpisodeResult]) -> dict[str, float]:
    """Mean and 95% interval of every summary metric over the run's episodes."""
    metrics: dict[str, float] = {}
    per_episode = [r.metrics() for r in results]
    for name in SUMMARY_METRICS:
        estimate = mean_ci([m[name] for m in per_episode])
        metrics[name] = estimate.mean
        metrics[f"{name}_ci_low"] = estimate.low
        metrics[f"{name}_ci_high"] = estimate.high
    metrics["episodes"] = len(results)
    return metrics


def evaluate(
    router: Router,
    task: TaskSpec,
    models: ModelPair,
    seed: int,
    episodes: int,
    batch_size: int,
    profile: str,
    sweep: str,
    exp_name: str | None = None,
    tracking_uri: str | None = None,
    experiment: str = DEFAULT_EXPERIMENT,
    progress: bool = True,
    extra_params: dict | None = None,
    checkpoint: Checkpointer | None = None,
    split: str = "test",
) -> list[EpisodeResult]:
    """Run `episodes` evaluation episodes of `task` for run seed `seed` and log them as one MLflow run.

    `split` "valid" plays the task's validation episodes instead of its test episodes (where a setting is chosen,
    not reported). With `checkpoint` the run is snapshotted as it goes and, where a snapshot exists, continues
    from it in a new MLflow run linked to the stopped one (bench.running.resume)."""
    exp_name = exp_name or router.name
    env_seeds = task.eval_episode_seeds(seed, episodes, split)
    params = {
        "router": router.name, "exp_name": exp_name, "task": task.name, "seed": seed, "split": split,
        "episodes": len(env_seeds),
        "env_seeds": f"{env_seeds[0]}..{env_seeds[-1]}", "batch_size": batch_size, "profile": profile,
        "max_steps": task.max_steps, "git_commit": git_commit(), "torch": torch.__version__,
        "device": str(models.deepthink.device),
        **{f"router.{k}": v for k, v in router.params().items()},
        **(extra_params or {}),
    }
    for role in ("quick", "deepthink"):
        lm = models.get(role)
        params.update({f"{role}.name": lm.name, f"{role}.source": lm.source, f"{role}.context": lm.context,
                       f"{role}.non_embedding_params": lm.size.non_embedding_params,
                       f"{role}.total_params": lm.size.total_params})
        if hasattr(lm, "run_params"):  # a served model: the server, its model id and version, how it chose
            params.update(lm.run_params(role))
    tags = {"londi.kind": "eval", "londi.sweep": sweep, "londi.router": router.name, "londi.task": task.name,
            "londi.profile": profile, "londi.split": split}
    run_name = f"{task.name}__{exp_name}__{seed}__{'' if split == 'test' else split + '__'}{int(time.time())}"
    with _logged_run(run_name, params, tags, checkpoint, experiment, tracking_uri) as run:
        def log_episode(result: EpisodeResult) -> None:
            metrics = {**result.metrics(), "env_seed": result.env_seed}
            run.log_metrics({EPISODE_PREFIX + k: v for k, v in metrics.items()}, step=result.index)

        monitor = _gpu_monitor(models)
        for role in ("quick", "deepthink"):  # a served model counts its requests per run
            if hasattr(models.get(role), "reset_stats"):
                models.get(role).reset_stats()
        started = time.perf_counter()
        try:
            results, meter = run_episodes(
                router, task, models, env_seeds, batch_size=batch_size, seed=seed, on_episode=log_episode,
                progress=progress, checkpoint=checkpoint,
                description=f"{task.name} {exp_name} seed {seed}{'' if split == 'test' else ' (' + split + ')'}",
            )
        finally:
            reading = monitor.stop() if monitor is not None else GpuReading(
                available=False, gpu_s=None, gpu_energy_j=None, wall_s=time.perf_counter() - started, samples=0,
                unavailable_reason="no model runs on a CUDA device", device_name=None)
        totals = {f"total_{k}": v for k, v in usage_metrics(meter.run).items()}
        served = {k: v for role in ("quick", "deepthink") if hasattr(models.get(role), "reset_stats")
                  for k, v in models.get(role).stats.metrics(role).items()}  # requests, retries, latencies
        run.log_metrics({**summary_metrics(results), **totals, **reading.as_metrics(), **served})
        if not reading.available:
            run.set_tags({"londi.gpu": f"unavailable: {reading.unavailable_reason}"})
        run.log_json_lines(
            [{"episode": r.index, "env_seed": r.env_seed, "level": r.level, "reward": r.reward,
              "success": r.success, "steps": r.steps, "trace": r.trace} for r in results],
            "episodes.jsonl",
        )
    return results


def _gpu_monitor(models: ModelPair) -> GpuMonitor | None:
    """An NVML monitor of the GPU the models run on, started; None when they run on the CPU.

    NVML numbers devices physically while torch numbers the visible ones, so a torch index is
    mapped through CUDA_VISIBLE_DEVICES when that lists plain indices.
    """
    devices = [lm.device for lm in (models.deepthink, models.quick) if lm.device.type == "cuda"]
    if not devices:
        return None
    return GpuMonitor(device_index=nvml_index(devices[0].index or 0)).start()


@contextmanager
def _logged_run(name: str, params: dict, tags: dict[str, str], checkpoint: Checkpointer | None, experiment: str,
                uri: str | None) -> Iterator[RunLogger]:
    """The MLflow run of a training or an evaluation; with `checkpoint`, linked to the run it resumes (if any).

    A run stopped by Ctrl-C, SIGTERM or an exception was closed as KILLED or FAILED already; one whose process
    was SIGKILLed is still RUNNING in MLflow and is marked KILLED here: the run the checkpoint names, and any other
    RUNNING run of the same part of the same sweep (tag `londi.part`), such as one whose process died between
    creating it and writing its id beside the checkpoint. Only one process runs a part at a time (a retried Ray task
    runs once its worker is gone), so a RUNNING run of the part is one whose process ended."""
    previous = checkpoint.previous_run() if checkpoint is not None else None
    if checkpoint is not None:
        tags = {**tags, "londi.part": checkpoint.path.stem}
    with RunLogger(name, params, {**tags, "londi.resumed_from": previous} if previous else tags,
                   experiment=experiment, uri=uri) as run:
        orphans = [] if checkpoint is None else [
            r.info.run_id for r in run.client.search_runs(
                [run.experiment_id],
                f"tags.`londi.sweep` = '{tags['londi.sweep']}' and tags.`londi.part` = '{tags['londi.part']}' "
                f"and attributes.status = 'RUNNING'") if r.info.run_id not in (run.run_id, previous)]
        for stopped in ([previous] if previous else []) + orphans:
            try:
                if run.client.get_run(stopped).info.status == "RUNNING":
                    run.client.set_tag(stopped, "londi.stopped", "its process ended without closing the run "
                                       "(SIGKILL or a lost machine); marked KILLED when the sweep resumed")
                    run.client.set_terminated(stopped, status="KILLED")
                run.client.set_tag(stopped, "londi.resumed_in", run.run_id)
            except MlflowException:  # the stopped run was logged to another store
                pass
        if checkpoint is not None:
            checkpoint.set_meta(mlflow_run_id=run.run_id)
        yield run
        if checkpoint is not None and checkpoint.restored:
            run.set_tags({"londi.resumed_episodes": str(checkpoint.restored)})


def update_bill(router: Router, prices: PriceBooks | None) -> dict[str, float]:
    """What a learned router's own training updates cost, for a router that counts them in `stats` (`update_flops`,
    `optimizer_steps`; algos/londi_sac.py): priced by the router-training price (`router_update_priced_s`), projected
    (`router_update_projected_gpu_s`, 0 at the paper's sizes: bench.running.pricing.projected_prices), and the wall
    seconds they took (`router_update_s`, secondary). Unpriced: NaN. The updates' count and FLOPs are in `stats`."""
    stats = getattr(router, "stats", {})
    if "update_flops" not in stats:
        return {}
    flops, steps = float(stats["update_flops"]), float(stats.get("optimizer_steps", stats.get("updates", 0)))
    books = prices or PriceBooks()

    def priced(book: Prices | None) -> float:
        return book.router_update(flops, steps) if book is not None and book.update is not None else float("nan")

    return {"router_update_s": float(getattr(router, "update_s", float("nan"))),
            "router_update_priced_s": priced(books.priced),
            "router_update_projected_gpu_s": priced(books.projected)}


def train_router(
    router: Router,
    task: TaskSpec,
    models: ModelPair,
    seed: int,
    batch_size: int,
    profile: str,
    sweep: str,
    exp_name: str,
    tracking_uri: str | None = None,
    experiment: str = DEFAULT_EXPERIMENT,
    progress: bool = True,
    save_dir: Path | None = None,
    checkpoint: Checkpointer | None = None,
) -> None:
    """Train a learned router online (`router.training = True`) on `router.train_episodes` training seeds of
    `task`, as its own MLflow run (kind `router_train`): the training's DEEPTHINK calls and compute are
    logged there, apart from the evaluation. The trained router is saved as an artifact (and to
    `save_dir`) when it can `save(path)`."""
    env_seeds = task.router_train_seeds(seed, router.train_episodes)
    params = {"router": router.name, "exp_name": exp_name, "task": task.name, "seed": seed,
              "train_episodes": len(env_seeds), "env_seeds": f"{env_seeds[0]}..{env_seeds[-1]}",
              "batch_size": batch_size, "profile": profile, "git_commit": git_commit(),
              **{f"router.{k}": v for k, v in router.params().items()}}
    tags = {"londi.kind": "router_train", "londi.sweep": sweep, "londi.router": router.name, "londi.task": task.name,
            "londi.profile": profile}
    with _logged_run(f"{task.name}__{exp_name}__{seed}__train__{int(time.time())}", params, tags, checkpoint,
                     experiment, tracking_uri) as run:
        def log_episode(result: EpisodeResult) -> None:  # the learning curve
            metrics = result.metrics()
            run.log_metrics({TRAIN_EPISODE_PREFIX + k: metrics[k] for k in CURVE_METRICS}, step=result.index)

        router.training = True
        try:
            results, meter = run_episodes(router, task, models, env_seeds, batch_size=batch_size, seed=seed,
                                          progress=progress, description=f"{task.name} {exp_name} seed {seed} (train)",
                                          checkpoint=checkpoint, on_episode=log_episode)
        finally:
            router.training = False
        totals = {f"total_{k}": v for k, v in usage_metrics(meter.run).items()}
        run.log_metrics({**summary_metrics(results), **totals,
                         **{f"router_{k}": v for k, v in getattr(router, "stats", {}).items()},
                         **update_bill(router, models.prices)})
        if hasattr(router, "save"):
            with tempfile.TemporaryDirectory() as tmp:
                saved = router.save(Path(tmp) / "switcher")
                for path in saved.iterdir():
                    run.log_file(path)
                if save_dir is not None:
                    shutil.copytree(saved, save_dir, dirs_exist_ok=True)
