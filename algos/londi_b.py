"""LONDI-B: LONDI with a budget of `budget` DEEPTHINK calls per episode.

Everything of LONDI-SAC (algos/londi_sac.py: encoder, reward minus c per call, discrete SAC,
online training, save and load), plus the budget:

- state: the calls left this episode are part of the Switcher's input (one-hot over 0..budget
  and the fraction left), so it can learn to save calls for the states that need them;
- training: every choice stays open; choosing DEEPTHINK with no call left is penalised by
  `penalty` and QUICK acts instead (the call is not made);
- evaluation: DEEPTHINK is masked out once the budget is spent, so it is never exceeded.

    python -m algos.londi_b --task babyai/Mixed --budget 4 --seeds 0
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tyro

from algos.londi_sac import Args as SACArgs
from algos.londi_sac import LondiSAC
from bench.cli import run_cli


@dataclass
class Args(SACArgs):
    """LONDI-B: LONDI-SAC with a budget of DEEPTHINK calls per episode (in the state, penalised in training,
    masked at evaluation)."""

    budget: int = 4
    """DEEPTHINK calls allowed per episode"""
    penalty: float = 0.25
    """training penalty for choosing DEEPTHINK with no call left (1 taught some Switchers never to call:
    tests/test_londi_exact.py)"""
    c: float = 0.0
    """cost of one DEEPTHINK call in the Switcher's reward; 0: the budget alone limits the calls"""


class LondiB(LondiSAC):
    name = "londi_b"

    def __init__(self, budget: int = 4, penalty: float = 0.25, c: float = 0.0, train_episodes: int = 200,
                 encoder: str = "words", features: int = 256, tokens: int = 96, hidden: int = 64, gamma: float = 0.99,
                 max_steps: int = 0, cues: bool = True, greedy: bool = True, load: str = "") -> None:
        if budget < 0:
            raise ValueError(f"londi_b: budget must be >= 0 DEEPTHINK calls per episode, got {budget}")
        if penalty < 0:
            raise ValueError(f"londi_b: penalty must be >= 0, got {penalty}")
        self.budget, self.penalty = budget, penalty
        self.left: dict[int, int] = {}  # slot -> DEEPTHINK calls left this episode
        super().__init__(c=c, train_episodes=train_episodes, encoder=encoder, features=features, tokens=tokens,
                         hidden=hidden, gamma=gamma, max_steps=max_steps, cues=cues, greedy=greedy, load=load)
        self.stats["over_budget"] = 0

    def extra_dim(self) -> int:
        return self.budget + 2

    def extra_state(self, slot: int) -> list[np.ndarray]:
        left = self.left.get(slot, self.budget)
        budget = np.zeros(self.budget + 2, np.float32)
        budget[min(left, self.budget)] = 1.0
        budget[-1] = left / max(1, self.budget)
        return [budget]

    def start_episode(self, slot: int, seed: int) -> None:
        super().start_episode(slot, seed)
        self.left[slot] = self.budget

    def masks(self, slots: list[int]) -> np.ndarray:
        masks = super().masks(slots)
        masks[:, 1] = [self.left[s] > 0 for s in slots]
        return masks

    def commit(self, slot: int, g: int) -> tuple[bool, float]:
        if g == 1 and self.left[slot] <= 0:  # only reachable in training, where the mask is open
            self.stats["over_budget"] += 1
            return False, self.penalty
        self.left[slot] -= g
        return g == 1, 0.0

    def params(self) -> dict:
        return {"budget": self.budget, "penalty": self.penalty, **super().params()}

    SHAPE_KEYS = (*LondiSAC.SHAPE_KEYS, "budget")


if __name__ == "__main__":
    args = tyro.cli(Args)
    run_cli(lambda: LondiB(budget=args.budget, penalty=args.penalty, c=args.c, train_episodes=args.train_episodes,
                           encoder=args.encoder, greedy=args.greedy, load=args.load), args)
