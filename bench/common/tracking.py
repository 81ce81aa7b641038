"""MLflow tracking: one run per (task, router, seed) with params, per-episode and summary metrics.

The store is MLFLOW_TRACKING_URI when set, else a sqlite file `mlflow.db` in the working
directory with artifacts beside it in `mlartifacts/`. Per-episode metrics are named
`episode/<metric>` with the episode index as the MLflow step, so `get_metric_history` gives one
value per episode back; the plain names (`reward`, `flops`, ...) are the run's summary.
Episode metrics are flushed in batches while the run goes and on exit (failure included), so only
a hard kill (SIGKILL) can lose the last unflushed batch.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from bench.common.errors import UserError

DEFAULT_EXPERIMENT = "londi-bench"
MAX_PARAMS_PER_BATCH = 100  # MLflow's limit for one log_batch call
FLUSH_EVERY = 200  # metrics per log_batch call (MLflow accepts up to 1000)
# A summary logged under the same name as a per-episode series would join its history (as a
# second point at step 0) and become neither the run's latest value nor one episode's.
EPISODE_PREFIX = "episode/"
TRAIN_EPISODE_PREFIX = "train_episode/"
"""A learned router's training episodes, one point per episode (its learning curve)."""
CURVE_METRICS = ("reward", "deepthink_fraction", "steps")
"""What a training run logs per episode."""


def artifact_progress(enabled: bool) -> contextlib.AbstractContextManager[None]:
    """MLflow's own artifact upload and download bars on or off (`--no-progress` means no bar at all)."""
    return _environ({"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "true" if enabled else "false"})


@contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    """MLflow reads these settings from the environment: set them for a block, then put back what was there."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def metric_key(name: str) -> str:
    """`name` with the characters MLflow refuses in metric names (brackets, =, commas of router options)
    replaced: random_switch[p=0.3] -> random_switch_p-0.3_."""
    return re.sub(r"[^\w\-. :/]", "_", name.replace("=", "-"))


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def _artifact_root(uri: str) -> str | None:
    """Keep artifacts next to a local sqlite store rather than in MLflow's cwd-relative default."""
    if uri.startswith("sqlite:///"):
        return (Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts").resolve().as_uri()
    return None


def get_client(uri: str | None = None) -> MlflowClient:
    return MlflowClient(tracking_uri=uri or tracking_uri())


class TrackingUnreachableError(UserError, ConnectionError):
    """The MLflow tracking store cannot be reached: a user error (the URI or the server), not a bug."""


def _root_cause(error: BaseException, limit: int = 160) -> str:
    """The innermost cause of a chained error (a refused connection, not the retry wrapper around it), on one line,
    shortened at a word boundary."""
    while (error.__cause__ or error.__context__) is not None:
        error = error.__cause__ or error.__context__
    text = re.sub(r"\s+", " ", str(error).split("\n")[0]).strip()
    if len(text) > limit:
        text = text[:limit].rsplit(" ", 1)[0] + " ..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def check_tracking(uri: str | None = None) -> None:
    """Fail fast, with one line naming the URI and the fix, when the tracking store does not answer.

    MLflow retries an HTTP request for minutes by default; here it is asked once, with a short timeout."""
    uri = uri or tracking_uri()
    try:
        with _environ({"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}):
            get_client(uri).search_experiments(max_results=1)
    except Exception as error:  # noqa: BLE001 - any failure here means the store cannot be used
        raise TrackingUnreachableError(
            f"cannot reach the MLflow tracking store at {uri} ({_root_cause(error)}); start the server "
            f"or fix --tracking-uri / MLFLOW_TRACKING_URI (a local store: sqlite:///mlflow.db)") from error


def experiment_id(client: MlflowClient, name: str = DEFAULT_EXPERIMENT) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return client.create_experiment(name, artifact_location=_artifact_root(client.tracking_uri))
    except MlflowException:  # another process (a sweep's other worker) created it first
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


class RunLogger:
    """Logs one MLflow run; use as a context manager so a crash marks the run FAILED, not RUNNING."""

    def __init__(
        self,
        run_name: str,
        params: dict[str, Any],
        tags: dict[str, str] | None = None,
        experiment: str = DEFAULT_EXPERIMENT,
        uri: str | None = None,
    ) -> None:
        self.client = get_client(uri)
        self.experiment_id = exp_id = experiment_id(self.client, experiment)
        self.run_id = self.client.create_run(exp_id, run_name=run_name, tags=tags or {}).info.run_id
        self._pending: list[Metric] = []
        entries = [Param(k, str(v)[:6000]) for k, v in sorted(params.items())]
        for start in range(0, len(entries), MAX_PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, params=entries[start:start + MAX_PARAMS_PER_BATCH])

    def __enter__(self) -> RunLogger:
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: object) -> None:
        self.flush()
        if exc_type is None:
            status = "FINISHED"
        elif issubclass(exc_type, KeyboardInterrupt):
            status = "KILLED"
        else:
            status = "FAILED"
            self.client.set_tag(self.run_id, "londi.error", f"{exc_type.__name__}: {exc}"[:5000])
        self.client.set_terminated(self.run_id, status=status)

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        now = int(time.time() * 1000)
        self._pending.extend(Metric(k, float(v), now, step) for k, v in metrics.items())
        if len(self._pending) >= FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        while self._pending:
            chunk, self._pending = self._pending[:FLUSH_EVERY], self._pending[FLUSH_EVERY:]
            self.client.log_batch(self.run_id, metrics=chunk)

    def set_tags(self, tags: dict[str, str]) -> None:
        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_json_lines(self, rows: list[dict[str, Any]], filename: str) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / filename
            path.write_text("".join(json.dumps(row) + "\n" for row in rows))
            self.client.log_artifact(self.run_id, str(path))

    def log_file(self, path: Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)


def finished_runs(sweep: str, kind: str, tracking_uri: str | None = None, experiment: str = DEFAULT_EXPERIMENT,
                  where: str = "") -> list:
    """The sweep's FINISHED runs of one kind (eval, router_train), optionally filtered further (`where`)."""
    client = get_client(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise ValueError(f"no MLflow experiment {experiment!r} at {client.tracking_uri}")
    return client.search_runs(
        [exp.experiment_id],
        filter_string=f"tags.`londi.sweep` = '{sweep}' and tags.`londi.kind` = '{kind}' "
                      f"and attributes.status = 'FINISHED'{f' and {where}' if where else ''}",
        max_results=10000,
    )
