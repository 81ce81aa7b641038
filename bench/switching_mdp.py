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

with R_i = 1 when i+1 = n (the goal) and V(n, x) = 0. A learned Switcher is checked against
`solve(...)`'s policy on every state (tests/test_switching_mdp.py, and LONDI-SAC's tests).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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
