"""ScienceWorld (Wang et al. 2022) as a gymnasium-style text environment.

Each environment owns one JVM running one simulator (the `scienceworld` package ships it). The
heap is capped (-Xmx512m unless JAVA_TOOL_OPTIONS sets one: under 400 MB resident instead of
~2 GB). The JVM runs with constant identity hash codes (-XX:hashCode=2): with the default random
ones the simulator iterates its objects in a different order in every JVM, and the same actions
on the same variation give the score at different steps (the electrical tasks do). With it a
variation is deterministic, so a JVM that dies mid-episode is restarted and the episode's
actions so far replayed on it to the same state. Starting a JVM takes seconds, so `close()` hands
its JVM to a small pool of idle ones that the next environment takes (a run of many short
evaluations starts a handful of JVMs, not one per run); `shutdown_idle()` and the exit of the
Python process end them, so no java process outlives the run.

The observation is SwiftSage's text in one string, one part per line: the task description, the
score, the result of the last action, the current room (`look around`) and the inventory. Context
builders (bench/contexts.py) add the time and the last actions from the episode history.

Actions are text. A model generates one; the simulator parses it, and only if it rejects it
("No known action matches that input") are the valid actions enumerated (the slowest call of the
simulator, tens of ms) and the closest one played instead, as SwiftSage maps its generations
(`candidates()` gives that list to anyone who asks). A request the parser finds ambiguous is
resolved with its first reading.

Reward: the score's increase / 100 per step, so an episode's return is its final score / 100. A
negative score (a wrong "focus on") ends the episode as a failure with return 0.
"""

from __future__ import annotations

import atexit
import difflib
import logging
import os
import re
import shutil
import subprocess
import threading
import weakref
from typing import Any

import gymnasium
from gymnasium import spaces

log = logging.getLogger(__name__)

JAVA_HEAP = "-Xmx512m"
"""The JVM heap unless JAVA_TOOL_OPTIONS says otherwise: enough for every task's scores."""
JAVA_DETERMINISM = "-XX:+UnlockExperimentalVMOptions -XX:hashCode=2"
"""Constant identity hash codes: the simulator's object order (and so its scores) the same in every JVM."""
SIMPLIFICATIONS = "easy"
"""ScienceWorld's "easy" preset: teleport, doors and containers open, self-watering pots, and no
electrical actions except where a task needs them. `simplifications=""` gives the full tasks."""
REJECTED = "No known action matches that input."
AMBIGUOUS = "Ambiguous request"
OBS_MAX_LENGTH = 16384
_ROOM = re.compile(r"This [a-z ]+? is called the ([a-z ]+?)\.")  # "This room is ...", "This outside location is ..."


class JavaNotFoundError(FileNotFoundError):
    """ScienceWorld's simulator needs a Java runtime and none is on PATH."""


def java_options(user: str) -> str:
    """JAVA_TOOL_OPTIONS for the simulator's JVM: the user's own, plus the heap cap unless they set one, plus
    the determinism flags."""
    options = user.split()
    if not any(o.startswith("-Xmx") for o in options):
        options.append(JAVA_HEAP)
    if "-XX:hashCode=2" not in options:
        options += JAVA_DETERMINISM.split()
    return " ".join(options)


def require_java() -> str:
    java = shutil.which("java")
    if java is None:
        raise JavaNotFoundError(
            "ScienceWorld needs Java 17 or newer and no `java` is on PATH: install one "
            "(Debian/Ubuntu: sudo apt-get install -y openjdk-17-jre-headless) or put its bin/ on PATH"
        )
    return java


def flatten(text: str) -> str:
    """The simulator's multi-line text as one line: indented list items become '; '-separated."""
    parts = [line.strip() for line in text.replace("\r", "").split("\n")]
    return "; ".join(p for p in parts if p).replace(":;", ":")


def room_of(look: str) -> str:
    match = _ROOM.search(look)
    return match.group(1) if match else ""


_LIVE: weakref.WeakSet[_Simulator] = weakref.WeakSet()
_IDLE: list[_Simulator] = []
_POOL_LOCK = threading.Lock()
"""Environments are stepped in threads (bench.running.runner): the idle pool is taken from and given to one at a
time."""
_ENV_LOCK = threading.Lock()
IDLE_JVMS = 8
"""Most idle JVMs kept for reuse (~350 MB each)."""


def shutdown_idle() -> None:
    """End every idle JVM of the pool."""
    while _IDLE:
        _IDLE.pop().close()


@atexit.register
def _close_all() -> None:
    _IDLE.clear()
    for simulator in list(_LIVE):
        simulator.close()


class _Simulator:
    """One JVM with one ScienceWorld simulator in it."""

    def __init__(self) -> None:
        require_java()
        from scienceworld import ScienceWorldEnv

        # py4j logs every refused connection of a JVM that died with a traceback; the wrapper says it once.
        logging.getLogger("py4j").setLevel(logging.CRITICAL)
        # The JVM inherits JAVA_TOOL_OPTIONS. It is set for the whole process (idempotently: the user's options
        # stay, the cap and determinism flags are added once), not set and restored around each start, so that
        # threads can start JVMs at the same time without one restoring the variable under another's feet.
        with _ENV_LOCK:
            os.environ["JAVA_TOOL_OPTIONS"] = java_options(os.environ.get("JAVA_TOOL_OPTIONS", ""))
        self.env = ScienceWorldEnv("", envStepLimit=10**9)  # the step limit is this wrapper's
        self.server = self.env.server
        self.process: subprocess.Popen = self.env._gateway.java_process
        _LIVE.add(self)

    @property
    def pid(self) -> int:
        return self.process.pid

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.env.close()
            except Exception:  # noqa: BLE001 - a JVM that already died cannot shut down politely
                pass
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        _LIVE.discard(self)


class ScienceWorldTextEnv(gymnasium.Env):
    """One ScienceWorld task; `reset(seed=v)` loads variation v of it."""

    metadata = {"render_modes": ["ansi"]}

    def __init__(self, task: str, max_steps: int, simplifications: str = SIMPLIFICATIONS,
                 render_mode: str | None = None) -> None:
        self.task = task
        self.max_steps = max_steps
        self.simplifications = simplifications
        self.render_mode = render_mode
        self.observation_space = spaces.Text(max_length=OBS_MAX_LENGTH)
        self.action_space = spaces.Text(max_length=256)
        self._sim: _Simulator | None = None
        self.variation: int | None = None
        self._actions: list[str] = []  # played this episode, for a replay after a JVM restart
        self._candidates: tuple[str, ...] | None = None
        self._obs_text = ""
        self._task_text: str | None = None
        self._score = 0
        self._steps = 0
        self.jvm_restarts = 0
        self.valid_action_calls = 0

    # ---------------------------------------------------------------- the JVM
    @property
    def simulator(self) -> _Simulator:
        if self._sim is None:
            with _POOL_LOCK:
                while self._sim is None and _IDLE:
                    candidate = _IDLE.pop()
                    if candidate.process.poll() is None:
                        self._sim = candidate
            if self._sim is None:
                self._sim = _Simulator()  # outside the lock: threads start their JVMs side by side
        return self._sim

    def _load(self, gold: bool = False) -> None:
        self.simulator.server.load(self.task, int(self.variation), self.simplifications, gold)
        self.simulator.server.reset()

    def _restart(self, error: Exception) -> None:
        log.warning("ScienceWorld JVM died (%s); restarting it and replaying %d actions of %s variation %s",
                    type(error).__name__, len(self._actions), self.task, self.variation)
        if self._sim is not None:
            self._sim.close()
        self._sim = None
        self.jvm_restarts += 1
        self._load()
        for action in self._actions:
            self._play(self.simulator.server, action)

    def _call(self, fn):
        from py4j.protocol import Py4JError, Py4JNetworkError

        try:
            return fn(self.simulator.server)
        except Py4JError as error:
            # A Java exception is a bug to report; a lost connection or a dead process is a JVM to restart.
            if not (isinstance(error, Py4JNetworkError) or self.simulator.process.poll() is not None):
                raise
            self._restart(error)
            return fn(self.simulator.server)

    @staticmethod
    def _play(server, action: str) -> str:
        out = server.step(action)
        if out.startswith(AMBIGUOUS):
            out = server.step("0")  # the parser's first reading, as SwiftSage answers
        return out

    # ---------------------------------------------------------------- gymnasium API
    def max_variations(self) -> int:
        return int(self._call(lambda s: s.getTaskMaxVariations(self.task)))

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict]:
        super().reset(seed=seed)
        if seed is None:
            raise ValueError("ScienceWorldTextEnv.reset needs seed= the variation index")
        self.variation = int(seed)
        self._actions, self._candidates, self._score, self._steps = [], None, 0, 0
        self._task_text: str | None = None
        gold = bool((options or {}).get("gold"))
        self._call(lambda s: self._load_checked(s, gold))
        obs = self._observe(self._call(lambda s: s.freeActionLook()))
        info = self._info(success=False, mapped=None)
        if gold:  # ScienceWorld's own planner's actions for this variation (demonstrations)
            info["gold"] = [str(a) for a in self._call(lambda s: s.getGoldActionSequence())]
        return obs, info

    def _load_checked(self, server, gold: bool) -> None:
        total = int(server.getTaskMaxVariations(self.task))
        if not 0 <= self.variation < total:
            raise ValueError(f"ScienceWorld task {self.task!r} has variations 0..{total - 1}, got {self.variation}")
        self._load(gold)

    def candidates(self) -> tuple[str, ...]:
        """The valid actions now (sorted, one per string): enumerated at most once per step, on request."""
        if self._candidates is None:
            self.valid_action_calls += 1
            valid = self._call(lambda s: list(s.getValidActionObjectCombinations()))
            self._candidates = tuple(sorted(set(valid)))
        return self._candidates

    def closest(self, action: str) -> str:
        """The valid action most like `action`: the most words in common (Jaccard over word sets), then the
        closest spelling (difflib's ratio), then the first in order. Word overlap first, so that "focus on
        baby wolf" goes to "focus on baby beaver" and not to the shorter "focus on air"."""
        lowered = action.lower()
        words = set(lowered.split())

        def similarity(candidate: str) -> tuple[float, float]:
            other = set(candidate.lower().split())
            return (len(words & other) / max(1, len(words | other)),
                    difflib.SequenceMatcher(None, lowered, candidate.lower()).ratio())

        return max(self.candidates(), key=similarity)

    def step(self, action: str | int) -> tuple[str, float, bool, bool, dict]:
        if self.variation is None:
            raise RuntimeError("call reset() before step()")
        if not isinstance(action, str):
            action = self.candidates()[int(action)]
        out = self._call(lambda s: self._play(s, action))
        mapped = None
        if out.strip() == REJECTED:
            mapped = self.closest(action)
            out = self._call(lambda s: self._play(s, mapped))
        played = mapped or action
        self._actions.append(played)
        self._candidates = None
        self._steps += 1
        raw = int(round(100 * float(self._call(lambda s: s.getScore()))))
        completed = bool(self._call(lambda s: s.getCompleted()))
        failed = raw < 0
        score = 0 if failed else raw
        reward = (score - self._score) / 100.0
        self._score = score
        success = score >= 100
        terminated = completed or failed or success
        truncated = not terminated and self._steps >= self.max_steps
        obs = self._observe(out)
        return obs, reward, terminated, truncated, self._info(success=success, mapped=mapped, failed=failed,
                                                               played=played)

    def _observe(self, last: str) -> str:
        if self._task_text is None:  # fixed for the episode: asked once
            self._task_text = flatten(self._call(lambda s: s.freeActionTaskDesc())).removeprefix("Task Description: ")
        task = self._task_text
        look = self._call(lambda s: s.freeActionLook())
        inventory = self._call(lambda s: s.freeActionInventory())
        self._look = look
        self._obs_text = "\n".join([task, f"Score: {self._score}.", f"Observation: {flatten(last)}",
                                    f"Look: {flatten(look)}", f"Inventory: {flatten(inventory)}"])
        return self._obs_text

    def _info(self, success: bool, mapped: str | None, failed: bool = False, played: str | None = None) -> dict:
        return {
            "task": self.task, "variation": self.variation, "level": self.task, "score": self._score,
            "success": success, "failed": failed, "step": self._steps, "room": room_of(self._look),
            "played": played, "mapped": mapped, "jvm_restarts": self.jvm_restarts,
        }

    def render(self) -> str | None:
        return self._obs_text if self.render_mode == "ansi" else None

    def close(self) -> None:
        """Give the JVM back to the idle pool (or end it when the pool is full or it died)."""
        if self._sim is not None:
            with _POOL_LOCK:
                keep = self._sim.process.poll() is None and len(_IDLE) < IDLE_JVMS
                if keep:
                    _IDLE.append(self._sim)
            if not keep:
                self._sim.close()
            self._sim = None
        self.variation = None
        super().close()
