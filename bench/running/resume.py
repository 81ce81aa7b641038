"""Stop and resume: a sweep that is interrupted (Ctrl-C, SIGTERM, SIGKILL, a crash) goes on where it stopped.

Two levels, both on local disk under `<state_dir>/<sweep>/` (default `.cache/londi/sweeps/`):

- `SweepState` remembers what a sweep has finished: every finished run (task, router, seed, and
  whether it trained or evaluated) leaves a `.done` file with its result (the evaluated episodes, or
  the trained router), so a resumed sweep skips it, and its command-line options, so `--resume`
  needs nothing else.
- `Checkpointer` keeps the snapshots of one run on disk; `LoopCheckpoint` is the object beside the episode
  loop (bench.running.runner) that takes them at a step boundary and gives the loop back its state: the
  router (a learned router's networks, optimiser, replay buffer and random generator), every finished
  episode, the episodes in flight (their histories, returns and metered usage), the queue of episodes not
  started, and the models' own generators (a random policy's). Nothing global is kept: every object
  draws from its own generator. The environments are not pickled: an episode in flight is replayed from
  its seed with the actions it played. Restored this way a run continues with the same model batches and
  the same random draws as if it had never stopped, so its final metrics equal an uninterrupted run's
  (all but the timings).

A snapshot is written after an episode finishes, at most every `every_s` seconds, atomically (a
kill while writing leaves the previous one). The MLflow run that was stopped keeps its status
(KILLED for Ctrl-C and SIGTERM, FAILED for an exception; a SIGKILLed one, left RUNNING, is marked
KILLED when the sweep resumes) and a tag naming the run that finished its work
(`londi.resumed_in`); that run carries `londi.resumed_from` and how many episodes it took over.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bench.common.provenance import cache_dir
from bench.models.pair import ModelPair
from bench.running.router import Router


def default_state_dir() -> Path:
    """`sweeps/` in the harness's cache ($LONDI_CACHE, else .cache/londi)."""
    return cache_dir() / "sweeps"


def _atomic_save(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _load(path: Path) -> Any:
    return torch.load(path, weights_only=False)  # our own pickles: routers, episode results


def restore_into(target: object, saved: object) -> None:
    """Give `target` the whole state of `saved` (same class), so references to `target` see the restored object."""
    if type(target) is not type(saved):
        raise ValueError(f"cannot restore a {type(saved).__name__} into a {type(target).__name__}")
    vars(target).clear()
    vars(target).update(vars(saved))


@dataclass
class Checkpointer:
    """Snapshots of one run (see the module docstring); `meta` is a small JSON side file (the MLflow run id)."""

    path: Path
    every_s: float = 30.0
    """seconds between snapshots at least; 0: after every finished episode"""
    saves: int = field(default=0, init=False)
    broken: bool = field(default=False, init=False)
    restored: int = field(default=0, init=False)
    """finished episodes the last restore brought back (set by LoopCheckpoint)"""

    @property
    def meta_path(self) -> Path:
        return self.path.with_name(self.path.name + ".json")

    def exists(self) -> bool:
        return self.path.exists()

    def meta(self) -> dict[str, Any]:
        return json.loads(self.meta_path.read_text()) if self.meta_path.exists() else {}

    def previous_run(self) -> str | None:
        """The MLflow run this part last started, if it never finished: the run a resumed one continues from its
        snapshot, or replaces when it was stopped before its first snapshot (a cell killed early, a driver whose
        Ray tasks ended with it), so that no run is left RUNNING."""
        return self.meta().get("mlflow_run_id")

    def set_meta(self, **values: Any) -> None:
        self.meta_path.parent.mkdir(parents=True, exist_ok=True)
        self.meta_path.write_text(json.dumps({**self.meta(), **values}))

    def save(self, state: dict[str, Any]) -> None:
        if self.broken:
            return
        try:
            _atomic_save(state, self.path)
        except (pickle.PicklingError, TypeError, AttributeError) as error:  # e.g. a user router holding a lock
            self.broken = True
            self.path.with_name(self.path.name + ".tmp").unlink(missing_ok=True)
            warnings.warn(f"cannot checkpoint {self.path.name} ({error}); this run will not be resumable",
                          stacklevel=2)
            return
        self.saves += 1

    def load(self, fingerprint: dict[str, Any]) -> dict[str, Any] | None:
        """The last snapshot, or None when there is none; refused when another run made it."""
        if not self.path.exists():
            return None
        state = _load(self.path)
        if state["fingerprint"].get("format") != fingerprint.get("format"):
            raise ValueError(f"the checkpoint {self.path} was made by another version of the harness: delete it (or "
                             f"the stopped sweep's folder) to run that part again")
        if state["fingerprint"] != fingerprint:
            moved = sorted(k for k in fingerprint if state["fingerprint"].get(k) != fingerprint[k])
            raise ValueError(f"the checkpoint {self.path} belongs to another run (its {', '.join(moved)} differ): "
                             f"resume with the options it was made with, or delete it to start over")
        return state

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)
        self.meta_path.unlink(missing_ok=True)


class LoopCheckpoint:
    """Checkpoint and resume of one episode loop, beside it: `restore` before the first step, `at_step_boundary`
    after each. Without a `Checkpointer` both do nothing. The loop's state (bench.running.runner.LoopState) is
    pickled as it is; this object needs to know only that it has `active()` slots."""

    FORMAT = 2
    """Bump when what a snapshot holds changes: a snapshot of another format is refused, not half restored."""

    def __init__(self, checkpointer: Checkpointer | None, fingerprint: dict[str, Any]) -> None:
        self.checkpointer, self.fingerprint = checkpointer, {**fingerprint, "format": self.FORMAT}
        self.last_save = time.monotonic()

    def started(self) -> None:
        """The loop is ready to step (environments made, a restored state replayed): `every_s` counts from now."""
        self.last_save = time.monotonic()

    def restore(self, router: Router, models: ModelPair) -> Any | None:
        """The loop state of this run's last snapshot, with `router` and the models' generators as they were then;
        None when there is none (a fresh run)."""
        saved = self.checkpointer.load(self.fingerprint) if self.checkpointer is not None else None
        if saved is None:
            return None
        restore_into(router, saved["router"])
        models.set_generators(saved["model_generators"])
        self.checkpointer.restored = len(saved["loop"].results)
        return saved["loop"]

    def at_step_boundary(self, state: Any, router: Router, models: ModelPair, episodes_ended: bool) -> None:
        """Snapshot when an episode just ended, one is still running, and `every_s` has passed: nothing is half
        done between two steps."""
        if (self.checkpointer is None or not episodes_ended or not state.active()
                or time.monotonic() - self.last_save < self.checkpointer.every_s):
            return
        self.checkpointer.save({"fingerprint": self.fingerprint, "router": router, "loop": state,
                                "model_generators": models.generators()})
        self.last_save = time.monotonic()


def _safe(text: str) -> str:
    return re.sub(r"[^\w\-.=,]", "_", text)


@dataclass
class SweepState:
    """What one sweep has finished and the checkpoints of what it has not, under `root` = state_dir / sweep."""

    root: Path
    every_s: float = 30.0

    @staticmethod
    def latest(state_dir: Path) -> str:
        sweeps = sorted((p for p in state_dir.glob("*") if (p / "args.json").exists()),
                        key=lambda p: (p / "args.json").stat().st_mtime) if state_dir.exists() else []
        if not sweeps:
            raise FileNotFoundError(f"no stopped sweep to resume in {state_dir}: "
                                    f"start one with python -m bench.reproduce")
        return sweeps[-1].name

    def path(self, task: str, label: str, seed: int, kind: str, ending: str) -> Path:
        # Not Path.with_suffix: a label like londi_sac[c=0.01] has a dot of its own.
        return self.root / f"{_safe(task)}__{_safe(label)}__{seed}__{kind}{ending}"

    def checkpointer(self, task: str, label: str, seed: int, kind: str) -> Checkpointer:
        return Checkpointer(self.path(task, label, seed, kind, ".ckpt"), every_s=self.every_s)

    def done(self, task: str, label: str, seed: int, kind: str) -> Any | None:
        path = self.path(task, label, seed, kind, ".done")
        return _load(path) if path.exists() else None

    def mark_done(self, task: str, label: str, seed: int, kind: str, payload: Any) -> None:
        _atomic_save(payload, self.path(task, label, seed, kind, ".done"))
        self.checkpointer(task, label, seed, kind).clear()

    def save_args(self, args: dict[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "args.json").write_text(json.dumps(args, indent=1, default=str))

    def load_args(self) -> dict[str, Any]:
        path = self.root / "args.json"
        if not path.exists():
            raise FileNotFoundError(f"no stopped sweep {self.root.name!r} in {self.root.parent} (no args.json): "
                                    f"give the sweep id a stopped run printed, or --resume last")
        return json.loads(path.read_text())

    def clear(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
