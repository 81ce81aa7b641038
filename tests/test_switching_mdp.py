"""Tests for algos.switching_mdp: the exact DP solution checked against brute force and Monte Carlo."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from algos.switching_mdp import UNLIMITED, SwitchingChain, solve
from algos.switching_mdp import policy_value as values_of


def policy_value(chain: SwitchingChain, policy: np.ndarray) -> float:
    return float(values_of(chain, policy)[0, chain.budgets - 1])

HARD = (1.0, 1.0, 0.2, 1.0, 0.3, 1.0)  # positions 2 and 4 are hard for QUICK


def feasible_policies(chain: SwitchingChain):
    for bits in itertools.product((0, 1), repeat=chain.n * chain.budgets):
        policy = np.array(bits).reshape(chain.n, chain.budgets)
        if chain.budget != UNLIMITED and policy[:, 0].any():
            continue  # no call without budget
        yield policy


@pytest.mark.parametrize("c", [0.0, 0.05, 0.3, 0.9])
def test_dp_is_the_best_of_every_deterministic_policy(c: float) -> None:
    chain = SwitchingChain(HARD, c=c, gamma=0.9)
    solution = solve(chain)
    best = max(policy_value(chain, p) for p in feasible_policies(chain))
    assert solution.values[0, 0] == pytest.approx(best)
    assert policy_value(chain, solution.policy) == pytest.approx(best)


def test_dp_with_a_budget_is_the_best_of_every_policy_that_keeps_it() -> None:
    chain = SwitchingChain((1.0, 0.2, 1.0, 0.3), c=0.05, gamma=0.9, budget=1)
    solution = solve(chain)
    best = max(policy_value(chain, p) for p in feasible_policies(chain))
    assert solution.values[0, 1] == pytest.approx(best)
    assert not solution.policy[:, 0].any()  # never a call with nothing left
    # One call to spend: it goes to the harder of the two hard positions (QUICK 0.2 at position 1), and
    # had it been kept, position 3 would use it.
    assert solution.policy[1, 1] == 1 and solution.policy[3, 1] == 1 and solution.policy[3, 0] == 0
    assert solution.calls(chain) == 1


def test_cheap_deepthink_is_called_exactly_at_the_hard_positions_and_a_higher_cost_calls_less() -> None:
    calls = []
    for c in (0.01, 0.1, 0.3, 0.5, 1.5):
        solution = solve(SwitchingChain(HARD, c=c, gamma=0.95))
        if c == 0.01:
            assert solution.policy[:, 0].tolist() == [0, 0, 1, 0, 1, 0]  # easy positions never call
        calls.append(solution.calls(SwitchingChain(HARD, c=c, gamma=0.95)))
    assert calls == sorted(calls, reverse=True) and calls[0] == 2 and calls[-1] == 0


def test_monte_carlo_return_of_the_optimal_policy_matches_its_value() -> None:
    chain = SwitchingChain(HARD, c=0.1, gamma=0.9, max_steps=200)
    solution = solve(chain)
    rng = np.random.default_rng(0)
    returns = []
    for _ in range(4000):
        state, total, discount = (0, 0), 0.0, 1.0
        for _ in range(chain.max_steps):
            state, reward, done = chain.step(state, int(solution.policy[state]), rng)
            total += discount * reward
            discount *= chain.gamma
            if done:
                break
        returns.append(total)
    assert np.mean(returns) == pytest.approx(solution.values[0, 0], abs=3 * np.std(returns) / np.sqrt(len(returns)))


def test_random_quick_makes_the_optimal_switcher_call_more() -> None:
    """The paper's ablation in miniature: a QUICK that is right only by chance needs DEEPTHINK more."""
    good = solve(SwitchingChain(HARD, c=0.05))
    random_quick = SwitchingChain(tuple(1 / 6 for _ in HARD), c=0.05)
    assert solve(random_quick).calls(random_quick) > good.calls(SwitchingChain(HARD, c=0.05))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"quick_success": ()}, "quick_success must be probabilities"),
    ({"quick_success": (1.2,)}, "quick_success must be probabilities"),
    ({"quick_success": (1.0,), "c": -1}, "the DEEPTHINK cost c must be >= 0"),
    ({"quick_success": (1.0,), "gamma": 0}, "gamma must be in"),
    ({"quick_success": (1.0,), "budget": -3}, "budget must be >= 0"),
])
def test_bad_chains_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SwitchingChain(**kwargs)


def test_calling_without_budget_is_refused() -> None:
    chain = SwitchingChain((1.0, 0.5), budget=0)
    with pytest.raises(ValueError, match="no DEEPTHINK call left"):
        chain.step((0, 0), 1, np.random.default_rng(0))
