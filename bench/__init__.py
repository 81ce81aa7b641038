"""londi-bench: when does a language model need to be large?

The package reads as its layers, each importing only from the ones above it in this list
(tests/test_layout.py checks it):

- `bench.common`: what every layer uses: the MLflow store, the code's commit and the cache folder, user errors.
- `bench.envs`: the task registry, BabyAI-Text, ScienceWorld, and what each model reads of an episode.
- `bench.models`: language models as acting policies, their training (behaviour cloning, DAgger), the
  demonstrations, the model cache and committed checkpoints, the profiles.
- `bench.running`: the router contract and lookup, the one episode loop, metering, NVML, checkpoint and
  resume, an evaluation or a training as an MLflow run.
- `bench.reporting`: statistics, tables, verdicts and plots, the pair report, REPRODUCE.md.
- entry points: `bench.reproduce` (the comparison), `bench.regress` (the smoke reference), `bench.calibrate`
  (what each model's call costs on this machine, for priced costs), `bench.scaling` (a sweep serially against
  Ray: wall time, overhead per cell, the tracking load), `bench.cli` (what every router's own command line
  shares).

Routers live outside the package, one per file: `baselines/` and `algos/`; bench/ never imports them by name.

Modules of the flat layout before these subpackages (`bench.router`, `bench.runner`, `bench.tasks`, ...) still
import, as the modules they moved to, so code written against them keeps working.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from types import CodeType, ModuleType

MOVED = {
    "bench.babyai_memory": "bench.envs.babyai_memory",
    "bench.babyai_text": "bench.envs.babyai_text",
    "bench.babyai_words": "bench.envs.babyai_words",
    "bench.contexts": "bench.envs.contexts",
    "bench.scienceworld_text": "bench.envs.scienceworld_text",
    "bench.tasks": "bench.envs.tasks",
    "bench.dagger": "bench.models.dagger",
    "bench.demos": "bench.models.demos",
    "bench.lm": "bench.models.lm",
    "bench.profiles": "bench.models.profiles",
    "bench.train": "bench.models.train",
    "bench.evaluate": "bench.cli",  # EvalArgs and run_cli moved there; it re-exports the rest of the old module
    "bench.gpu": "bench.running.gpu",
    "bench.metering": "bench.running.metering",
    "bench.resume": "bench.running.resume",
    "bench.router": "bench.running.router",
    "bench.routers": "bench.running.routers",
    "bench.runner": "bench.running.runner",
    "bench.tracking": "bench.common.tracking",
    "bench.pair": "bench.reporting.pair",
    "bench.report": "bench.reporting.report",
    "bench.reproduce_doc": "bench.reporting.reproduce_doc",
    "bench.stats": "bench.common.stats",
    "bench.switching_mdp": "algos.switching_mdp",
}
"""Old flat module name -> where it lives now. (`bench.models` is a package now; its old contents are in
`bench.models.cache`, and `python -m bench.models` still runs that module's command.)"""


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.InspectLoader):
    """Imports an old name as the very module object of its new place (one module, not a copy), and runs it
    under `python -m <old name>` as it ran before."""

    def find_spec(self, fullname: str, path: object = None,
                  target: object = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED:
            return None
        real = importlib.util.find_spec(MOVED[fullname])
        # The real file as origin: `python -m <old name>` then has its __file__ and sys.argv[0].
        return importlib.util.spec_from_loader(fullname, self, origin=real.origin if real is not None else None)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return importlib.import_module(MOVED[spec.name])

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run: the module was imported under its new name."""

    def get_code(self, fullname: str) -> CodeType | None:
        spec = importlib.util.find_spec(MOVED[fullname])
        return spec.loader.get_code(spec.name) if spec is not None and spec.loader is not None else None

    def get_source(self, fullname: str) -> str | None:
        spec = importlib.util.find_spec(MOVED[fullname])
        return spec.loader.get_source(spec.name) if spec is not None and spec.loader is not None else None


if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
    sys.meta_path.append(_MovedModules())
