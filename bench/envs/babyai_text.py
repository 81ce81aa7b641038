"""BabyAI-Text: minigrid's BabyAI levels as a gymnasium environment whose observations are text.

The language models routed between in this benchmark act from text alone, so each step the agent's
egocentric 7x7 view is turned into short English sentences ("You see a red ball 1 step left and
3 steps forward"), preceded by the mission. Actions are minigrid's own first six actions, named in
words (`ACTIONS`); reward, termination and truncation are minigrid's, with the registry's step
limit (64) as max_steps, so a single-level episode with seed s has the layout of minigrid's
episode s (its reward scale follows that step limit), and minigrid's BabyAIBot can drive the
underlying environment (see `BabyAITextEnv.minigrid_env`) to produce demonstrations.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import string
from collections.abc import Sequence
from typing import Any

import gymnasium
import minigrid  # noqa: F401  (importing registers the BabyAI-* ids with gymnasium)
import numpy as np
from gymnasium import spaces
from minigrid.core.constants import IDX_TO_COLOR, IDX_TO_OBJECT, OBJECT_TO_IDX
from minigrid.core.world_object import WorldObj
from minigrid.minigrid_env import MiniGridEnv

from bench.envs.babyai_memory import EpisodeMemory
from bench.envs.babyai_words import ACTIONS, object_words, relative_phrase, with_article

log = logging.getLogger(__name__)


# Cell types that are never described: walls get their own (restricted) sentences, and the rest
# carry no information for the agent (or, for "unseen", must not leak occluded content).
_NOT_OBJECTS = frozenset({"unseen", "empty", "floor", "wall", "agent"})

# Every character a mission or a sentence can contain; kept wider than strictly needed so that a
# mission surface form from any BabyAI level stays inside the observation space.
OBS_CHARSET = string.ascii_letters + string.digits + " :,.-'\n"
# A full 7x7 view of objects is ~48 sentences of <= 64 characters; missions of the longest BabyAI
# levels (BossLevel's chained instructions) stay well under 1,000 characters.
OBS_MAX_LENGTH = 8192


def describe_view(image: np.ndarray, carrying: WorldObj | None) -> list[str]:
    """Describe minigrid's egocentric encoded view (``obs["image"]``) as a list of sentences.

    ``image[i, j]`` is the cell at column i, row j of the agent's view; the agent stands at the
    middle of the bottom row looking towards row 0. Only the nearest wall straight ahead and the
    nearest wall on each side of the agent's own row are described, then every visible object by
    increasing Manhattan distance, then what the agent carries.
    """
    width, height = image.shape[0], image.shape[1]
    agent_x, agent_y = width // 2, height - 1
    wall = OBJECT_TO_IDX["wall"]

    def is_wall(dx: int, fwd: int) -> bool:
        return int(image[agent_x + dx, agent_y - fwd, 0]) == wall

    sentences: list[str] = []
    wall_fwd = next((f for f in range(1, height) if is_wall(0, f)), None)
    if wall_fwd is not None:
        sentences.append(f"You see a wall {relative_phrase(0, wall_fwd)}")
    wall_left = next((-d for d in range(1, agent_x + 1) if is_wall(-d, 0)), None)
    if wall_left is not None:
        sentences.append(f"You see a wall {relative_phrase(wall_left, 0)}")
    wall_right = next((d for d in range(1, width - agent_x) if is_wall(d, 0)), None)
    if wall_right is not None:
        sentences.append(f"You see a wall {relative_phrase(wall_right, 0)}")

    objects: list[tuple[tuple[int, int, int], str]] = []
    for i in range(width):
        for j in range(height):
            dx, fwd = i - agent_x, agent_y - j
            # The agent's own cell holds the carried object in minigrid's encoding, not a seen one.
            if dx == 0 and fwd == 0:
                continue
            type_idx, color_idx, state = (int(v) for v in image[i, j])
            kind = IDX_TO_OBJECT.get(type_idx, "unseen")
            if kind in _NOT_OBJECTS:
                continue
            words = object_words(kind, IDX_TO_COLOR.get(color_idx, "grey"), state)
            sentence = f"You see {with_article(words)} {relative_phrase(dx, fwd)}"
            objects.append(((abs(dx) + fwd, dx, fwd), sentence))
    sentences.extend(sentence for _, sentence in sorted(objects, key=lambda item: item[0]))

    if carrying is not None:
        sentences.append(f"You carry {with_article(f'{carrying.color} {carrying.type}')}")
    return sentences


def _progress(instr: object) -> tuple:
    """What the mission's checker remembers between steps: which parts of "X and Y", "X then Y" are done, whether
    the last step completed a clause, what was carried before it. Part of an episode's state: two positions that
    look alike may be one part of the mission apart."""
    if instr is None:
        return ()
    carried = getattr(instr, "preCarrying", None)
    return (type(instr).__name__, *(str(getattr(instr, name, "")) for name in ("a_done", "b_done", "lastStepMatch")),
            None if carried is None else (carried.type, carried.color),
            _progress(getattr(instr, "instr_a", None)), _progress(getattr(instr, "instr_b", None)))


class BabyAITextEnv(gymnasium.Env):
    """One or several BabyAI levels behind a text observation and the six named minigrid actions.

    With several levels (a mixed task) each reset draws the level from ``self.np_random``, so the
    level sequence is reproducible from the reset seed like everything else.
    """

    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 10}

    def __init__(self, levels: Sequence[str], max_steps: int = 64, render_mode: str | None = None):
        if isinstance(levels, str):
            # A bare string would otherwise be read as a sequence of one-letter level ids.
            levels = (levels,)
        self.levels: tuple[str, ...] = tuple(levels)
        if not self.levels:
            raise ValueError("BabyAITextEnv needs at least one level id")
        for level in self.levels:
            if level not in gymnasium.registry:
                raise ValueError(f"unknown BabyAI level id: {level!r}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            modes = self.metadata["render_modes"]
            raise ValueError(f"render_mode must be one of {modes}, got {render_mode!r}")
        self.max_steps = max_steps
        self.render_mode = render_mode
        self.observation_space = spaces.Text(max_length=OBS_MAX_LENGTH, charset=OBS_CHARSET)
        self.action_space = spaces.Discrete(len(ACTIONS))

        # Made lazily: building every level of a mixed task up front costs time for levels an
        # evaluation run over one seed range may never draw.
        self._wrapped: dict[str, gymnasium.Env] = {}
        self._envs: dict[str, MiniGridEnv] = {}
        self._level: str | None = None
        self._obs_text = ""

    def _underlying(self, level: str) -> MiniGridEnv:
        if level not in self._envs:
            kwargs: dict[str, Any] = {"max_steps": self.max_steps}
            if self.render_mode == "rgb_array":
                kwargs["render_mode"] = "rgb_array"
            try:
                wrapped = gymnasium.make(level, **kwargs)
            except (gymnasium.error.Error, TypeError) as error:
                raise ValueError(f"cannot build BabyAI level {level!r}: {error}") from error
            env = wrapped.unwrapped
            if not isinstance(env, MiniGridEnv):
                wrapped.close()
                raise ValueError(f"level {level!r} is not a minigrid environment")
            self._wrapped[level] = wrapped
            self._envs[level] = env
        return self._envs[level]

    @property
    def minigrid_env(self) -> MiniGridEnv:
        """The unwrapped minigrid environment of the current episode (e.g. for BabyAIBot)."""
        if self._level is None:
            raise RuntimeError("call reset() before using minigrid_env")
        return self._envs[self._level]

    def _observe(self, env: MiniGridEnv, image: np.ndarray) -> tuple[str, list[str]]:
        self._memory.update(env, image)
        sentences = describe_view(image, env.carrying)
        return "\n".join([f"Mission: {env.mission}", *sentences]), sentences

    def _info(self, env: MiniGridEnv, sentences: list[str], success: bool) -> dict[str, Any]:
        return {
            "mission": str(env.mission),
            "level": self._level,
            "descriptions": list(sentences),
            # What was seen earlier in the episode, relative to the agent now (for deliberating models).
            "memory": self._memory.describe(env),
            "step": int(env.step_count),
            "success": success,
        }

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        super().reset(seed=seed)
        if len(self.levels) > 1:
            level = self.levels[int(self.np_random.integers(len(self.levels)))]
        else:
            level = self.levels[0]
        env = self._underlying(level)
        self._level = level
        # RoomGridLevel prints every rejected sample ("Sampling rejected: ...") while generating a
        # mission; that is routine rejection sampling, not something a user should see.
        captured = io.StringIO()
        with contextlib.redirect_stdout(captured):
            # Unseeded resets draw the level's seed from this env's generator, so a seeded first
            # reset makes the whole sequence reproducible, whichever levels it visits.
            level_seed = seed if seed is not None else int(self.np_random.integers(2**31))
            obs, _ = env.reset(seed=level_seed)
        if captured.getvalue():
            log.debug("minigrid output during reset of %s: %s", level, captured.getvalue().strip())
        self._memory = EpisodeMemory(env.width, env.height)
        self._obs_text, sentences = self._observe(env, obs["image"])
        return self._obs_text, self._info(env, sentences, success=False)

    def snapshot(self) -> BabyAITextEnv:
        """An independent copy of this environment in its current state (minigrid is pure Python: stepping the copy
        leaves this one as it was). What a search over action sequences branches with."""
        if self._level is None:
            raise RuntimeError("call reset() before snapshot()")
        twin = copy.copy(self)
        twin._wrapped, twin._envs = {}, {self._level: copy.deepcopy(self._envs[self._level])}
        twin._memory = copy.deepcopy(self._memory)
        twin._np_random = copy.deepcopy(self._np_random)  # no generator shared with the original
        return twin

    def state_key(self) -> tuple:
        """Everything the episode's future depends on except the step count, hashable: from two states with equal
        keys the same actions give the same observations; the one at the earlier step gets its success sooner
        (more reward) and its time-out later. The step count is `minigrid_env.step_count`."""
        env, memory = self.minigrid_env, self._memory
        carrying = None if env.carrying is None else (env.carrying.type, env.carrying.color)
        return (self._level, str(env.mission), _progress(getattr(env, "instrs", None)),
                tuple(int(v) for v in env.agent_pos),
                int(env.agent_dir), carrying, env.grid.encode().tobytes(), memory.seen.tobytes(),
                memory.blocked.tobytes(), tuple(sorted(memory.objects.items())))

    def candidates(self) -> tuple[str, ...]:
        """The actions a model chooses among: always the six of `ACTIONS`."""
        return ACTIONS

    def step(self, action: int | str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        if self._level is None:
            raise RuntimeError("call reset() before step()")
        if isinstance(action, str):
            if action not in ACTIONS:
                raise ValueError(f"unknown BabyAI-Text action {action!r}; actions: {', '.join(ACTIONS)}")
            action = ACTIONS.index(action)
        if not 0 <= int(action) < len(ACTIONS):
            raise ValueError(f"action must be in 0..{len(ACTIONS) - 1}, got {action!r}")
        env = self._envs[self._level]
        obs, reward, terminated, truncated, _ = env.step(int(action))
        reward = float(reward)
        self._obs_text, sentences = self._observe(env, obs["image"])
        info = self._info(env, sentences, success=bool(terminated) and reward > 0)
        return self._obs_text, reward, bool(terminated), bool(truncated), info

    def render(self) -> str | np.ndarray | None:
        if self.render_mode == "ansi":
            return self._obs_text
        if self.render_mode == "rgb_array" and self._level is not None:
            return self._envs[self._level].render()
        return None

    def close(self) -> None:
        for wrapped in self._wrapped.values():
            wrapped.close()
        self._wrapped.clear()
        self._envs.clear()
        self._level = None
        super().close()


TEXT_ID_PREFIX = "BabyAIText-"


def register_with_gymnasium(max_steps: int = 64) -> list[str]:
    """Register BabyAI-Text for every minigrid BabyAI level with gymnasium, as `BabyAIText-<level>-v0`
    (`gymnasium.make("BabyAIText-GoToLocal-v0")`), so other people's agents and gymnasium's env checker use it
    like any registered environment. Done when this module is imported; the step limit is the harness's."""
    registered = []
    for level in sorted(i for i in gymnasium.registry if i.startswith("BabyAI-")):
        text_id = TEXT_ID_PREFIX + level.removeprefix("BabyAI-")
        if text_id not in gymnasium.registry:
            gymnasium.register(id=text_id, entry_point=BabyAITextEnv,
                               kwargs={"levels": (level,), "max_steps": max_steps})
        registered.append(text_id)
    return registered


register_with_gymnasium()
