"""Language models as acting policies: `lm` (one interface for any checkpoint, candidate scoring or
generation, analytic FLOPs), `cost` (what one call cost), `demos` (BabyAIBot demonstrations and
ScienceWorld gold paths), `train` (behaviour cloning, tokenizers), `dagger` (DAgger rounds), `cache` (the
model cache and committed checkpoints: `python -m bench.models` trains a profile's pairs), `profiles`
(smoke, cpu, paper). Uses environments; knows nothing of routers, running or reports."""

import importlib
from typing import Any


def __getattr__(name: str) -> Any:
    """The flat layout's `bench.models` module is `bench.models.cache` now: its names are found there, on first use
    only (importing the package must not load transformers for code that needs just `bench.models.cost`)."""
    if name.startswith("__"):
        raise AttributeError(name)
    cache = importlib.import_module("bench.models.cache")
    try:
        return getattr(cache, name)
    except AttributeError:
        raise AttributeError(f"module 'bench.models' has no attribute {name!r}") from None
