"""The wording BabyAI-Text uses for positions and objects, shared by the view and the episode memory."""

from __future__ import annotations

ACTIONS: tuple[str, ...] = ("turn left", "turn right", "go forward", "pick up", "drop", "toggle")
"""minigrid's first six actions, named in words: every BabyAI-Text decision picks one of them."""

DOOR_STATES = {0: "open", 1: "closed", 2: "locked"}


def _steps(n: int, direction: str) -> str:
    return f"{n} step {direction}" if n == 1 else f"{n} steps {direction}"


def relative_phrase(right: int, forward: int) -> str:
    """'2 steps left and 3 steps back' for an offset in the agent's frame (right > 0, forward > 0)."""
    side = _steps(abs(right), "left" if right < 0 else "right") if right else ""
    ahead = _steps(abs(forward), "forward" if forward > 0 else "back") if forward else ""
    return " and ".join(part for part in (side, ahead) if part) or "here"


def object_words(kind: str, color: str, state: int) -> str:
    """'red ball', or for a door its state too: 'locked blue door'."""
    words = f"{color} {kind}"
    return f"{DOOR_STATES.get(state, 'closed')} {words}" if kind == "door" else words


def with_article(words: str) -> str:
    return f"an {words}" if words[0] in "aeiou" else f"a {words}"
