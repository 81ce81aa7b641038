"""A small switching MDP whose optimal Switcher is known exactly: the yardstick for LONDI's learning.

The agent walks a chain of `n` positions and must take the right action at each to advance.
QUICK takes the right action at position i with probability `quick_success[i]` (1 on easy
positions, less on hard ones); DEEPTHINK always does. A wrong action leaves the agent where it
is. Reaching the end pays 1 and ends the episode; every DEEPTHINK call costs `c`; future reward
is discounted by `gamma`. With a budget `b`, the remaining calls x are part of the state
(x' = x - g) and g = 1 is not allowed at x = 0.

This is LONDI's switching problem with everything but the switch abstracted away, so dynamic
programming solves it exactly. Moving forward is the only way out of a position, so backward
induction over positions is exact; a QUICK step that fails loops on the same state, which is
solved in closed form:

    V(i, x | g=0) = q_i (R_i + gamma V(i+1, x)) / (1 - gamma (1 - q_i))
    V(i, x | g=1) = -c + R_i + gamma V(i+1, x-1)        (x >= 1)

with R_i = 1 when i+1 = n (the goal) and V(n, x) = 0. The Switcher's learner (algos/switcher_sac.py) is
fitted on such chains by `fit_chain` and checked against `solve(...)`'s policy on every state
(tests/test_switcher_sac.py); `python -m algos.switching_mdp` writes that check for several costs and budgets
to results/switching_mdp.md.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from algos.switcher_sac import DiscreteSAC, SACConfig

UNLIMITED = -1


@dataclass(frozen=True)
class SwitchingChain:
    quick_success: tuple[float, ...]
    """Probability that QUICK's action advances, per position (its length is the chain's length n)."""
    c: float = 0.1
    """Cost of one DEEPTHINK call, in units of the goal's reward."""
    gamma: float = 0.95
    budget: int = UNLIMITED
    """DEEPTHINK calls per episode; UNLIMITED: no budget (the remaining-calls coordinate stays at 0)."""
    max_steps: int = 50
    """Episode step limit when simulated (the DP treats the horizon as unbounded)."""

    def __post_init__(self) -> None:
        if not self.quick_success or not all(0.0 <= q <= 1.0 for q in self.quick_success):
            raise ValueError(f"quick_success must be probabilities, one per position; got {self.quick_success}")
        if self.c < 0:
            raise ValueError(f"the DEEPTHINK cost c must be >= 0, got {self.c}")
        if not 0.0 < self.gamma <= 1.0:
            raise ValueError(f"gamma must be in (0, 1], got {self.gamma}")
        if self.budget < UNLIMITED:
            raise ValueError(f"budget must be >= 0 calls, or UNLIMITED ({UNLIMITED}); got {self.budget}")

    @property
    def n(self) -> int:
        return len(self.quick_success)

    @property
    def budgets(self) -> int:
        """Number of values the remaining-budget coordinate takes (1 without a budget)."""
        return 1 if self.budget == UNLIMITED else self.budget + 1

    def states(self) -> list[tuple[int, int]]:
        return [(i, x) for i in range(self.n) for x in range(self.budgets)]

    def allowed(self, x: int) -> tuple[int, ...]:
        return (0, 1) if self.budget == UNLIMITED or x > 0 else (0,)

    def step(self, state: tuple[int, int], g: int, rng: np.random.Generator) -> tuple[tuple[int, int], float, bool]:
        """One transition: (next state, reward including -c for a call, episode over)."""
        i, x = state
        if g and self.budget != UNLIMITED and x == 0:
            raise ValueError("no DEEPTHINK call left in the budget")
        advances = bool(g) or rng.random() < self.quick_success[i]
        reward = -self.c * g
        next_x = x - g if self.budget != UNLIMITED else 0
        if not advances:
            return (i, next_x), reward, False
        if i + 1 == self.n:
            return (i + 1, next_x), reward + 1.0, True
        return (i + 1, next_x), reward, False


@dataclass(frozen=True)
class Solution:
    values: np.ndarray
    """V*(i, x), shape [n, budgets]."""
    q: np.ndarray
    """Q*(i, x, g), shape [n, budgets, 2]; -inf where g is not allowed."""
    policy: np.ndarray
    """argmax_g Q*(i, x, g), shape [n, budgets] (ties go to QUICK: calling costs)."""

    def calls(self, chain: SwitchingChain) -> int:
        """DEEPTHINK calls per episode under the optimal policy from position 0."""
        return policy_calls(chain, self.policy)


def policy_calls(chain: SwitchingChain, policy: np.ndarray) -> int:
    """DEEPTHINK calls per episode of a deterministic policy [n, budgets] from position 0 with the full budget:
    a position where it calls is left at once, one where QUICK acts is left without a call, so each position
    contributes at most one call."""
    x, total = chain.budgets - 1, 0
    for i in range(chain.n):
        g = int(policy[i, x])
        total += g
        x -= g if chain.budget != UNLIMITED else 0
    return total


def solve(chain: SwitchingChain) -> Solution:
    """The optimal switching policy and its values, exactly, by backward induction over positions."""
    n, budgets = chain.n, chain.budgets
    values = np.zeros((n + 1, budgets))
    q = np.full((n, budgets, 2), -np.inf)
    for i in range(n - 1, -1, -1):
        goal = 1.0 if i + 1 == n else 0.0
        p = chain.quick_success[i]
        for x in range(budgets):
            stay = 1.0 - chain.gamma * (1.0 - p)
            q[i, x, 0] = p * (goal + chain.gamma * values[i + 1, x]) / stay if stay > 0 else 0.0
            if 1 in chain.allowed(x):
                next_x = x - 1 if chain.budget != UNLIMITED else 0
                q[i, x, 1] = -chain.c + goal + chain.gamma * values[i + 1, next_x]
            values[i, x] = q[i, x].max()
    policy = (q[:, :, 1] > q[:, :, 0] + 1e-12).astype(int)
    return Solution(values[:n], q, policy)


def policy_value(chain: SwitchingChain, policy: np.ndarray) -> np.ndarray:
    """V of a fixed deterministic policy [n, budgets] on every state, exactly (the same recursion, no max)."""
    values = np.zeros((chain.n + 1, chain.budgets))
    for i in range(chain.n - 1, -1, -1):
        goal = 1.0 if i + 1 == chain.n else 0.0
        p = chain.quick_success[i]
        for x in range(chain.budgets):
            if policy[i, x] and 1 in chain.allowed(x):
                next_x = x - 1 if chain.budget != UNLIMITED else 0
                values[i, x] = -chain.c + goal + chain.gamma * values[i + 1, next_x]
            else:
                stay = 1.0 - chain.gamma * (1.0 - p)
                values[i, x] = p * (goal + chain.gamma * values[i + 1, x]) / stay if stay > 0 else 0.0
    return values[: chain.n]


def chain_features(chain: SwitchingChain, state: tuple[int, int]) -> np.ndarray:
    """One-hot position and one-hot remaining budget: the Switcher's view of a SwitchingChain state."""
    i, x = state
    v = np.zeros(chain.n + chain.budgets, np.float32)
    v[i] = 1.0
    v[chain.n + x] = 1.0
    return v


def chain_masks(chain: SwitchingChain) -> np.ndarray:
    """Evaluation masks of every state of a chain, in `chain.states()` order: no call without budget."""
    return np.array([[1, int(chain.budget == UNLIMITED or x > 0)] for _, x in chain.states()], np.float32)


def fit_chain(chain: SwitchingChain, config: SACConfig | None = None, steps: int = 3000, penalty: float = 1.0,
              exploring_starts: bool = True) -> DiscreteSAC:
    """Train a Switcher on a SwitchingChain by interacting with it for `steps` steps.

    With a budget, calling with none left is allowed in training but penalised (`penalty`) and acts as
    QUICK, as in LONDI-B; evaluation masks it out. With `exploring_starts` each episode starts in a
    uniformly drawn state, so that states the current policy avoids (budget kept past a hard position)
    are learned too: the check against dynamic programming is on every state.
    """
    config = dataclasses.replace(config or SACConfig(), gamma=chain.gamma)  # the Switcher discounts as the task does
    sac = DiscreteSAC(chain.n + chain.budgets, config)
    rng = np.random.default_rng(config.seed + 1)
    states = chain.states()

    def start() -> tuple[int, int]:
        return states[int(rng.integers(len(states)))] if exploring_starts else (0, chain.budgets - 1)

    state, t = start(), 0
    ones = np.ones(2, np.float32)
    for _ in range(steps):
        s = chain_features(chain, state)
        g = int(sac.act(s[None])[0])
        over_budget = g == 1 and chain.budget != UNLIMITED and state[1] == 0
        next_state, reward, done = chain.step(state, 0 if over_budget else g, rng)
        reward -= penalty if over_budget else 0.0
        sac.buffer.add(s, g, reward, chain_features(chain, next_state), done, ones)
        sac.update()
        t += 1
        if done or t >= chain.max_steps:
            state, t = start(), 0
        else:
            state = next_state
    return sac


def chain_report(out_dir: Path, steps: int = 3000, seed: int = 0) -> Path:
    """Learned against optimal on the switching chain, per cost c and budget: results/switching_mdp.{md,json}."""
    hard = (1.0, 0.1, 1.0, 1.0, 0.4, 1.0)
    settings = [(hard, c, b) for b in (UNLIMITED, 1) for c in (0.02, 0.05, 0.1, 0.2, 0.3, 0.6)]
    settings.append((tuple(1 / 6 for _ in hard), 0.05, UNLIMITED))  # the random-QUICK ablation
    rows = []
    started = time.perf_counter()
    for quick, c, budget in settings:
        chain = SwitchingChain(quick, c=c, gamma=0.9, budget=budget, max_steps=30)
        optimal = solve(chain)
        sac = fit_chain(chain, SACConfig(seed=seed), steps=steps)
        features = np.stack([chain_features(chain, s) for s in chain.states()])
        learned = sac.greedy(features, chain_masks(chain)).reshape(chain.n, chain.budgets)
        start = chain.budgets - 1
        rows.append({"quick": "random (1/6)" if quick != hard else "hard at 1 (0.1) and 4 (0.4)", "c": c,
                     "budget": "none" if budget == UNLIMITED else budget,
                     "optimal_calls": optimal.calls(chain), "learned_calls": policy_calls(chain, learned),
                     "states_matching": f"{int((learned == optimal.policy).sum())}/{learned.size}",
                     "optimal_value": float(optimal.values[0, start]),
                     "learned_value": float(policy_value(chain, learned)[0, start])})
    elapsed = time.perf_counter() - started
    lines = ["# The Switcher against the exact optimum of the switching chain", "",
             f"`python -m algos.switching_mdp` ({steps} environment steps per setting, seed {seed}, "
             f"{elapsed:.0f} s on this machine). Chain of 6 positions, gamma 0.9; DEEPTHINK always advances, "
             "QUICK advances with the probability shown. Values are exact (policy evaluation), from position 0.",
             "", "| QUICK | c | budget | optimal calls | learned calls | states where learned = optimal "
             "| optimal value | learned policy's value |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['quick']} | {r['c']} | {r['budget']} | {r['optimal_calls']:.0f} | {r['learned_calls']:.0f} "
                     f"| {r['states_matching']} | {r['optimal_value']:.4f} | {r['learned_value']:.4f} |")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "switching_mdp.json").write_text(json.dumps({"steps": steps, "seed": seed, "rows": rows}, indent=1))
    path = out_dir / "switching_mdp.md"
    path.write_text("\n".join(lines) + "\n")
    return path


if __name__ == "__main__":
    import tyro

    def main(out_dir: Path = Path("results"), steps: int = 3000, seed: int = 0) -> None:
        """Fit the Switcher on the switching chain for several costs and budgets and compare with DP."""
        print(chain_report(out_dir, steps, seed).read_text())

    tyro.cli(main)
