"""DAgger (Ross et al. 2011) for the offline models: the learner drives, BabyAIBot labels every state it visits.

Behaviour cloning trains only on the bot's own states, so a cloned policy that makes one wrong turn
is somewhere it was never taught, and it loops (turn left, turn right) until the step limit. DAgger
fixes that: roll the current model out (mixed with the bot: the bot's action is executed with
probability beta, the learner's otherwise), ask the bot what it would do in every state visited
(`BabyAIBot.replan(action_taken)` replans from wherever the agent actually is), add those labelled
states to the data, train on everything, and repeat with beta going to 0.

`rollouts` is one round of data collection; `train_with_dagger` is the whole recipe: behaviour
cloning on the demonstrations, then one round per beta in `recipe.dagger_betas`.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from bench.envs.babyai_text import ACTIONS, BabyAITextEnv
from bench.envs.contexts import EpisodeHistory, get_context
from bench.models.demos import Demo, pairs
from bench.models.lm import LONDI_META, ActionLM
from bench.models.loader import load_lm
from bench.models.train import LOG_EVERY, ModelRecipe, train

log = logging.getLogger(__name__)

DAGGER_SEED_BASE = 100_000
"""Round k rolls out on training seeds DAGGER_SEED_BASE * (k + 1) + i: disjoint from the demonstrations
(0..demo_seeds) and far below the evaluation seeds (from 1,000,000)."""


@dataclass
class RolloutStats:
    beta: float
    episodes: int = 0
    successes: int = 0
    states: int = 0
    learner_agrees: int = 0
    """States where the learner's own choice was the bot's label."""
    bot_errors: int = 0
    """Episodes cut short because the bot could not replan from the state the learner left it in."""
    per_level: dict[str, list[int]] = field(default_factory=dict)
    """level -> [episodes, successes]"""

    def summary(self) -> dict:
        return {
            "beta": self.beta, "episodes": self.episodes, "states": self.states,
            "success": self.successes / max(1, self.episodes),
            "learner_agreement": self.learner_agrees / max(1, self.states),
            "bot_errors": self.bot_errors,
            "success_per_level": {k: v[1] / max(1, v[0]) for k, v in sorted(self.per_level.items())},
        }


@dataclass
class _Slot:
    level: str
    seed: int
    env: BabyAITextEnv
    bot: object
    observations: list[str]
    memories: list[list[str]]
    actions: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    taken: int | None = None


def rollouts(
    lm: ActionLM,
    jobs: Sequence[tuple[str, int]],
    beta: float,
    max_steps: int,
    rng: np.random.Generator,
    batch_size: int = 64,
    progress: bool = True,
) -> tuple[list[Demo], RolloutStats]:
    """One DAgger round: an episode per (level, seed) in `jobs`, every visited state labelled by the bot.

    Returns the episodes as demonstrations whose `labels` are the bot's actions (their `actions` are
    the actions executed) and the round's statistics.
    """
    from minigrid.utils.baby_ai_bot import BabyAIBot

    context = get_context(lm.context)
    stats = RolloutStats(beta=beta)
    queue = list(jobs)
    envs: dict[str, list[BabyAITextEnv]] = {}
    slots: list[_Slot | None] = [None] * min(batch_size, len(queue))
    done: list[Demo] = []
    bar = tqdm(total=len(queue), desc=f"DAgger rollouts beta={beta:g}", unit="ep", disable=not progress,
               mininterval=1.0)

    def start(i: int) -> None:
        slots[i] = None
        while queue:
            level, seed = queue.pop(0)
            pool = envs.setdefault(level, [])
            while len(pool) <= i:
                pool.append(BabyAITextEnv(levels=(level,), max_steps=max_steps))
            env = pool[i]
            obs, info = env.reset(seed=seed)
            slots[i] = _Slot(level, seed, env, BabyAIBot(env.minigrid_env), [obs], [info["memory"]])
            return

    def finish(i: int, success: bool) -> None:
        slot = slots[i]
        assert slot is not None
        stats.episodes += 1
        stats.successes += int(success)
        counts = stats.per_level.setdefault(slot.level, [0, 0])
        counts[0] += 1
        counts[1] += int(success)
        if slot.labels:
            # observations/memories hold one entry per labelled state (the final one is dropped on step).
            done.append(Demo(slot.level, slot.seed, slot.observations[: len(slot.labels)], slot.actions,
                             float(success), slot.memories[: len(slot.labels)], labels=slot.labels))
        bar.update(1)
        start(i)

    for i in range(len(slots)):
        start(i)
    try:
        while any(s is not None for s in slots):
            active = [i for i, s in enumerate(slots) if s is not None]
            labelled: list[int] = []
            for i in active:
                slot = slots[i]
                try:
                    taken = None if slot.taken is None else slot.env.minigrid_env.actions(slot.taken)
                    label = int(slot.bot.replan(taken))
                except Exception as error:  # noqa: BLE001 - the bot asserts on states it cannot plan from
                    log.debug("bot cannot replan on %s seed %d: %s", slot.level, slot.seed, error)
                    stats.bot_errors += 1
                    finish(i, success=False)
                    continue
                if label >= len(ACTIONS):  # "done": nothing the text env can execute
                    finish(i, success=False)
                    continue
                slot.labels.append(ACTIONS[label])
                labelled.append(i)
            if not labelled:
                continue
            prompts = [context(EpisodeHistory(slots[i].observations, slots[i].actions, slots[i].memories))
                       for i in labelled]
            scores, _ = lm.score(prompts, ACTIONS)
            choices = scores.argmax(axis=1)
            for i, choice in zip(labelled, choices, strict=True):
                slot = slots[i]
                expert = ACTIONS.index(slot.labels[-1])
                stats.states += 1
                stats.learner_agrees += int(choice == expert)
                action = expert if rng.random() < beta else int(choice)
                obs, _, terminated, truncated, info = slot.env.step(action)
                slot.actions.append(ACTIONS[action])
                slot.taken = action
                if terminated or truncated:
                    finish(i, success=bool(info["success"]))
                else:
                    slot.observations.append(obs)
                    slot.memories.append(info["memory"])
            bar.set_postfix(success=f"{stats.successes / max(1, stats.episodes):.2f}",
                            agree=f"{stats.learner_agrees / max(1, stats.states):.2f}")
    finally:
        bar.close()
        for pool in envs.values():
            for env in pool:
                env.close()
    return done, stats


def train_with_dagger(
    recipe: ModelRecipe,
    train_demos: Sequence[Demo],
    heldout_demos: Sequence[Demo],
    levels: Sequence[str],
    max_steps: int,
    out_dir: Path,
    name: str,
    device: str = "cpu",
    progress: bool = True,
    stage_dir: Callable[[int], Path] | None = None,
) -> dict:
    """Behaviour cloning on `train_demos`, then a DAgger round per beta of the recipe; the model in `out_dir`.

    Each round rolls the current model out on `recipe.dagger_episodes` fresh training seeds per level,
    adds the bot-labelled states to everything gathered so far, and continues training the same
    weights for `recipe.dagger_steps` steps. The returned metadata (also in `londi.json`) carries
    each stage's loss curve, held-out accuracy and the rollouts' success and agreement.

    `stage_dir(k)` is where the checkpoint after k rounds is kept (0: behaviour cloning only). A stage
    found there is reused instead of trained: a recipe with more rounds than an earlier one trains
    only the new rounds. Rollouts are deterministic given the checkpoint and the random stream, so
    the reused stages' rollouts are run again to rebuild the data and the stream, and the result
    is the same as training every stage afresh.
    """
    started = time.perf_counter()
    heldout_pairs = list(pairs(heldout_demos, recipe.context))
    data: list[Demo] = list(train_demos)
    rounds = len(recipe.dagger_betas)

    scratch = out_dir.with_name(out_dir.name + ".stages")  # stages kept only while training, without a stage_dir

    def checkpoint(k: int) -> Path:
        return stage_dir(k) if stage_dir is not None else scratch / f"stage{k}"

    def trained(k: int, train_pairs: list[tuple[str, str]], **kwargs) -> dict:
        path = checkpoint(k)
        if (path / LONDI_META).exists():
            log.info("reusing stage %d of %s from %s", k, name, path)
            return json.loads((path / LONDI_META).read_text())
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        meta = train(recipe, train_pairs, heldout_pairs, partial, name, device=device, progress=progress, **kwargs)
        partial.rename(path)  # a stage that is there is complete
        return meta

    meta = trained(0, list(pairs(data, recipe.context)))
    stages = [{"stage": "bc", "train_s": meta["train_s"], "final_loss": meta["final_loss"],
               "heldout_step_accuracy": meta["heldout_step_accuracy"], "train_pairs": meta["train_pairs"]}]
    log_rows = list(meta["log"])[: max(1, -(-recipe.steps // LOG_EVERY))]
    rng = np.random.default_rng(recipe.seed)  # one stream through all rounds
    for k, beta in enumerate(recipe.dagger_betas):
        lm = load_lm(checkpoint(k), device=device)
        jobs = [(level, DAGGER_SEED_BASE * (k + 1) + i) for i in range(recipe.dagger_episodes) for level in levels]
        rollout_started = time.perf_counter()
        new, stats = rollouts(lm, jobs, beta, max_steps, rng, progress=progress)
        rollout_s = time.perf_counter() - rollout_started
        data.extend(new)
        meta = trained(k + 1, list(pairs(data, recipe.context)), init_dir=checkpoint(k), steps=recipe.dagger_steps,
                       step_offset=log_rows[-1]["step"] + 1)
        log_rows.extend(meta["log"][-max(1, -(-recipe.dagger_steps // LOG_EVERY)):])
        stages.append({"stage": f"dagger{k}", "rollouts": stats.summary(), "rollout_s": round(rollout_s, 2),
                       "train_s": meta["train_s"], "final_loss": meta["final_loss"],
                       "heldout_step_accuracy": meta["heldout_step_accuracy"], "train_pairs": meta["train_pairs"]})
        log.info("DAgger round %d (beta %.2f): rollout success %.3f, learner agreement %.3f, held-out accuracy %.3f",
                 k, beta, stats.summary()["success"], stats.summary()["learner_agreement"],
                 meta["heldout_step_accuracy"])
    shutil.copytree(checkpoint(rounds), out_dir, dirs_exist_ok=True)
    shutil.rmtree(scratch, ignore_errors=True)
    meta = {**meta, "recipe": asdict(recipe), "stages": stages, "log": log_rows,
            "train_s": round(sum(s["train_s"] + s.get("rollout_s", 0.0) for s in stages), 2),
            "wall_s": round(time.perf_counter() - started, 2),
            "total_steps": recipe.steps + rounds * recipe.dagger_steps}
    (out_dir / LONDI_META).write_text(json.dumps(meta, indent=1))
    return meta
