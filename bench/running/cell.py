"""One cell of a sweep: one router's run seed on one task, trained first if it learns, then evaluated.

With a `SweepState` (a sweep that can be resumed) a part already finished is not run again and a stopped part
continues from its checkpoint (bench.running.resume)."""

from __future__ import annotations

from bench.common.tracking import DEFAULT_EXPERIMENT
from bench.envs.tasks import TaskSpec
from bench.running.evaluate import evaluate, train_router
from bench.running.resume import Checkpointer, SweepState, restore_into
from bench.running.router import Router
from bench.running.runner import EpisodeResult, ModelPair


def train_and_evaluate(router: Router, task: TaskSpec, models: ModelPair, seed: int, episodes: int, batch_size: int,
                       profile: str, sweep: str, exp_name: str, tracking_uri: str | None = None,
                       experiment: str = DEFAULT_EXPERIMENT, progress: bool = True,
                       state: SweepState | None = None, valid_episodes: int = 0,
                       valid_out: list[EpisodeResult] | None = None) -> list[EpisodeResult]:
    """One run seed of a router: trained first if it learns (its own MLflow run), then evaluated: on
    `valid_episodes` validation episodes first where asked (where its setting is chosen), then on the test episodes
    (its own runs, split "valid" and "test"). Returns the test episodes; the validation episodes are added to
    `valid_out` where given (what a control is matched to: never the test episodes).

    With `state` (a sweep that can be resumed) a part already finished is not run again (a trained router is
    restored, evaluated episodes are returned) and a stopped part continues from its checkpoint."""
    def checkpoint(kind: str) -> Checkpointer | None:
        return None if state is None else state.checkpointer(task.name, exp_name, seed, kind)

    if getattr(router, "needs_training", lambda: False)():
        trained = None if state is None else state.done(task.name, exp_name, seed, "train")
        if trained is not None:
            restore_into(router, trained)
        else:
            train_router(router, task, models, seed, batch_size, profile, sweep, exp_name, tracking_uri=tracking_uri,
                         experiment=experiment, progress=progress, checkpoint=checkpoint("train"))
            if state is not None:
                state.mark_done(task.name, exp_name, seed, "train", router)
    results: list[EpisodeResult] = []
    for split, kind, count in (("valid", "valid", valid_episodes), ("test", "eval", episodes)):
        if count <= 0:
            continue
        evaluated = None if state is None else state.done(task.name, exp_name, seed, kind)
        if evaluated is None:
            evaluated = evaluate(router, task, models, seed, count, batch_size, profile, sweep, exp_name=exp_name,
                                 tracking_uri=tracking_uri, experiment=experiment, progress=progress,
                                 checkpoint=checkpoint(kind), split=split)
            if state is not None:
                state.mark_done(task.name, exp_name, seed, kind, evaluated)
        if split == "valid" and valid_out is not None:
            valid_out.extend(evaluated)
        results = evaluated
    return results
