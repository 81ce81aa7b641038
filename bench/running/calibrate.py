"""Calibration: what each model's decision costs on this machine, measured once, in isolation, for pricing.

For one suite's pair, each model is timed on its real call path (`ActionLM.decide` scoring the task's fixed
candidate list on BabyAI-Text, `ActionLM.generate` on ScienceWorld) at every batch size 1, 2, 4, ... up to
the largest a sweep runs (the profile's batch size; ScienceWorld's at most `TaskSpec.max_slots`) and at a few
prompt lengths: warm-up calls first, then repeated timed calls, the median and the interquartile range kept.
A dense model's time depends on the shapes of a call, not on its text, so the prompts are filler of an exact
token length in the model's own tokenizer. Generation is forced to two output lengths (`out_tokens`), so
that a call's price is base + tokens out x per token (bench.running.pricing).

The prompt lengths (`buckets`, three per model: the shortest, the median and the longest) are taken from real
prompts that each model's own context builds: BabyAI random walks on babyai/Mixed (episodes that wander, as
failing ones do, carry the longest memories), ScienceWorld gold paths of power-component (random actions end
its episodes in a few steps). Longer prompts are priced as the longest measured.

The router (the Switcher, a small MLP: algos/switcher_sac.py) is priced as overhead + FLOPs x seconds per FLOP,
from a torch MLP of its shape timed in inference (its decisions) and in training (forward, backward and an
Adam step: its updates), at two sizes and two batch sizes each.

On CUDA the clock is read after a device synchronisation and a further block of calls (at least `gpu_span_s`
seconds, NVML updates its utilisation every 1/6 s) is run under a `GpuMonitor`: GPU-seconds and energy per call.

On a CPU the models run on one torch thread while measured (`threads`): a call's seconds on one core are its
CPU-seconds, which another process on the machine barely moves, where a call on two threads waits at every
parallel region for the thread pushed off its core. Priced seconds are thus single-core seconds.

The result is `<results_dir>/<profile>/calibration.json` (and a readable calibration.md), one part per suite,
each with the machine it describes. `load_or_calibrate` reuses a suite's part while it still describes this
machine and these checkpoints, and measures it again otherwise.
"""

from __future__ import annotations

import gc
import hashlib
import itertools
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from bench.common.provenance import REPO_ROOT, git_commit
from bench.envs.babyai_words import ACTIONS
from bench.envs.contexts import EpisodeHistory, get_context
from bench.envs.tasks import TaskSpec, get_task
from bench.models.lm import ActionLM
from bench.models.pair import MODELS, ModelPair
from bench.models.profiles import get_profile
from bench.models.served import ServedLM, ServedModelError
from bench.running.gpu import GpuMonitor, nvml_index
from bench.running.metering import synchronize
from bench.running.pricing import LinearCost, PriceBooks, Prices, projected_prices

FORMAT = 1
"""Bump when what a calibration measures or how it is stored changes: an older file is then measured again."""
FILE = "calibration.json"
SUITE_TASKS = {"babyai": "babyai/Mixed", "scienceworld": "scienceworld/power-component"}
"""The task whose prompts set each suite's prompt lengths, and whose limits set its batch sizes."""
MACHINE_KEYS = ("cpu", "cores", "torch", "device", "device_name")
"""What a calibration must share with this machine to be reused."""
ROUTER_INPUTS = 261
"""The default Switcher's state: 256 hashed-word buckets, the episode's progress and four cues (algos/londi_sac.py)."""
FILLER_WORDS = ("the", "a", "to", "you", "see", "is")


@dataclass(frozen=True)
class CalibrationSettings:
    """How much a calibration measures (per profile: SETTINGS)."""

    warmup: int = 2
    """untimed calls before each point's timed ones (after one that reads the call's shape)"""
    repeats: int = 9
    """timed calls per point: the median and the interquartile range are kept"""
    out_tokens: tuple[int, ...] = (2, 12)
    """output lengths a generating model is forced to: seconds = base + tokens x per token, fitted through them"""
    buckets: int = 3
    """prompt lengths per model, spread over the real prompts' range (shortest, median, longest)"""
    prompt_episodes: int = 8
    """episodes whose prompts set the prompt lengths"""
    router_hidden: tuple[int, ...] = (64, 512)
    router_batches: tuple[int, ...] = (1, 32)
    update_hidden: tuple[int, ...] = (64, 256)
    update_batches: tuple[int, ...] = (32, 128)
    router_inner: int = 20
    """router calls per timed repeat (each takes tens of microseconds: one alone is below the clock's noise)"""
    gpu_span_s: float = 1.0
    """on CUDA, the least seconds of calls under the NVML monitor per point"""
    threads: int | None = 1
    """torch threads while measuring on a CPU (None: as set). One, by default: a call's seconds on one core are its
    CPU-seconds, and they hold on a shared machine, where a call on two threads waits at every parallel region for
    the thread the other process has pushed off its core (measured here: 2 ms on one thread under load, 2-570 ms
    on two)"""


SETTINGS = {
    "smoke": CalibrationSettings(warmup=1, repeats=3, prompt_episodes=2, router_inner=5, gpu_span_s=0.3),
    "cpu": CalibrationSettings(),
    "paper": CalibrationSettings(warmup=3, repeats=10, threads=None),
}


def settings_for(profile_name: str) -> CalibrationSettings:
    get_profile(profile_name)  # an unknown profile is refused with the known ones
    return SETTINGS.get(profile_name, CalibrationSettings())


def batch_grid(largest: int) -> list[int]:
    """1, 2, 4, ... below `largest`, and `largest` itself."""
    if largest < 1:
        raise ValueError(f"the largest batch must be >= 1, got {largest}")
    sizes = [1 << k for k in range(largest.bit_length()) if 1 << k < largest]
    return sizes + [largest]


def suite_task(suite: str) -> TaskSpec:
    if suite not in SUITE_TASKS:
        raise ValueError(f"unknown suite {suite!r}; suites: {', '.join(SUITE_TASKS)}")
    return get_task(SUITE_TASKS[suite])


def suite_batches(profile_name: str, suite: str) -> list[int]:
    """The batch sizes a sweep of `suite` runs at: up to the profile's batch size, and the task's slot limit."""
    task = suite_task(suite)
    largest = get_profile(profile_name).batch_size
    return batch_grid(min(largest, task.max_slots or largest))


# --- the machine and the checkpoints a calibration describes --------------------------------------------------
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(device: torch.device) -> dict[str, Any]:
    return {"platform": platform.platform(), "cpu": cpu_model(), "cores": os.cpu_count(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "device": device.type,
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else None}


def fingerprint(lm: Any) -> str:
    """A hash of a model's weights (and class): another checkpoint gives another fingerprint."""
    if not isinstance(lm, ActionLM):
        return type(lm).__name__
    digest = hashlib.sha256(type(lm.model).__name__.encode())
    for name, tensor in sorted(lm.model.state_dict().items()):
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().reshape(-1).contiguous().cpu().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def source_of(lm: Any) -> str:
    """Where a model was loaded from: a hub name, or a path (relative to the checkout when inside it, so that a
    committed calibration names no one's home folder)."""
    source = str(getattr(lm, "source", lm.name))
    path = Path(source).resolve() if Path(source).exists() else None
    return str(path.relative_to(REPO_ROOT)) if path is not None and path.is_relative_to(REPO_ROOT) else source


def mode_of(lm: Any, task: TaskSpec) -> str:
    """How a model's calls are priced: scored candidates, generated text, or free (the random policy). A served model
    that generates and maps onto the candidates is priced as a generating one; it must bring its tokenizer."""
    if isinstance(lm, ServedLM):
        if lm.tokenizer is None:
            raise ServedModelError(
                f"cannot price the served model {lm.model_id!r}: its prompts' lengths need its tokenizer, which is "
                f"neither a local checkpoint nor in the Hugging Face cache here; name one with #tokenizer=PATH_OR_ID")
        return "score" if task.action_mode == "choose" and lm.scoring == "logprobs" else "generate"
    if not isinstance(lm, ActionLM):
        return "free"  # the random policy computes nothing
    return "score" if task.action_mode == "choose" else "generate"


# --- prompts ------------------------------------------------------------------------------------------------
def token_count(tokenizer: Any, text: str) -> int:
    return min(len(tokenizer(text)["input_ids"]), tokenizer.model_max_length)


def filler_prompt(tokenizer: Any, tokens: int) -> str:
    """A text that `tokenizer` reads as exactly `tokens` tokens (end-of-sequence included): one word repeated."""
    specials = len(tokenizer("")["input_ids"])
    words = itertools.chain(FILLER_WORDS, (tokenizer.decode([i]).strip() for i in range(len(tokenizer))))
    for word in words:
        if word.isalpha() and all(len(tokenizer(" ".join([word] * k))["input_ids"]) == specials + k for k in (1, 2, 5)):
            text = " ".join([word] * max(0, tokens - specials))
            if len(tokenizer(text)["input_ids"]) == tokens:
                return text
            break
    raise ValueError(f"cannot build a prompt of exactly {tokens} tokens with this tokenizer")


def prompt_lengths(suite: str, pair: ModelPair, episodes: int, seed: int = 0) -> dict[str, list[int]]:
    """Token lengths of real prompts of each model (its own context, its own tokenizer) on the suite's task."""
    task = suite_task(suite)
    histories: list[EpisodeHistory] = []
    env = task.make_env()
    try:
        if suite == "babyai":
            rng = np.random.default_rng(seed)
            for episode in range(episodes):
                obs, info = env.reset(seed=int(task.train_seeds[episode]))
                history = EpisodeHistory([obs], [], [info.get("memory", [])])
                done = False
                while not done:
                    histories.append(history)
                    action = str(rng.choice(env.candidates()))
                    obs, _, terminated, truncated, info = env.step(action)
                    history = EpisodeHistory(history.observations + [obs], history.actions + [action],
                                             history.memories + [info.get("memory", [])])
                    done = terminated or truncated
        else:
            from bench.models.demos import gold_episode

            for variation in task.train_seeds[:episodes]:
                demo = gold_episode(env, task.levels[0], int(variation))
                if demo is None:
                    continue
                histories += [EpisodeHistory(demo.observations[:t + 1], demo.actions[:t])
                              for t in range(len(demo.observations))]
    finally:
        env.close()
    if not histories:
        raise RuntimeError(f"no prompts of {task.name} to take prompt lengths from")
    lengths: dict[str, list[int]] = {}
    for role in MODELS:
        lm = pair.get(role)
        if getattr(lm, "tokenizer", None) is not None:  # a local model, or a served one with its tokenizer here
            build = get_context(lm.context)
            lengths[role] = [token_count(lm.tokenizer, build(h)) for h in histories]
    return lengths


def buckets_of(lengths: Sequence[int], count: int) -> list[int]:
    """`count` prompt lengths spread over the observed range: its quantiles 0, ..., 1 (shortest, median, longest)."""
    return sorted({int(round(v)) for v in np.quantile(np.asarray(lengths), np.linspace(0, 1, count))})


# --- measuring ----------------------------------------------------------------------------------------------
def measure(call: Callable[[], Any], warmup: int, repeats: int, devices: tuple[torch.device, ...] = (),
            inner: int = 1, gpu: Callable[[], GpuMonitor] | None = None, gpu_span_s: float = 1.0) -> dict[str, Any]:
    """Seconds of one `call`: `warmup` untimed calls, then `repeats` timed ones (each `inner` calls, divided), with
    CUDA synchronised before the clock is read; median and interquartile range. With `gpu`, a further block of
    calls (at least `gpu_span_s` seconds) under that NVML monitor gives GPU-seconds and energy per call."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    for _ in range(warmup):
        call()
    synchronize(devices)
    collecting = gc.isenabled()
    gc.disable()  # a collection inside a timed call would charge it for other objects' garbage
    try:
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            for _ in range(inner):
                call()
            synchronize(devices)
            times.append((time.perf_counter() - started) / inner)
        q1, median, q3 = np.percentile(times, [25, 50, 75])
        point: dict[str, Any] = {"median_s": float(median), "iqr_s": float(q3 - q1), "repeats": repeats}
        if gpu is not None:
            calls = max(repeats, math.ceil(gpu_span_s / max(float(median), 1e-6)))
            monitor = gpu().start()
            try:
                for _ in range(calls):
                    call()
                synchronize(devices)
            finally:
                reading = monitor.stop()
            point.update(gpu_calls=calls,
                         gpu_s=None if reading.gpu_s is None else reading.gpu_s / calls,
                         gpu_energy_j=None if reading.gpu_energy_j is None else reading.gpu_energy_j / calls)
            if not reading.available:
                point["gpu_unavailable"] = reading.unavailable_reason
    finally:
        if collecting:
            gc.enable()
    return point


def calibrate_model(lm: Any, mode: str, batches: Sequence[int], prompts: Sequence[int],
                    settings: CalibrationSettings, candidates: Sequence[str] = ACTIONS,
                    gpu: Callable[[], GpuMonitor] | None = None, bar: tqdm | None = None) -> list[dict[str, Any]]:
    """Every measured point of one model: (batch, prompt tokens[, out tokens]) -> median and IQR seconds."""
    if mode == "free":
        return []
    points = []  # candidates: BabyAI-Text's six actions, the list BabyAITextEnv.candidates always gives
    outs = settings.out_tokens if mode == "generate" else (0,)
    for batch in batches:
        for length in prompts:
            texts = [filler_prompt(lm.tokenizer, length)] * batch
            for out in outs:
                if mode == "score":
                    def call(texts: list[str] = texts) -> tuple[Any, Any]:
                        return lm.decide(texts, [candidates] * len(texts))
                else:
                    def call(texts: list[str] = texts, out: int = out) -> tuple[Any, Any]:
                        return lm.generate(texts, max_tokens=out, min_tokens=out)
                _, cost = call()  # also the first warm-up: the shape the model really ran
                point = {"batch": batch, "prompt_tokens": int(np.max(cost.tokens_in))}
                if mode == "generate":
                    point["out_tokens"] = int(np.max(cost.tokens_out))
                point.update(measure(call, settings.warmup, settings.repeats, (lm.device,), gpu=gpu,
                                     gpu_span_s=settings.gpu_span_s))
                points.append(point)
                if bar is not None:
                    bar.update()
    return points


def switcher_mlp(hidden: int) -> nn.Sequential:
    """A network of the Switcher's shape (two hidden layers, two outputs)."""
    return nn.Sequential(nn.Linear(ROUTER_INPUTS, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, 2))


def calibrate_router(settings: CalibrationSettings, bar: tqdm | None = None) -> dict[str, Any]:
    """Seconds of the router's network on this CPU (the Switcher runs there whatever device the models use):
    inference (its decisions, FLOPs 2 x params x batch) and training steps (forward, backward and an Adam step,
    FLOPs 3 x that), each fitted as overhead + FLOPs x seconds per FLOP."""
    result: dict[str, Any] = {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        for kind, sizes, batches in (("inference", settings.router_hidden, settings.router_batches),
                                     ("update", settings.update_hidden, settings.update_batches)):
            points = []
            for hidden in sizes:
                net = switcher_mlp(hidden)
                params = sum(p.numel() for p in net.parameters())
                optimiser = torch.optim.Adam(net.parameters(), lr=1e-3)
                for batch in batches:
                    x = torch.randn(batch, ROUTER_INPUTS)
                    if kind == "inference":
                        def call(x: torch.Tensor = x, net: nn.Module = net) -> np.ndarray:
                            with torch.no_grad():
                                return torch.softmax(net(x), dim=-1).numpy()
                        flops = 2.0 * params * batch
                    else:
                        def call(x: torch.Tensor = x, net: nn.Module = net, optimiser: Any = optimiser) -> None:
                            optimiser.zero_grad()
                            net(x).pow(2).mean().backward()
                            optimiser.step()
                        flops = 3 * 2.0 * params * batch
                    point = {"hidden": hidden, "params": params, "batch": batch, "flops": flops}
                    point.update(measure(call, settings.warmup + 2, settings.repeats, inner=settings.router_inner))
                    points.append(point)
                    if bar is not None:
                        bar.update()
            fit = LinearCost.fit([p["flops"] for p in points], [p["median_s"] for p in points])
            result[kind] = {"points": points, "fit": fit.as_dict()}
    return result


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run with `threads` torch threads (None: as set), then as before."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _gpu_for(device: torch.device) -> Callable[[], GpuMonitor] | None:
    if device.type != "cuda":
        return None
    return lambda: GpuMonitor(device_index=nvml_index(device.index or 0))


def calibrate_suite(profile_name: str, suite: str, pair: ModelPair, settings: CalibrationSettings | None = None,
                    buckets: dict[str, Sequence[int]] | None = None, progress: bool = True,
                    gpu: Callable[[], GpuMonitor] | None = None) -> dict[str, Any]:
    """Measure one suite's pair and the router: the suite's part of calibration.json.

    `buckets` (role -> prompt lengths) replaces the lengths taken from real prompts; `gpu` the NVML monitor of a
    CUDA device (default: one for the models' device when it is CUDA, none on a CPU)."""
    settings = settings or settings_for(profile_name)
    task = suite_task(suite)
    batches = suite_batches(profile_name, suite)
    device = pair.deepthink.device
    gpu = gpu or _gpu_for(device)
    started, load = time.perf_counter(), os.getloadavg()[0]
    if load > (os.cpu_count() or 1):
        print(f"calibration: this machine is busy (load {load:.1f} on {os.cpu_count()} cores); the models are "
              f"measured on {settings.threads or torch.get_num_threads()} thread(s)", file=sys.stderr)
    observed: dict[str, list[int]] = {}
    if buckets is None:
        observed = prompt_lengths(suite, pair, settings.prompt_episodes)
        buckets = {role: buckets_of(lengths, settings.buckets) for role, lengths in observed.items()}
    modes = {role: mode_of(pair.get(role), task) for role in MODELS}
    outs = len(settings.out_tokens)
    total = sum(len(batches) * len(buckets.get(role, ())) * (outs if mode == "generate" else 1)
                for role, mode in modes.items() if mode != "free")
    total += len(settings.router_hidden) * len(settings.router_batches)
    total += len(settings.update_hidden) * len(settings.update_batches)
    roles: dict[str, Any] = {}
    with torch_threads(settings.threads), tqdm(total=total, desc=f"calibrate {profile_name} {suite}", unit="point",
                                               disable=not progress, mininterval=0.5) as bar:
        for role in MODELS:
            lm, mode = pair.get(role), modes[role]
            entry: dict[str, Any] = {"model": lm.name, "source": source_of(lm), "fingerprint": fingerprint(lm),
                                     "mode": mode}
            if mode != "free":
                bar.set_postfix(model=role)
                prompts = [int(t) for t in buckets[role]]
                entry.update(context=lm.context, non_embedding_params=lm.size.non_embedding_params,
                             batches=batches, prompt_tokens=prompts)
                if mode == "score":
                    entry["candidates"] = list(ACTIONS)
                else:
                    entry["out_tokens"] = list(settings.out_tokens)
                if role in observed:
                    lengths = np.asarray(observed[role])
                    entry["real_prompts"] = {"n": int(lengths.size), "min": int(lengths.min()),
                                             "median": float(np.median(lengths)), "max": int(lengths.max())}
                entry["points"] = calibrate_model(lm, mode, batches, prompts, settings, gpu=gpu, bar=bar)
            roles[role] = entry
        bar.set_postfix(model="router")
        router = calibrate_router(settings, bar)
        described = machine(device)
    walks = "random walks" if suite == "babyai" else "gold paths"
    source = f"{len(next(iter(observed.values())))} prompts of {task.name} ({walks})" if observed else "given"
    return {
        "format": FORMAT, "suite": suite, "profile": profile_name, "batches": batches, "prompt_source": source,
        "machine": described, "load_average_at_start": round(load, 2),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"), "git_commit": git_commit(),
        "seconds": round(time.perf_counter() - started, 1),
        "settings": asdict(settings), "roles": roles, "router": router,
    }


# --- the file: reuse while fresh -----------------------------------------------------------------------------
def calibration_path(results_dir: Path, profile_name: str) -> Path:
    return Path(results_dir) / profile_name / FILE


def stale_reason(part: dict[str, Any] | None, profile_name: str, suite: str, pair: ModelPair) -> str | None:
    """Why a suite's calibration does not describe this machine and this pair (None: it does)."""
    if part is None:
        return "no calibration of this suite yet"
    if part.get("format") != FORMAT:
        return f"made by calibration format {part.get('format')}, the code's is {FORMAT}"
    here = machine(pair.deepthink.device)
    for key in MACHINE_KEYS:
        if part.get("machine", {}).get(key) != here[key]:
            return f"made on another machine ({key} {part.get('machine', {}).get(key)!r}, here {here[key]!r})"
    for role in MODELS:
        entry = part.get("roles", {}).get(role, {})
        if entry.get("fingerprint") != fingerprint(pair.get(role)):
            return f"made for another {role} checkpoint ({entry.get('model')!r}, here {pair.get(role).name!r})"
    if part.get("batches") != suite_batches(profile_name, suite):
        return f"measured at batches {part.get('batches')}, the profile runs {suite_batches(profile_name, suite)}"
    return None


def read_calibration(path: Path) -> dict[str, Any]:
    """The calibration file, or an empty one of this format (a missing file, or one of an older format)."""
    if path.exists():
        data = json.loads(path.read_text())
        if data.get("format") == FORMAT:
            return data
    return {"format": FORMAT, "suites": {}}


def load_or_calibrate(profile_name: str, suite: str, pair: ModelPair, results_dir: Path,
                      settings: CalibrationSettings | None = None, buckets: dict[str, Sequence[int]] | None = None,
                      force: bool = False, progress: bool = True,
                      gpu: Callable[[], GpuMonitor] | None = None, part_name: str | None = None) -> Prices:
    """The price book of `suite`'s pair, from `<results_dir>/<profile>/calibration.json`: reused while it describes
    this machine (CPU model, cores, torch version, device), these checkpoints and this format; measured again (and
    that suite's part rewritten) when it is missing or stale, or with `force`. `part_name` keeps another pair's
    prices beside the profile's (a side study's: `babyai@plug_and_play_causal`); default: the suite."""
    part_name = part_name or suite
    path = calibration_path(results_dir, profile_name)
    data = read_calibration(path)
    part = data["suites"].get(part_name)
    reason = "asked to measure again" if force else stale_reason(part, profile_name, suite, pair)
    if reason is None:
        print(f"calibration: {part_name} from {path} ({part['date']})", file=sys.stderr)
        return Prices.from_calibration(part)
    print(f"calibration: measuring {profile_name} {part_name} ({reason})", file=sys.stderr)
    part = calibrate_suite(profile_name, suite, pair, settings, buckets, progress, gpu)
    data = read_calibration(path)  # another suite may have been written meanwhile
    data["suites"][part_name] = part
    data["profile"] = profile_name
    write_calibration(data, path)
    return Prices.from_calibration(part)


def price_books(profile_name: str, suite: str, pair: ModelPair, results_dir: Path, **options: Any) -> PriceBooks:
    """Both books of a suite's pair: calibrated seconds (`load_or_calibrate`) and projected GPU-seconds at the
    paper's sizes (`projected_prices`). Attach them to the pair (`dataclasses.replace(pair, prices=...)`) and every
    run of it is priced."""
    return PriceBooks(load_or_calibrate(profile_name, suite, pair, results_dir, **options), projected_prices(suite))


def write_calibration(data: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    tmp.replace(path)
    path.with_suffix(".md").write_text(markdown(data))


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{1000 * seconds:.3f}"


def markdown(data: dict[str, Any]) -> str:
    """calibration.md: the measured points as tables, per suite and model, and the router's fitted prices."""
    lines = [f"# Calibration: the {data.get('profile', '?')} profile", "",
             "Seconds per model call measured in isolation (warm, repeated; median and interquartile range), from "
             "which every run's calls are priced (`priced_s`; bench/running/pricing.py). Written by "
             "`python -m bench.calibrate`; calibration.json holds the same numbers.", ""]
    for suite, part in data.get("suites", {}).items():
        m = part["machine"]
        lines += [f"## {suite}", "",
                  f"{m['cpu']}, {m['cores']} cores, torch {m['torch']} measured on {m['torch_threads']} thread(s), "
                  f"device {m['device']}{' ' + m['device_name'] if m.get('device_name') else ''}; {part['date']}, git "
                  f"{part['git_commit']}, {part['seconds']} s. Prompt lengths from {part['prompt_source']}.", ""]
        for role, entry in part["roles"].items():
            if entry["mode"] == "free":
                lines += [f"### {role}: {entry['model']} (computes nothing: priced 0)", ""]
                continue
            lines += [f"### {role}: {entry['model']} ({entry['mode']}, fingerprint {entry['fingerprint']})", ""]
            gpu = any("gpu_s" in p for p in entry["points"])
            header = "| batch | prompt tokens | " + ("out tokens | " if entry["mode"] == "generate" else "")
            header += "median ms | IQR ms | repeats |" + (" GPU ms/call | energy J/call |" if gpu else "")
            lines += [header, "|" + "---|" * (header.count("|") - 1)]
            for p in entry["points"]:
                row = f"| {p['batch']} | {p['prompt_tokens']} | "
                row += f"{p['out_tokens']} | " if entry["mode"] == "generate" else ""
                row += f"{_ms(p['median_s'])} | {_ms(p['iqr_s'])} | {p['repeats']} |"
                if gpu:
                    energy = p.get("gpu_energy_j")
                    row += f" {_ms(p.get('gpu_s'))} | {'-' if energy is None else f'{energy:.4f}'} |"
                lines.append(row)
            lines.append("")
        for kind, what in (("inference", "a decision"), ("update", "a training step")):
            fit = part["router"][kind]["fit"]
            lines.append(f"Router {kind} ({what}): {1e6 * fit['overhead_s']:.1f} us + FLOPs / "
                         f"{fit['flops_per_s'] / 1e9:.2f} GFLOP/s.")
        lines.append("")
    return "\n".join(lines)
