"""LONDI-SAC: a Switcher trained by soft actor-critic decides at every step whether DEEPTHINK acts.

The method of "All Language Models Large and Small" (arXiv 2402.12061), as a router. The training loop,
with the names used below (the episode loop itself is bench.running.runner's, shared by every router; this
file supplies `route`, which it calls before every step, and `observe`, which it calls after):

    sac = DiscreteSAC(state_dim, SACConfig(seed=run_seed))          # policy pi(g|s), twin Q, targets, alpha
    for episode in training seeds (train_episodes of them), run in lockstep batches:
        h = the episode's history (observations, actions)
        while the episode runs:
            s = state(h)                       # encoder(mission, view, last action) + progress + cues
            g = sac.act(s)                     # sampled: 0 = QUICK acts, 1 = DEEPTHINK acts   [route]
            action = (DEEPTHINK if g else QUICK).decide(context(h))                      # runner
            h', r, done = env.step(action)                                                # runner
            sac.buffer.add(s, g, r - c * g, state(h'), done)   # the Switcher pays c a call [observe]
            sac.update()                       # soft Q targets, policy, temperature          [observe]
    evaluation: g = sac.greedy(state(h)), no updates (training = False)

- state: the text the agent has now (mission, current view, last action) through an encoder. The
  default encoder (`encoder=words`) is cheap on purpose, since the Switcher's own compute counts
  against its savings: a hashed bag of words (`features` buckets, log counts). The paper's
  (`encoder=transformer`) is a small transformer over the first `tokens` words (hashed ids),
  mean-pooled (algos/switcher_sac.py: TokenSwitcherNet). Both add the episode's progress (steps taken over
  the task's step limit, which the runner gives: a time-out is then a terminal the state foresees) and,
  with `cues`, four cheap cues (the current observation seen before, the last action changed
  nothing, the last actions repeat, the share of the mission's words in view), into a 2-layer MLP.
- action: g in {0 = QUICK acts, 1 = DEEPTHINK acts}.
- reward: the environment's reward minus `c` for every DEEPTHINK call.
- learner: discrete SAC (algos/switcher_sac.py, the update equations are there), trained online while the
  real QUICK and DEEPTHINK make the moves (`training = True`: sampled choices, updates after every step,
  half as many updates as transitions in a batched step), then evaluated with the policy fixed
  (`training = False`: greedy, or sampled with `greedy=False`; no updates).

LONDI-B (a budget of DEEPTHINK calls per episode) is algos/londi_b.py, built on this class: it extends the
four hooks `extra_dim`, `extra_state`, `masks` and `commit` below.
The Switcher's forward passes are metered as the `router` component (FLOPs of its network, seconds). Its
training updates are counted in `stats` (updates, optimiser steps, analytic FLOPs: algos/switcher_sac.py lists
the passes of one update) with their wall seconds in `update_s`; a training run logs them and their price.
`save(path)` / `load=path` keep a trained Switcher for evaluation without retraining.

    python -m algos.londi_sac --task babyai/Mixed --c 0.01 --train-episodes 200 --seeds 0
"""

from __future__ import annotations

import json
import re
import time
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import tyro

from algos.switcher_sac import DiscreteSAC, SACConfig, TokenSwitcherNet
from bench.cli import EvalArgs, run_cli
from bench.envs.contexts import EpisodeHistory
from bench.models.cost import CallCost
from bench.running.router import Router, StepView, Transition

_WORDS = re.compile(r"[a-z]+|\d+")
CUE_FEATURES = 4
ENCODERS = ("words", "transformer")


def cue_features(history: EpisodeHistory) -> np.ndarray:
    """Cheap cues from the episode so far: how often the current observation was seen before (log1p),
    whether the last action changed nothing, how many of the last four actions equal the last one
    (signs of being stuck), and the share of the mission's words that the current view contains
    (is what the task is about in sight?)."""
    now = history.current()
    seen = sum(o == now for o in history.observations[:-1])
    still = len(history.observations) > 1 and history.observations[-2] == now
    recent = history.actions[-4:]
    repeats = sum(a == recent[-1] for a in recent) / 4 if recent else 0.0
    mission, _, view = now.partition("\n")
    asked = set(_WORDS.findall(mission.lower()))
    in_sight = len(asked & set(_WORDS.findall(view.lower()))) / max(1, len(asked))
    return np.array([np.log1p(seen), float(still), repeats, in_sight], np.float32)


def token_ids(text: str, buckets: int, length: int) -> np.ndarray:
    """The first `length` words as ids 1..buckets-1 (crc32 of the word), 0-padded: the transformer's input."""
    ids = np.zeros(length, np.float32)
    for i, word in enumerate(_WORDS.findall(text.lower())[:length]):
        ids[i] = 1 + zlib.crc32(word.encode()) % (buckets - 1)
    return ids


def hashed_words(text: str, buckets: int) -> np.ndarray:
    """log(1 + count) of each word's bucket (crc32 of the word, so the same on every machine)."""
    v = np.zeros(buckets, np.float32)
    for word in _WORDS.findall(text.lower()):
        v[zlib.crc32(word.encode()) % buckets] += 1.0
    return np.log1p(v)


@dataclass
class Args(EvalArgs):
    """LONDI-SAC: a Switcher trained online by discrete soft actor-critic (reward minus c per DEEPTHINK call),
    then evaluated greedily on the task's evaluation episodes."""

    c: float = 0.01
    """cost of one DEEPTHINK call in the Switcher's reward (BabyAI's reward is at most 1 per episode)"""
    train_episodes: int = 200
    """episodes of online training on training seeds before the evaluation"""
    encoder: str = "words"
    """the Switcher's text encoder: words (hashed bag of words, cheap) or transformer (the paper's)"""
    greedy: bool = True
    """evaluate with the most probable choice; --no-greedy samples from the learned policy"""
    load: str = ""
    """a saved Switcher to evaluate without training: the folder (switcher.pt and switcher.json) that a training run
    saves, found among that MLflow run's artifacts (kind router_train) or written with save(path); its options (c,
    encoder, ...) must match"""


class LondiSAC(Router):
    name = "londi_sac"

    def __init__(self, c: float = 0.01, train_episodes: int = 200, encoder: str = "words", features: int = 256,
                 tokens: int = 96, hidden: int = 64, gamma: float = 0.99, max_steps: int = 0, cues: bool = True,
                 greedy: bool = True, load: str = "") -> None:
        if c < 0:
            raise ValueError(f"{self.name}: the DEEPTHINK cost c must be >= 0, got {c}")
        if train_episodes < 0:
            raise ValueError(f"{self.name}: train_episodes must be >= 0, got {train_episodes}")
        if max_steps < 0:
            raise ValueError(f"{self.name}: max_steps must be >= 0 (0: the task's step limit), got {max_steps}")
        if encoder not in ENCODERS:
            raise ValueError(f"{self.name}: unknown encoder {encoder!r}; choose one of {', '.join(ENCODERS)}")
        self.c, self.train_episodes, self.encoder = c, train_episodes, encoder
        self.features, self.tokens = features, tokens
        self.hidden, self.gamma, self.max_steps, self.cues, self.greedy, self.load = (
            hidden, gamma, max_steps, cues, greedy, load)
        self.limit = max_steps or None  # the step limit progress is measured against: set by prepare(task)
        self.trained_limit: int | None = None  # a loaded Switcher's
        self.training = False
        self.stats = {"updates": 0, "transitions": 0, "optimizer_steps": 0, "update_flops": 0.0}
        self.update_s = 0.0  # wall seconds inside updates: a secondary figure, apart from the stats a rerun repeats
        self.sac = self._new_sac(0)
        self.switcher_params = sum(p.numel() for p in self.sac.actor.parameters())  # the same shape after any reseed
        # Forward FLOPs of one decision: the policy network only (the critics are used in training alone).
        self.switcher_flops = self.sac.state_flops
        if load:
            self._load(Path(load))
        self.pending: dict[int, tuple[np.ndarray, int, float]] = {}  # slot -> (state, choice, penalty)

    # --- what LONDI-B (algos/londi_b.py) extends: extra state, masks, and spending a call ---------------
    def extra_dim(self) -> int:
        return 0

    def extra_state(self, slot: int) -> list[np.ndarray]:
        return []

    def masks(self, slots: list[int]) -> np.ndarray:
        """Choices allowed now, [len(slots), 2]; LONDI-SAC allows both everywhere."""
        return np.ones((len(slots), 2), np.float32)

    def commit(self, slot: int, g: int) -> tuple[bool, float]:
        """The Switcher chose `g` in `slot`: whether DEEPTHINK acts, and any training penalty."""
        return g == 1, 0.0
    # ---------------------------------------------------------------------------------------------------

    @property
    def state_dim(self) -> int:
        text = self.features if self.encoder == "words" else self.tokens
        return text + 1 + (CUE_FEATURES if self.cues else 0) + self.extra_dim()

    def _new_sac(self, seed: int) -> DiscreteSAC:
        network = None
        if self.encoder == "transformer":
            def network() -> TokenSwitcherNet:
                return TokenSwitcherNet(vocab=self.features, tokens=self.tokens, extra=self.state_dim - self.tokens,
                                        hidden=self.hidden, outputs=2)
        return DiscreteSAC(self.state_dim, SACConfig(hidden=self.hidden, gamma=self.gamma, seed=seed), network)

    def seed(self, seed: int) -> None:
        """The runner's run seed: an untrained Switcher is initialised from it (a trained one is kept)."""
        super().seed(seed)
        if not self.load and self.stats["transitions"] == 0:
            self.sac = self._new_sac(seed)

    def prepare(self, task) -> None:
        """The task's step limit becomes the progress feature's denominator (unless max_steps was given); a loaded
        Switcher must have been trained with the same one. (The task itself is not kept: a router is pickled.)"""
        self.limit = self.max_steps or task.max_steps
        trained = getattr(self, "trained_limit", None)  # a Switcher pickled before issue 17 has none
        if trained is not None and trained != self.limit:
            raise ValueError(f"{self.name}: the Switcher at {self.load} measured progress against "
                             f"{trained} steps, this task has {self.limit} ({task.name}): train one for "
                             f"it, or give max_steps={trained}")

    def needs_training(self) -> bool:
        return not self.load and self.train_episodes > 0

    def state(self, history: EpisodeHistory, slot: int = -1) -> np.ndarray:
        mission, *view = history.current().split("\n")
        last = history.actions[-1] if history.actions else "none"
        text = " ".join([mission, last, *view])
        parts = [hashed_words(text, self.features) if self.encoder == "words"
                 else token_ids(text, self.features, self.tokens),
                 np.array([len(history.actions) / self._limit()], np.float32)]
        if self.cues:
            parts.append(cue_features(history))
        return np.concatenate(parts + self.extra_state(slot))

    def _limit(self) -> int:
        if self.limit is None:
            raise RuntimeError(f"{self.name}: no step limit for the progress feature: the runner gives the task's "
                               f"(prepare(task)); give max_steps to use the router outside it")
        return self.limit

    def start_episode(self, slot: int, seed: int) -> None:
        self.pending.pop(slot, None)

    def route(self, view: StepView) -> np.ndarray:
        n = len(view.slots)
        # In training every choice is open (LONDI-B learns from the penalty); in evaluation masks hold.
        masks = np.ones((n, 2), np.float32) if self.training else self.masks(view.slots)
        cost = CallCost(np.zeros(n), np.zeros(n), np.full(n, self.switcher_flops))
        choose = self.sac.greedy if self.greedy and not self.training else self.sac.act

        def decide() -> tuple[tuple[np.ndarray, np.ndarray], CallCost]:
            # Reading the text into features is the encoder's work: timed with the network's forward pass.
            states = np.stack([self.state(h, s) for s, h in zip(view.slots, view.histories, strict=True)])
            return (states, choose(states, masks)), cost

        states, choices = view.meter.call("router", view.slots, decide)
        deepthink = np.zeros(n, dtype=bool)
        for p, slot in enumerate(view.slots):
            g = int(choices[p])
            deepthink[p], penalty = self.commit(slot, g)
            self.pending[slot] = (states[p], g, penalty)
        return deepthink

    def observe(self, transitions: list[Transition]) -> None:
        if not self.training:
            return
        for t in transitions:
            state, g, penalty = self.pending.pop(t.slot)
            reward = t.reward - self.c * t.deepthink - penalty
            next_state = self.state(t.next_history, t.slot)
            # Progress is in the state, so a time-out is an end the state foresees: no bootstrapping through it.
            self.sac.buffer.add(state, g, reward, next_state, t.terminated or t.truncated, np.ones(2, np.float32))
            self.stats["transitions"] += 1
        started = time.perf_counter()
        for _ in range(max(1, len(transitions) // 2)):
            if self.sac.update():
                self.stats["updates"] += 1
                self.stats["optimizer_steps"] += self.sac.OPTIMIZER_STEPS
                self.stats["update_flops"] += self.sac.update_flops
        self.update_s += time.perf_counter() - started

    def params(self) -> dict:
        return {"c": self.c, "train_episodes": self.train_episodes, "encoder": self.encoder, "features": self.features,
                "tokens": self.tokens, "hidden": self.hidden,
                "gamma": self.gamma, "max_steps": self.max_steps, "cues": self.cues, "greedy": self.greedy,
                "load": self.load,
                "switcher_params": self.switcher_params}

    SHAPE_KEYS = ("c", "encoder", "features", "tokens", "hidden", "cues")
    """Options a saved Switcher must share with the router that loads it."""

    def save(self, path: Path) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        torch.save({"actor": self.sac.actor.state_dict(), "q1": self.sac.q1.state_dict(),
                    "q2": self.sac.q2.state_dict(), "log_alpha": self.sac.log_alpha.detach()},
                   path / "switcher.pt")
        (path / "switcher.json").write_text(json.dumps({
            "router": self.name, **{k: v for k, v in self.params().items() if k != "load"}, "limit": self.limit,
            "sac": asdict(self.sac.config), "stats": self.stats}, indent=1))
        return path

    def _load(self, path: Path) -> None:
        if not (path / "switcher.pt").exists():
            raise FileNotFoundError(f"no saved Switcher at {path} (no switcher.pt): train one first, e.g. "
                                    f"python -m algos.{self.name} --train-episodes 200")
        meta = json.loads((path / "switcher.json").read_text())
        if meta.get("router") != self.name:
            raise ValueError(f"the Switcher at {path} was trained by {meta.get('router')}, not {self.name}")
        for key in self.SHAPE_KEYS:
            if meta.get(key) != getattr(self, key):
                raise ValueError(f"the Switcher at {path} was trained with {key}={meta.get(key)}, "
                                 f"not {getattr(self, key)}")
        self.trained_limit = meta.get("limit", 64)  # saved before issue 17: trained with the old default, 64
        state = torch.load(path / "switcher.pt", weights_only=True)
        self.sac.actor.load_state_dict(state["actor"])
        self.sac.q1.load_state_dict(state["q1"])
        self.sac.q2.load_state_dict(state["q2"])


if __name__ == "__main__":
    args = tyro.cli(Args)
    run_cli(lambda: LondiSAC(c=args.c, train_episodes=args.train_episodes, encoder=args.encoder, greedy=args.greedy,
                             load=args.load), args)
