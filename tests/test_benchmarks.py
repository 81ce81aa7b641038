"""Speed benchmarks (`make bench`; skipped by `make test`): env steps and model decision latency.

The models are the default (cpu) profile's offline pair, trained first if not cached, so the
numbers are those of the pair `make reproduce` uses. `make bench` writes the JSON to results/.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.envs.babyai_text import ACTIONS
from bench.envs.contexts import EpisodeHistory, get_context
from bench.envs.tasks import get_task
from bench.models.lm import ActionLM


@pytest.fixture(scope="module")
def cpu_pair() -> dict[str, ActionLM]:
    from bench.models.cache import ensure_models
    from bench.models.profiles import get_profile

    quick, deepthink = ensure_models(get_profile("cpu"))
    return {"quick": ActionLM.load(quick), "deepthink": ActionLM.load(deepthink)}


def _prompts(lm: ActionLM, n: int) -> list[str]:
    """Prompts from real BabyAI-Text episodes (a few random steps in), in the model's own context."""
    build = get_context(lm.context)
    prompts = []
    for history in _histories(n):
        prompts.append(build(history))
    return prompts


def _histories(n: int, steps: int = 6) -> list[EpisodeHistory]:
    """Real BabyAI-Text episode histories, a few random steps in, with the episode memory."""
    env = get_task("babyai/Mixed").make_env()
    rng = np.random.default_rng(0)
    histories = []
    for seed in range(n):
        obs, info = env.reset(seed=1_000_000 + seed)
        history = EpisodeHistory(observations=[obs], memories=[info["memory"]])
        for _ in range(steps):
            action = int(rng.integers(3))
            obs, _, terminated, truncated, info = env.step(action)
            if terminated or truncated:
                break
            history = EpisodeHistory(history.observations + [obs], history.actions + [ACTIONS[action]],
                                     history.memories + [info["memory"]])
        histories.append(history)
    return histories


def test_env_steps(benchmark: pytest.FixtureRequest) -> None:
    env = get_task("babyai/Mixed").make_env()
    env.reset(seed=1_000_000)
    rng = np.random.default_rng(0)
    actions = rng.integers(0, 3, size=100_000)
    state = {"i": 0, "seed": 1_000_000}

    def step() -> None:
        _, _, terminated, truncated, _ = env.step(int(actions[state["i"] % len(actions)]))
        state["i"] += 1
        if terminated or truncated:
            state["seed"] += 1
            env.reset(seed=state["seed"])

    benchmark(step)


@pytest.mark.parametrize("role", ["quick", "deepthink"])
@pytest.mark.parametrize("batch", [1, 16])
def test_decision_latency(benchmark: pytest.FixtureRequest, cpu_pair: dict[str, ActionLM], role: str,
                          batch: int) -> None:
    lm = cpu_pair[role]
    prompts = _prompts(lm, batch)
    benchmark.extra_info.update(
        model=lm.name, batch=batch, torch_threads=torch.get_num_threads(),
        non_embedding_params=lm.size.non_embedding_params,
        flops_per_decision=float(lm.score(prompts, ACTIONS)[1].flops.mean()),
    )
    benchmark(lm.score, prompts, ACTIONS)


@pytest.mark.parametrize("encoder", ["words", "transformer"])
@pytest.mark.parametrize("batch", [1, 16])
def test_switcher_decision_cost(benchmark: pytest.FixtureRequest, cpu_pair: dict[str, ActionLM], batch: int,
                                encoder: str) -> None:
    """LONDI-SAC's Switcher per decision (reading the text into features, then the policy network, greedy),
    with the default hashed-words encoder and with the paper's small transformer, next to a QUICK call."""
    from algos.londi_sac import LondiSAC

    router = LondiSAC(encoder=encoder, max_steps=64)
    histories = _histories(batch)
    quick_flops = float(cpu_pair["quick"].score(_prompts(cpu_pair["quick"], batch), ACTIONS)[1].flops.mean())
    benchmark.extra_info.update(batch=batch, encoder=encoder, switcher_params=router.switcher_params,
                                flops_per_decision=router.switcher_flops, quick_flops_per_decision=quick_flops,
                                flops_vs_quick=router.switcher_flops / quick_flops)

    def decide() -> np.ndarray:
        states = np.stack([router.state(h, -1) for h in histories])
        return router.sac.greedy(states)

    benchmark(decide)


# ---------------------------------------------------------------- ScienceWorld


@pytest.fixture(scope="module")
def sw_env():
    from bench.envs.scienceworld_text import ScienceWorldTextEnv

    env = ScienceWorldTextEnv("power-component", max_steps=10**6)
    _, info = env.reset(seed=15, options={"gold": True})
    env.gold = info["gold"]
    yield env
    env.close()


def _rss_mb(pid: int) -> float:
    from pathlib import Path

    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    return int(next(line for line in status if line.startswith("VmRSS")).split()[1]) / 1024


@pytest.mark.parametrize("kind", ["reset", "step", "step_and_valid_actions"])
def test_scienceworld_env(benchmark: pytest.FixtureRequest, sw_env, kind: str) -> None:
    """ScienceWorld through the wrapper: a reset (loading a variation), a step (the simulator's step plus the
    observation's free look and inventory), and a step whose valid actions are enumerated too."""
    state = {"i": 0}
    sw_env.reset(seed=15)

    def step() -> None:
        gold = sw_env.gold
        _, _, terminated, truncated, _ = sw_env.step(gold[state["i"] % len(gold)])
        state["i"] += 1
        if kind == "step_and_valid_actions":
            sw_env.candidates()
        if terminated or truncated or state["i"] % len(gold) == 0:
            sw_env.reset(seed=15)

    if kind == "reset":
        benchmark(sw_env.reset, seed=15)
    else:
        benchmark(step)
    benchmark.extra_info.update(task="power-component", jvm_rss_mb=round(_rss_mb(sw_env.simulator.pid), 1))


@pytest.fixture(scope="module")
def sw_pair() -> dict[str, ActionLM]:
    from bench.models.cache import ensure_models
    from bench.models.profiles import get_profile

    quick, deepthink = ensure_models(get_profile("cpu"), suite="scienceworld")
    return {"quick": ActionLM.load(quick), "deepthink": ActionLM.load(deepthink)}


@pytest.mark.parametrize("role", ["quick", "deepthink"])
@pytest.mark.parametrize("batch", [1, 8])
def test_scienceworld_decision_latency(benchmark: pytest.FixtureRequest, sw_pair: dict[str, ActionLM], sw_env,
                                       role: str, batch: int) -> None:
    """A generated ScienceWorld action at batch 1 and 8 (8: the environments the runner keeps open)."""
    lm = sw_pair[role]
    obs, _ = sw_env.reset(seed=15)
    history = EpisodeHistory([obs])
    for action in sw_env.gold[:4]:
        obs, *_ = sw_env.step(action)
        history = EpisodeHistory(history.observations + [obs], history.actions + [action])
    prompts = [get_context(lm.context)(history)] * batch
    decision, cost = lm.generate(prompts)
    benchmark.extra_info.update(model=lm.name, batch=batch, non_embedding_params=lm.size.non_embedding_params,
                                flops_per_decision=float(cost.flops.mean()), tokens_in=int(cost.tokens_in[0]),
                                tokens_out=int(cost.tokens_out[0]), action=decision.actions[0])
    benchmark(lm.generate, prompts)


# ---------------------------------------------------------------- routers and tracking


@pytest.mark.parametrize("router", ["random_switch[p=0.5]", "confidence_cascade[threshold=0.5]", "swiftsage",
                                    "londi_sac[c=0.01]", "londi_b[budget=4]"])
def test_router_overhead(benchmark: pytest.FixtureRequest, cpu_pair: dict[str, ActionLM], router: str) -> None:
    """One routing decision over 16 running episodes, the models' decisions already made (cached in the view,
    as the runner reuses them): what a router adds to a step beyond the model calls."""
    from bench.running.metering import Meter
    from bench.running.router import SlotDecision, StepView
    from bench.running.routers import router_spec

    histories = _histories(16)
    made = router_spec(router).make()
    made.seed(0)
    if hasattr(made, "prepare"):  # what the runner does first: the task's step limit (LONDI's progress feature)
        made.prepare(get_task("babyai/Mixed"))
    for slot in range(16):
        made.start_episode(slot, slot)
    meter = Meter(16)
    # Real decisions of the cpu pair, made once: the benchmark times the router only.
    decided = {}
    for role in ("quick", "deepthink"):
        lm = cpu_pair[role]
        decision, _ = lm.decide(_prompts(lm, 16), [list(ACTIONS)] * 16)
        decided[role] = {s: SlotDecision(decision.actions[s], float(decision.margin[s]), float(decision.entropy[s]),
                                         decision.scores[s]) for s in range(16)}

    def route() -> np.ndarray:
        view = StepView(slots=list(range(16)), histories=histories, infos=[{}] * 16, last_rewards=np.zeros(16),
                        steps=np.array([len(h.actions) for h in histories]), meter=meter,
                        _decide=lambda role, slots: {s: decided[role][s] for s in slots})
        return made.route(view)

    benchmark.extra_info.update(router=router, episodes=16)
    benchmark(route)


@pytest.mark.parametrize("what", ["episode", "run"])
def test_mlflow_logging_overhead(benchmark: pytest.FixtureRequest, tmp_path, what: str) -> None:
    """What tracking costs, on a local sqlite store: one episode's metrics as evaluate logs them (buffered,
    written in batches: the mean is the per-episode cost), and one run opened with its parameters, given its
    summary and an episodes.jsonl artifact, and closed."""
    from bench.common.tracking import EPISODE_PREFIX, RunLogger
    from bench.running.evaluate import SUMMARY_METRICS

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    episode = {EPISODE_PREFIX + k: 1.0 for k in (*SUMMARY_METRICS, "env_seed")}
    params = {f"param_{i}": i for i in range(40)}  # evaluate logs about 40
    benchmark.extra_info.update(metrics_per_episode=len(episode), store="sqlite")
    if what == "episode":
        run = RunLogger("bench-episode", params, uri=uri)
        step = {"i": 0}

        def log_episode() -> None:
            run.log_metrics(episode, step=step["i"])
            step["i"] += 1

        benchmark(log_episode)
        run.flush()
    else:
        rows = [{"episode": i, "trace": [{"step": s, "action": "go forward"} for s in range(20)]} for i in range(40)]

        def one_run() -> None:
            with RunLogger("bench-run", params, uri=uri) as run:
                run.log_metrics({k.removeprefix(EPISODE_PREFIX): v for k, v in episode.items()})
                run.log_json_lines(rows, "episodes.jsonl")

        benchmark(one_run)
