"""Expert demonstrations, written once and reused: minigrid's BabyAIBot solving BabyAI-Text training
episodes, and ScienceWorld's gold action sequences played through on its training variations.

An episode is stored as its text observations and the bot's actions, not as prompts, so each
model's context builder can turn the same episodes into its own (prompt -> action) pairs.
"""

from __future__ import annotations

import gzip
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from bench.envs.babyai_text import ACTIONS, BabyAITextEnv
from bench.envs.contexts import EpisodeHistory, get_context

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Demo:
    level: str
    seed: int
    observations: list[str]
    actions: list[str]
    reward: float
    memories: list[list[str]] = field(default_factory=list)
    """The env's memory sentences at each observation (info["memory"])."""
    labels: list[str] = field(default_factory=list)
    """The expert's action at each observation, where it differs from the action executed (DAgger
    rollouts, see bench/dagger.py); empty: `actions` are the expert's own."""


def bot_episode(level: str, seed: int, max_steps: int) -> Demo | None:
    """Run BabyAIBot on one episode; None if the bot fails (it rarely does, and we skip those)."""
    from minigrid.utils.baby_ai_bot import BabyAIBot

    env = BabyAITextEnv(levels=(level,), max_steps=max_steps)
    try:
        obs, info = env.reset(seed=seed)
        bot = BabyAIBot(env.minigrid_env)
        observations, actions, memories = [obs], [], [info["memory"]]
        action = None
        reward = 0.0
        for _ in range(max_steps):
            action = bot.replan(action)
            if int(action) >= len(ACTIONS):  # the bot's "done" is not an action of the text env
                return None
            obs, reward, terminated, truncated, info = env.step(int(action))
            actions.append(ACTIONS[int(action)])
            if terminated or truncated:
                break
            observations.append(obs)
            memories.append(info["memory"])
        if not info["success"]:
            return None
        return Demo(level, seed, observations, actions, float(reward), memories)
    except Exception as error:  # noqa: BLE001 - the bot raises plain exceptions on the odd layout
        log.debug("bot failed on %s seed %d: %s", level, seed, error)
        return None
    finally:
        env.close()


def collect(levels: Sequence[str], seeds: Sequence[int], max_steps: int, path: Path,
            progress: bool = True) -> list[Demo]:
    """Demonstrations for every (level, seed), read from `path` if it was written before."""
    if path.exists():
        return load(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    demos: list[Demo] = []
    jobs = [(level, seed) for level in levels for seed in seeds]
    for level, seed in tqdm(jobs, desc="BabyAIBot demonstrations", unit="ep", mininterval=1.0, disable=not progress):
        demo = bot_episode(level, seed, max_steps)
        if demo is not None:
            demos.append(demo)
    if len(demos) < len(jobs) / 2:
        # A cache of failed demonstrations would be reused forever; refuse to write it.
        raise RuntimeError(f"BabyAIBot solved only {len(demos)} of {len(jobs)} episodes of {list(levels)}: "
                           f"check the minigrid version (the bot and levels must match)")
    return save(demos, path)


def gold_episode(env, task: str, variation: int) -> Demo | None:
    """Play ScienceWorld's gold action sequence of one variation; None if it does not reach score 100."""
    obs, info = env.reset(seed=variation, options={"gold": True})
    observations, actions = [obs], []
    reward = 0.0
    for action in info["gold"]:
        obs, r, terminated, truncated, step_info = env.step(action)
        actions.append(step_info["played"])
        reward += r
        if terminated or truncated:
            break
        observations.append(obs)
    if not step_info["success"]:
        log.debug("gold path of %s variation %d ended at score %s", task, variation, step_info["score"])
        return None
    return Demo(task, variation, observations, actions, round(reward, 6))


GOLD_THREADS = 3
"""Tasks whose gold paths are played at the same time, one JVM each (a JVM works while the others wait)."""


def collect_gold(jobs: Sequence[tuple[str, int]], max_steps: int, path: Path, progress: bool = True) -> list[Demo]:
    """ScienceWorld gold demonstrations for every (task, variation), read from `path` if written before. Each
    task's variations are played on one JVM, tasks side by side in threads; the demonstrations come back in the
    order of `jobs` (a variation's gold path is the same in any JVM, see bench/scienceworld_text.py)."""
    if path.exists():
        return load(path)
    from concurrent.futures import ThreadPoolExecutor

    from bench.envs.scienceworld_text import ScienceWorldTextEnv

    path.parent.mkdir(parents=True, exist_ok=True)
    by_task: dict[str, list[int]] = {}
    for task, variation in jobs:
        by_task.setdefault(task, []).append(variation)
    bar = tqdm(total=len(jobs), desc="ScienceWorld gold paths", unit="ep", mininterval=1.0, disable=not progress)

    def play_task(task: str) -> dict[int, Demo | None]:
        env = ScienceWorldTextEnv(task, max_steps=max_steps)
        played: dict[int, Demo | None] = {}
        try:
            for variation in by_task[task]:
                played[variation] = gold_episode(env, task, variation)
                bar.update()
        finally:
            env.close()
        return played

    with ThreadPoolExecutor(max_workers=GOLD_THREADS) as pool:
        played = dict(zip(by_task, pool.map(play_task, by_task), strict=True))
    bar.close()
    demos = [demo for task, variation in jobs if (demo := played[task][variation]) is not None]
    if len(demos) < len(jobs) / 2:
        raise RuntimeError(f"ScienceWorld's gold paths reached score 100 in only {len(demos)} of {len(jobs)} "
                           f"variations: check the scienceworld version")
    return save(demos, path)


def save(demos: list[Demo], path: Path) -> list[Demo]:
    tmp = path.with_suffix(".tmp")
    with gzip.open(tmp, "wt") as out:
        for demo in demos:
            out.write(json.dumps(demo.__dict__) + "\n")
    tmp.rename(path)  # only a complete file ever carries the final name
    return demos


def load(path: Path) -> list[Demo]:
    with gzip.open(path, "rt") as f:
        return [Demo(**json.loads(line)) for line in f]


def pairs(demos: Sequence[Demo], context: str) -> Iterator[tuple[str, str]]:
    """(prompt, expert action) pairs, the prompt built by the named context builder from the actions
    executed so far (the learner's, in a DAgger rollout), the target the expert's label."""
    build = get_context(context)
    for demo in demos:
        for t, action in enumerate(demo.labels or demo.actions):
            history = EpisodeHistory(observations=demo.observations[: t + 1], actions=demo.actions[:t],
                                     memories=demo.memories[: t + 1])
            yield build(history), action


# --- renaming: so that the task's text is the only way to know which object to use (issue 18) --------------------
SAME_KIND = {
    "power-component": ("red light bulb", "green light bulb", "blue light bulb", "orange light bulb",
                        "violet light bulb", "electric motor", "electric buzzer"),
}
"""Per ScienceWorld task, objects of the target's kind that its rooms hold (read from the simulator's observations of
its variations: every workshop of power-component shows the electric motor and buzzer beside the light bulbs). Used
where a profile sets `sw_rename` (the cpu profile). Only tasks whose text names the target: lifespan's and
find-living-thing's do not name it, and use-thermometer's unseen test substances (wire, wood) are not in view on its
training paths to swap with."""


def swap_names(demo: Demo, a: str, b: str) -> Demo:
    """The demonstration with the object names `a` and `b` swapped everywhere (task, observations, actions, labels,
    memories), as whole words: the scene stays one the simulator could show, and the task now names the other one.
    A short name that is part of the other (a name ending another) is swapped only where it stands alone."""
    import re

    if not a or not b or a == b:
        raise ValueError(f"swap_names: give two different object names, got {a!r} and {b!r}")
    pattern = re.compile(r"\b(" + "|".join(re.escape(n) for n in sorted((a, b), key=len, reverse=True)) + r")\b")

    def swap(text: str) -> str:
        return pattern.sub(lambda m: b if m[1] == a else a, text)

    return Demo(demo.level, demo.seed, [swap(o) for o in demo.observations], [swap(x) for x in demo.actions],
                demo.reward, [[swap(m) for m in step] for step in demo.memories], [swap(x) for x in demo.labels])


def renamed(demos: Sequence[Demo], kinds: dict[str, Sequence[str]] = SAME_KIND) -> list[Demo]:
    """For every demonstration of a task in `kinds`, one copy per other object of the target's kind that its first
    observations name: the target (the one its task text names) swapped with that object. Demonstrations of other
    tasks, and those whose target is not among the kind, get none."""
    out = []
    for demo in demos:
        names = kinds.get(demo.level, ())
        task = demo.observations[0].split("\n", 1)[0] if demo.observations else ""
        target = next((n for n in sorted(names, key=len, reverse=True) if n in task), None)
        if target is None:
            continue
        seen = " ".join(demo.observations)
        out += [swap_names(demo, target, other) for other in names if other != target and other in seen]
    return out
