"""The one episode loop every router runs in.

Episodes run in lockstep over a batch of environment slots so that each model call is batched
over environments. At each step the router picks, per running episode, QUICK or DEEPTHINK;
the chosen model decides from its own context of the episode (scoring the environment's
candidate actions where the task has a fixed list, generating the action where it does not:
`TaskSpec.action_mode`) and its action is played. Every model call is metered and charged to
the episodes it served.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from bench.contexts import EpisodeHistory, get_context
from bench.lm import ActionLM
from bench.metering import Meter, Usage, usage_metrics
from bench.resume import Checkpointer, random_states, restore_into, set_random_states
from bench.router import Router, SlotDecision, StepView, Transition
from bench.tasks import TaskSpec

MODELS = ("quick", "deepthink")


@dataclass(frozen=True)
class ModelPair:
    quick: ActionLM
    deepthink: ActionLM

    def get(self, role: str) -> ActionLM:
        return self.quick if role == "quick" else self.deepthink


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


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


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

    With `checkpoint`, the loop is snapshotted at step boundaries (bench.resume) and, where a snapshot
    of this same run exists, continues from it: `router` gets its saved state, finished episodes are
    not run again (`on_episode` is called for them first, so a new MLflow run holds them too), and the
    episodes in flight are replayed into fresh environments with the actions they played.
    """
    n_slots = min(batch_size, len(env_seeds), task.max_slots or batch_size)
    fingerprint = {"task": task.name, "router": router.name, "router_params": repr(router.params()),
                   "env_seeds": [int(s) for s in env_seeds], "seed": seed, "slots": n_slots,
                   "models": [models.quick.name, models.deepthink.name]}
    saved = checkpoint.load(fingerprint) if checkpoint is not None else None
    if saved is None:
        seed_everything(seed)
        router.seed(seed)
    meter = Meter(n_slots, devices=(models.quick.device, models.deepthink.device))
    envs = [task.make_env() for _ in range(n_slots)]
    contexts = {role: get_context(models.get(role).context) for role in MODELS}
    histories = [EpisodeHistory() for _ in range(n_slots)]
    infos: list[dict[str, Any]] = [{} for _ in range(n_slots)]
    last_rewards = np.zeros(n_slots)
    returns = np.zeros(n_slots)
    steps = np.zeros(n_slots, dtype=np.int64)
    acted = np.zeros(n_slots, dtype=np.int64)
    traces: list[list[dict[str, Any]]] = [[] for _ in range(n_slots)]
    episode_of = [-1] * n_slots
    queue = list(enumerate(env_seeds))
    results: list[EpisodeResult] = []
    reward_sum = fraction_sum = 0.0  # for the progress bar
    bar = tqdm(total=len(env_seeds), desc=description or f"{task.name} {router.name}", unit="ep",
               disable=not progress, mininterval=0.5)

    # Environments that wait on another process (ScienceWorld's JVMs) are stepped and reset in threads, one per
    # slot; everything else (routing, models, bookkeeping) stays in this thread, in slot order, as before.
    pool = ThreadPoolExecutor(max_workers=n_slots) if task.parallel_envs and n_slots > 1 else None

    def each(fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        return list(pool.map(fn, items)) if pool is not None else [fn(item) for item in items]

    def start(slots: Sequence[int]) -> None:
        """Start the next queued episode in each of `slots` (the queue's order); a slot with none left idles."""
        jobs = []
        for slot in slots:
            if not queue:
                episode_of[slot] = -1
                continue
            index, env_seed = queue.pop(0)
            jobs.append((slot, index, int(env_seed)))
        for (slot, index, env_seed), (obs, info) in zip(
                jobs, each(lambda job: envs[job[0]].reset(seed=job[2]), jobs), strict=True):
            histories[slot] = EpisodeHistory(observations=[obs], memories=[info.get("memory", [])])
            infos[slot], last_rewards[slot], returns[slot], steps[slot], acted[slot] = info, 0.0, 0.0, 0, 0
            traces[slot], episode_of[slot] = [], index
            meter.take(slot)
            router.start_episode(slot, env_seed)

    def decide(role: str, slots: list[int]) -> dict[int, SlotDecision]:
        lm = models.get(role)
        prompts = [contexts[role](histories[s]) for s in slots]
        listed = task.action_mode == "choose" or lm.needs_candidates
        candidates = [envs[s].candidates() for s in slots] if listed else None
        decision = meter.call(role, slots, lambda: lm.decide(prompts, candidates))
        return {s: SlotDecision(decision.actions[i], float(decision.margin[i]), float(decision.entropy[i]),
                                None if decision.scores is None else decision.scores[i])
                for i, s in enumerate(slots)}

    def snapshot() -> dict[str, Any]:
        return {"fingerprint": fingerprint, "router": router, "meter": meter, "histories": histories, "infos": infos,
                "last_rewards": last_rewards, "returns": returns, "steps": steps, "acted": acted, "traces": traces,
                "episode_of": episode_of, "queue": queue, "results": results, "sums": (reward_sum, fraction_sum),
                "random": random_states()}

    if saved is None:
        start(range(n_slots))
    else:
        restore_into(router, saved["router"])
        meter, histories, infos = saved["meter"], saved["histories"], saved["infos"]
        last_rewards, returns, steps, acted = saved["last_rewards"], saved["returns"], saved["steps"], saved["acted"]
        traces, episode_of, queue, results = saved["traces"], saved["episode_of"], saved["queue"], saved["results"]
        reward_sum, fraction_sum = saved["sums"]
        for slot in range(n_slots):  # the environments are not pickled: replay each episode in flight
            if episode_of[slot] >= 0:
                envs[slot].reset(seed=int(env_seeds[episode_of[slot]]))
                for action in histories[slot].actions:
                    envs[slot].step(action)
        set_random_states(saved["random"])
        for result in results:
            if on_episode is not None:
                on_episode(result)
        bar.update(len(results))
    last_save = time.monotonic()
    try:
        while True:
            active = [s for s in range(n_slots) if episode_of[s] >= 0]
            if not active:
                break
            view = StepView(
                slots=active, histories=[histories[s] for s in active], infos=[infos[s] for s in active],
                last_rewards=last_rewards[active], steps=steps[active], meter=meter, _decide=decide,
            )
            use_deepthink = np.asarray(router.route(view), dtype=bool)
            if use_deepthink.shape != (len(active),):
                raise ValueError(f"router {router.name!r} returned shape {use_deepthink.shape}, "
                                 f"expected ({len(active)},)")
            positions = {role: [p for p in range(len(active)) if use_deepthink[p] == (role == "deepthink")]
                         for role in MODELS}
            chosen: dict[int, str] = {}
            for role in MODELS:
                if positions[role]:
                    for p, decision in zip(positions[role], view.decisions(role, positions[role]), strict=True):
                        chosen[active[p]] = decision.action
            transitions: list[Transition] = []
            finished: list[int] = []
            outcomes = each(lambda slot, chosen=chosen: envs[slot].step(chosen[slot]), active)
            for p, slot in enumerate(active):
                before, where = histories[slot], infos[slot].get("room")
                obs, reward, terminated, truncated, info = outcomes[p]
                # What was played: ScienceWorld maps an action its parser rejects onto the closest valid one.
                action = info.get("played") or chosen[slot]
                steps[slot] += 1
                acted[slot] += int(use_deepthink[p])
                last_rewards[slot] = reward
                returns[slot] += reward
                traces[slot].append({
                    "step": int(steps[slot]), "observation": before.current(),
                    "model": "deepthink" if use_deepthink[p] else "quick",
                    "action": action, "reward": float(reward),
                    **({"room": where} if where is not None else {}),
                    **({"generated": chosen[slot]} if action != chosen[slot] else {}),
                })
                after = EpisodeHistory(observations=before.observations + [obs],
                                       actions=before.actions + [action],
                                       memories=before.memories + [info.get("memory", [])])
                transitions.append(Transition(slot, before, bool(use_deepthink[p]), float(reward),
                                              bool(terminated), bool(truncated), after))
                histories[slot], infos[slot] = after, info
                if terminated or truncated:
                    result = EpisodeResult(
                        index=episode_of[slot], env_seed=int(env_seeds[episode_of[slot]]),
                        reward=float(returns[slot]), success=bool(info.get("success", False)),
                        steps=int(steps[slot]), deepthink_acted=int(acted[slot]),
                        usage=meter.take(slot), trace=traces[slot], level=str(info.get("level", "")),
                    )
                    results.append(result)
                    if on_episode is not None:
                        on_episode(result)
                    bar.update(1)
                    # Running sums: recomputing every result's metrics here made each finish O(episodes).
                    reward_sum += result.reward
                    fraction_sum += result.usage["deepthink"].calls / max(1, result.steps)
                    bar.set_postfix(reward=f"{reward_sum / len(results):.3f}",
                                    deepthink=f"{fraction_sum / len(results):.2f}")
                    finished.append(slot)
            # The router sees every final transition before its slot's next episode starts.
            router.observe(transitions)
            start(finished)
            if (checkpoint is not None and finished and any(e >= 0 for e in episode_of)
                    and time.monotonic() - last_save >= checkpoint.every_s):
                checkpoint.save(snapshot())  # a step boundary: nothing half done
                last_save = time.monotonic()
    finally:
        bar.close()
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)  # no environment is closed while a thread steps it
        for env in envs:
            env.close()
    results.sort(key=lambda r: r.index)
    return results, meter
