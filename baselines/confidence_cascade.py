"""Confidence cascade: QUICK proposes; where it is unsure, DEEPTHINK decides instead.

The strongest simple router of the LLM-routing literature (FrugalGPT's cascade, Hybrid LLM):
QUICK decides at every step (so its compute counts on every step), and DEEPTHINK is called
instead when QUICK's confidence is under the threshold:

- `margin`: probability of QUICK's best action minus that of its second best;
- `entropy`: the entropy (in nats) of QUICK's distribution is over the threshold.

Where a task scores a fixed candidate list (BabyAI-Text) the distribution is the softmax over the
candidates; where the models generate their actions (ScienceWorld) it is each generated token's,
taking the least sure token (bench.models.lm.Decision).

`fraction=f` calibrates the threshold instead of taking it (RouteLLM's calibration): on
`train_episodes` training episodes the cascade plays with its current threshold, QUICK's confidence
is recorded at every step, and after every step the threshold becomes the quantile of all the
confidences recorded that sends a share f of them to DEEPTHINK. Calibrating on the cascade's own
episodes matters: on episodes QUICK plays alone it loops, and the quantile of those states sent 93%
of the steps of the cascade's own episodes to DEEPTHINK where 25% was asked (the cpu sweep before
issue 17). Its training (the calls on those episodes) is in its bill like a learned router's; `make
reproduce` runs it at each LONDI setting's own DEEPTHINK fraction on the validation episodes, to
compare at equal fraction; the report shows both fractions.

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
    fraction: float | None = None
    """calibrate the threshold so that this share of steps escalates (QUICK's confidence on training episodes)"""
    train_episodes: int = 20
    """training episodes the threshold is calibrated on (with `fraction`)"""


class ConfidenceCascade(Router):
    name = "confidence_cascade"

    def __init__(self, measure: str = "margin", threshold: float = 0.3, fraction: float | None = None,
                 train_episodes: int = 20) -> None:
        if measure not in ("margin", "entropy"):
            raise ValueError(f"confidence_cascade: measure must be 'margin' or 'entropy', got {measure!r}")
        if threshold < 0:
            raise ValueError(f"confidence_cascade: threshold must be >= 0, got {threshold}")
        if fraction is not None and not 0 <= fraction <= 1:
            raise ValueError(f"confidence_cascade: fraction must be in [0, 1], got {fraction}")
        if train_episodes < 1:
            raise ValueError(f"confidence_cascade: train_episodes must be >= 1, got {train_episodes}")
        self.measure = measure
        self.threshold = threshold
        self.fraction = fraction
        self.train_episodes = train_episodes
        self.training = False
        self.seen: list[float] = []
        """QUICK's confidence at every training step (with `fraction`)"""

    def needs_training(self) -> bool:
        return self.fraction is not None and not self.seen

    def confidence(self, view: StepView) -> np.ndarray:
        return view.margin("quick") if self.measure == "margin" else view.entropy("quick")

    def route(self, view: StepView) -> np.ndarray:
        confidence = self.confidence(view)
        if self.training:  # calibrating on its own episodes: it plays with the threshold so far, then recalibrates
            escalate = self.escalate(confidence)
            self.seen += [float(c) for c in confidence]
            self.calibrate()
            return escalate
        return self.escalate(confidence)

    def escalate(self, confidence: np.ndarray) -> np.ndarray:
        if self.measure == "margin":
            return confidence < self.threshold
        return confidence > self.threshold

    def calibrate(self) -> None:
        """The threshold that escalates a share `fraction` of the steps seen (margins below it; entropies above)."""
        finite = np.sort([c for c in self.seen if np.isfinite(c)])
        if self.fraction is None or finite.size == 0:
            return
        # Tied confidences (a state seen again) escalate together: of the thresholds that split the steps seen, the
        # one whose share comes nearest the fraction (the lowest such: fewer DEEPTHINK calls on a tie).
        if self.measure == "margin":
            candidates = np.append(np.unique(finite), np.inf)
            shares = np.searchsorted(finite, candidates, side="left") / finite.size  # margin < t escalates
        else:
            candidates = np.append(np.unique(finite)[::-1], -np.inf)
            shares = 1 - np.searchsorted(finite, candidates, side="right") / finite.size  # entropy > t escalates
        self.threshold = float(candidates[int(np.argmin(np.abs(shares - self.fraction)))])

    @property
    def stats(self) -> dict[str, float]:
        return {"calibrated_threshold": self.threshold, "calibration_steps": len(self.seen)}


if __name__ == "__main__":
    args = tyro.cli(Args)
    run_cli(lambda: ConfidenceCascade(measure=args.measure, threshold=args.threshold, fraction=args.fraction,
                                      train_episodes=args.train_episodes), args)
