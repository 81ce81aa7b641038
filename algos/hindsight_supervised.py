"""Supervised Switcher: LONDI's encoder, taught by the hindsight search which states needed DEEPTHINK.

The control that asks whether reinforcement learning adds anything: the same state as LONDI-SAC's Switcher (the
text through its encoder, the episode's progress, the cues; algos/londi_sac.py), the same network shape, but
trained by supervised learning on the hindsight search's answer (bench/running/hindsight.py) instead of by SAC on
rewards. If it matches LONDI at equal DEEPTHINK fraction, the rewards taught LONDI nothing the labels do not.

    training (router.training = True, on its training episodes, as the harness trains every learned router):
        for each episode: the search's result for its environment seed, read from the store `labels` (made by
        `python -m bench.hindsight --split train`): the switch sequence that succeeds with the fewest calls
        (exact; or the one a bounded search found);
        the router plays it (DEEPTHINK at its switch steps, QUICK elsewhere) and records every state it meets
        with its label (1 where DEEPTHINK acted); in an episode no sequence saves, every label is 0 (no call helps);
        a bounded search without a succeeding sequence teaches nothing (QUICK plays, nothing recorded)
    at the end of training: p(DEEPTHINK | state) fitted by cross-entropy (positives weighted up to balance the
        classes), `epochs` passes of Adam over the states in minibatches of 64
    evaluation: DEEPTHINK where p(DEEPTHINK | state) > `threshold`

Its bill: its training episodes' model calls (the runner meters them), its updates (`stats`: FLOPs, optimiser
steps), and what the search cost on its training episodes (`stats`: the store's metered decisions, priced).

    python -m algos.hindsight_supervised --task babyai/Mixed --labels checkpoints/cpu/hindsight/babyai_Mixed/X.jsonl
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import tyro

from algos.londi_sac import LondiSAC
from algos.switcher_sac import mlp
from bench.cli import EvalArgs, run_cli
from bench.common.seeding import generator
from bench.models.cost import CallCost
from bench.running.hindsight import AT_LEAST, EXACT, NEVER, Frontier, read_store, task_folder
from bench.running.router import Router, StepView, Transition


@dataclass
class Args(EvalArgs):
    """LONDI's encoder trained by supervised learning on the hindsight search's labels (where DEEPTHINK was needed)."""

    labels: str = ""
    """the search's results for the task's training episodes (python -m bench.hindsight --split train): the store's
    file, or a store folder holding one file for the task (checkpoints/cpu/hindsight)"""
    train_episodes: int = 40
    """training episodes (each needs the search's result in `labels`)"""
    threshold: float = 0.5
    """DEEPTHINK where p(DEEPTHINK | state) is above it"""
    epochs: int = 30
    """passes over the recorded states"""


class HindsightSupervised(Router):
    name = "hindsight_supervised"
    BATCH = 64
    LR = 3e-3

    def __init__(self, labels: str = "", train_episodes: int = 40, threshold: float = 0.5, epochs: int = 30,
                 features: int = 256, hidden: int = 64, max_steps: int = 0, cues: bool = True) -> None:
        if not 0 <= threshold <= 1:
            raise ValueError(f"{self.name}: threshold must be a probability in [0, 1], got {threshold}")
        if train_episodes < 1 or epochs < 1:
            raise ValueError(f"{self.name}: train_episodes and epochs must be >= 1, got {train_episodes}, {epochs}")
        self.labels, self.train_episodes, self.threshold, self.epochs = labels, train_episodes, threshold, epochs
        self.features, self.hidden, self.max_steps, self.cues = features, hidden, max_steps, cues
        # LONDI's encoder, as LONDI-SAC builds its state (its own SAC is never trained or used).
        self.encoder = LondiSAC(c=0.0, train_episodes=0, features=features, hidden=hidden, max_steps=max_steps,
                                cues=cues)
        self.training = False
        self.plans: dict[int, set[int] | None] = {}  # slot -> steps (1-based) at which DEEPTHINK acts; None: unlabelled
        self.pending: dict[int, tuple[np.ndarray, int]] = {}
        self.states: list[np.ndarray] = []
        self.targets: list[int] = []
        self.store: dict[int, Frontier] | None = None
        self.net = self._network(0)
        self.fitted = False
        self.stats = {"updates": 0, "optimizer_steps": 0, "update_flops": 0.0, "labelled_states": 0,
                      "labelled_calls": 0, "search_priced_s": 0.0, "search_flops": 0.0, "search_decisions": 0}
        self.update_s = 0.0

    @property
    def training(self) -> bool:
        return getattr(self, "_training", False)

    @training.setter
    def training(self, value: bool) -> None:
        """The harness ends training by setting this False: the classifier is fitted then, so that its updates are
        in the training's bill."""
        ended = self.training and not value
        self._training = bool(value)
        if ended and getattr(self, "states", None) and not self.fitted:
            self.fit()

    # --- the classifier -----------------------------------------------------------------------------------------
    def _network(self, seed: int) -> torch.nn.Module:
        with torch.random.fork_rng(devices=[]):  # its initial weights from the run seed alone, no one else's state
            torch.manual_seed(seed)
            return mlp(self.encoder.state_dim, self.hidden, 2)

    @property
    def forward_flops(self) -> float:
        return 2.0 * sum(p.numel() for p in self.net.parameters())

    def seed(self, seed: int) -> None:
        super().seed(seed)
        if not self.fitted and not self.states:
            self.net = self._network(seed)
        self.batches = generator(seed, "hindsight_supervised")

    def prepare(self, task) -> None:
        """The encoder's step limit, and the store file for this task where `labels` is a store folder (the file's
        path is kept, not the task: a router is pickled with a sweep's state)."""
        self.encoder.prepare(task)
        path = Path(self.labels)
        if path.is_dir():
            found = sorted(task_folder(path, task).glob("*.jsonl"))
            if len(found) != 1:
                raise ValueError(f"{self.name}: the store {path} holds {len(found)} result files for {task.name} "
                                 f"({', '.join(p.name for p in found) or 'none'}): give labels= the one for this pair")
            self.labels_file = str(found[0])

    def _labels_file(self) -> Path:
        """`labels` itself, or the one store file for the task in the folder `labels` (found by `prepare`)."""
        return Path(getattr(self, "labels_file", None) or self.labels)

    def needs_training(self) -> bool:
        return not self.fitted

    def fit(self) -> None:
        """Cross-entropy on the recorded states, positives weighted by negatives / positives."""
        started = time.perf_counter()
        x = torch.as_tensor(np.stack(self.states), dtype=torch.float32)
        y = torch.as_tensor(self.targets, dtype=torch.long)
        positives = int(y.sum())
        weight = torch.tensor([1.0, (len(y) - positives) / positives if positives else 1.0])
        optimiser = torch.optim.Adam(self.net.parameters(), lr=self.LR)
        rng = getattr(self, "batches", generator(0, "hindsight_supervised"))
        for _ in range(self.epochs):
            order = rng.permutation(len(y))
            for start in range(0, len(y), self.BATCH):
                rows = torch.as_tensor(order[start:start + self.BATCH])
                loss = F.cross_entropy(self.net(x[rows]), y[rows], weight=weight)
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                self.stats["updates"] += 1
                self.stats["optimizer_steps"] += 1
                self.stats["update_flops"] += 3 * self.forward_flops * len(rows)  # forward + backward (2x)
        self.fitted = True
        self.update_s += time.perf_counter() - started

    @torch.no_grad()
    def probability(self, states: np.ndarray) -> np.ndarray:
        return F.softmax(self.net(torch.as_tensor(states, dtype=torch.float32)), dim=-1)[:, 1].numpy()

    # --- the router contract ------------------------------------------------------------------------------------
    def _labels(self) -> dict[int, Frontier]:
        if self.store is None:
            path = self._labels_file()
            if not self.labels or not path.is_file():
                raise FileNotFoundError(f"{self.name}: no search results at {self.labels or '(labels not given)'}; "
                                        f"make them with python -m bench.hindsight --split train --store S and "
                                        f"give labels=S/<task>/<file>.jsonl")
            self.store = read_store(path)
        return self.store

    def start_episode(self, slot: int, seed: int) -> None:
        self.pending.pop(slot, None)
        if not self.training:
            return
        frontier = self._labels().get(int(seed))
        if frontier is None:
            raise ValueError(f"{self.name}: the store {self.labels} has no search of training episode {seed}: run "
                             f"python -m bench.hindsight --split train --train-episodes {self.train_episodes}")
        for cost in frontier.cost.values():
            self.stats["search_priced_s"] += cost["priced_s"]
            self.stats["search_flops"] += cost["flops"]
            self.stats["search_decisions"] += cost["calls"]
        if frontier.status == NEVER:
            self.plans[slot] = set()
        elif frontier.status == EXACT or (frontier.status == AT_LEAST and frontier.upper is not None):
            self.plans[slot] = set(frontier.switches)
        else:
            self.plans[slot] = None

    def route(self, view: StepView) -> np.ndarray:
        n = len(view.slots)
        if self.training:  # the search's sequence plays; every state is recorded with its label
            deepthink = np.zeros(n, dtype=bool)
            for p, (slot, history) in enumerate(zip(view.slots, view.histories, strict=True)):
                plan = self.plans.get(slot)
                if plan is None:
                    continue
                deepthink[p] = int(view.steps[p]) + 1 in plan
                self.pending[slot] = (self.encoder.state(history, slot), int(deepthink[p]))
            return deepthink
        if not self.fitted:
            if not self.states:
                raise RuntimeError(f"{self.name}: evaluated before training: nothing was learned")
            self.fit()
        cost = CallCost(np.zeros(n), np.zeros(n), np.full(n, self.forward_flops))

        def decide() -> tuple[np.ndarray, CallCost]:
            states = np.stack([self.encoder.state(h, s) for s, h in zip(view.slots, view.histories, strict=True)])
            return self.probability(states), cost

        return view.meter.call("router", view.slots, decide) > self.threshold

    def observe(self, transitions: list[Transition]) -> None:
        if not self.training:
            return
        for t in transitions:
            recorded = self.pending.pop(t.slot, None)
            if recorded is not None:
                self.states.append(recorded[0])
                self.targets.append(recorded[1])
                self.stats["labelled_states"] += 1
                self.stats["labelled_calls"] += recorded[1]

    def params(self) -> dict:
        return {"labels": self.labels, "train_episodes": self.train_episodes, "threshold": self.threshold,
                "epochs": self.epochs, "features": self.features, "hidden": self.hidden, "max_steps": self.max_steps,
                "cues": self.cues}


if __name__ == "__main__":
    args = tyro.cli(Args)
    run_cli(lambda: HindsightSupervised(labels=args.labels, train_episodes=args.train_episodes,
                                        threshold=args.threshold, epochs=args.epochs), args)
