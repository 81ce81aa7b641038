"""Confidence cascade: QUICK proposes; where it is unsure, DEEPTHINK decides instead.

The strongest simple router of the LLM-routing literature (FrugalGPT's cascade, Hybrid LLM):
QUICK decides at every step (so its compute counts on every step), and DEEPTHINK is called
instead when QUICK's confidence is under the threshold:

- `margin`: probability of QUICK's best action minus that of its second best;
- `entropy`: the entropy (in nats) of QUICK's distribution is over the threshold.

Where a task scores a fixed candidate list (BabyAI-Text) the distribution is the softmax over the
candidates; where the models generate their actions (ScienceWorld) it is each generated token's,
taking the least sure token (bench.models.lm.Decision).

    python -m baselines.confidence_cascade --task babyai/Mixed --measure margin --threshold 0.3
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import tyro

from bench.cli import EvalArgs, run_cli
from bench.running.router import Router, StepView


@dataclass
class Args(EvalArgs):
    """QUICK first; DEEPTHINK where QUICK's margin or entropy says it is unsure."""

    measure: Literal["margin", "entropy"] = "margin"
    """QUICK's confidence: top-1 minus top-2 probability, or entropy of its action distribution"""
    threshold: float = 0.3
    """escalate to DEEPTHINK when the margin is below it (or the entropy above it)"""


class ConfidenceCascade(Router):
    name = "confidence_cascade"

    def __init__(self, measure: str = "margin", threshold: float = 0.3) -> None:
        if measure not in ("margin", "entropy"):
            raise ValueError(f"confidence_cascade: measure must be 'margin' or 'entropy', got {measure!r}")
        if threshold < 0:
            raise ValueError(f"confidence_cascade: threshold must be >= 0, got {threshold}")
        self.measure = measure
        self.threshold = threshold

    def route(self, view: StepView) -> np.ndarray:
        if self.measure == "margin":
            return view.margin("quick") < self.threshold
        return view.entropy("quick") > self.threshold


if __name__ == "__main__":
    args = tyro.cli(Args)
    run_cli(lambda: ConfidenceCascade(measure=args.measure, threshold=args.threshold), args)
