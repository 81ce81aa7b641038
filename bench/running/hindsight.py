"""The hindsight minimum: the fewest DEEPTHINK calls with which an episode could have succeeded, and the best
reward reachable with k calls (the episode's cost-reward frontier). The physical limit of switching.

With greedy models and a deterministic environment, an episode is a function of its switch sequence. Where the
two models would play the same action a DEEPTHINK call changes nothing but the bill, so only states where they
disagree branch. The search is uniform-cost on the number of calls: level k holds the states first reached with k
calls; from each, QUICK plays on to the end of the episode (a rollout), and every disagreement on the way puts the
state after DEEPTHINK's action into level k + 1. The first level with a successful rollout gives the fewest calls,
exactly (every cheaper level was searched in full); the best reward of levels 0..k is the frontier at k calls.

Model decisions are memoised by prompt (a decision is a function of its prompt: the models must be greedy), and
the models decide for a whole level in batches. A state (the environment's, without the step count, and both
prompts) reached again at the same or a later step with as many calls or more is dropped: from the earlier copy the
same switches replay the same future sooner (rewards are paid at success, less the later it comes, and never
negative). That also ends a rollout that loops. A node budget (states decided per episode) bounds the work; where
it runs out the result says so: the fewest calls is then "at least" the level being searched, and "at most" the
calls of DEEPTHINK's own path where that succeeded; where it runs out in the level that found the fewest calls,
that number is exact but the episode found with it may not be the shortest (`shortest` is False).

The search needs environments that can be copied and keyed (`snapshot()`, `state_key()`: BabyAI-Text has them);
ScienceWorld's simulator lives in a JVM and cannot be copied, so it has no hindsight minimum here.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from bench.envs.contexts import EpisodeHistory, get_context
from bench.envs.tasks import TaskSpec
from bench.models.pair import MODELS, ModelPair
from bench.running.metering import Meter, Usage

NODE_BUDGET = 4000
"""States decided per episode before the search stops and reports bounds instead of the exact minimum."""
MAX_CALLS = 8
"""Levels searched at most (DEEPTHINK calls per episode): the frontier is given for 0..MAX_CALLS calls."""
BEYOND = 2
"""Levels searched past the fewest calls with success: more calls can still shorten the episode (more reward)."""

EXACT, AT_LEAST, NEVER = "exact", "at_least", "never"
SEARCH_VERSION = 1
"""In every store's name: a change to what the search finds (its key, its pruning) raises it, so that results of an
earlier search are not read as this one's."""


@dataclass
class Frontier:
    """One episode's hindsight result."""

    env_seed: int
    level: str
    best: list[float]
    """best[k]: the best reward reachable with at most k DEEPTHINK calls, for every k searched in full"""
    best_steps: list[int]
    """the episode's length at best[k]"""
    min_calls: int | None
    """the fewest calls with which the episode succeeds (status exact); None otherwise"""
    lower: int
    """the fewest calls is at least this (= min_calls when exact)"""
    upper: int | None
    """... and at most this: the calls of a succeeding switch sequence found (None: none found)"""
    min_steps: int | None
    """the length of the best succeeding episode with the fewest calls (or of the upper bound's episode)"""
    switches: tuple[int, ...] = ()
    """steps (1-based) at which that episode calls DEEPTHINK"""
    status: str = EXACT
    """exact (min_calls known), at_least (node budget or MAX_CALLS reached first: lower, and upper where known),
    never (no switch sequence succeeds: every level was searched until none was left)"""
    exhaustive: bool = False
    """every switch sequence was searched: the frontier is flat beyond its last entry"""
    deepthink_reward: float = float("nan")
    deepthink_success: bool = False
    deepthink_steps: int = 0
    """DEEPTHINK-only's episode (the models are greedy: the one the deepthink_only router plays)"""
    deepthink_calls: int = 0
    """... and the steps of it where the two models differ (the calls follow_deepthink_where_they_differ pays)"""
    nodes: int = 0
    """states decided"""
    decisions: dict[str, int] = field(default_factory=dict)
    """model decisions computed per model (a prompt decided before is not counted again)"""
    seconds: float = 0.0
    cost: dict[str, dict[str, float]] = field(default_factory=dict)
    """per model, what the decisions computed for this episode cost: calls (prompts decided), FLOPs, priced seconds
    (NaN for an unpriced pair), projected GPU-seconds and the wall clock inside the calls (empty: searched before
    the search was metered)"""

    @property
    def shortest(self) -> bool:
        """Whether `min_steps` is the shortest success with `min_calls` calls: that level was searched in full."""
        return self.status == EXACT and len(self.best) > (self.min_calls or 0)

    def reward_with(self, calls: int) -> float:
        """The frontier at `calls` calls: exact within the levels searched; beyond them the last level's value
        (a lower bound, unless the search was exhaustive)."""
        return self.best[min(calls, len(self.best) - 1)] if self.best else float("nan")

    def calls_for(self, reward: float) -> int | None:
        """The fewest calls reaching `reward` (None: not within the levels searched)."""
        for k, value in enumerate(self.best):
            if value >= reward - 1e-9:
                return k
        return None

    def row(self) -> dict[str, Any]:
        row = asdict(self)
        row["switches"] = list(self.switches)
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Frontier:
        row = dict(row)
        row["switches"] = tuple(row.get("switches", ()))
        return cls(**row)


@dataclass
class _Node:
    env: Any
    history: EpisodeHistory
    calls: int
    switches: tuple[int, ...]
    ret: float = 0.0
    done: bool = False
    success: bool = False
    prompts: dict[str, str] = field(default_factory=dict)
    """each model's prompt at this state, once built"""

    def steps(self) -> int:
        return len(self.history.actions)


class HindsightSearch:
    """The search over switch sequences for one task and model pair (decisions memoised across its episodes)."""

    def __init__(self, task: TaskSpec, models: ModelPair, node_budget: int = NODE_BUDGET, max_calls: int = MAX_CALLS,
                 beyond: int = BEYOND, batch: int = 256) -> None:
        probe = task.make_env()
        copyable = hasattr(probe, "snapshot") and hasattr(probe, "state_key")
        probe.close()
        if not copyable:
            raise ValueError(f"task {task.name!r}: its environments cannot be copied (snapshot/state_key), so it has "
                             f"no hindsight minimum; BabyAI-Text tasks have one")
        greedy = [role for role in MODELS if getattr(models.get(role), "rng", None) is not None]
        if greedy:
            raise ValueError(f"the hindsight search needs greedy models (an episode a function of its switches); "
                             f"{', '.join(greedy)} draws from a generator")
        if node_budget < 1 or max_calls < 0 or beyond < 0 or batch < 1:
            raise ValueError(f"node budget and batch must be >= 1, max calls and levels beyond >= 0, got "
                             f"{node_budget}, {batch}, {max_calls}, {beyond}")
        self.task, self.models, self.batch = task, models, batch
        self.node_budget, self.max_calls, self.beyond = node_budget, max_calls, beyond
        self.contexts = {role: get_context(models.get(role).context) for role in MODELS}
        self.memo: dict[str, dict[str, str]] = {role: {} for role in MODELS}
        # Every decision computed is metered as a run's calls are (tokens, FLOPs, seconds priced by the pair's books):
        # what a router that learns from the search pays for its labels.
        self.meter = Meter(1, prices=models.prices)

    # --- decisions, memoised by prompt and batched ------------------------------------------------------------
    def _prompt(self, node: _Node, role: str) -> str:
        """`role`'s prompt at the node's state, built once per state (the decision and the state's key both read it)."""
        if role not in node.prompts:
            node.prompts[role] = self.contexts[role](node.history)
        return node.prompts[role]

    def _actions(self, role: str, nodes: Sequence[_Node]) -> list[str]:
        prompts = [self._prompt(n, role) for n in nodes]
        memo = self.memo[role]
        missing = list(dict.fromkeys(p for p in prompts if p not in memo))
        if missing:
            listed = self.task.action_mode == "choose" or any(self.models.get(r).needs_candidates for r in MODELS)
            candidates = tuple(nodes[0].env.candidates()) if listed else None
            lm = self.models.get(role)
            for start in range(0, len(missing), self.batch):
                chunk = missing[start:start + self.batch]
                listing = None if candidates is None else [candidates] * len(chunk)
                decision = self.meter.call(role, [0] * len(chunk),
                                           lambda lm=lm, chunk=chunk, listing=listing: lm.decide(chunk, listing))
                memo.update(zip(chunk, decision.actions, strict=True))
        return [memo[p] for p in prompts]

    def _key(self, node: _Node) -> tuple:
        """The state without its step count: the environment's state and both models' prompts."""
        return (node.env.state_key(), *(self._prompt(node, role) for role in MODELS))

    def _dominated(self, node: _Node, seen: dict[tuple, int]) -> bool:
        """Whether the search already holds this state at the same step or an earlier one, reached with as few calls
        or fewer (`seen` maps each state to the earliest step it was reached at; the levels come in order of calls).
        From the earlier copy the same switches replay the same future sooner: no less reward (it falls with the
        steps taken), no earlier time-out. Otherwise the state is recorded at this step."""
        key = self._key(node)
        if seen.get(key, node.steps() + 1) <= node.steps():
            return True
        seen[key] = node.steps()
        return False

    @staticmethod
    def _step(node: _Node, action: str) -> None:
        obs, reward, terminated, truncated, info = node.env.step(action)
        node.ret += float(reward)
        node.history = EpisodeHistory(observations=node.history.observations + [obs],
                                      actions=node.history.actions + [action],
                                      memories=node.history.memories + [info.get("memory", [])])
        node.prompts = {}
        node.done, node.success = bool(terminated or truncated), bool(info.get("success"))
        if node.done:
            node.env.close()

    # --- the search of one episode ----------------------------------------------------------------------------
    def episode(self, env_seed: int) -> Frontier:
        started = time.perf_counter()
        self.meter.take(0)
        env = self.task.make_env()
        obs, info = env.reset(seed=int(env_seed))
        root = _Node(env, EpisodeHistory(observations=[obs], memories=[info.get("memory", [])]), 0, ())
        own = self._follow_deepthink(root)
        upper, upper_steps, upper_switches = (own.calls, own.steps(), own.switches) if own.success else (None, None, ())
        seen = {self._key(root): 0}
        states: list[_Node] = [root]
        best: list[float] = []
        best_steps: list[int] = []
        found: tuple[int, int, tuple[int, ...]] | None = None  # (calls, steps, switches) of the fewest calls
        nodes, exhaustive = 0, False
        for k in range(self.max_calls + 1):
            if not states:
                exhaustive = True
                break
            level = self._search_level(states, seen, self.node_budget - nodes)
            nodes += level["nodes"]
            if found is None and level["success"] is not None:
                # Every cheaper level was searched in full: k calls is the minimum, whether this level was or not.
                found = (k, *level["success"])
            if not level["complete"]:
                break
            if not best or level["best"][0] > best[-1] + 1e-12:
                best.append(level["best"][0])
                best_steps.append(level["best"][1])
            else:
                best.append(best[-1])
                best_steps.append(best_steps[-1])
            states = level["next"]
            if found is not None and k >= found[0] + self.beyond:
                exhaustive = not states
                break
        else:
            exhaustive = not states
        for node in states:
            if not node.done:
                node.env.close()
        env.close()
        cost = _cost(self.meter.take(0))
        if found is not None:
            min_calls, lower, status = found[0], found[0], EXACT
            upper, min_steps, switches = found[0], found[1], found[2]
        elif exhaustive:
            min_calls, lower, status, upper, min_steps, switches = None, len(best), NEVER, None, None, ()
        else:
            min_calls, lower, status = None, len(best), AT_LEAST
            min_steps, switches = upper_steps, upper_switches
        return Frontier(env_seed=int(env_seed), level=str(info.get("level", "")), best=best, best_steps=best_steps,
                        min_calls=min_calls, lower=lower, upper=upper, min_steps=min_steps, switches=switches,
                        status=status, exhaustive=exhaustive, nodes=nodes,
                        deepthink_reward=own.ret, deepthink_success=own.success, deepthink_steps=own.steps(),
                        deepthink_calls=own.calls,
                        decisions={r: int(c["calls"]) for r, c in cost.items()}, cost=cost,
                        seconds=time.perf_counter() - started)

    def _follow_deepthink(self, root: _Node) -> _Node:
        """DEEPTHINK-only's episode, counting the calls where the two differ: where it succeeds, they bound the
        minimum from above."""
        node = _Node(root.env.snapshot(), root.history, 0, ())
        while not node.done:
            quick, deepthink = (self._actions(role, [node])[0] for role in MODELS)
            if quick != deepthink:
                node.calls += 1
                node.switches += (node.steps() + 1,)
            self._step(node, deepthink)
        return node

    def _search_level(self, starts: list[_Node], seen: dict[tuple, int], budget: int) -> dict[str, Any]:
        """QUICK's rollouts from every state of one level, in lockstep (the models decide for all of them at once).
        Returns the level's best (reward, steps), its shortest success (steps, switches), the next level's states,
        and whether the level was finished within `budget` states decided."""
        best: tuple[float, int] = (float("-inf"), 0)
        success: tuple[int, tuple[int, ...]] | None = None
        finished_next: list[_Node] = []  # the next level's episodes that DEEPTHINK's action ended

        def finished(node: _Node, failed: bool = False) -> None:
            nonlocal best, success
            steps = self.task.max_steps if failed else node.steps()
            if node.ret > best[0] + 1e-12 or (abs(node.ret - best[0]) <= 1e-12 and steps < best[1]):
                best = (node.ret, steps)
            if not failed and node.success and (success is None or steps < success[0]):
                success = (steps, node.switches)

        pending: dict[tuple, _Node] = {}  # the next level's states, each at the earliest step it was reached
        running: list[_Node] = []
        for node in starts:  # a level's states are its own: rolled out in place, not copied
            if node.done:  # DEEPTHINK's action ended the episode: nothing left to roll out
                finished(node)
            else:
                running.append(node)
        nodes = 0
        while running:
            if nodes + len(running) > budget:
                for node in (*running, *pending.values()):
                    if not node.done:
                        node.env.close()
                return {"complete": False, "nodes": nodes, "best": best, "success": success, "next": []}
            nodes += len(running)
            quick = self._actions("quick", running)
            deepthink = self._actions("deepthink", running)
            still: list[_Node] = []
            for node, q, d in zip(running, quick, deepthink, strict=True):
                if q != d:
                    child = _Node(node.env.snapshot(), node.history, node.calls + 1,
                                  node.switches + (node.steps() + 1,), node.ret)
                    self._step(child, d)
                    if child.done:
                        finished_next.append(child)
                    else:
                        key = self._key(child)
                        other = pending.get(key)
                        if other is None or child.steps() < other.steps():
                            if other is not None:
                                other.env.close()
                            pending[key] = child
                        else:
                            child.env.close()
                self._step(node, q)
                if node.done:
                    finished(node)
                elif self._dominated(node, seen):
                    # A state held already (possibly this rollout's own, in a loop): its future is searched from
                    # there. Rewards are non-negative, so what this one has earned is a reward reachable here.
                    finished(node, failed=True)
                    node.env.close()
                else:
                    still.append(node)
            running = still
        following: list[_Node] = list(finished_next)
        for child in pending.values():
            if self._dominated(child, seen):
                child.env.close()  # this level reached it as early, with one call fewer
            else:
                following.append(child)
        return {"complete": True, "nodes": nodes, "best": best, "success": success, "next": following}


def _cost(usage: dict[str, Usage]) -> dict[str, dict[str, float]]:
    return {role: {"calls": u.calls, "flops": u.flops, "priced_s": u.priced_s, "projected_gpu_s": u.projected_gpu_s,
                   "compute_s": u.compute_s} for role, u in usage.items() if role in MODELS}


# --- the search over a set of episodes, cached -------------------------------------------------------------------
def pair_key(models: ModelPair) -> str:
    """Both models' weight fingerprints: search results hold for this pair only."""
    from bench.running.calibrate import fingerprint

    return "-".join(fingerprint(models.get(role)) for role in MODELS)


def store_path(folder: Path, task: TaskSpec, models: ModelPair, search: HindsightSearch) -> Path:
    """Where one task's results for one pair and one search setting are kept (one JSON line per episode)."""
    return _store_file(folder, task, pair_key(models), search)


def task_folder(folder: Path, task: TaskSpec) -> Path:
    """The folder of a store that holds one task's results (one file per pair and search setting)."""
    slug = task.name.replace("/", "_").replace("[", "_").replace("]", "").replace(",", "_").replace("=", "-")
    return Path(folder) / slug


def _store_file(folder: Path, task: TaskSpec, key: str, search: HindsightSearch) -> Path:
    setting = f"v{SEARCH_VERSION}-n{search.node_budget}-k{search.max_calls}-b{search.beyond}"
    return task_folder(folder, task) / f"{key}-{setting}.jsonl"


def read_store(path: Path) -> dict[int, Frontier]:
    """The episodes already searched (a line cut off by a kill is skipped: that episode is searched again)."""
    found: dict[int, Frontier] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                frontier = Frontier.from_row(json.loads(line))
            except (json.JSONDecodeError, TypeError):
                continue
            found[frontier.env_seed] = frontier
    return found


def frontiers(search: HindsightSearch, env_seeds: Sequence[int], store: Path | None = None,
              also: Sequence[Path] = (), progress: bool = True) -> list[Frontier]:
    """Each episode's frontier, in `env_seeds` order: read from `store` or the read-only folders `also` (a committed
    copy) where the same pair and search setting searched it before; otherwise searched now and appended to `store`
    at once (a stopped run keeps every episode it finished)."""
    task, key = search.task, pair_key(search.models)  # the weights hashed once
    known: dict[int, Frontier] = {}
    for folder in (*also, *([store] if store is not None else [])):
        known.update(read_store(_store_file(folder, task, key, search)))
    missing = [seed for seed in dict.fromkeys(int(s) for s in env_seeds) if seed not in known]
    target = None if store is None else _store_file(store, task, key, search)
    if target is not None and missing:
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists() and not target.read_bytes().endswith(b"\n") and target.stat().st_size:
            with target.open("a") as out:
                out.write("\n")  # a line cut off by a kill ends here, not in the next episode's line
    bar = tqdm(total=len(missing), desc=f"hindsight {task.name}", disable=not progress or not missing, unit="ep")
    for seed in missing:
        known[seed] = search.episode(seed)
        if target is not None:
            with target.open("a") as out:
                out.write(json.dumps(known[seed].row()) + "\n")
        bar.update(1)
        bar.set_postfix(status=known[seed].status, calls=known[seed].min_calls)
    bar.close()
    return [known[int(seed)] for seed in env_seeds]
