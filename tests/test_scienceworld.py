"""ScienceWorld: the real simulator in a real JVM (Java 17 on the machine), through the harness's wrapper."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.envs.contexts import EpisodeHistory, get_context
from bench.envs.scienceworld_text import (
    JavaNotFoundError,
    ScienceWorldTextEnv,
    flatten,
    java_options,
    room_of,
    shutdown_idle,
)
from bench.envs.tasks import SCIENCEWORLD_DEMO_ONLY, SCIENCEWORLD_TASKS, get_task, task_names

ROOT = Path(__file__).resolve().parent.parent
TASK = "power-component"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A killed child that was not reaped yet is a zombie: gone for every purpose but the process table.
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "State:\tZ" in status.read_text())


@pytest.fixture(scope="module")
def env():
    env = ScienceWorldTextEnv(TASK, max_steps=30)
    yield env
    env.close()


def play(env: ScienceWorldTextEnv, actions: list[str]) -> list[tuple]:
    return [env.step(a) for a in actions]


def test_registry_has_the_papers_tasks_with_the_simulators_splits(env: ScienceWorldTextEnv) -> None:
    assert {"scienceworld/power-component", "scienceworld/lifespan-longest-lived-then-shortest-lived"} <= set(
        task_names("scienceworld"))
    server = env.simulator.server
    for name in task_names("scienceworld"):
        spec = get_task(name)
        server.load(spec.levels[0], 0, "easy", False)
        # training on train variations and evaluation on test variations, never mixed
        assert list(spec.train_seeds) == [int(v) for v in server.getVariationsTrain()]
        assert list(spec.eval_seeds) == [int(v) for v in server.getVariationsTest()]
        assert set(spec.train_seeds).isdisjoint(spec.eval_seeds)
        # learned routers train on dev variations the pair was not cloned from; settings are chosen on the others
        assert sorted([*spec.router_seeds, *spec.valid_seeds]) == [int(v) for v in server.getVariationsDev()]
        assert len(spec.router_seeds) >= len(spec.valid_seeds) >= 2
        assert spec.action_mode == "generate" and spec.max_steps == SCIENCEWORLD_TASKS[spec.levels[0]][3]
    for task, (train, dev, test) in SCIENCEWORLD_DEMO_ONLY.items():  # cloned from, not evaluated: the same numbering
        server.load(task, 0, "easy", False)
        assert [int(v) for v in server.getVariationsTrain()] == list(range(train))
        assert [int(v) for v in server.getVariationsDev()] == list(range(train, train + dev))
        assert [int(v) for v in server.getVariationsTest()] == list(range(train + dev, train + dev + test))


def test_few_variations_cycle_without_repeats_inside_a_run() -> None:
    spec = get_task("scienceworld/power-component")  # 5 test variations
    assert spec.eval_episode_seeds(0, 10) == [15, 16, 17, 18, 19]
    assert spec.eval_episode_seeds(1, 3) == [18, 19, 15]
    assert spec.router_train_seeds(2, 7) == [12, 10, 11, 12, 10, 11, 12]  # dev's first half, cycled
    assert spec.eval_episode_seeds(0, 10, "valid") == [13, 14]


def test_gold_path_scores_100_without_enumerating_valid_actions(env: ScienceWorldTextEnv) -> None:
    obs, info = env.reset(seed=0, options={"gold": True})
    lines = obs.split("\n")
    assert lines[0].startswith("Your task is to turn on")
    assert [line.split(":")[0] for line in lines[1:]] == ["Score", "Observation", "Look", "Inventory"]
    calls = env.valid_action_calls
    total, steps = 0.0, 0
    for action in info["gold"]:
        obs, reward, terminated, truncated, info = env.step(action)
        total += reward
        steps += 1
        assert not truncated
        if terminated:
            break
    assert terminated and info["success"] and not info["failed"]
    assert total == pytest.approx(1.0) and info["score"] == 100  # reward = score / 100
    assert "Score: 100." in obs
    assert info["room"] == "workshop"
    assert env.valid_action_calls == calls  # every gold action parsed: no enumeration was needed


def test_rejected_action_is_mapped_onto_the_closest_valid_action(env: ScienceWorldTextEnv) -> None:
    env.reset(seed=0)
    valid = env.candidates()
    assert len(valid) > 50 and "look around" in valid and list(valid) == sorted(set(valid))
    calls = env.valid_action_calls
    assert env.candidates() is valid and env.valid_action_calls == calls  # once per step
    _, _, _, _, info = env.step("look arround")
    assert info["mapped"] == "look around" == info["played"]
    assert env.valid_action_calls == calls  # the list of this step was reused
    _, _, _, _, info = env.step("look around")
    assert info["mapped"] is None and info["played"] == "look around"


def test_mapping_prefers_shared_words_over_a_close_spelling() -> None:
    env = ScienceWorldTextEnv(TASK, max_steps=5)  # no JVM is started: the candidates are given
    env._candidates = ("focus on air", "focus on baby beaver", "look at baby beaver", "go to outside")
    assert env.closest("focus on baby baby wolf") == "focus on baby beaver"
    assert env.closest("go to the outside") == "go to outside"
    assert env._sim is None


def test_wrong_focus_ends_the_episode_as_a_failure_with_return_zero(env: ScienceWorldTextEnv) -> None:
    obs, info = env.reset(seed=0, options={"gold": True})
    total = 0.0
    for action in info["gold"][:3]:  # into the workshop: some score, before the task's own "focus on"
        _, reward, terminated, _, info = env.step(action)
        total += reward
    assert total > 0 and not terminated
    _, reward, terminated, truncated, info = env.step("focus on orange")
    assert terminated and not truncated and info["failed"] and not info["success"]
    assert total + reward == pytest.approx(0.0)


def test_step_limit_truncates() -> None:
    env = ScienceWorldTextEnv(TASK, max_steps=2)
    try:
        env.reset(seed=1)
        assert env.step("look around")[3] is False
        _, _, terminated, truncated, _ = env.step("look around")
        assert truncated and not terminated
    finally:
        env.close()


def test_a_jvm_killed_mid_episode_is_restarted_and_the_episode_replayed() -> None:
    uninterrupted = ScienceWorldTextEnv(TASK, max_steps=30)
    interrupted = ScienceWorldTextEnv(TASK, max_steps=30)
    try:
        _, info = uninterrupted.reset(seed=2, options={"gold": True})
        gold = info["gold"]
        expected = play(uninterrupted, gold)
        interrupted.reset(seed=2)
        first = play(interrupted, gold[:5])
        pid = interrupted.simulator.pid
        os.kill(pid, signal.SIGKILL)
        interrupted.simulator.process.wait(timeout=10)
        rest = play(interrupted, gold[5:])
        assert interrupted.jvm_restarts == 1 and interrupted.simulator.pid != pid
        assert [s[:4] for s in first + rest] == [s[:4] for s in expected]
        assert rest[-1][4]["success"]
    finally:
        uninterrupted.close()
        interrupted.close()


def test_closed_jvms_are_reused_then_ended() -> None:
    env = ScienceWorldTextEnv(TASK, max_steps=5)
    env.reset(seed=0)
    pid = env.simulator.pid
    assert alive(pid)
    env.close()  # back to the idle pool
    again = ScienceWorldTextEnv("find-living-thing", max_steps=5)
    again.reset(seed=0)
    assert again.simulator.pid == pid  # no new JVM for the next environment
    again.close()
    shutdown_idle()
    deadline = time.time() + 10
    while alive(pid) and time.time() < deadline:
        time.sleep(0.1)
    assert not alive(pid)


def test_the_jvm_heap_is_capped(env: ScienceWorldTextEnv) -> None:
    env.reset(seed=0)
    cmdline = Path(f"/proc/{env.simulator.pid}/environ").read_bytes().split(b"\0")
    options = next(item for item in cmdline if item.startswith(b"JAVA_TOOL_OPTIONS=")).decode()
    assert "-Xmx" in options and "-XX:hashCode=2" in options
    rss_kb = int(next(line for line in Path(f"/proc/{env.simulator.pid}/status").read_text().splitlines()
                      if line.startswith("VmRSS")).split()[1])
    assert rss_kb < 700_000  # ~2 GB with the JVM's default heap


def test_missing_java_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no java there
    shutdown_idle()  # an idle JVM of an earlier test would be reused without looking for java
    with pytest.raises(JavaNotFoundError, match="apt-get install -y openjdk-17-jre-headless"):
        ScienceWorldTextEnv(TASK, max_steps=5).reset(seed=0)
    done = subprocess.run(
        [sys.executable, "-m", "baselines.quick_only", "--task", "scienceworld/power-component", "--profile", "smoke",
         "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"],
        cwd=ROOT, capture_output=True, text=True, env={**os.environ, "LONDI_CACHE": str(tmp_path / "cache")},
        timeout=300,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ScienceWorld needs Java 17") and "Traceback" not in done.stderr


def test_java_options_keep_the_users_heap_and_add_determinism() -> None:
    assert java_options("") == "-Xmx512m -XX:+UnlockExperimentalVMOptions -XX:hashCode=2"
    assert java_options("-Xmx1g -Dfoo=1") == "-Xmx1g -Dfoo=1 -XX:+UnlockExperimentalVMOptions -XX:hashCode=2"


def test_the_same_variation_gives_the_same_episode_in_every_jvm() -> None:
    # Without constant hash codes the circuit of power-component lit at different steps in different JVMs.
    runs: list[list[tuple]] = []
    gold: list[str] = []
    for _ in range(2):
        env = ScienceWorldTextEnv(TASK, max_steps=30)
        try:
            _, info = env.reset(seed=2, options={"gold": not runs})
            gold = gold or info["gold"]
            runs.append([env.step(a)[:4] for a in gold])
        finally:
            env.close()
    assert runs[0] == runs[1]


def test_text_helpers() -> None:
    look = "This room is called the art studio. In it, you see: \n\tthe agent\n\ta picture\nYou also see:\n\tA door"
    assert room_of(look) == "art studio"
    assert room_of("This outside location is called the outside. Here you see: the agent") == "outside"
    assert flatten(look) == ("This room is called the art studio. In it, you see: the agent; a picture; "
                             "You also see: A door")


def test_contexts_read_the_observation_parts(env: ScienceWorldTextEnv) -> None:
    obs0, info = env.reset(seed=0, options={"gold": True})
    history = EpisodeHistory([obs0])
    for action in info["gold"][:3]:
        obs, *_ = env.step(action)
        history = EpisodeHistory(history.observations + [obs], history.actions + [action])
    quick = get_context("sw_now")(history)
    deep = get_context("sw_history")(history)
    assert quick.startswith("Task: Your task is to turn on") and f"Last action: {info['gold'][2]}." in quick
    assert "Inventory:" not in quick and "Inventory:" in deep
    assert "Time: 3." in deep and all(f"{a} ->" in deep for a in info["gold"][:3])
    assert len(deep) > len(quick)


def test_simplifications_are_a_task_option() -> None:
    """`[simplifications=none]` loads the full task (doors closed, no teleport); easy stays the default; a wrong
    name is refused before any JVM starts."""
    easy = get_task("scienceworld/find-living-thing")
    full = get_task("scienceworld/find-living-thing[simplifications=none,max_steps=40]")
    assert full.name == "scienceworld/find-living-thing[max_steps=40,simplifications=none]" and full.max_steps == 40
    assert full.eval_seeds == easy.eval_seeds and full.suite == "scienceworld"
    looks = {}
    for name, task in (("easy", easy), ("none", full)):
        env = task.make_env()
        try:
            env.reset(seed=easy.eval_seeds[0])
            looks[name] = (env.simulator.server.getSimplificationsUsed(), env.step("look around")[0])
        finally:
            env.close()
    assert "openDoors" in looks["easy"][0] and "teleportAction" in looks["easy"][0]
    assert looks["none"][0].strip() in ("", "None")
    assert "door to the hallway (that is closed)" in looks["none"][1]
    assert "door to the hallway (that is open)" in looks["easy"][1]
    with pytest.raises(ValueError, match="unknown simplification 'fast'"):
        get_task("scienceworld/find-living-thing[simplifications=fast]")
    with pytest.raises(ValueError, match="unknown option 'simplifications'; its options: levels, max_steps"):
        get_task("babyai/Mixed[simplifications=none]")  # a BabyAI task has options of its own, not ScienceWorld's
