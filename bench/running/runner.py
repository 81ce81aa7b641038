"""The one episode loop every router runs in.

Episodes run in lockstep over a batch of environment slots so that each model call is batched
over environments. At each step the router picks, per running episode, QUICK or DEEPTHINK;
the chosen model decides from its own context of the episode (scoring the environment's
candidate actions where the task has a fixed list, generating the action where it does not:
`TaskSpec.action_mode`) and its action is played. Every model call is metered and charged to
the episodes it served.

One step of the loop reads: route (the router picks a model per running episode) -> decide (each chosen
model acts, batched) -> step (the environments move) -> observe (the step is recorded and the router sees
it) -> finish (finished episodes are reported and their slots start the next). Checkpoints and resume are
one object beside the loop (bench.running.resume.LoopCheckpoint), called at each step boundary.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm import tqdm

from bench.envs.contexts import EpisodeHistory, get_context
from bench.envs.tasks import TaskSpec
from bench.models.pair import MODELS, ModelPair
from bench.running.metering import Meter, Usage, usage_metrics
from bench.running.resume import Checkpointer, LoopCheckpoint
from bench.running.router import Router, SlotDecision, StepView, Transition


@dataclass
class EpisodeResult:
    """One finished episode: its outcome, who acted, what it cost, and its step-by-step trace."""

    index: int
    env_seed: int
    reward: float
    success: bool
    steps: int
    deepthink_acted: int
    usage: dict[str, Usage]
    trace: list[dict[str, Any]] = field(repr=False)
    level: str = ""

    def metrics(self) -> dict[str, float]:
        m = usage_metrics(self.usage)
        m.update(
            reward=self.reward,
            success=float(self.success),
            steps=self.steps,
            deepthink_acted=self.deepthink_acted,
            deepthink_fraction=self.usage["deepthink"].calls / max(1, self.steps),
        )
        return m


@dataclass
class LoopState:
    """Everything the loop knows between two steps except the environments (which are replayed, not kept):
    what each slot is running, the episodes not started, and those finished. A checkpoint pickles it."""

    histories: list[EpisodeHistory]
    infos: list[dict[str, Any]]
    last_rewards: np.ndarray
    returns: np.ndarray
    steps: np.ndarray
    acted: np.ndarray
    traces: list[list[dict[str, Any]]]
    episode_of: list[int]
    """the episode index each slot runs; -1: idle"""
    queue: list[tuple[int, int]]
    """(episode index, env seed) not started yet, in order"""
    meter: Meter
    results: list[EpisodeResult] = field(default_factory=list)
    reward_sum: float = 0.0
    fraction_sum: float = 0.0
    """running sums for the progress bar (recomputing every result's metrics made each finish O(episodes))"""

    @classmethod
    def empty(cls, n_slots: int, env_seeds: Sequence[int], meter: Meter) -> LoopState:
        return cls(histories=[EpisodeHistory() for _ in range(n_slots)], infos=[{} for _ in range(n_slots)],
                   last_rewards=np.zeros(n_slots), returns=np.zeros(n_slots), steps=np.zeros(n_slots, dtype=np.int64),
                   acted=np.zeros(n_slots, dtype=np.int64), traces=[[] for _ in range(n_slots)],
                   episode_of=[-1] * n_slots, queue=[(i, int(s)) for i, s in enumerate(env_seeds)], meter=meter)

    def active(self) -> list[int]:
        return [s for s, episode in enumerate(self.episode_of) if episode >= 0]


class EpisodeLoop:
    """The lockstep loop over a batch of environment slots (see the module docstring for one step's parts)."""

    def __init__(self, router: Router, task: TaskSpec, models: ModelPair, n_slots: int,
                 on_episode: Callable[[EpisodeResult], None] | None, bar: tqdm) -> None:
        self.router, self.task, self.models, self.on_episode, self.bar = router, task, models, on_episode, bar
        self.envs = [task.make_env() for _ in range(n_slots)]
        self.contexts = {role: get_context(models.get(role).context) for role in MODELS}
        # Environments that wait on another process (ScienceWorld's JVMs) are stepped and reset in threads, one per
        # slot; everything else (routing, models, bookkeeping) stays in this thread, in slot order.
        self.pool = ThreadPoolExecutor(max_workers=n_slots) if task.parallel_envs and n_slots > 1 else None
        self.state: LoopState

    def each(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        return list(self.pool.map(fn, items)) if self.pool is not None else [fn(item) for item in items]

    # --- the step: route -> decide -> step -> observe -> finish -------------------------------------------
    def route(self, active: list[int]) -> tuple[StepView, np.ndarray]:
        """The router's choice per running episode (True: DEEPTHINK acts), with the view it decided on."""
        s = self.state
        view = StepView(slots=active, histories=[s.histories[i] for i in active], infos=[s.infos[i] for i in active],
                        last_rewards=s.last_rewards[active], steps=s.steps[active], meter=s.meter,
                        _decide=self.ask)
        use_deepthink = np.asarray(self.router.route(view), dtype=bool)
        if use_deepthink.shape != (len(active),):
            raise ValueError(f"router {self.router.name!r} returned shape {use_deepthink.shape}, "
                             f"expected ({len(active)},)")
        return view, use_deepthink

    def ask(self, role: str, slots: list[int]) -> dict[int, SlotDecision]:
        """Run `role`'s model once, batched over `slots`, metered: what the view calls when a model is asked."""
        lm = self.models.get(role)
        prompts = [self.contexts[role](self.state.histories[s]) for s in slots]
        listed = self.task.action_mode == "choose" or lm.needs_candidates
        candidates = [self.envs[s].candidates() for s in slots] if listed else None
        decision = self.state.meter.call(role, slots, lambda: lm.decide(prompts, candidates))
        return {s: SlotDecision(decision.actions[i], float(decision.margin[i]), float(decision.entropy[i]),
                                None if decision.scores is None else decision.scores[i])
                for i, s in enumerate(slots)}

    def decide(self, view: StepView, use_deepthink: np.ndarray) -> dict[int, str]:
        """Each running episode's action from the model chosen for it (a decision the router asked for is reused)."""
        chosen: dict[int, str] = {}
        for role in MODELS:
            positions = [p for p in range(len(view.slots)) if use_deepthink[p] == (role == "deepthink")]
            if positions:
                for p, decision in zip(positions, view.decisions(role, positions), strict=True):
                    chosen[view.slots[p]] = decision.action
        return chosen

    def step(self, active: list[int], chosen: dict[int, str]) -> list[tuple]:
        return self.each(lambda slot: self.envs[slot].step(chosen[slot]), active)

    def observe(self, active: list[int], use_deepthink: np.ndarray, chosen: dict[int, str],
                outcomes: list[tuple]) -> list[int]:
        """Record each episode's step, let the router see every transition; the slots whose episode ended."""
        s = self.state
        transitions: list[Transition] = []
        ended: list[int] = []
        for p, slot in enumerate(active):
            before, where = s.histories[slot], s.infos[slot].get("room")
            obs, reward, terminated, truncated, info = outcomes[p]
            # What was played: ScienceWorld maps an action its parser rejects onto the closest valid one.
            action = info.get("played") or chosen[slot]
            s.steps[slot] += 1
            s.acted[slot] += int(use_deepthink[p])
            s.last_rewards[slot] = reward
            s.returns[slot] += reward
            s.traces[slot].append({
                "step": int(s.steps[slot]), "observation": before.current(),
                "model": "deepthink" if use_deepthink[p] else "quick",
                "action": action, "reward": float(reward),
                **({"room": where} if where is not None else {}),
                **({"generated": chosen[slot]} if action != chosen[slot] else {}),
            })
            after = EpisodeHistory(observations=before.observations + [obs], actions=before.actions + [action],
                                   memories=before.memories + [info.get("memory", [])])
            transitions.append(Transition(slot, before, bool(use_deepthink[p]), float(reward), bool(terminated),
                                          bool(truncated), after))
            s.histories[slot], s.infos[slot] = after, info
            if terminated or truncated:
                ended.append(slot)
        # The router sees every final transition before its slot's next episode starts.
        self.router.observe(transitions)
        return ended

    def finish(self, ended: list[int], env_seeds: Sequence[int]) -> None:
        """Report each ended episode, then start the next queued one in its slot."""
        s = self.state
        for slot in ended:
            info = s.infos[slot]
            result = EpisodeResult(
                index=s.episode_of[slot], env_seed=int(env_seeds[s.episode_of[slot]]), reward=float(s.returns[slot]),
                success=bool(info.get("success", False)), steps=int(s.steps[slot]),
                deepthink_acted=int(s.acted[slot]), usage=s.meter.take(slot), trace=s.traces[slot],
                level=str(info.get("level", "")),
            )
            s.results.append(result)
            self.report(result)
            s.reward_sum += result.reward
            s.fraction_sum += result.usage["deepthink"].calls / max(1, result.steps)
            self.bar.set_postfix(reward=f"{s.reward_sum / len(s.results):.3f}",
                                 deepthink=f"{s.fraction_sum / len(s.results):.2f}")
        self.start(ended)
    # ---------------------------------------------------------------------------------------------------------

    def report(self, result: EpisodeResult) -> None:
        if self.on_episode is not None:
            self.on_episode(result)
        self.bar.update(1)

    def start(self, slots: Sequence[int]) -> None:
        """Start the next queued episode in each of `slots` (the queue's order); a slot with none left idles."""
        s = self.state
        jobs = []
        for slot in slots:
            if not s.queue:
                s.episode_of[slot] = -1
                continue
            index, env_seed = s.queue.pop(0)
            jobs.append((slot, index, env_seed))
        resets = self.each(lambda job: self.envs[job[0]].reset(seed=job[2]), jobs)
        for (slot, index, env_seed), (obs, info) in zip(jobs, resets, strict=True):
            s.histories[slot] = EpisodeHistory(observations=[obs], memories=[info.get("memory", [])])
            s.infos[slot], s.last_rewards[slot], s.returns[slot], s.steps[slot], s.acted[slot] = info, 0.0, 0.0, 0, 0
            s.traces[slot], s.episode_of[slot] = [], index
            s.meter.take(slot)
            self.router.start_episode(slot, env_seed)

    def replay_in_flight(self, env_seeds: Sequence[int]) -> None:
        """Bring each episode in flight of a restored state back into a fresh environment with the actions it
        played (environments are not pickled), and report the episodes that had finished."""
        s = self.state
        for slot, episode in enumerate(s.episode_of):
            if episode >= 0:
                self.envs[slot].reset(seed=int(env_seeds[episode]))
                for action in s.histories[slot].actions:
                    self.envs[slot].step(action)
        for result in s.results:
            self.report(result)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)  # no environment is closed while a thread steps it
        for env in self.envs:
            env.close()


def run_episodes(
    router: Router,
    task: TaskSpec,
    models: ModelPair,
    env_seeds: Sequence[int],
    batch_size: int = 32,
    seed: int = 0,
    on_episode: Callable[[EpisodeResult], None] | None = None,
    progress: bool = True,
    description: str = "",
    checkpoint: Checkpointer | None = None,
) -> tuple[list[EpisodeResult], Meter]:
    """Run one episode per env seed with `router` choosing the model at every step.

    The run seed seeds the router's and the models' own generators (nothing global). With `checkpoint`, the
    loop is snapshotted at step boundaries and, where a snapshot of this same run exists, continues from it:
    `router` gets its saved state, finished episodes are not run again (`on_episode` is called for them
    first, so a new MLflow run holds them too), and the episodes in flight are replayed into fresh
    environments with the actions they played.
    """
    n_slots = min(batch_size, len(env_seeds), task.max_slots or batch_size)
    router.prepare(task)
    resume = LoopCheckpoint(checkpoint, fingerprint={
        "task": task.name, "router": router.name, "router_params": repr(router.params()),
        "env_seeds": [int(s) for s in env_seeds], "seed": seed, "slots": n_slots,
        "models": [models.quick.name, models.deepthink.name]})
    bar = tqdm(total=len(env_seeds), desc=description or f"{task.name} {router.name}", unit="ep",
               disable=not progress, mininterval=0.5)
    loop = EpisodeLoop(router, task, models, n_slots, on_episode, bar)
    try:
        restored = resume.restore(router, models)
        if restored is None:
            router.seed(seed)
            models.seed(seed)
            meter = Meter(n_slots, devices=(models.quick.device, models.deepthink.device), prices=models.prices)
            loop.state = LoopState.empty(n_slots, env_seeds, meter)
            loop.start(range(n_slots))
        else:
            loop.state = restored
            loop.replay_in_flight(env_seeds)
        resume.started()
        while active := loop.state.active():
            view, use_deepthink = loop.route(active)
            chosen = loop.decide(view, use_deepthink)
            outcomes = loop.step(active, chosen)
            ended = loop.observe(active, use_deepthink, chosen, outcomes)
            loop.finish(ended, env_seeds)
            resume.at_step_boundary(loop.state, router, models, episodes_ended=bool(ended))
    finally:
        bar.close()
        loop.close()
    results = sorted(loop.state.results, key=lambda r: r.index)
    return results, loop.state.meter
