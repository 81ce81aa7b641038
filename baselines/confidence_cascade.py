"""Confidence cascade: QUICK proposes; where it is unsure, DEEPTHINK decides instead.

The strongest simple router of the LLM-routing literature (FrugalGPT's cascade, Hybrid LLM):
QUICK scores the candidate actions at every step (so its compute counts on every step), the
scores are turned into a distribution over the candidates (softmax of the log-likelihoods),
and DEEPTHINK is called when QUICK's confidence is under the threshold:

- `margin`: probability of QUICK's best action minus that of its second best;
- `entropy`: the distribution's entropy (in nats) is over the threshold.

    python -m baselines.confidence_cascade --task babyai/Mixed --measure margin --threshold 0.3
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import tyro

from bench.evaluate import EvalArgs, run_cli
from bench.router import Router, StepView


@dataclass
class Args(EvalArgs):
    exp_name: str = ""
    """run name part after the task; empty: confidence_cascade[measure=...,threshold=...]"""
    measure: Literal["margin", "entropy"] = "margin"
    """QUICK's confidence: top-1 minus top-2 probability, or entropy of its action distribution"""
    threshold: float = 0.3
    """escalate to DEEPTHINK when the margin is below it (or the entropy above it)"""


def action_distribution(scores: np.ndarray) -> np.ndarray:
    """Softmax over candidates of each row of log-likelihood scores [prompts, candidates]."""
    shifted = scores - scores.max(axis=1, keepdims=True)
    probs = np.exp(shifted)
    return probs / probs.sum(axis=1, keepdims=True)


def margin(probs: np.ndarray) -> np.ndarray:
    top = np.sort(probs, axis=1)
    return top[:, -1] - top[:, -2]


def entropy(probs: np.ndarray) -> np.ndarray:
    return -(probs * np.log(np.clip(probs, 1e-12, None))).sum(axis=1)


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
        probs = action_distribution(view.quick())
        if self.measure == "margin":
            return margin(probs) < self.threshold
        return entropy(probs) > self.threshold


if __name__ == "__main__":
    args = tyro.cli(Args)
    args.exp_name = args.exp_name or f"confidence_cascade[measure={args.measure},threshold={args.threshold}]"
    run_cli(lambda: ConfidenceCascade(measure=args.measure, threshold=args.threshold), args)
