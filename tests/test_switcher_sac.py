"""The Switcher's learner (algos/switcher_sac.py) against the exact optimum of the switching MDP.

The paper's theory, checked: on a chain where DEEPTHINK is needed only at known hard positions,
the discrete SAC Switcher learns to call it exactly where dynamic programming says it should, for
each cost c and with a budget; a higher c gives fewer calls; a random QUICK makes it call more.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from algos.switcher_sac import SACConfig
from algos.switching_mdp import SwitchingChain, chain_features, chain_masks, fit_chain, policy_calls, solve

HARD = (1.0, 0.1, 1.0, 1.0, 0.4, 1.0)  # QUICK is right at positions 1 and 4 only by luck
STEPS = 3000


def learned_policy(chain: SwitchingChain, seed: int = 0) -> tuple[np.ndarray, object]:
    sac = fit_chain(chain, SACConfig(seed=seed), steps=STEPS)
    features = np.stack([chain_features(chain, s) for s in chain.states()])
    return sac.greedy(features, chain_masks(chain)).reshape(chain.n, chain.budgets), sac


@pytest.fixture(scope="module")
def by_cost() -> dict[float, tuple[np.ndarray, np.ndarray]]:
    """c -> (learned policy, optimal policy) on the unbudgeted chain."""
    out = {}
    for c in (0.05, 0.2, 0.6):
        chain = SwitchingChain(HARD, c=c, gamma=0.9, max_steps=30)
        out[c] = (learned_policy(chain)[0], solve(chain).policy)
    return out


def test_the_learned_switcher_is_the_optimal_one_on_every_state(by_cost: dict) -> None:
    for c, (learned, optimal) in by_cost.items():
        np.testing.assert_array_equal(learned, optimal, err_msg=f"c={c}")


def test_a_higher_cost_gives_fewer_calls_as_dynamic_programming_says(by_cost: dict) -> None:
    calls = [policy_calls(SwitchingChain(HARD, c=c), learned) for c, (learned, _) in sorted(by_cost.items())]
    assert calls == [2, 1, 0]  # both hard positions, then only the harder one, then none


def test_with_a_budget_the_switcher_spends_it_where_it_matters_and_never_exceeds_it() -> None:
    chain = SwitchingChain(HARD, c=0.05, gamma=0.9, budget=1, max_steps=30)
    learned, sac = learned_policy(chain)
    np.testing.assert_array_equal(learned, solve(chain).policy)
    assert learned[1, 1] == 1 and not learned[:, 0].any()  # the one call goes to the harder position
    rng = np.random.default_rng(0)
    for _ in range(200):  # evaluation: masked greedy choices, never a call beyond the budget
        state, calls = (0, 1), 0
        for _ in range(chain.max_steps):
            mask = np.array([[1, int(state[1] > 0)]], np.float32)
            g = int(sac.greedy(chain_features(chain, state)[None], mask)[0])
            calls += g
            state, _, done = chain.step(state, g, rng)
            if done:
                break
        assert calls <= chain.budget


def test_a_random_quick_makes_the_switcher_call_more() -> None:
    """The paper's ablation: with QUICK right only by chance (1 in 6), DEEPTHINK is needed everywhere."""
    random_quick = SwitchingChain(tuple(1 / 6 for _ in HARD), c=0.05, gamma=0.9, max_steps=30)
    learned, _ = learned_policy(random_quick)
    assert policy_calls(random_quick, learned) == solve(random_quick).calls(random_quick) == len(HARD)


def test_same_seed_same_switcher() -> None:
    chain = SwitchingChain(HARD, c=0.2, gamma=0.9, max_steps=30)
    a = fit_chain(chain, SACConfig(seed=3), steps=300)
    b = fit_chain(chain, SACConfig(seed=3), steps=300)
    for p, q in zip(a.q1.parameters(), b.q1.parameters(), strict=True):
        assert torch.equal(p, q)
