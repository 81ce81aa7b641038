"""Episode memory for BabyAI-Text: what the agent has seen so far, placed relative to where it is now.

A reactive model sees only the current 7x7 view. A deliberating model (DEEPTHINK's `memory`
context) also reads this memory: every object seen earlier in the episode and now out of view,
and the nearest cell never seen yet, each given relative to the agent's current position and
heading ("2 steps left and 3 steps back"). It is built from the observations alone (each view's
visible cells placed on the grid by the agent's pose), so it holds nothing the agent did not see.
BabyAIBot plans from exactly this kind of memory, which is why its choices are predictable from
it when the target is out of view.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

import numpy as np
from minigrid.core.constants import DIR_TO_VEC, IDX_TO_COLOR, IDX_TO_OBJECT, OBJECT_TO_IDX
from minigrid.minigrid_env import MiniGridEnv

from bench.envs.babyai_words import object_words, relative_phrase, with_article

_UNSEEN = OBJECT_TO_IDX["unseen"]
_NOT_REMEMBERED = frozenset({"unseen", "empty", "floor", "wall", "agent"})
_PASSABLE = frozenset({"empty", "floor", "agent"})
HEADINGS = ("east", "south", "west", "north")  # minigrid's agent_dir 0..3
def _frame(env: MiniGridEnv) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The agent's position, forward and right unit vectors in grid coordinates."""
    forward = np.asarray(DIR_TO_VEC[env.agent_dir])
    return np.asarray(env.agent_pos), forward, np.array([-forward[1], forward[0]])


def visible_cells(env: MiniGridEnv, image: np.ndarray) -> Iterator[tuple[int, int, str, str, int, bool]]:
    """(x, y, kind, color, state, is_agent_cell) on the grid for every visible cell of the view."""
    size = image.shape[0]
    i, j, x, y = _visible_grid(env, image)
    for ii, jj, xx, yy in zip(i.tolist(), j.tolist(), x.tolist(), y.tolist(), strict=True):
        type_idx, color_idx, state = (int(v) for v in image[ii, jj])
        yield (xx, yy, IDX_TO_OBJECT[type_idx], IDX_TO_COLOR.get(color_idx, "grey"), state,
               (ii, jj) == (size // 2, size - 1))


def _visible_grid(env: MiniGridEnv, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """View indices (i, j) of the visible cells and their grid coordinates (x, y), vectorised:
    this runs at every environment step."""
    agent, forward, right = _frame(env)
    size = image.shape[0]
    i, j = np.nonzero(image[:, :, 0] != _UNSEEN)
    xy = agent + np.outer(size - 1 - j, forward) + np.outer(i - size // 2, right)
    return i, j, xy[:, 0], xy[:, 1]


class EpisodeMemory:
    """Cells seen so far in one episode, in grid coordinates; described relative to the agent."""

    def __init__(self, width: int, height: int) -> None:
        self.seen = np.zeros((width, height), dtype=bool)
        self.blocked = np.zeros((width, height), dtype=bool)
        """Seen cells the agent cannot walk through: walls, closed doors, objects."""
        self.objects: dict[tuple[int, int], str] = {}
        self.in_view: set[tuple[int, int]] = set()

    def update(self, env: MiniGridEnv, image: np.ndarray) -> None:
        """Record the visible cells of `image` (minigrid's encoded egocentric view) on the grid."""
        size = image.shape[0]
        i, j, x, y = _visible_grid(env, image)
        inside = (x >= 0) & (x < self.seen.shape[0]) & (y >= 0) & (y < self.seen.shape[1])
        i, j, x, y = i[inside], j[inside], x[inside], y[inside]
        self.seen[x, y] = True
        self.in_view = set(zip(x.tolist(), y.tolist(), strict=True))
        for ii, jj, xx, yy in zip(i.tolist(), j.tolist(), x.tolist(), y.tolist(), strict=True):
            type_idx, color_idx, state = (int(v) for v in image[ii, jj])
            kind = IDX_TO_OBJECT[type_idx]
            agent_cell = (ii, jj) == (size // 2, size - 1)
            self.blocked[xx, yy] = not (agent_cell or kind in _PASSABLE or (kind == "door" and state == 0))
            if agent_cell or kind in _NOT_REMEMBERED:
                self.objects.pop((xx, yy), None)  # seen empty now: the object moved or was taken
                continue
            self.objects[(xx, yy)] = object_words(kind, IDX_TO_COLOR.get(color_idx, "grey"), state)

    def describe(self, env: MiniGridEnv) -> list[str]:
        """Remembered objects out of the view of the last `update`, then the nearest unexplored cell."""
        agent, forward, right = _frame(env)
        in_view = self.in_view

        def relative(x: int, y: int) -> tuple[int, int]:
            offset = np.array([x, y]) - agent
            return int(offset @ right), int(offset @ forward)

        remembered = []
        for (x, y), words in self.objects.items():
            if (x, y) not in in_view:
                dx, fwd = relative(x, y)
                remembered.append(((abs(dx) + abs(fwd), dx, fwd),
                                   f"You remember {with_article(words)} {relative_phrase(dx, fwd)}"))
        sentences = [f"You face {HEADINGS[env.agent_dir]}"]
        sentences += [s for _, s in sorted(remembered)]
        for role, cells in mission_targets(env):
            for x, y in sorted(cells, key=lambda c: abs(relative(*c)[0]) + abs(relative(*c)[1])):
                if (x, y) in self.objects:
                    words = self.objects[(x, y)]
                    sentences.append(f"{role} {with_article(words)} {relative_phrase(*relative(x, y))}")
        unseen = self.nearest_unseen(env)
        if unseen is not None:
            sentences.append(f"The nearest unexplored cell is {relative_phrase(*relative(*unseen))}")
        else:
            sentences.append("Everything you can reach has been explored")
        return sentences

    def nearest_unseen(self, env: MiniGridEnv) -> tuple[int, int] | None:
        """The first never-seen cell a breadth-first search from the agent reaches through seen, free
        cells: the search BabyAIBot explores with (straight ahead expanded first, then the sides in its
        order), so this is the cell the bot would walk to. Through objects only if nothing else is left."""
        for through_objects in (False, True):
            found = self._search(env, through_objects)
            if found is not None:
                return found
        return None

    def _search(self, env: MiniGridEnv, through_objects: bool) -> tuple[int, int] | None:
        width, height = self.seen.shape
        x0, y0 = (int(v) for v in env.agent_pos)
        dx0, dy0 = (int(v) for v in DIR_TO_VEC[env.agent_dir])
        queue = deque([(x0, y0, dx0, dy0)])
        visited = np.zeros_like(self.seen)
        while queue:
            x, y, di, dj = queue.popleft()
            if not (0 <= x < width and 0 <= y < height) or visited[x, y]:
                continue
            visited[x, y] = True
            if not self.seen[x, y]:
                return x, y
            if self.blocked[x, y] and (x, y) != (x0, y0):
                # Objects are passable in the second search; walls and closed doors never are.
                if not (through_objects and (x, y) in self.objects and "door" not in self.objects[(x, y)]):
                    continue
            for k, m in ((di, dj), (dj, di), (-dj, -di), (-di, -dj)):
                queue.append((x + k, y + m, k, m))
        return None


def mission_targets(env: MiniGridEnv) -> list[tuple[str, set[tuple[int, int]]]]:
    """The cells of the objects the mission names, as BabyAI's verifier resolved its descriptions at the
    start of the episode (location words like "on your left" refer to the starting pose), each with
    the words the memory introduces it by. Only cells the agent has seen are ever described."""
    instrs = getattr(env, "instrs", None)
    if instrs is None:
        return []

    def cells(desc) -> set[tuple[int, int]]:
        return {(int(o.cur_pos[0]), int(o.cur_pos[1])) for o in desc.obj_set
                if o is not env.carrying and o.cur_pos is not None}

    if hasattr(instrs, "desc_move"):
        return [("The object to move is", cells(instrs.desc_move)),
                ("The object to put it next to is", cells(instrs.desc_fixed))]
    if hasattr(instrs, "desc"):
        return [("Your target is", cells(instrs.desc))]
    return []
