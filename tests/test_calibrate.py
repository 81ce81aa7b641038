"""Priced costs: the calibration of the smoke pair (real models, real prompts), reuse of a fresh calibration and a
new one for a stale one, the price books' interpolation, the projected book from the committed H200 measurements,
the same priced seconds for two runs whose clocks differ, and the Switcher's training updates in the bill.
NVML is the only fake (there is no GPU here)."""

from __future__ import annotations

import copy
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import replace
from itertools import product
from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow import MlflowClient

from algos.londi_b import LondiB
from algos.switcher_sac import DiscreteSAC, SACConfig
from bench.calibrate import Args, main
from bench.common.tracking import DEFAULT_EXPERIMENT
from bench.envs.babyai_words import ACTIONS
from bench.envs.tasks import get_task
from bench.models.pair import ModelPair
from bench.running.calibrate import (
    FORMAT,
    CalibrationSettings,
    batch_grid,
    calibrate_suite,
    calibration_path,
    filler_prompt,
    fingerprint,
    load_or_calibrate,
    measure,
    token_count,
)
from bench.running.evaluate import SUMMARY_METRICS, evaluate, train_router
from bench.running.gpu import GpuMonitor, nvml_index
from bench.running.metering import PRICED
from bench.running.pricing import GPU_CHECK, PriceBooks, Prices, projected_prices
from bench.running.router import Router, StepView
from bench.running.runner import run_episodes

ROOT = Path(__file__).resolve().parent.parent
TINY = CalibrationSettings(warmup=0, repeats=2, prompt_episodes=1, router_hidden=(8, 32), router_batches=(1, 4),
                           update_hidden=(8, 32), update_batches=(4, 16), router_inner=2)
"""A calibration of a few seconds: two timed calls a point, one episode's prompts."""


@pytest.fixture(scope="module")
def calibrated(smoke_models: ModelPair, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Prices]:
    results = tmp_path_factory.mktemp("results")
    return results, load_or_calibrate("smoke", "babyai", smoke_models, results, settings=TINY, progress=False)


def read(results: Path) -> dict:
    return json.loads(calibration_path(results, "smoke").read_text())


def test_the_calibration_holds_each_models_grid_and_the_machine(calibrated: tuple, smoke_models: ModelPair) -> None:
    results, prices = calibrated
    data = read(results)
    assert data["format"] == FORMAT and data["profile"] == "smoke"
    part = data["suites"]["babyai"]
    assert part["batches"] == [1, 2, 4]  # the smoke profile's batch size
    assert {"platform", "cpu", "cores", "torch", "torch_threads", "device"} <= set(part["machine"])
    assert part["machine"]["torch"] == torch.__version__ and part["machine"]["cores"] == os.cpu_count()
    assert part["machine"]["device"] == "cpu" and part["machine"]["torch_threads"] == 1
    assert part["date"] and part["git_commit"] and "babyai/Mixed" in part["prompt_source"]
    for role in ("quick", "deepthink"):
        lm, entry = smoke_models.get(role), part["roles"][role]
        assert entry["model"] == lm.name and entry["fingerprint"] == fingerprint(lm)
        assert entry["mode"] == "score" and entry["candidates"] == list(ACTIONS)
        # the prompt lengths span the real prompts, and each point ran at exactly its batch and length
        assert entry["prompt_tokens"][0] == entry["real_prompts"]["min"]
        assert entry["prompt_tokens"][-1] == entry["real_prompts"]["max"]
        assert sorted((p["batch"], p["prompt_tokens"]) for p in entry["points"]) == sorted(
            product(part["batches"], entry["prompt_tokens"]))
        for p in entry["points"]:
            assert p["median_s"] > 0 and p["iqr_s"] >= 0 and p["repeats"] == 2
            assert prices.price(role, p["batch"], p["prompt_tokens"]) == pytest.approx(p["median_s"])
    for kind in ("inference", "update"):
        assert len(part["router"][kind]["points"]) == 4 and part["router"][kind]["fit"]["s_per_flop"] >= 0
    assert "| batch | prompt tokens |" in calibration_path(results, "smoke").with_suffix(".md").read_text()


def test_the_router_is_priced_as_overhead_plus_flops(calibrated: tuple) -> None:
    results, prices = calibrated
    fit = read(results)["suites"]["babyai"]["router"]["inference"]["fit"]
    assert prices.price("router", 4, 0, flops=1e6) == pytest.approx(fit["overhead_s"] + 1e6 * fit["s_per_flop"])
    assert prices.price("router", 4, 0, flops=1e8) >= prices.price("router", 4, 0, flops=1e6) > 0
    update = read(results)["suites"]["babyai"]["router"]["update"]["fit"]
    assert prices.router_update(1e7, steps=3) == pytest.approx(3 * update["overhead_s"] + 1e7 * update["s_per_flop"])


SENTINEL = 123.0


@pytest.mark.parametrize("change", ["none", "fingerprint", "machine", "format"])
def test_a_fresh_calibration_is_reused_and_a_stale_one_measured_again(
        calibrated: tuple, smoke_models: ModelPair, tmp_path: Path, change: str) -> None:
    data = read(calibrated[0])
    part = data["suites"]["babyai"]
    first = part["roles"]["quick"]["points"][0]
    first["median_s"] = SENTINEL  # survives only if the file is reused
    data["suites"]["scienceworld"] = copy.deepcopy(part)  # another suite's part, to be kept
    if change == "fingerprint":
        part["roles"]["deepthink"]["fingerprint"] = "another checkpoint"
    elif change == "machine":
        part["machine"]["cpu"] = "another CPU"
    elif change == "format":
        data["format"] = part["format"] = FORMAT - 1
    path = calibration_path(tmp_path, "smoke")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(data))
    prices = load_or_calibrate("smoke", "babyai", smoke_models, tmp_path, settings=TINY, progress=False,
                               buckets={"quick": (6, 9), "deepthink": (6, 9)})
    price = prices.price("quick", first["batch"], first["prompt_tokens"])
    after = json.loads(path.read_text())
    if change == "none":
        assert price == SENTINEL and after == data
        return
    assert price < 1.0 and after["suites"]["babyai"]["roles"]["quick"]["prompt_tokens"] == [6, 9]
    assert after["format"] == FORMAT and after["suites"]["babyai"]["machine"]["cpu"] != "another CPU"
    # only that suite's part is rewritten; a file of an older format is replaced whole
    assert ("scienceworld" in after["suites"]) == (change != "format")


def test_a_generating_model_is_timed_at_two_forced_output_lengths(smoke_models: ModelPair) -> None:
    lm = smoke_models.quick
    _, cost = lm.generate([filler_prompt(lm.tokenizer, 7)] * 2, max_tokens=5, min_tokens=5)
    assert cost.tokens_out.tolist() == [5, 5] and cost.tokens_in.tolist() == [7, 7]
    # ScienceWorld generates: the smoke BabyAI pair stands in (time depends on shapes, not on what was learnt)
    part = calibrate_suite("smoke", "scienceworld", smoke_models, TINY, buckets={"quick": (6, 12), "deepthink": (8,)},
                           progress=False)
    assert part["batches"] == [1, 2, 4]
    entry = part["roles"]["quick"]
    assert entry["mode"] == "generate" and entry["out_tokens"] == [2, 12]
    assert sorted((p["batch"], p["prompt_tokens"], p["out_tokens"]) for p in entry["points"]) == sorted(
        product([1, 2, 4], [6, 12], [2, 12]))
    prices = Prices.from_calibration(part)
    for p in entry["points"]:
        assert prices.price("quick", p["batch"], p["prompt_tokens"], p["out_tokens"]) == pytest.approx(p["median_s"])


def test_a_filler_prompt_has_exactly_the_tokens_asked_for(smoke_models: ModelPair) -> None:
    for role in ("quick", "deepthink"):
        tokenizer = smoke_models.get(role).tokenizer
        for tokens in (1, 2, 9, 33):
            assert token_count(tokenizer, filler_prompt(tokenizer, tokens)) == tokens


def test_batch_sizes_double_up_to_the_largest() -> None:
    assert batch_grid(40) == [1, 2, 4, 8, 16, 32, 40]
    assert batch_grid(8) == [1, 2, 4, 8] and batch_grid(1) == [1]


HAND_MADE = {
    "suite": "babyai", "machine": {"cpu": "hand-made", "device": "cpu"},
    "roles": {
        "quick": {"mode": "score", "points": [
            {"batch": 1, "prompt_tokens": 10, "median_s": 1.0}, {"batch": 1, "prompt_tokens": 30, "median_s": 2.0},
            {"batch": 4, "prompt_tokens": 10, "median_s": 3.0}, {"batch": 4, "prompt_tokens": 30, "median_s": 6.0}]},
        "deepthink": {"mode": "generate", "points": [
            {"batch": 1, "prompt_tokens": 10, "out_tokens": 2, "median_s": 1.2},
            {"batch": 1, "prompt_tokens": 10, "out_tokens": 12, "median_s": 2.2},
            {"batch": 2, "prompt_tokens": 10, "out_tokens": 2, "median_s": 2.4},
            {"batch": 2, "prompt_tokens": 10, "out_tokens": 12, "median_s": 4.4}]},
    },
    "router": {"inference": {"points": [{"flops": 0.0, "median_s": 1e-5}, {"flops": 1e6, "median_s": 2e-5}]},
               "update": {"points": [{"flops": 0.0, "median_s": 1e-4}, {"flops": 1e6, "median_s": 3e-4}]}},
}


def test_prices_are_exact_at_measured_points_and_linear_between_them() -> None:
    given = copy.deepcopy(HAND_MADE)
    prices = Prices.from_calibration(given)
    quick = lambda batch, tokens: prices.price("quick", batch, tokens)  # noqa: E731
    assert [quick(1, 10), quick(1, 30), quick(4, 10), quick(4, 30)] == pytest.approx([1.0, 2.0, 3.0, 6.0])
    assert quick(1, 20) == pytest.approx(1.5)  # halfway in prompt length
    assert quick(2, 10) == pytest.approx(1.0 + (3.0 - 1.0) / 3)  # a third of the way from batch 1 to 4
    assert quick(2, 20) == pytest.approx(1.5 + (4.5 - 1.5) / 3)  # both at once
    assert quick(1, 5) == quick(1, 10) and quick(4, 100) == quick(4, 30)  # clamped to the measured prompts
    assert quick(8, 10) == pytest.approx(3.0 + 4 * (3.0 - 1.0) / 3)  # beyond batch 4: the line of the last two
    # generation: base + tokens out x per token, fitted per (batch, prompt)
    deepthink = lambda batch, out: prices.price("deepthink", batch, 10, out)  # noqa: E731
    assert [deepthink(1, 2), deepthink(1, 12), deepthink(2, 12)] == pytest.approx([1.2, 2.2, 4.4])
    assert deepthink(1, 7) == pytest.approx(1.0 + 7 * 0.1) and deepthink(2, 0) == pytest.approx(2.0)
    assert deepthink(3, 2) == pytest.approx(3.0 + 2 * 0.3)
    assert prices.price("deepthink", 1, 500, 2) == pytest.approx(1.2)
    # the router: overhead + FLOPs x seconds per FLOP; its training per optimiser step
    assert prices.price("router", 3, 0, flops=5e5) == pytest.approx(1.5e-5)
    assert prices.router_update(1e6, steps=3) == pytest.approx(3e-4 + 2e-4)
    # a pure function of its arguments: the same answer again, the calibration untouched
    assert quick(2, 20) == quick(2, 20) and given == HAND_MADE
    assert prices.price_each("quick", 1, [10, 20, 30], [0, 0, 0], [0, 0, 0]).tolist() == pytest.approx(
        [1.0, 1.5, 2.0])


def test_a_role_without_a_price_is_refused_by_name() -> None:
    prices = Prices.from_calibration(HAND_MADE)
    with pytest.raises(ValueError, match=r"no price for role 'oracle'; priced roles: quick, deepthink, router"):
        prices.price("oracle", 1, 10)
    unrouted = Prices.from_calibration({**HAND_MADE, "router": {}})
    with pytest.raises(ValueError, match=r"no price for role 'router'; priced roles: quick, deepthink$"):
        unrouted.price("router", 1, 0, flops=10.0)
    with pytest.raises(ValueError, match="no price for router training updates"):
        unrouted.router_update(1e6, steps=3)


def test_the_projected_book_reads_the_committed_h200_measurements() -> None:
    rows = json.loads(GPU_CHECK.read_text())["flan_t5_shapes"]

    def per_call(model: str, suite: str, batch: int) -> float:
        row = next(r for r in rows if (r.get("model"), r.get("suite"), r.get("batch")) == (model, suite, batch))
        return row["gpu_s"] / row["calls"]

    babyai = projected_prices("babyai")
    large_1, large_16 = per_call("flan-t5-large-shape", "babyai", 1), per_call("flan-t5-large-shape", "babyai", 16)
    assert babyai.price("deepthink", 16, 59) == pytest.approx(large_16)
    assert babyai.price("deepthink", 4, 59) == pytest.approx(large_1 + 3 / 15 * (large_16 - large_1))
    assert babyai.price("quick", 1, 500) == pytest.approx(per_call("flan-t5-small-shape", "babyai", 1))
    scienceworld = projected_prices("scienceworld")
    assert scienceworld.price("deepthink", 8, 186, 8) == pytest.approx(
        per_call("flan-t5-large-shape", "scienceworld", 8))
    assert babyai.price("router", 8, 0, flops=1e9) == 0.0 and babyai.router_update(1e9, steps=3) == 0.0
    with pytest.raises(FileNotFoundError, match="gpu_check.py"):
        projected_prices("babyai", ROOT / "results" / "no_such_check.json")


class EvenSteps(Router):
    """DEEPTHINK on even steps: the same calls in every run."""

    name = "even_steps"

    def route(self, view: StepView) -> np.ndarray:
        return view.steps % 2 == 0


def test_two_runs_of_the_same_episodes_cost_the_same_priced_seconds_whatever_their_clocks(
        calibrated: tuple, smoke_models: ModelPair) -> None:
    pair = replace(smoke_models, prices=PriceBooks(calibrated[1], projected_prices("babyai")))
    task = get_task("babyai/Mixed")
    runs = [run_episodes(EvenSteps(), task, pair, task.eval_episode_seeds(0, 3), batch_size=2, progress=False)[0]
            for _ in range(2)]
    first, second = ([r.metrics() for r in results] for results in runs)
    for name in PRICED:
        assert [m[name] for m in first] == [m[name] for m in second]
        assert all(m[name] > 0 for m in first)
    assert [m["compute_s"] for m in first] != [m["compute_s"] for m in second]  # the clock moved, the price did not


def test_sac_update_flops_count_every_pass_of_an_update() -> None:
    sac = DiscreteSAC(6, SACConfig(hidden=8, batch_size=4))
    params = sum(p.numel() for p in sac.actor.parameters())
    assert sac.update_flops == (5 + 3 * 3) * 2 * params * 4  # 5 forward passes, 3 forward + backward (2x)
    rng = np.random.default_rng(0)
    for _ in range(4):
        sac.buffer.add(rng.random(6), 1, 0.5, rng.random(6), False, np.ones(2, np.float32))
    assert sac.update() and sac.updates == 1


def test_a_learned_routers_training_bill_includes_its_updates_priced(
        calibrated: tuple, smoke_models: ModelPair, tmp_path: Path) -> None:
    """LONDI-B (built on LONDI-SAC) trains on a priced pair: its updates are counted, priced and timed, its
    episodes' priced totals logged; an evaluation on an unpriced pair logs NaN, not 0."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    books = PriceBooks(calibrated[1], projected_prices("babyai"))
    task = get_task("babyai/Mixed")
    router = LondiB(budget=2, train_episodes=4, max_steps=task.max_steps)
    train_router(router, task, replace(smoke_models, prices=books), 0, batch_size=4, profile="smoke", sweep="priced",
                 exp_name="londi_b[budget=2]", tracking_uri=uri, progress=False)
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(DEFAULT_EXPERIMENT).experiment_id
    (run,) = client.search_runs([experiment], "tags.`londi.kind` = 'router_train'")
    m = run.data.metrics
    updates = router.stats["updates"]
    assert updates > 0 and m["router_updates"] == updates and m["router_optimizer_steps"] == 3 * updates
    assert m["router_update_flops"] == pytest.approx(updates * router.sac.update_flops)
    assert m["router_update_priced_s"] == pytest.approx(books.priced.router_update(m["router_update_flops"],
                                                                                   m["router_optimizer_steps"]))
    assert m["router_update_s"] > 0 and m["router_update_projected_gpu_s"] == 0.0
    assert m["total_priced_s"] > 0 and m["total_projected_gpu_s"] > 0 and "router_over_budget" in m
    results = evaluate(router, task, smoke_models, 0, 2, 2, "smoke", "unpriced", tracking_uri=uri, progress=False)
    assert math.isnan(results[0].metrics()["priced_s"]) and math.isnan(results[0].metrics()["priced_s_quick"])
    (run,) = client.search_runs([experiment], "tags.`londi.kind` = 'eval'")
    assert math.isnan(run.data.metrics["priced_s"]) and math.isnan(run.data.metrics["total_priced_s"])
    history = client.get_metric_history(run.info.run_id, "episode/priced_s")
    assert len(history) == 2 and all(math.isnan(h.value) for h in history)
    assert {f"{name}{part}" for name in PRICED for part in ("", "_quick", "_deepthink", "_router")} <= set(
        SUMMARY_METRICS)


class FakeNvml:
    """NVML of a GPU busy half the time at 100 W (the only stand-in: there is no GPU here)."""

    def __init__(self) -> None:
        self.started = 0.0

    def nvmlInit(self) -> None:
        self.started = time.perf_counter()

    def nvmlShutdown(self) -> None:
        pass

    def nvmlDeviceGetCount(self) -> int:
        return 1

    def nvmlDeviceGetHandleByIndex(self, index: int) -> str:
        return "gpu"

    def nvmlDeviceGetName(self, handle: str) -> str:
        return "Fake GPU"

    def nvmlDeviceGetUtilizationRates(self, handle: str) -> object:
        return type("Rates", (), {"gpu": 50.0, "memory": 0.0})()

    def nvmlDeviceGetPowerUsage(self, handle: str) -> int:
        return 100_000

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: str) -> int:
        return int(100_000 * (time.perf_counter() - self.started))  # mJ at 100 W


def test_on_a_gpu_each_point_also_gets_gpu_seconds_and_energy_per_call() -> None:
    point = measure(lambda: time.sleep(0.002), warmup=1, repeats=3, gpu=lambda: GpuMonitor(interval_s=0.01,
                                                                                          nvml=FakeNvml()),
                    gpu_span_s=0.1)
    assert point["gpu_calls"] >= max(3, math.floor(0.1 / point["median_s"]))
    assert point["gpu_s"] == pytest.approx(0.5 * point["median_s"], rel=0.6)  # half busy, per call
    assert point["gpu_energy_j"] == pytest.approx(100 * point["median_s"], rel=0.6)
    assert "gpu_unavailable" not in point


def test_bad_input_is_one_error_line_and_exit_status_2(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "bench.calibrate", "--profile", "nope", "--results-dir",
                           str(tmp_path)], capture_output=True, text=True, cwd=ROOT, timeout=120)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 2 and len(errors) == 1 and "Traceback" not in done.stderr
    assert "unknown profile 'nope'" in errors[0] and "smoke" in errors[0]
    with pytest.raises(ValueError, match="--suites nope: give one or more of babyai, scienceworld"):
        main(Args(profile="smoke", suites=("nope",), results_dir=tmp_path))


def test_a_torch_gpu_index_is_mapped_to_nvmls_through_cuda_visible_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,1")
    assert (nvml_index(0), nvml_index(1), nvml_index(2)) == (3, 1, 2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-8f1e")  # a UUID: NVML's order is kept
    assert nvml_index(0) == 0
