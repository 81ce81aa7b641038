"""Tests for bench.running.hindsight: the fewest DEEPTHINK calls an episode could have succeeded with, and its
cost-reward frontier. Exact on a scripted corridor whose minimal call set is known; equal to brute force over every
switch sequence, run through the real runner with the committed cpu pair, on short BabyAI episodes."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence

import gymnasium
import numpy as np
import pytest

from bench.envs.tasks import TaskSpec, get_task
from bench.models.cost import CallCost
from bench.models.lm import Decision
from bench.models.pair import ModelPair
from bench.running.hindsight import (
    AT_LEAST,
    EXACT,
    NEVER,
    Frontier,
    HindsightSearch,
    frontiers,
    read_store,
    store_path,
)
from bench.running.router import Router, StepView
from bench.running.runner import run_episodes

MISSION = "walk to the end of the corridor"


class Corridor(gymnasium.Env):
    """Cells 0..`length`; reaching the last one succeeds with reward 1 - 0.9 steps / max_steps (BabyAI's)."""

    def __init__(self, length: int = 8, jump: tuple[int, int] | None = (1, 4), max_steps: int = 20) -> None:
        self.length, self.jump, self.max_steps = length, jump, max_steps
        self.cell = self.steps = 0

    def _obs(self) -> str:
        return f"{MISSION}\nyou are at cell {self.cell}"

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[str, dict]:
        self.cell = self.steps = 0
        return self._obs(), {"level": "corridor"}

    def step(self, action: str) -> tuple[str, float, bool, bool, dict]:
        self.steps += 1
        if action == "forward":
            self.cell += 1
        elif action == "jump" and self.jump is not None and self.cell == self.jump[0]:
            self.cell = self.jump[1]
        success = self.cell >= self.length
        reward = 1 - 0.9 * self.steps / self.max_steps if success else 0.0
        return self._obs(), reward, success, self.steps >= self.max_steps and not success, {
            "success": success, "level": "corridor"}

    def candidates(self) -> tuple[str, ...]:
        return ("forward", "wait", "jump")

    def snapshot(self) -> Corridor:
        twin = Corridor(self.length, self.jump, self.max_steps)
        twin.cell, twin.steps = self.cell, self.steps
        return twin

    def state_key(self) -> tuple:
        return (self.cell,)


class Scripted:
    """A model whose action is a function of the cell in its prompt (reflex context: mission, last action, view)."""

    context = "reflex"
    needs_candidates = False

    def __init__(self, policy: dict[int, str], default: str = "forward") -> None:
        self.policy, self.default = policy, default
        self.calls = 0

    def decide(self, prompts: Sequence[str], candidates: Sequence[Sequence[str]] | None) -> tuple[Decision, CallCost]:
        self.calls += 1
        actions = [self.policy.get(int(p.rsplit("cell ", 1)[1]), self.default) for p in prompts]
        zeros = np.zeros(len(prompts))
        return Decision(actions, zeros, zeros.copy()), CallCost(zeros, zeros.copy(), zeros.copy())


def corridor_task(**env: object) -> TaskSpec:
    max_steps = int(env.get("max_steps", 20))
    return TaskSpec(name="test/corridor", suite="test", make_env=lambda: Corridor(**env), max_steps=max_steps,
                    train_seeds=range(0, 10), eval_seeds=range(10, 20))


def corridor_pair(hard: Sequence[int] = (2, 5), deepthink_waits: Sequence[int] = ()) -> ModelPair:
    """QUICK waits (for ever) on the hard cells; DEEPTHINK walks on, and jumps where it can."""
    quick = Scripted({cell: "wait" for cell in hard})
    deepthink = Scripted({1: "jump", **{cell: "wait" for cell in deepthink_waits}})
    return ModelPair(quick, deepthink)  # type: ignore[arg-type]


def test_the_search_finds_the_known_fewest_calls_and_the_frontier() -> None:
    # QUICK alone waits at cell 2; one call is never enough (jumping lands before cell 5, walking on past 2 reaches
    # 5); two calls are: jump at cell 1 (step 2) and walk on at cell 5 (step 4), done in 6 steps. Walking on at 2 and
    # at 5 also succeeds with two calls, in 8 steps: the search must report the shorter one.
    search = HindsightSearch(corridor_task(), corridor_pair())
    frontier = search.episode(10)
    assert frontier.status == EXACT and frontier.min_calls == frontier.lower == frontier.upper == 2
    assert frontier.switches == (2, 4) and frontier.min_steps == 6
    assert frontier.best[:3] == [0.0, 0.0, pytest.approx(1 - 0.9 * 6 / 20)]
    assert frontier.exhaustive  # a handful of states: every switch sequence was searched
    assert frontier.reward_with(2) == frontier.reward_with(7) == pytest.approx(0.73)
    assert frontier.calls_for(0.73) == 2 and frontier.calls_for(0.9) is None
    assert Frontier.from_row(frontier.row()) == frontier


def test_with_no_hard_cell_quick_alone_succeeds_and_a_call_only_shortens_the_path() -> None:
    frontier = HindsightSearch(corridor_task(), corridor_pair(hard=())).episode(10)
    assert frontier.min_calls == 0 and frontier.switches == () and frontier.min_steps == 8
    # The jump saves two steps: one call buys 0.09 more reward.
    assert frontier.best[:2] == [pytest.approx(1 - 0.9 * 8 / 20), pytest.approx(1 - 0.9 * 6 / 20)]
    # Searching no level past the minimum misses that: the frontier stops at 0 calls, and says it was not exhaustive.
    stopped = HindsightSearch(corridor_task(), corridor_pair(hard=()), beyond=0).episode(10)
    assert stopped.best == frontier.best[:1] and not stopped.exhaustive and stopped.min_calls == 0


def test_an_episode_no_switching_can_save_says_never() -> None:
    # Both models wait at cell 5 (which the jump cannot skip): no switch sequence succeeds.
    frontier = HindsightSearch(corridor_task(), corridor_pair(deepthink_waits=(5,))).episode(10)
    assert frontier.status == NEVER and frontier.exhaustive
    assert frontier.min_calls is None and frontier.upper is None and max(frontier.best) == 0


def test_a_node_budget_that_runs_out_gives_bounds_not_a_minimum() -> None:
    # Two states decided: level 0 (QUICK's rollout until it waits at cell 2 a second time) is not even finished.
    frontier = HindsightSearch(corridor_task(), corridor_pair(), node_budget=2).episode(10)
    assert frontier.status == AT_LEAST and frontier.min_calls is None
    assert frontier.lower == 0 and frontier.best == []
    assert frontier.upper == 2  # DEEPTHINK's own path calls it twice where the two differ, and succeeds
    # One state short of the full search: levels 0 and 1 were searched in full, level 2 (where the success is) not.
    full = HindsightSearch(corridor_task(), corridor_pair()).episode(10)
    short = HindsightSearch(corridor_task(), corridor_pair(), node_budget=full.nodes - 1).episode(10)
    assert full.status == EXACT and short.status == AT_LEAST and short.min_calls is None
    assert short.lower == 2 == short.upper and short.best == [0.0, 0.0]


def test_decisions_are_memoised_by_prompt() -> None:
    pair = corridor_pair()
    search = HindsightSearch(corridor_task(), pair)
    first = search.episode(10)
    calls = (pair.quick.calls, pair.deepthink.calls)
    again = search.episode(11)  # the same corridor: every prompt was decided before
    assert (pair.quick.calls, pair.deepthink.calls) == calls
    assert again.decisions == {"quick": 0, "deepthink": 0} and sum(first.decisions.values()) > 0
    # Every decision computed is metered (an unpriced pair: priced seconds NaN); one read from the memo costs nothing.
    assert {r: c["calls"] for r, c in first.cost.items()} == first.decisions
    assert np.isnan(first.cost["quick"]["priced_s"]) and again.cost["quick"]["calls"] == 0
    assert dataclasses.replace(again, env_seed=10, seconds=first.seconds, decisions=first.decisions,
                               cost=first.cost) == first


def test_a_task_whose_environments_cannot_be_copied_or_models_that_sample_are_refused() -> None:
    with pytest.raises(ValueError, match="cannot be copied"):
        HindsightSearch(get_task("scienceworld/power-component"), corridor_pair())
    sampling = corridor_pair()
    sampling.quick.rng = np.random.default_rng(0)  # a sampled or random policy has a generator of its own
    with pytest.raises(ValueError, match="needs greedy models.*quick draws from a generator"):
        HindsightSearch(corridor_task(), sampling)


class Sequences(Router):
    """Plays switch sequence `sequences[i]` (steps, 1-based, at which DEEPTHINK acts) in the i-th episode run."""

    name = "sequences"

    def __init__(self, sequences: list[frozenset[int]]) -> None:
        self.sequences, self.started = sequences, 0
        self.playing: dict[int, frozenset[int]] = {}

    def start_episode(self, slot: int, seed: int) -> None:
        self.playing[slot] = self.sequences[self.started]
        self.started += 1

    def route(self, view: StepView) -> np.ndarray:
        return np.array([int(step) + 1 in self.playing[slot] for slot, step in zip(view.slots, view.steps,
                                                                                      strict=True)])


# GoToLocal episodes of 6 steps where the cpu pair's frontier moves: a call makes the episode succeed (1000000,
# 1000002 with two calls, 1000008) or succeed sooner (1000006).
SHORT = "babyai/GoToLocal[max_steps=6]"
SHORT_SEEDS = (1_000_000, 1_000_002, 1_000_006, 1_000_008)


def test_the_frontier_is_brute_force_over_every_switch_sequence_through_the_runner(cpu_models: ModelPair) -> None:
    """Every one of the 2^6 switch sequences of each episode, played by the real runner: the best reward with at
    most k DEEPTHINK-acted steps is the search's frontier at k, and the fewest with success its minimum."""
    task = get_task(SHORT)
    steps = task.max_steps
    sequences = [frozenset(s for s, on in zip(range(1, steps + 1), bits, strict=True) if on)
                 for bits in itertools.product((0, 1), repeat=steps)]
    seeds = [seed for seed in SHORT_SEEDS for _ in sequences]
    results, _ = run_episodes(Sequences(sequences * len(SHORT_SEEDS)), task, cpu_models, seeds, batch_size=len(seeds),
                              progress=False)
    results.sort(key=lambda r: r.index)
    search = HindsightSearch(task, cpu_models)
    moved = 0
    for i, seed in enumerate(SHORT_SEEDS):
        played = results[i * len(sequences):(i + 1) * len(sequences)]
        assert all(r.env_seed == seed for r in played)
        brute = [max(r.reward for r, s in zip(played, sequences, strict=True) if len(s) <= k)
                 for k in range(steps + 1)]
        succeeded = [len(s) for r, s in zip(played, sequences, strict=True) if r.success]
        frontier = search.episode(seed)
        assert frontier.exhaustive and frontier.status in (EXACT, NEVER)
        assert [frontier.reward_with(k) for k in range(steps + 1)] == pytest.approx(brute), seed
        assert frontier.min_calls == (min(succeeded) if succeeded else None), seed
        # The switches it reports are a sequence that succeeds with that many calls, in the steps it says.
        if frontier.min_calls is not None:
            replay = played[sequences.index(frozenset(frontier.switches))]
            assert replay.success and replay.steps == frontier.min_steps
        # DEEPTHINK-only's episode (every step DEEPTHINK's) is the one the search followed for its upper bound.
        everything = played[sequences.index(frozenset(range(1, steps + 1)))]
        assert (frontier.deepthink_reward, frontier.deepthink_success, frontier.deepthink_steps) == (
            pytest.approx(everything.reward), everything.success, everything.steps)
        moved += brute[-1] > brute[0]
    assert moved == len(SHORT_SEEDS)  # on every one of these episodes calls change the outcome


def comparable(frontier: Frontier) -> dict:
    """A frontier without what depends on the machine (seconds) or on what was searched before (decisions)."""
    row = frontier.row()
    del row["seconds"], row["decisions"], row["cost"]
    return row


def test_searched_episodes_are_stored_at_once_and_read_back_instead_of_searched_again(tmp_path) -> None:
    pair = corridor_pair()
    task = corridor_task()
    first = frontiers(HindsightSearch(task, pair), [10, 11], store=tmp_path / "store", progress=False)
    path = store_path(tmp_path / "store", task, pair, HindsightSearch(task, pair))
    assert len(path.read_text().splitlines()) == 2
    with path.open("a") as out:
        out.write('{"env_seed": 12, "level": "corr')  # a line cut off by a kill: that episode is searched again
    fresh = corridor_pair()  # new models with the same weights (none): the same pair key, nothing memoised
    again = frontiers(HindsightSearch(task, fresh), [11, 10, 12], store=tmp_path / "store", progress=False)
    assert fresh.quick.calls == fresh.deepthink.calls > 0  # only episode 12 was searched
    assert [comparable(f) for f in again[:2]] == [comparable(f) for f in (first[1], first[0])]
    # Another search setting is another store: nothing is read across settings.
    other = HindsightSearch(task, corridor_pair(), beyond=0)
    assert store_path(tmp_path / "store", task, pair, other) != path
    # A read-only copy (the committed one) is read, and never written to.
    committed = tmp_path / "committed"
    store_path(committed, task, pair, HindsightSearch(task, pair)).parent.mkdir(parents=True)
    store_path(committed, task, pair, HindsightSearch(task, pair)).write_text(path.read_text())
    reader = corridor_pair()
    frontiers(HindsightSearch(task, reader), [10, 11, 12], store=tmp_path / "empty", also=(committed,), progress=False)
    assert reader.quick.calls == 0 and not (tmp_path / "empty").exists()


def test_the_summary_keeps_bounds_apart_and_reports_the_success_reachable_per_call_count() -> None:
    from bench.reporting.hindsight import frontier_frame, summary, summary_markdown

    def episode(seed: int, level: str, status: str, **fields: object) -> Frontier:
        base = dict(env_seed=seed, level=level, best=[0.0], best_steps=[10], min_calls=None, lower=0, upper=None,
                    min_steps=None, status=status, deepthink_success=True, deepthink_steps=10)
        return Frontier(**{**base, **fields})

    found = [episode(1, "A", EXACT, min_calls=0, lower=0, upper=0, min_steps=10),
             episode(2, "A", EXACT, best=[0.0, 0.0, 0.8], min_calls=2, lower=2, upper=2, min_steps=8),
             episode(3, "B", NEVER, deepthink_success=False),
             episode(4, "B", AT_LEAST, lower=3, upper=5, min_steps=20)]
    table = summary(frontier_frame(found, max_steps=40)).set_index("level")
    assert table.loc["all", ["exact", "at_least", "never"]].tolist() == [2, 1, 1]
    assert table.loc["all", "calls_low"] == pytest.approx((0 + 2 + 0 + 3) / 4)
    assert table.loc["all", "calls_high"] == pytest.approx((0 + 2 + 0 + 5) / 4)
    assert table.loc["A", "fraction_low"] == table.loc["A", "fraction_high"] == pytest.approx((0 + 2 / 8) / 2)
    assert table.loc["B", "fraction_low"] == pytest.approx((0 + 3 / 40) / 2)
    assert np.isnan(table.loc["B", "fraction_high"])  # how short a success with 3-5 calls can be is unknown
    # Success with at most k calls counts only what the search proved: the bounded episode counts at no k.
    assert [table.loc["all", f"success_{k}_calls"] for k in (0, 1, 2, 3)] == [0.25, 0.25, 0.5, 0.5]
    assert table.loc["all", "deepthink_success"] == 0.75
    assert table.loc["all", "share_of_deepthink_2"] == pytest.approx(0.5 / 0.75)
    # The budget ran out in the level that found the fewest calls (best has no entry 2): 2 calls is exact, the
    # 8-step success found is not known to be the shortest, so its fraction is a low end.
    cut = episode(6, "D", EXACT, best=[0.0, 0.0], min_calls=2, lower=2, upper=2, min_steps=8)
    assert not cut.shortest and found[1].shortest
    row = frontier_frame([cut], max_steps=40).iloc[0]
    assert row.fraction_low == 2 / 8 and np.isnan(row.fraction_high) and row.calls_low == row.calls_high == 2
    # A bounded episode whose found sequence succeeds with 2 calls counts as a success with at most 2 or 3.
    proved = frontier_frame([episode(7, "D", AT_LEAST, lower=1, upper=2, min_steps=9)], max_steps=40).iloc[0]
    assert [proved[f"success_{k}_calls"] for k in (0, 1, 2, 3)] == [0, 0, 1, 1]
    unbounded = summary(frontier_frame([episode(5, "C", AT_LEAST, lower=4)], max_steps=40))
    assert np.isnan(unbounded.calls_high[0])
    text = summary_markdown(unbounded, "test/task")
    assert "| >= 4.00 | >= 0.100 |" in text


def test_the_command_line_searches_the_sweeps_episodes_and_reads_them_back(londi_cache, tmp_path) -> None:
    from bench.models.profiles import get_profile
    from tests.test_cli import run_module

    store = tmp_path / "store"
    args = ("--profile", "smoke", "--tasks", SHORT, "--store", str(store), "--no-progress", "--no-price")
    done = run_module("bench.hindsight", *args)
    assert done.returncode == 0, done.stderr
    profile = get_profile("smoke")
    episodes = len(profile.sweep_seeds_for(get_task(SHORT))) * profile.episodes_for(get_task(SHORT))
    assert f"| all | {episodes} |" in done.stdout and "### babyai/GoToLocal[max_steps=6] (test)" in done.stdout
    [path] = store.rglob("*.jsonl")
    assert len(path.read_text().splitlines()) == episodes
    before = path.stat().st_mtime_ns
    again = run_module("bench.hindsight", *args)
    assert again.stdout.split("| search s")[0] == done.stdout.split("| search s")[0]
    assert path.stat().st_mtime_ns == before  # read back, nothing searched again


@pytest.mark.parametrize("args, message", [
    (("--split", "dev"), "--split dev: give test, valid or train"),
    (("--split", "train", "--train-episodes", "0"), "--train-episodes must be >= 1"),
    (("--tasks", "scienceworld/power-component"), "only BabyAI-Text tasks can"),
    (("--tasks", "babyai/Nope"), "unknown task 'babyai/Nope'"),
])
def test_bad_input_is_one_error_line_and_exit_2(args, message, londi_cache, tmp_path, capsys) -> None:
    from tests.test_cli import in_process

    status, _, err = in_process("bench.hindsight", "--profile", "smoke", *args, "--store", str(tmp_path / "s"),
                                capsys=capsys)
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert status == 2 and len(errors) == 1 and message in errors[0], err
    assert not (tmp_path / "s").exists()


def test_regret_is_calls_above_the_minimum_at_the_reward_and_reward_below_the_frontier_at_the_calls() -> None:
    import pandas as pd

    from bench.reporting.hindsight import regret_frame, regret_summary

    found = [Frontier(env_seed=1, level="A", best=[0.0, 0.5, 0.8], best_steps=[64, 20, 10], min_calls=1, lower=1,
                      upper=1, min_steps=20),
             Frontier(env_seed=2, level="A", best=[0.6, 0.6], best_steps=[30, 30], min_calls=0, lower=0, upper=0,
                      min_steps=30, status=AT_LEAST)]
    episodes = pd.DataFrame({"router": ["r"] * 4 + ["q"] * 2, "seed": [0, 0, 1, 1, 0, 1],
                             "env_seed": [1, 2, 1, 2, 1, 3], "reward": [0.5, 0.6, 0.9, 0.0, 0.0, 0.4],
                             "deepthink_calls": [3, 1, 5, 0, 0, 0]})
    regret = regret_frame(episodes, found)
    assert len(regret) == 5  # env seed 3 was not searched: left out
    r = regret[regret.router == "r"]
    # 0.5 needs 1 call (3 paid: 2 above); 0.6 on episode 2 needs none; 0.9 is beyond the levels searched on
    # episode 1: at least 3 (bounded); a failure needs none.
    assert r.min_calls.tolist() == [1, 0, 3, 0] and r.bounded.tolist() == [False, False, True, False]
    assert r.calls_above.tolist() == [2, 1, 2, 0]
    # Past the levels searched (0.9 with 5 calls) the frontier is a low end: the gap is clipped at 0, never negative.
    assert r.reward_below.tolist() == pytest.approx([0.8 - 0.5, 0.0, 0.0, 0.6 - 0.0])
    table = regret_summary(regret).set_index("router")
    assert table.loc["r", "calls_ratio"] == pytest.approx((3 + 1 + 5 + 0) / (1 + 0 + 3 + 0))
    assert table.loc["r", "needed_share"] == pytest.approx(4 / 9)
    assert table.loc["r", "bounded"] == 1 and table.loc["q", "episodes"] == 1
    assert table.loc["q", "reward_below"] == pytest.approx(0.0)  # QUICK's failure on episode 1 is all 0 calls buy


def test_the_task_frontier_places_calls_where_they_buy_most_reward() -> None:
    from bench.reporting.hindsight import task_frontier

    def episode(best: list[float]) -> Frontier:
        return Frontier(env_seed=len(best), level="A", best=best, best_steps=[1] * len(best), min_calls=None,
                        lower=0, upper=None, min_steps=None)

    # Episode a: 2 calls buy 0.8 (0.4 a call, the hull skips k=1); episode b: 1 call buys 0.5, the second 0.1.
    points = task_frontier([episode([0.0, 0.1, 0.8]), episode([0.2, 0.7, 0.8])])
    assert points == [pytest.approx(p) for p in [(0.0, 0.1), (0.5, 0.35), (1.5, 0.75), (2.0, 0.8)]]
    assert task_frontier([]) == []


def test_the_committed_search_results_are_the_committed_pairs_and_search_again_the_same(cpu_models) -> None:
    """checkpoints/cpu/hindsight holds the search of the cpu profile's Mixed test episodes for the committed pair: a
    store for these weights and this search version exists, covers every episode the sweep evaluates on, and a few
    of its episodes (the cheapest to search) come out the same when searched again now."""
    from bench.models.cache import CHECKPOINTS
    from bench.models.profiles import get_profile

    profile, task = get_profile("cpu"), get_task("babyai/Mixed")
    search = HindsightSearch(task, cpu_models)
    path = store_path(CHECKPOINTS / "cpu" / "hindsight", task, cpu_models, search)
    assert path.exists(), f"no committed search for the committed pair: python -m bench.hindsight --profile cpu " \
                          f"--store {CHECKPOINTS / 'cpu' / 'hindsight'}"
    committed = read_store(path)
    seeds = [s for run in profile.sweep_seeds_for(task) for s in task.eval_episode_seeds(run, profile.episodes)]
    assert set(seeds) <= set(committed)
    cheapest = sorted(committed.values(), key=lambda f: f.nodes)[:3] + [
        min((f for f in committed.values() if f.min_calls), key=lambda f: f.nodes)]
    again = frontiers(search, [f.env_seed for f in cheapest], progress=False)
    assert [comparable(f) for f in again] == [comparable(f) for f in cheapest]
    assert any(f.min_calls for f in cheapest)  # an episode that needs a call is among them


def test_the_frontier_plot_draws_the_curve_and_every_router(tmp_path) -> None:
    import pandas as pd

    from bench.reporting.hindsight import plot_frontier

    found = [Frontier(env_seed=1, level="A", best=[0.0, 0.5, 0.8], best_steps=[64, 20, 10], min_calls=1, lower=1,
                      upper=1, min_steps=20)]
    routers = pd.DataFrame({"router": ["londi_sac[c=0.01]", "quick_only"], "calls": [3.0, 0.0], "reward": [0.4, 0.1]})
    path = plot_frontier(found, routers, tmp_path / "frontier.png", "test")
    assert path.stat().st_size > 10_000
    with pytest.raises(ValueError, match="no searched episodes"):
        plot_frontier([], routers, tmp_path / "none.png", "test")


def test_the_search_prices_its_decisions_as_a_run_prices_its_calls(priced_smoke_models) -> None:
    frontier = HindsightSearch(get_task(SHORT), priced_smoke_models).episode(SHORT_SEEDS[0])
    for role in ("quick", "deepthink"):
        cost = frontier.cost[role]
        assert cost["calls"] == frontier.decisions[role] > 0
        assert cost["flops"] > 0 and 0 < cost["priced_s"] < np.inf and cost["projected_gpu_s"] > 0
