"""LONDI-SAC: a Switcher trained by soft actor-critic decides at every step whether DEEPTHINK acts.

The method of "All Language Models Large and Small" (arXiv 2402.12061), as a router:

- state: the text the agent has now (mission, current view, last action) through an encoder. The
  default encoder is cheap on purpose, since the Switcher's own compute counts against its
  savings: a hashed bag of words (`features` buckets, log counts) and the episode's progress,
  into a 2-layer MLP. With a budget (LONDI-B) the remaining calls are part of the state.
- action: g in {0 = QUICK acts, 1 = DEEPTHINK acts}.
- reward: the environment's reward minus `c` for every DEEPTHINK call; with a budget, choosing
  DEEPTHINK with none left is penalised by `penalty` in training (QUICK acts instead) and masked
  out in evaluation, so the budget is never exceeded there.
- learner: discrete SAC (algos/switcher_sac.py), trained online while the real QUICK and DEEPTHINK
  make the moves (`training = True`: sampled choices, updates after every step), then evaluated
  with the policy fixed (`training = False`: greedy, no updates).

The Switcher's forward passes are metered as the `router` component (FLOPs of its MLP, seconds).
`save(path)` / `load=path` keep a trained Switcher for evaluation without retraining.

    python -m algos.londi_sac --task babyai/Mixed --c 0.1 --train-episodes 200 --seeds 0
"""

from __future__ import annotations

import json
import re
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import tyro

from algos.switcher_sac import DiscreteSAC, SACConfig
from bench.contexts import EpisodeHistory
from bench.evaluate import EvalArgs, run_cli
from bench.lm import CallCost
from bench.router import Router, StepView, Transition

_WORDS = re.compile(r"[a-z]+|\d+")
UNLIMITED = -1


def hashed_words(text: str, buckets: int) -> np.ndarray:
    """log(1 + count) of each word's bucket (crc32 of the word, so the same on every machine)."""
    v = np.zeros(buckets, np.float32)
    for word in _WORDS.findall(text.lower()):
        v[zlib.crc32(word.encode()) % buckets] += 1.0
    return np.log1p(v)


@dataclass
class Args(EvalArgs):
    exp_name: str = ""
    """run name part after the task; empty: londi_sac[c=...]"""
    c: float = 0.1
    """cost of one DEEPTHINK call in the Switcher's reward"""
    budget: int = UNLIMITED
    """DEEPTHINK calls per episode (LONDI-B); -1: no budget"""
    train_episodes: int = 200
    """episodes of online training on training seeds before the evaluation"""
    load: str = ""
    """a saved Switcher to evaluate without training"""


class LondiSAC(Router):
    name = "londi_sac"

    def __init__(self, c: float = 0.1, budget: int = UNLIMITED, train_episodes: int = 200, penalty: float = 1.0,
                 features: int = 256, hidden: int = 64, gamma: float = 0.99, max_steps: int = 64,
                 load: str = "") -> None:
        if c < 0:
            raise ValueError(f"londi_sac: the DEEPTHINK cost c must be >= 0, got {c}")
        if budget < UNLIMITED:
            raise ValueError(f"londi_sac: budget must be >= 0 calls or -1 (none), got {budget}")
        if train_episodes < 0:
            raise ValueError(f"londi_sac: train_episodes must be >= 0, got {train_episodes}")
        self.c, self.budget, self.train_episodes, self.penalty = c, budget, train_episodes, penalty
        self.features, self.hidden, self.gamma, self.max_steps, self.load = features, hidden, gamma, max_steps, load
        self.training = False
        self.stats = {"updates": 0, "over_budget": 0, "transitions": 0}
        self.sac = DiscreteSAC(self.state_dim, SACConfig(hidden=hidden, gamma=gamma))
        self.switcher_params = sum(p.numel() for p in self.sac.actor.parameters())  # the same shape after any reseed
        if load:
            self._load(Path(load))
        self.left: dict[int, int] = {}  # slot -> DEEPTHINK calls left this episode
        self.pending: dict[int, tuple[np.ndarray, int, int]] = {}  # slot -> (state, choice, calls left before)

    @property
    def state_dim(self) -> int:
        return self.features + 1 + (self.budget + 2 if self.budget != UNLIMITED else 0)

    def seed(self, seed: int) -> None:
        """The runner's run seed: an untrained Switcher is initialised from it (a trained one is kept)."""
        super().seed(seed)
        if not self.load and self.stats["transitions"] == 0:
            self.sac = DiscreteSAC(self.state_dim, SACConfig(hidden=self.hidden, gamma=self.gamma, seed=seed))

    def needs_training(self) -> bool:
        return not self.load and self.train_episodes > 0

    def state(self, history: EpisodeHistory, left: int) -> np.ndarray:
        mission, *view = history.current().split("\n")
        last = history.actions[-1] if history.actions else "none"
        parts = [hashed_words(" ".join([mission, last, *view]), self.features),
                 np.array([len(history.actions) / self.max_steps], np.float32)]
        if self.budget != UNLIMITED:
            budget = np.zeros(self.budget + 2, np.float32)
            budget[min(left, self.budget)] = 1.0
            budget[-1] = left / max(1, self.budget)
            parts.append(budget)
        return np.concatenate(parts)

    def start_episode(self, slot: int, seed: int) -> None:
        self.left[slot] = self.budget
        self.pending.pop(slot, None)

    def route(self, view: StepView) -> np.ndarray:
        states = np.stack([self.state(h, self.left[s]) for s, h in zip(view.slots, view.histories, strict=True)])
        masks = np.ones((len(states), 2), np.float32)
        if self.budget != UNLIMITED and not self.training:
            masks[:, 1] = [self.left[s] > 0 for s in view.slots]
        cost = CallCost(np.zeros(len(states)), np.zeros(len(states)), np.full(len(states), 2.0 * self.switcher_params))
        choose = self.sac.act if self.training else self.sac.greedy
        choices = view.meter.call("router", view.slots, lambda: (choose(states, masks), cost))
        deepthink = np.zeros(len(states), dtype=bool)
        for p, slot in enumerate(view.slots):
            g = int(choices[p])
            over = g == 1 and self.budget != UNLIMITED and self.left[slot] <= 0
            self.stats["over_budget"] += int(over)
            deepthink[p] = g == 1 and not over
            self.pending[slot] = (states[p], g, self.left[slot])
            if deepthink[p] and self.budget != UNLIMITED:
                self.left[slot] -= 1
        return deepthink

    def observe(self, transitions: list[Transition]) -> None:
        if not self.training:
            return
        for t in transitions:
            state, g, left = self.pending.pop(t.slot)
            over = g == 1 and self.budget != UNLIMITED and left <= 0
            reward = t.reward - self.c * (g and not over) - (self.penalty if over else 0.0)
            next_state = self.state(t.next_history, self.left[t.slot])
            self.sac.buffer.add(state, g, reward, next_state, t.terminated, np.ones(2, np.float32))
            self.stats["transitions"] += 1
        for _ in range(max(1, len(transitions) // 2)):
            if self.sac.update():
                self.stats["updates"] += 1

    def params(self) -> dict:
        return {"c": self.c, "budget": self.budget, "train_episodes": self.train_episodes, "penalty": self.penalty,
                "features": self.features, "hidden": self.hidden, "gamma": self.gamma, "load": self.load,
                "switcher_params": self.switcher_params}

    def save(self, path: Path) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        torch.save({"actor": self.sac.actor.state_dict(), "q1": self.sac.q1.state_dict(),
                    "q2": self.sac.q2.state_dict(), "log_alpha": self.sac.log_alpha.detach()},
                   path / "switcher.pt")
        (path / "switcher.json").write_text(json.dumps({
            "router": self.name, **{k: v for k, v in self.params().items() if k != "load"},
            "sac": asdict(self.sac.config), "stats": self.stats}, indent=1))
        return path

    def _load(self, path: Path) -> None:
        if not (path / "switcher.pt").exists():
            raise FileNotFoundError(f"no saved Switcher at {path} (no switcher.pt): train one first, e.g. "
                                    f"python -m algos.londi_sac --train-episodes 200")
        meta = json.loads((path / "switcher.json").read_text())
        for key in ("c", "budget", "features", "hidden"):
            if meta[key] != getattr(self, key):
                raise ValueError(f"the Switcher at {path} was trained with {key}={meta[key]}, not {getattr(self, key)}")
        state = torch.load(path / "switcher.pt", weights_only=True)
        self.sac.actor.load_state_dict(state["actor"])
        self.sac.q1.load_state_dict(state["q1"])
        self.sac.q2.load_state_dict(state["q2"])


if __name__ == "__main__":
    args = tyro.cli(Args)
    args.exp_name = args.exp_name or f"londi_sac[c={args.c}" + (f",budget={args.budget}]" if args.budget >= 0 else "]")
    run_cli(lambda: LondiSAC(c=args.c, budget=args.budget, train_episodes=args.train_episodes, load=args.load), args)
