"""LONDI's Switcher as a discrete soft actor-critic (Haarnoja et al. 2018; Christodoulou 2019, discrete form).

The Switcher sees a state vector s and picks g in {0 = QUICK, 1 = DEEPTHINK}. Its reward is the
environment's minus c for every DEEPTHINK call (the caller adds the -c). What is here:

- a policy network pi(g | s) (a softmax over the two choices);
- twin Q networks Q1, Q2 with Polyak-averaged targets;
- the entropy temperature alpha, tuned automatically towards `target_entropy` (a fraction of
  log 2, the entropy of a coin flip);
- a replay buffer of (s, g, r, s', done, mask') and the updates:

      y       = r + gamma (1 - done) sum_g' pi(g'|s') [min_i Qtarg_i(s', g') - alpha log pi(g'|s')]
      L_Q     = sum_i (Q_i(s, g) - y)^2
      L_pi    = sum_g pi(g|s) [alpha log pi(g|s) - min_i Q_i(s, g)]
      L_alpha = sum_g pi(g|s) [-log alpha (log pi(g|s) + target_entropy)]

- action masks: where DEEPTHINK is not allowed (LONDI-B with no budget left), its probability is 0 in
  the policy and in the target's expectation.
- the cost of an update, in analytic FLOPs (`update_flops`): one network pass over the batch is
  2 x params x batch (`state_flops` x batch), a backward pass twice its forward. One update makes
      5 forward passes without gradients: the policy and both target critics over s' (the target y),
        both critics over s (the policy's loss),
      3 forward + backward passes: both critics over s (L_Q), the policy over s (L_pi),
  so 5 + 3 x 3 = 14 forward passes' worth, in 3 optimiser steps (critics, policy, temperature). The
  Polyak averaging and Adam's own arithmetic are O(params), not O(params x batch), and are left out.

It is a plain learner over vectors: `algos/londi_sac.py` wires it to text episodes. The exact
switching MDP beside it (algos/switching_mdp.py) checks it: the learned greedy choice must match the
dynamic-programming optimum on every state (tests/test_switcher_sac.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


@dataclass(frozen=True)
class SACConfig:
    hidden: int = 64
    gamma: float = 0.95
    lr: float = 3e-3
    tau: float = 0.02
    """Polyak step of the target critics."""
    batch_size: int = 128
    buffer_size: int = 50_000
    target_entropy_fraction: float = 0.02
    """target entropy = this x log 2. Near 0: the entropy bonus makes a state that loops on itself look
    better than it is, so the soft optimum would drift from the hard one."""
    initial_alpha: float = 0.1
    seed: int = 0


def mlp(inputs: int, hidden: int, outputs: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inputs, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, outputs))


class TokenSwitcherNet(nn.Module):
    """The paper's Switcher network: a small transformer encoder over the observation's tokens, mean-pooled,
    then an MLP over the pooled vector and the numeric features.

    Its input is one float vector per state: `tokens` token ids (0 = padding) followed by `extra` numeric
    features, so the learner, the replay buffer and the masks stay the same as for a plain vector state."""

    def __init__(self, vocab: int, tokens: int, extra: int, hidden: int, outputs: int, width: int = 32,
                 heads: int = 2, layers: int = 1) -> None:
        super().__init__()
        self.tokens = tokens
        self.embed = nn.Embedding(vocab, width, padding_idx=0)
        self.position = nn.Parameter(torch.zeros(tokens, width))
        layer = nn.TransformerEncoderLayer(width, heads, dim_feedforward=2 * width, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = mlp(width + extra, hidden, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ids = x[:, :self.tokens].long()
        pad = ids == 0
        pad[:, 0] = False  # an empty observation still attends to one position
        h = self.encoder(self.embed(ids) + self.position, src_key_padding_mask=pad)
        keep = (~pad).unsqueeze(-1).float()
        pooled = (h * keep).sum(1) / keep.sum(1)
        return self.head(torch.cat([pooled, x[:, self.tokens:]], dim=-1))

    def flops(self) -> float:
        """Forward FLOPs of one state: every layer's weights on every (padded) position, attention over
        all positions, and the head (embedding lookups are free)."""
        layer_params = sum(p.numel() for p in self.encoder.parameters())
        width = self.embed.embedding_dim
        attention = 4 * self.tokens * self.tokens * width * len(self.encoder.layers)
        return 2.0 * self.tokens * layer_params + attention + 2.0 * sum(p.numel() for p in self.head.parameters())


class ReplayBuffer:
    def __init__(self, dim: int, size: int, rng: np.random.Generator) -> None:
        self.s = np.zeros((size, dim), np.float32)
        self.s2 = np.zeros((size, dim), np.float32)
        self.g = np.zeros(size, np.int64)
        self.r = np.zeros(size, np.float32)
        self.done = np.zeros(size, np.float32)
        self.mask2 = np.ones((size, 2), np.float32)
        self.size, self.count, self.cursor, self.rng = size, 0, 0, rng

    def add(self, s: np.ndarray, g: int, r: float, s2: np.ndarray, done: bool, mask2: np.ndarray) -> None:
        i = self.cursor
        self.s[i], self.g[i], self.r[i], self.s2[i], self.done[i], self.mask2[i] = s, g, r, s2, done, mask2
        self.cursor = (i + 1) % self.size
        self.count = min(self.count + 1, self.size)

    ARRAYS = ("s", "s2", "g", "r", "done", "mask2")

    def __getstate__(self) -> dict:
        """Pickled (a run's checkpoint, bench.running.resume) with its filled rows only."""
        state = dict(vars(self))
        for k in self.ARRAYS:
            state[k] = state[k][:self.count]
        return state

    def __setstate__(self, state: dict) -> None:
        for k in self.ARRAYS:
            rows = state[k]
            full = (np.ones if k == "mask2" else np.zeros)((state["size"], *rows.shape[1:]), rows.dtype)
            full[:len(rows)] = rows
            state[k] = full
        vars(self).update(state)

    def sample(self, n: int) -> dict[str, torch.Tensor]:
        idx = self.rng.integers(0, self.count, size=n)
        return {k: torch.from_numpy(getattr(self, k)[idx]) for k in ("s", "g", "r", "s2", "done", "mask2")}


class DiscreteSAC:
    """The Switcher's learner: act(s) samples g, greedy(s) is the evaluation choice, update() learns."""

    UPDATE_FORWARDS = 5
    """Passes without gradients per update: policy, target critics over s'; critics over s for the policy's loss."""
    UPDATE_BACKWARDS = 3
    """Passes with a backward per update: both critics over s (their loss), the policy over s (its loss)."""
    OPTIMIZER_STEPS = 3
    """Optimiser steps per update: critics, policy, temperature."""

    def __init__(self, state_dim: int, config: SACConfig = SACConfig(),
                 network: Callable[[], nn.Module] | None = None) -> None:
        """`network` builds each of the five networks (policy, twin Q, twin targets) with 2 outputs;
        default: an MLP over the state vector."""
        self.config = config
        self.rng = np.random.default_rng(config.seed)
        make = network or (lambda: mlp(state_dim, config.hidden, 2))
        # The networks' initial weights come from config.seed alone, drawn in a fork of torch's generator so that
        # building a Switcher neither depends on nor moves anyone else's random state.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.actor = make()
            self.q1, self.q2 = make(), make()
            self.q1_target, self.q2_target = make(), make()
        self.q1_target.load_state_dict(self.q1.state_dict())
        self.q2_target.load_state_dict(self.q2.state_dict())
        self.log_alpha = torch.tensor(math.log(config.initial_alpha), requires_grad=True)
        self.target_entropy = config.target_entropy_fraction * math.log(2)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=config.lr)
        self.q_opt = torch.optim.Adam(list(self.q1.parameters()) + list(self.q2.parameters()), lr=config.lr)
        self.alpha_opt = torch.optim.Adam([self.log_alpha], lr=config.lr)
        self.buffer = ReplayBuffer(state_dim, config.buffer_size, self.rng)
        self.updates = 0

    @property
    def alpha(self) -> float:
        return float(self.log_alpha.detach().exp())

    @property
    def state_flops(self) -> float:
        """Forward FLOPs of one state through one network (all five share the policy's shape): 2 x params for an
        MLP, the network's own count where it has one (TokenSwitcherNet: attention too)."""
        counter = getattr(self.actor, "flops", None)
        return float(counter()) if counter is not None else 2.0 * sum(p.numel() for p in self.actor.parameters())

    @property
    def update_flops(self) -> float:
        """Analytic FLOPs of one `update` (forward and backward; see the module docstring for its passes)."""
        forward = self.state_flops * self.config.batch_size
        return (self.UPDATE_FORWARDS + 3 * self.UPDATE_BACKWARDS) * forward

    def _policy(self, s: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.actor(s).masked_fill(mask == 0, -1e9)
        return F.softmax(logits, dim=-1), F.log_softmax(logits, dim=-1)

    @torch.no_grad()
    def probabilities(self, states: np.ndarray, masks: np.ndarray | None = None) -> np.ndarray:
        s = torch.as_tensor(states, dtype=torch.float32)
        mask = torch.ones(len(s), 2) if masks is None else torch.as_tensor(masks, dtype=torch.float32)
        return self._policy(s, mask)[0].numpy()

    def act(self, states: np.ndarray, masks: np.ndarray | None = None) -> np.ndarray:
        """Sampled choices (training)."""
        probs = self.probabilities(states, masks)
        return (self.rng.random(len(probs)) < probs[:, 1]).astype(int)

    def greedy(self, states: np.ndarray, masks: np.ndarray | None = None) -> np.ndarray:
        """The most probable choice (evaluation)."""
        return self.probabilities(states, masks).argmax(axis=1)

    @torch.no_grad()
    def q_values(self, states: np.ndarray) -> np.ndarray:
        s = torch.as_tensor(states, dtype=torch.float32)
        return torch.min(self.q1(s), self.q2(s)).numpy()

    def update(self) -> dict[str, float]:
        c = self.config
        if self.buffer.count < c.batch_size:
            return {}
        b = self.buffer.sample(c.batch_size)
        alpha = self.log_alpha.exp().detach()
        with torch.no_grad():
            probs2, logp2 = self._policy(b["s2"], b["mask2"])
            q_next = torch.min(self.q1_target(b["s2"]), self.q2_target(b["s2"]))
            soft = (probs2 * (q_next - alpha * logp2)).sum(-1)
            y = b["r"] + c.gamma * (1 - b["done"]) * soft
        index = b["g"].unsqueeze(-1)
        q_loss = (F.mse_loss(self.q1(b["s"]).gather(1, index).squeeze(-1), y)
                  + F.mse_loss(self.q2(b["s"]).gather(1, index).squeeze(-1), y))
        self.q_opt.zero_grad()
        q_loss.backward()
        self.q_opt.step()

        mask = torch.ones(len(b["s"]), 2)  # the state's own mask is not stored: both choices are scored
        probs, logp = self._policy(b["s"], mask)
        with torch.no_grad():
            q = torch.min(self.q1(b["s"]), self.q2(b["s"]))
        actor_loss = (probs * (alpha * logp - q)).sum(-1).mean()
        self.actor_opt.zero_grad()
        actor_loss.backward()
        self.actor_opt.step()

        entropy = -(probs.detach() * logp.detach()).sum(-1)
        alpha_loss = (self.log_alpha * (entropy - self.target_entropy)).mean()
        self.alpha_opt.zero_grad()
        alpha_loss.backward()
        self.alpha_opt.step()

        with torch.no_grad():
            for net, target in ((self.q1, self.q1_target), (self.q2, self.q2_target)):
                for p, tp in zip(net.parameters(), target.parameters(), strict=True):
                    tp.mul_(1 - c.tau).add_(c.tau * p)
        self.updates += 1
        return {"q_loss": float(q_loss.detach()), "actor_loss": float(actor_loss.detach()), "alpha": self.alpha,
                "entropy": float(entropy.mean())}
