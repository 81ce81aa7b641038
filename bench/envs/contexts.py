"""What a language model reads: context builders that turn an episode so far into one prompt.

A model is trained and run with one builder, named in its checkpoint (`londi.json`), so the
same text format is used for demonstrations, behaviour cloning and evaluation. QUICK reacts
to the current view; DEEPTHINK reads more of the episode (a longer input costs more FLOPs
and seconds, and the meter records that).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class EpisodeHistory:
    """Everything a context builder may read: observations so far (last = current), actions taken,
    and the environment's memory sentences at each observation (BabyAI-Text's info["memory"])."""

    observations: list[str] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    memories: list[list[str]] = field(default_factory=list)

    def current(self) -> str:
        return self.observations[-1]


def _split_mission(observation: str) -> tuple[str, list[str]]:
    lines = observation.split("\n")
    return lines[0], lines[1:]


def reflex_context(history: EpisodeHistory) -> str:
    """The current view and the last action: what a fast, reactive policy sees."""
    mission, view = _split_mission(history.current())
    last = history.actions[-1] if history.actions else "none"
    return f"{mission}. Last action: {last}. " + ". ".join(view)


def history_context(history: EpisodeHistory, actions: int = 4, views: int = 1) -> str:
    """The current view, the previous `views` views and the last `actions` actions taken."""
    mission, view = _split_mission(history.current())
    recent = history.actions[-actions:] if actions > 0 else []  # [-0:] would be every action
    # No absolute step number: a word-level vocabulary trained on short bot episodes has no word
    # for the step counts of long evaluation episodes.
    parts = [f"{mission}. Actions: {', '.join(recent) or 'none'}."]
    for back in range(views, 0, -1):
        index = len(history.observations) - 1 - back
        if index >= 0:
            _, earlier = _split_mission(history.observations[index])
            parts.append(f"Before {back}: " + (". ".join(earlier) or "nothing") + ".")
    parts.append("Now: " + (". ".join(view) or "nothing") + ".")
    return " ".join(parts)


def memory_context(history: EpisodeHistory, actions: int = 4) -> str:
    """The whole episode so far: the current view, the recent actions, and the episode memory
    (every object seen earlier and out of view now, placed relative to the agent, and the nearest
    cell not yet seen): what a deliberating policy needs when its target is out of sight."""
    mission, view = _split_mission(history.current())
    recent = history.actions[-actions:] if actions > 0 else []
    memory = history.memories[-1] if history.memories else []
    return (f"{mission}. Actions: {', '.join(recent) or 'none'}. Now: {'. '.join(view) or 'nothing'}. "
            f"Memory: {'. '.join(memory) or 'nothing'}.")


def _scienceworld_parts(observation: str) -> dict[str, str]:
    """ScienceWorldTextEnv's observation lines by name: task, score, observation, look, inventory."""
    lines = observation.split("\n")
    parts = {"task": lines[0]}
    for line in lines[1:]:
        name, _, text = line.partition(": ")
        parts[name.lower()] = text
    return parts


def _first_words(text: str, n: int) -> str:
    return " ".join(text.split()[:n])


def sw_now_context(history: EpisodeHistory, result_words: int = 12) -> str:
    """ScienceWorld for a fast policy: the task, the last action and the first `result_words` words of what it
    did (a `look around` would repeat the room), and the room now."""
    now = _scienceworld_parts(history.current())
    last = history.actions[-1] if history.actions else "none"
    result = _first_words(now.get("observation", ""), result_words)
    return f"Task: {now['task']} Last action: {last}. Result: {result} Room: {now.get('look', '')}"


def sw_history_context(history: EpisodeHistory, actions: int = 6, result_words: int = 12) -> str:
    """ScienceWorld as SwiftSage's Sage reads it: the task, time and score, the last `actions` actions with
    what each did (its first `result_words` words: a `look around` repeats the room), the room now and the
    inventory."""
    now = _scienceworld_parts(history.current())
    start = max(0, len(history.actions) - actions)

    def result(i: int) -> str:
        return _first_words(_scienceworld_parts(history.observations[i + 1]).get("observation", ""), result_words)

    recent = [f"{history.actions[i]} -> {result(i)}" for i in range(start, len(history.actions))]
    return (f"Task: {now['task']} Time: {len(history.actions)}. Score: {now.get('score', '0.')} "
            f"Recent: {' | '.join(recent) or 'none'}. Room: {now.get('look', '')} "
            f"Inventory: {now.get('inventory', '')}")


CONTEXTS: dict[str, Callable[[EpisodeHistory], str]] = {
    "reflex": reflex_context,
    "history": history_context,
    "memory": memory_context,
    "sw_now": sw_now_context,
    "sw_history": sw_history_context,
}


def get_context(name: str) -> Callable[[EpisodeHistory], str]:
    try:
        return CONTEXTS[name]
    except KeyError:
        raise ValueError(f"unknown context {name!r}; known contexts: {', '.join(CONTEXTS)}") from None
