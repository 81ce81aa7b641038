"""A served QUICK or DEEPTHINK, for real: `transformers serve` started on 127.0.0.1 by the test with a causal checkpoint
trained here, episodes run through it, and the server stopped by its process id. It returns no log-probabilities, so
the backend generates and maps onto the candidates; the log-probability path is checked on recorded vLLM-format
answers."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import mlflow
import numpy as np
import pytest

from baselines.deepthink_only import DeepthinkOnly
from bench.common.tracking import DEFAULT_EXPERIMENT
from bench.envs.babyai_text import ACTIONS
from bench.envs.tasks import get_task
from bench.models.causal import CausalActionLM
from bench.models.loader import load_lm, load_model
from bench.models.pair import ModelPair
from bench.models.served import Endpoint, ServedLM, ServedModelError, candidate_logprob, nearest
from bench.models.train import ModelRecipe, train
from bench.running.calibrate import CalibrationSettings, mode_of, price_books
from bench.running.evaluate import evaluate
from bench.running.router import StepView

PROMPTS = [
    "go to the red ball. Actions: none. Now: You see a wall 2 steps forward.",
    "pick up the blue key. Actions: turn left. Now: You see a blue key 1 step left.",
    "open the door. Actions: none. Now: You see a red door 3 steps forward.",
    "go to the grey box. Actions: go forward. Now: You see a grey box 1 step right.",
]
ANSWERS = ["turn left", "pick up", "go forward", "turn right"]
SERVE = shutil.which("transformers", path=str(Path(sys.executable).parent)) or "transformers"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(checkpoint: Path, log: Path) -> tuple[subprocess.Popen, str]:
    """`transformers serve` of `checkpoint` on a free port of 127.0.0.1, up and answering; its process and URL."""
    port = _free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen([SERVE, "serve", "--device", "cpu", "--host", "127.0.0.1", "--port", str(port),
                                str(checkpoint)], stdout=log.open("w"), stderr=subprocess.STDOUT, env=env,
                               start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"transformers serve exited ({process.returncode}): {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as reply:
                if reply.status == 200:
                    return process, f"http://127.0.0.1:{port}/v1"
        except OSError:
            time.sleep(0.5)
    _stop(process)
    raise RuntimeError(f"transformers serve did not answer in 120 s: {log.read_text()[-2000:]}")


def _stop(process: subprocess.Popen) -> None:
    """Stop the server this test started, by its process id (its own session: the uvicorn workers with it)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny causal model trained here until it answers its four prompts (greedy generation is then not trivial)."""
    out = tmp_path_factory.mktemp("causal") / "model"
    recipe = ModelRecipe(role="deepthink", context="history", d_model=32, d_ff=64, layers=1, heads=2, steps=150,
                         batch_size=4, lr=3e-3, warmup_steps=10, arch="llama")
    data = list(zip(PROMPTS, ANSWERS, strict=True))
    meta = train(recipe, data, data, out, name="served-tiny", progress=False)
    assert meta["heldout_step_accuracy"] == 1.0
    return out


@pytest.fixture(scope="module")
def serving(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[subprocess.Popen, str]]:
    """The module's server: its process and base URL (the last test of the module stops it mid-run)."""
    process, url = _serve(checkpoint, tmp_path_factory.mktemp("serve") / "serve.log")
    try:
        yield process, url
    finally:
        _stop(process)


@pytest.fixture
def server(serving: tuple[subprocess.Popen, str]) -> str:
    assert serving[0].poll() is None, "the module's server was stopped by an earlier test"
    return serving[1]


def test_served_and_local_pick_the_same_actions(checkpoint: Path, server: str) -> None:
    served = load_model(f"{server}#context=history")
    assert isinstance(served, ServedLM) and served.scoring == "generate"  # transformers serve: no log-probabilities
    assert served.model_id == str(checkpoint)
    local = load_lm(checkpoint)
    assert isinstance(local, CausalActionLM)
    prompts = PROMPTS + ["go to the purple ball. Actions: pick up. Now: You see a wall 1 step left."]
    generated, local_cost = local.generate(prompts)
    decision, cost = served.decide(prompts, [ACTIONS] * len(prompts))
    expected = [ACTIONS[nearest(text, ACTIONS)[0]] for text in generated.actions]
    assert decision.actions == expected
    assert decision.actions[:4] == ANSWERS
    np.testing.assert_array_equal(cost.tokens_in, local_cost.tokens_in)  # the server's count is the local one
    np.testing.assert_array_equal(cost.tokens_out, local_cost.tokens_out)
    assert np.isnan(cost.flops).all()  # the server reports none and no parameter count was given
    assert served.stats.requests == len(prompts) + 1 and served.stats.retries == 0  # + the scoring probe
    with_params = ServedLM(f"{server}#context=history&params=1000")
    assert with_params.decide(prompts[:1], [ACTIONS])[1].flops[0] == 2 * 1000 * (cost.tokens_in[0] + cost.tokens_out[0])


def test_episodes_run_through_the_server_priced_and_recorded(checkpoint: Path, server: str, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    local = load_lm(checkpoint)
    models = ModelPair(local, load_model(f"{server}#context=history&concurrency=4"))
    settings = CalibrationSettings(warmup=0, repeats=2, prompt_episodes=1, router_hidden=(8, 32), router_batches=(1, 4),
                                   update_hidden=(8, 32), update_batches=(4, 16), router_inner=2)
    books = price_books("smoke", "babyai", models, tmp_path, settings=settings, progress=False)
    calibration = json.loads((tmp_path / "smoke" / "calibration.json").read_text())["suites"]["babyai"]["roles"]
    assert calibration["deepthink"]["mode"] == "generate"  # timed through the server
    assert calibration["deepthink"]["source"].startswith(server) and calibration["deepthink"]["points"]
    models = dataclasses.replace(models, prices=books)
    results = evaluate(DeepthinkOnly(), get_task("babyai/GoToLocal"), models, seed=0, episodes=2, batch_size=2,
                       profile="smoke", sweep="served", tracking_uri=uri, progress=False)
    assert len(results) == 2
    client = mlflow.MlflowClient(uri)
    run = client.search_runs([client.get_experiment_by_name(DEFAULT_EXPERIMENT).experiment_id])[0]
    assert run.data.params["deepthink.served.scoring"] == "generate"
    assert run.data.params["deepthink.served.model_id"] == str(checkpoint)
    steps = sum(r.steps for r in results)
    assert run.data.metrics["deepthink_server_requests"] == steps  # one request per DEEPTHINK decision
    assert run.data.metrics["deepthink_server_retries"] == 0
    assert run.data.metrics["deepthink_server_latency_p50_s"] > 0
    assert run.data.metrics["total_priced_s_deepthink"] > 0  # priced from the calibration, not the clock
    models.deepthink.tokenizer = None  # a served model whose tokenizer this machine lacks cannot be priced
    with pytest.raises(ServedModelError, match="#tokenizer=PATH_OR_ID"):
        mode_of(models.deepthink, get_task("babyai/GoToLocal"))


def test_a_wrong_url_or_model_fails_at_load(server: str) -> None:
    with pytest.raises(ServedModelError, match="cannot reach the model server"):
        ServedLM(f"http://127.0.0.1:{_free_port()}/v1")
    with pytest.raises(ServedModelError, match="does not serve 'no-such-model'; it serves: "):
        ServedLM(f"{server}#model=no-such-model")
    with pytest.raises(ServedModelError, match="unknown served-model option colour"):
        Endpoint.parse(f"{server}#colour=red")
    with pytest.raises(ServedModelError, match="scoring must be one of auto, logprobs, generate"):
        Endpoint.parse(f"{server}#scoring=beam")


class _StopsTheServer(DeepthinkOnly):
    """DEEPTHINK-only that ends the server's process after the first episodes finished (a server that goes away)."""

    def __init__(self, process: subprocess.Popen, after_steps: int) -> None:
        super().__init__()
        self.process, self.after_steps, self.steps = process, after_steps, 0

    def route(self, view: StepView) -> np.ndarray:
        self.steps += 1
        if self.steps == self.after_steps:
            _stop(self.process)
        return super().route(view)


def test_a_server_that_goes_away_mid_run_stops_it_with_one_error_and_keeps_the_finished_episodes(
        checkpoint: Path, serving: tuple[subprocess.Popen, str], tmp_path: Path) -> None:
    """The module's last test with its server: the server is stopped during the second episode."""
    process, url = serving
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    models = ModelPair(load_lm(checkpoint), ServedLM(f"{url}#context=history&retries=1&timeout=5"))
    with pytest.raises(ServedModelError, match="stopped answering .* --resume"):
        evaluate(_StopsTheServer(process, after_steps=70), get_task("babyai/GoToLocal"), models, seed=0,
                 episodes=4, batch_size=1, profile="smoke", sweep="gone", tracking_uri=uri, progress=False)
    client = mlflow.MlflowClient(uri)
    run = client.search_runs([client.get_experiment_by_name(DEFAULT_EXPERIMENT).experiment_id])[0]
    assert run.info.status == "FAILED"
    logged = client.get_metric_history(run.info.run_id, "episode/reward")
    assert 1 <= len(logged) < 4  # the episodes finished before the server went are in the store
    assert models.deepthink.stats.failures == 1 and models.deepthink.stats.retries == 1


def test_candidates_are_scored_from_recorded_vllm_log_probabilities() -> None:
    """A completions answer as vLLM gives it for `echo=True, logprobs=1, max_tokens=1`: the prompt's tokens with their
    offsets and log-probabilities (None for the first), then the generated token."""
    text = "open the door.</s>toggle"
    reply = SimpleNamespace(
        usage=SimpleNamespace(prompt_tokens=6),
        choices=[SimpleNamespace(logprobs=SimpleNamespace(
            text_offset=[0, 5, 9, 13, 14, 18, 24],
            token_logprobs=[None, -1.5, -0.5, -0.25, -3.0, -0.75, -9.0],
        ))])
    # separator (</s>, offsets 14-18) excluded; the candidate "toggle" and the generated token (offset 24) excluded
    assert candidate_logprob(reply, start=len("open the door.</s>"), end=len(text)) == (-0.75, 6)
    # a tokenizer that joins the separator's space to the candidate's first word: that token counts
    spaced = "Action: go forward"
    joined = SimpleNamespace(usage=SimpleNamespace(prompt_tokens=4), choices=[SimpleNamespace(logprobs=SimpleNamespace(
        text_offset=[0, 6, 7, 10], token_logprobs=[None, -0.5, -1.0, -2.0]))])
    assert candidate_logprob(joined, start=len("Action: "), end=len(spaced)) == (-3.0, 4)
    empty = SimpleNamespace(usage=None, choices=[SimpleNamespace(logprobs=None)])
    with pytest.raises(ServedModelError, match="#scoring=generate"):
        candidate_logprob(empty, 0, 1)
