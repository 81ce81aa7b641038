"""The two models a run acts with: QUICK (small, cheap) and DEEPTHINK (large, costly)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bench.models.lm import ActionLM

MODELS = ("quick", "deepthink")


@dataclass(frozen=True)
class ModelPair:
    quick: ActionLM
    deepthink: ActionLM
    prices: Any = field(default=None, compare=False)
    """The price books every run of this pair is metered with (bench.running.pricing.PriceBooks, built by
    bench.running.calibrate.price_books); None: its priced costs are NaN. Kept here so that no run of the pair
    goes unpriced; typed loosely because the models layer sits below the one that prices."""

    def get(self, role: str) -> ActionLM:
        return self.quick if role == "quick" else self.deepthink

    def seed(self, seed: int) -> None:
        """Seed each model's own generator (a sampling or random policy has one; a greedy model has none)."""
        for role in MODELS:
            seeder = getattr(self.get(role), "seed", None)
            if seeder is not None:
                seeder(seed)

    def generators(self) -> dict[str, Any]:
        """Each model's generator (None for a model without one): what a checkpoint keeps of the models."""
        return {role: getattr(self.get(role), "rng", None) for role in MODELS}

    def set_generators(self, generators: dict[str, Any]) -> None:
        for role, rng in generators.items():
            if rng is not None:
                self.get(role).rng = rng
