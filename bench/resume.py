"""Stop and resume: a sweep that is interrupted (Ctrl-C, SIGTERM, SIGKILL, a crash) goes on where it stopped.

Two levels, both on local disk under `<state_dir>/<sweep>/` (default `.cache/londi/sweeps/`):

- `SweepState` remembers what a sweep has finished: every finished run (task, router, seed, and
  whether it trained or evaluated) leaves a `.done` file with its result (the evaluated episodes, or
  the trained router), so a resumed sweep skips it, and its command-line options, so `--resume`
  needs nothing else.
- `Checkpointer` snapshots one run while it goes, at a step boundary of the episode loop (see
  bench.runner.run_episodes): the router (a learned router's networks, optimiser, replay buffer and
  random generator), every finished episode, the episodes in flight (their histories, returns and
  metered usage), the queue of episodes not started, and the global random states. The environments
  are not pickled: an episode in flight is replayed from its seed with the actions it played.
  Restored this way a run continues with the same model batches and the same random draws as if it had
  never stopped, so its final metrics equal an uninterrupted run's (all but the timings).

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
import random
import re
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch


def default_state_dir() -> Path:
    """`sweeps/` in the harness's cache ($LONDI_CACHE, else .cache/londi)."""
    from bench.models import cache_dir

    return cache_dir() / "sweeps"


def _atomic_save(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _load(path: Path) -> Any:
    return torch.load(path, weights_only=False)  # our own pickles: routers, episode results


def random_states() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_random_states(states: dict[str, Any]) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])


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
    """finished episodes the last load brought back"""

    @property
    def meta_path(self) -> Path:
        return self.path.with_name(self.path.name + ".json")

    def exists(self) -> bool:
        return self.path.exists()

    def meta(self) -> dict[str, Any]:
        return json.loads(self.meta_path.read_text()) if self.meta_path.exists() else {}

    def previous_run(self) -> str | None:
        """The MLflow run that made the snapshot there is (the run a resumed one continues), if any."""
        return self.meta().get("mlflow_run_id") if self.exists() else None

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
        if state["fingerprint"] != fingerprint:
            moved = sorted(k for k in fingerprint if state["fingerprint"].get(k) != fingerprint[k])
            raise ValueError(f"the checkpoint {self.path} belongs to another run (its {', '.join(moved)} differ): "
                             f"resume with the options it was made with, or delete it to start over")
        self.restored = len(state["results"])
        return state

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)
        self.meta_path.unlink(missing_ok=True)


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
