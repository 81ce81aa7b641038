"""Tests for bench.envs.babyai_memory: the episode memory's sentences checked against the real minigrid grid.

Every "You remember ..." sentence is turned back into a grid cell with the agent's current pose and
compared with what the grid holds there; what the agent saw is recomputed independently with
minigrid's own view geometry (`relative_coords` and the visibility mask of `gen_obs_grid`), so a
memory that misplaces, invents, leaks or forgets objects, or points at an explored cell, fails here.
The heading is checked against minigrid's agent_dir, the mission targets against BabyAI's verifier,
and the nearest unexplored cell against BabyAIBot's own exploration search on the bot's own map.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from minigrid.core.constants import DIR_TO_VEC
from minigrid.minigrid_env import MiniGridEnv
from minigrid.utils.baby_ai_bot import BabyAIBot

from bench.envs.babyai_memory import HEADINGS, EpisodeMemory, relative_phrase, visible_cells
from bench.envs.babyai_text import ACTIONS, BabyAITextEnv
from bench.envs.contexts import EpisodeHistory, memory_context, reflex_context
from bench.models.demos import bot_episode

LEVELS = ("BabyAI-GoToLocal-v0", "BabyAI-PickupLoc-v0", "BabyAI-PutNextLocal-v0", "BabyAI-OpenDoor-v0")
SEEDS = range(10)
BOT_SEEDS = range(3)
RANDOM_STEPS = 25
TURN_LEFT, TURN_RIGHT, FORWARD, PICKUP, TOGGLE = (
    ACTIONS.index(name) for name in ("turn left", "turn right", "go forward", "pick up", "toggle"))
MOVES = (TURN_LEFT, TURN_RIGHT, FORWARD)
EXPLORED = "Everything you can reach has been explored"
HEADING = re.compile(r"You face (east|south|west|north)")
TARGET = re.compile(r"(Your target is|The object to move is|The object to put it next to is) "
                    r"(a|an) (?:(open|closed|locked) )?(\w+) (\w+) (.+)")

REMEMBER = re.compile(r"You remember (a|an) (?:(open|closed|locked) )?(\w+) (\w+) (.+)")
NEAREST = re.compile(r"The nearest unexplored cell is (.+)")
PART = re.compile(r"(\d+) (steps?) (left|right|forward|back)")
NOT_OBJECTS = {"unseen", "empty", "floor", "wall", "agent"}


# ---------------------------------------------------------------- relative_phrase


@pytest.mark.parametrize(
    ("right", "forward", "phrase"),
    [
        (0, 0, "here"),
        (1, 0, "1 step right"),
        (-1, 0, "1 step left"),
        (3, 0, "3 steps right"),
        (-2, 0, "2 steps left"),
        (0, 1, "1 step forward"),
        (0, -1, "1 step back"),
        (0, 4, "4 steps forward"),
        (0, -5, "5 steps back"),
        (-2, 3, "2 steps left and 3 steps forward"),
        (-2, -3, "2 steps left and 3 steps back"),
        (1, -1, "1 step right and 1 step back"),
        (4, 1, "4 steps right and 1 step forward"),
    ],
)
def test_relative_phrase(right: int, forward: int, phrase: str) -> None:
    assert relative_phrase(right, forward) == phrase


def parse_phrase(phrase: str) -> tuple[int, int]:
    """(right, forward) of a relative phrase, checking its grammar independently of the module."""
    if phrase == "here":
        return 0, 0
    parts = phrase.split(" and ")
    assert 1 <= len(parts) <= 2, phrase
    right = forward = 0
    axes = []
    for part in parts:
        match = PART.fullmatch(part)
        assert match, phrase
        n, unit, direction = int(match[1]), match[2], match[3]
        assert n >= 1 and unit == ("step" if n == 1 else "steps"), phrase
        if direction in ("left", "right"):
            right = n if direction == "right" else -n
            axes.append("side")
        else:
            forward = n if direction == "forward" else -n
            axes.append("ahead")
    assert axes in (["side"], ["ahead"], ["side", "ahead"]), phrase  # side first, each axis once
    return right, forward


def test_relative_phrase_round_trips() -> None:
    phrases = {relative_phrase(r, f): (r, f) for r in range(-7, 8) for f in range(-7, 8)}
    assert len(phrases) == 15 * 15  # one phrase per offset
    for phrase, offset in phrases.items():
        assert parse_phrase(phrase) == offset


# ---------------------------------------------------------------- the audit against minigrid


def to_cell(env: MiniGridEnv, right: int, forward: int) -> tuple[int, int]:
    """The grid cell `right` steps right and `forward` steps ahead of the agent."""
    fx, fy = (int(v) for v in DIR_TO_VEC[env.agent_dir])
    rx, ry = -fy, fx
    x, y = (int(v) for v in env.agent_pos)
    return x + right * rx + forward * fx, y + right * ry + forward * fy


def minigrid_view(env: MiniGridEnv) -> set[tuple[int, int]]:
    """Cells (inside the grid or not) the agent sees now, by minigrid's own view geometry."""
    _, vis_mask = env.gen_obs_grid()
    ax, ay = (int(v) for v in env.agent_pos)
    reach = env.agent_view_size
    cells = set()
    for x in range(ax - reach, ax + reach + 1):
        for y in range(ay - reach, ay + reach + 1):
            coords = env.relative_coords(x, y)
            if coords is not None and vis_mask[coords[0], coords[1]]:
                cells.add((x, y))
    return cells


def door_state(obj: Any) -> str:
    return "locked" if obj.is_locked else "open" if obj.is_open else "closed"


@dataclass
class Audit:
    """Everything checked about one episode's memory, one observation at a time."""

    env: MiniGridEnv
    seen: set[tuple[int, int]] = field(default_factory=set)  # in-grid cells minigrid showed so far
    last_seen: dict[tuple[int, int], str] = field(default_factory=dict)  # cell -> object words, or ""
    remembered: int = 0
    nearest: int = 0
    explored: int = 0
    targets: int = 0
    bot: BabyAIBot | None = None

    def observe(self, info: dict[str, Any]) -> None:
        env = self.env
        inside = {(x, y) for x in range(env.width) for y in range(env.height)}
        view = minigrid_view(env)
        image = env.gen_obs()["image"]

        # visible_cells places exactly minigrid's visible cells, with what the grid holds there.
        cells = list(visible_cells(env, image))
        assert {(x, y) for x, y, *_ in cells} == view
        agent = tuple(int(v) for v in env.agent_pos)
        for x, y, kind, color, state, is_agent in cells:
            assert is_agent == ((x, y) == agent)
            if is_agent:
                self.last_seen[(x, y)] = ""
                continue
            obj = env.grid.get(x, y) if (x, y) in inside else None
            if (x, y) in inside:
                assert kind == (obj.type if obj is not None else "empty")
                assert state == (obj.encode()[2] if obj is not None else 0)
            words = ""
            if kind not in NOT_OBJECTS:
                assert color == obj.color
                words = f"{color} {kind}" if kind != "door" else f"{door_state(obj)} {color} {kind}"
            if (x, y) in inside:
                self.last_seen[(x, y)] = words

        seen_before = set(self.seen)
        self.seen |= view & inside

        memory = info["memory"]
        assert memory, "the memory always ends with the unexplored-cell sentence"
        heading, *body, last = memory
        assert HEADING.fullmatch(heading)[1] == HEADINGS[env.agent_dir] == ("east", "south", "west", "north")[
            env.agent_dir], heading
        remembers = [s for s in body if s.startswith("You remember")]
        targets = [s for s in body if not s.startswith("You remember")]
        assert body == remembers + targets, "remembered objects first, then the mission's targets"
        self.check_targets(targets, inside)
        mentioned = set()
        distances = []
        for sentence in remembers:
            match = REMEMBER.fullmatch(sentence)
            assert match, sentence
            article, state, color, kind, phrase = match.groups()
            assert article == ("an" if (state or color)[0] in "aeiou" else "a"), sentence
            right, forward = parse_phrase(phrase)
            cell = to_cell(env, right, forward)
            # Truth: the grid holds that very object at that cell.
            obj = env.grid.get(*cell) if cell in inside else None
            assert obj is not None, (sentence, cell)
            assert (obj.type, obj.color) == (kind, color), (sentence, cell, obj.type, obj.color)
            assert (state is not None) == (kind == "door"), sentence
            if kind == "door":
                assert state == door_state(obj), sentence
            # Out of the current view, and seen in an earlier one as exactly this object.
            assert cell not in view, sentence
            assert cell in seen_before, sentence
            assert self.last_seen[cell] == " ".join(w for w in (state, color, kind) if w), sentence
            mentioned.add(cell)
            distances.append(abs(right) + abs(forward))
            self.remembered += 1
        assert distances == sorted(distances), "remembered objects go nearest first"
        # Complete: every object last seen at a cell now out of view is remembered, and only once.
        expected = {cell for cell, words in self.last_seen.items() if words and cell not in view}
        assert mentioned == expected
        assert len(mentioned) == len(remembers)

        # The bot's own map of what it has seen, and its own search for the closest unseen cell.
        if self.bot is None:
            self.bot = BabyAIBot(env)
        self.bot._process_obs()
        assert {tuple(c) for c in np.argwhere(self.bot.vis_mask)} == self.seen
        _, bot_cell, _ = self.bot._shortest_path(lambda pos, cell: not self.bot.vis_mask[pos])
        if bot_cell is None:
            _, bot_cell, _ = self.bot._shortest_path(lambda pos, cell: not self.bot.vis_mask[pos],
                                                      try_with_blockers=True)
        if bot_cell is None:
            assert last == EXPLORED, last
            self.explored += 1
            return
        match = NEAREST.fullmatch(last)
        assert match, last
        cell = to_cell(env, *parse_phrase(match[1]))
        assert cell not in self.seen, (last, cell)
        assert cell == tuple(bot_cell), (last, cell, bot_cell)
        self.nearest += 1

    def check_targets(self, sentences: list[str], inside: set[tuple[int, int]]) -> None:
        """Each target sentence names a seen object the verifier resolved the mission to, where it is."""
        env = self.env
        instrs = env.instrs
        descs = ({"The object to move is": instrs.desc_move, "The object to put it next to is": instrs.desc_fixed}
                 if hasattr(instrs, "desc_move") else {"Your target is": instrs.desc})
        named = set()
        for sentence in sentences:
            match = TARGET.fullmatch(sentence)
            assert match, sentence
            role, _, state, color, kind, phrase = match.groups()
            cell = to_cell(env, *parse_phrase(phrase))
            obj = env.grid.get(*cell) if cell in inside else None
            assert obj is not None and (obj.type, obj.color) == (kind, color), (sentence, cell)
            assert any(o is obj for o in descs[role].obj_set), (sentence, "not an object the mission names")
            assert cell in self.seen, (sentence, "never seen")
            named.add((role, cell))
            self.targets += 1
        # Complete: every seen, not carried mission object is named.
        expected = {(role, (int(o.cur_pos[0]), int(o.cur_pos[1]))) for role, desc in descs.items()
                    for o in desc.obj_set if o is not env.carrying and o.cur_pos is not None
                    and (int(o.cur_pos[0]), int(o.cur_pos[1])) in self.seen
                    and self.last_seen.get((int(o.cur_pos[0]), int(o.cur_pos[1])))}
        assert named == expected


def random_episode(level: str, seed: int) -> Iterator[tuple[BabyAITextEnv, dict[str, Any]]]:
    """Every observation of RANDOM_STEPS random turns and moves (which never move an object)."""
    rng = np.random.default_rng(seed)
    env = BabyAITextEnv(levels=(level,), max_steps=64)
    try:
        _, info = env.reset(seed=seed)
        yield env, info
        for _ in range(RANDOM_STEPS):
            _, _, terminated, truncated, info = env.step(int(rng.choice(MOVES)))
            yield env, info
            if terminated or truncated:
                break
    finally:
        env.close()


def bot_run(level: str, seed: int) -> Iterator[tuple[BabyAITextEnv, dict[str, Any]]]:
    """Every observation of BabyAIBot's own episode (picking up, dropping and opening included)."""
    env = BabyAITextEnv(levels=(level,), max_steps=64)
    try:
        _, info = env.reset(seed=seed)
        yield env, info
        bot = BabyAIBot(env.minigrid_env)
        action = None
        for _ in range(64):
            action = bot.replan(action)
            if int(action) >= len(ACTIONS):
                break
            _, _, terminated, truncated, info = env.step(int(action))
            yield env, info
            if terminated or truncated:
                break
    finally:
        env.close()


def audit(episode: Iterator[tuple[BabyAITextEnv, dict[str, Any]]]) -> Audit:
    result = None
    for env, info in episode:
        result = result or Audit(env.minigrid_env)
        result.observe(info)
    assert result is not None
    return result


@pytest.fixture(scope="module")
def random_audits() -> dict[str, list[Audit]]:
    return {level: [audit(random_episode(level, seed)) for seed in SEEDS] for level in LEVELS}


@pytest.fixture(scope="module")
def bot_audits() -> dict[str, list[Audit]]:
    return {level: [audit(bot_run(level, seed)) for seed in BOT_SEEDS] for level in LEVELS}


def test_random_walks_memory_matches_the_grid(random_audits: dict[str, list[Audit]]) -> None:
    remembered = {level: sum(a.remembered for a in audits) for level, audits in random_audits.items()}
    nearest = {level: sum(a.nearest for a in audits) for level, audits in random_audits.items()}
    targets = {level: sum(a.targets for a in audits) for level, audits in random_audits.items()}
    print(f"random walks: remembered sentences checked {remembered}, nearest-unexplored {nearest}, "
          f"targets {targets}")
    assert sum(remembered.values()) >= 2000
    for level in LEVELS:
        assert remembered[level] >= 300, level  # every level contributes, not one level carrying the rest
        assert nearest[level] >= 50, level
        assert targets[level] >= 50, level


def test_bot_trajectories_memory_matches_the_grid(bot_audits: dict[str, list[Audit]]) -> None:
    remembered = {level: sum(a.remembered for a in audits) for level, audits in bot_audits.items()}
    print(f"bot episodes: remembered sentences checked {remembered}")
    assert sum(remembered.values()) >= 100
    assert all(remembered.values())


def test_fully_explored_room_says_so(random_audits: dict[str, list[Audit]]) -> None:
    explored = sum(a.explored for audits in random_audits.values() for a in audits)
    print(f"'{EXPLORED}' checked {explored} times")
    assert explored >= 100  # the single-room levels get fully seen within many random walks


def test_spinning_in_the_middle_of_a_room_explores_it() -> None:
    """GoToLocal's 8x8 room seen from its centre cells in all four directions is fully explored."""
    env = BabyAITextEnv(levels=("BabyAI-GoToLocal-v0",), max_steps=64)
    checked = 0
    for seed in range(40):
        _, info = env.reset(seed=seed)
        menv = env.minigrid_env
        if tuple(int(v) for v in menv.agent_pos) not in {(3, 3), (3, 4), (4, 3), (4, 4)}:
            continue
        state = Audit(menv)
        state.observe(info)
        assert info["memory"][-1] != EXPLORED
        for _ in range(3):
            _, _, _, _, info = env.step(TURN_LEFT)
            state.observe(info)
        # Balls, keys and boxes do not block the view: after a full turn the whole room was seen.
        assert info["memory"][-1] == EXPLORED
        checked += 1
    env.close()
    assert checked >= 2


def test_memory_of_a_fresh_episode_remembers_nothing_yet() -> None:
    """At the first step only the heading, the targets in view and the unexplored cell can be said."""
    env = BabyAITextEnv(levels=("BabyAI-GoToLocal-v0",), max_steps=64)
    for seed in range(5):
        _, info = env.reset(seed=seed)
        heading, *targets, last = info["memory"]
        assert HEADING.fullmatch(heading) and NEAREST.fullmatch(last)
        assert all(TARGET.fullmatch(s) for s in targets), targets
    env.close()


# ---------------------------------------------------------------- objects that move


def _bot_until_pickup(env: BabyAITextEnv, seed: int) -> tuple[list[int], tuple[int, int], str] | None:
    """The bot's actions before its first pick-up, the picked cell and the object's words; None if none."""
    env.reset(seed=seed)
    bot = BabyAIBot(env.minigrid_env)
    actions: list[int] = []
    action = None
    for _ in range(64):
        action = bot.replan(action)
        if int(action) == PICKUP:
            menv = env.minigrid_env
            obj = menv.grid.get(*menv.front_pos)
            if obj is not None and obj.can_pickup():
                return actions, tuple(int(v) for v in menv.front_pos), f"{obj.color} {obj.type}"
        if int(action) >= len(ACTIONS):
            return None
        _, _, terminated, truncated, _ = env.step(int(action))
        actions.append(int(action))
        if terminated or truncated:
            return None
    return None


def _turn_around(env: BabyAITextEnv, seed: int, actions: list[int], pick: bool) -> dict[str, Any]:
    env.reset(seed=seed)
    for action in actions:
        env.step(action)
    if pick:
        env.step(PICKUP)
        assert env.minigrid_env.carrying is not None
    env.step(TURN_LEFT)
    _, _, _, _, info = env.step(TURN_LEFT)
    return info


def test_picked_up_object_is_no_longer_remembered() -> None:
    env = BabyAITextEnv(levels=("BabyAI-PickupLoc-v0",), max_steps=64)
    checked = 0
    for seed in range(6):
        found = _bot_until_pickup(env, seed)
        if found is None:
            continue
        actions, cell, words = found
        # Control: without picking it up, turning around leaves the object remembered 1 step back.
        kept = _turn_around(env, seed, actions, pick=False)
        assert any(s.endswith(f"{words} 1 step back") for s in kept["memory"]), kept["memory"]
        # Picked up, then turned around: its old cell, now out of view, is remembered as empty.
        taken = _turn_around(env, seed, actions, pick=True)
        menv = env.minigrid_env
        assert menv.grid.get(*cell) is None
        for sentence in taken["memory"][1:-1]:
            match = REMEMBER.fullmatch(sentence) or TARGET.fullmatch(sentence)
            assert match, sentence
            assert to_cell(menv, *parse_phrase(match.groups()[-1])) != cell, sentence
        assert not any(s.endswith(f"{words} 1 step back") for s in taken["memory"]), taken["memory"]
        checked += 1
    env.close()
    assert checked >= 3


def test_opened_door_is_remembered_open_with_an() -> None:
    """OpenDoor: the bot opens the door; turned away from it, the agent remembers "an open ... door"."""
    env = BabyAITextEnv(levels=("BabyAI-OpenDoor-v0",), max_steps=64)
    checked = 0
    for seed in range(4):
        env.reset(seed=seed)
        menv = env.minigrid_env
        bot = BabyAIBot(menv)
        action = None
        for _ in range(64):
            action = bot.replan(action)
            if int(action) >= len(ACTIONS):
                break
            door = menv.grid.get(*menv.front_pos)
            env.step(int(action))
            if int(action) == TOGGLE and door is not None and door.type == "door" and door.is_open:
                env.step(TURN_LEFT)
                _, _, _, _, info = env.step(TURN_LEFT)
                assert f"You remember an open {door.color} door 1 step back" in info["memory"], info["memory"]
                checked += 1
                break
    env.close()
    assert checked >= 2


def test_episode_memory_forgets_a_cell_seen_empty() -> None:
    """EpisodeMemory used directly: an object recorded at a cell is dropped once that cell is seen empty."""
    env = BabyAITextEnv(levels=("BabyAI-PickupLoc-v0",), max_steps=64)
    found = next(f for seed in range(6) if (f := _bot_until_pickup(env, seed)) is not None)
    _, cell, words = found
    menv = env.minigrid_env
    memory = EpisodeMemory(menv.width, menv.height)
    memory.update(menv, menv.gen_obs()["image"])
    assert memory.objects[cell] == words
    env.step(PICKUP)
    memory.update(menv, menv.gen_obs()["image"])
    assert cell not in memory.objects
    assert memory.seen[cell]
    env.close()


# ---------------------------------------------------------------- contexts and demonstrations


def test_memory_context_has_mission_view_and_memory() -> None:
    env = BabyAITextEnv(levels=("BabyAI-GoToLocal-v0",), max_steps=64)
    obs, info = env.reset(seed=3)
    history = EpisodeHistory(observations=[obs], memories=[info["memory"]])
    # Turn around until something seen earlier is out of view and remembered.
    for _ in range(4):
        obs, _, _, _, info = env.step(TURN_LEFT)
        history.observations.append(obs)
        history.actions.append("turn left")
        history.memories.append(info["memory"])
        if any(s.startswith("You remember") for s in info["memory"]):
            break
    env.close()
    memory = history.memories[-1]
    assert any(s.startswith("You remember") for s in memory)

    prompt = memory_context(history)
    assert prompt.startswith(f"Mission: {info['mission']}.")
    for sentence in info["descriptions"]:
        assert sentence in prompt
    for sentence in memory:
        assert sentence in prompt
    assert "Memory: " + ". ".join(memory) + "." in prompt
    if history.memories[-2] != memory:
        assert "Memory: " + ". ".join(history.memories[-2]) + "." not in prompt  # only the current memory
    assert "remember" not in reflex_context(history)
    assert "Memory: nothing." in memory_context(EpisodeHistory(observations=[obs]))


@pytest.mark.parametrize(("level", "seed"), [("BabyAI-GoToLocal-v0", 6), ("BabyAI-PickupLoc-v0", 3),
                                             ("BabyAI-PutNextLocal-v0", 2), ("BabyAI-OpenDoor-v0", 4)])
def test_demo_memories_are_the_envs_memory_at_each_observation(level: str, seed: int) -> None:
    demo = bot_episode(level, seed, 64)
    assert demo is not None
    assert len(demo.memories) == len(demo.observations) == len(demo.actions)
    env = BabyAITextEnv(levels=(level,), max_steps=64)
    obs, info = env.reset(seed=seed)
    replayed = [(obs, info["memory"])]
    for action in demo.actions[:-1]:
        obs, _, _, _, info = env.step(ACTIONS.index(action))
        replayed.append((obs, info["memory"]))
    env.close()
    assert list(zip(demo.observations, demo.memories, strict=True)) == replayed
    # These seeds' bot episodes turn away from what they saw, so there is memory to compare.
    assert any(s.startswith("You remember") for memory in demo.memories for s in memory)
    assert len({tuple(memory) for memory in demo.memories}) > 1
