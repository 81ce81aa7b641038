"""The GPU path, run where a GPU is lent (`python3 scripts/gpu_check.py OUT_DIR [--flan-t5-shapes]`).

1. The committed cpu pairs: NVML GPU-seconds and energy around real model calls on CUDA, the meter's synchronised
   seconds, and the same decisions on CUDA as on the CPU.
2. `--flan-t5-shapes`: what a decision costs at the paper profile's sizes, for machines that cannot reach the hub.
   T5 models with Flan-T5-small's and Flan-T5-large's published shapes (random weights: the cost of a call does
   not depend on the weights, only on its shapes) score BabyAI-Text's six actions and generate ScienceWorld actions
   from prompts of the cpu pairs' context formats and lengths, at several batch sizes. Per call: metered seconds,
   NVML GPU-seconds and energy, analytic FLOPs; and the large/small ratios, which turn a router's DEEPTHINK fraction
   into a GPU-second saving.

Needs only torch, transformers and nvidia-ml-py (no MLflow, no simulators): the prompts are fixed texts in each
committed model's own context format. Writes gpu_check.json to OUT_DIR and prints it.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from bench.models.lm import ActionLM
from bench.models.profiles import FLAN_T5_SHAPES
from bench.running.gpu import GpuMonitor, nvml_status
from bench.running.metering import Meter

ROOT = Path(__file__).resolve().parent.parent
BABYAI_ACTIONS = ("turn left", "turn right", "go forward", "pick up", "drop", "toggle")
BABYAI_PROMPT = ("Mission: go to the red ball. Last action: turn left. You see a wall 3 steps forward. "
                 "You see a red ball 2 steps left and 1 step forward")
SW_PROMPT = ("Task: Your task is to turn on the red light bulb. First, focus on the red light bulb. Then, create an "
             "electrical circuit that powers it on. Last action: go to workshop. Result: You move to the workshop. "
             "Room: This room is called the workshop. In it, you see: the agent; a red light bulb, which is off; a "
             "table. On the table is: a battery, a black wire, a orange wire.")


# A ScienceWorld DEEPTHINK prompt (sw_history) of typical length: about 190 subword tokens.
SW_HISTORY_PROMPT = (
    "Task: Your task is to turn on the electric motor. First, focus on the electric motor. Then, create an electrical "
    "circuit that powers it on. Time: 3. Score: 7. Recent: open door to hallway -> The door is already open. | go to "
    "hallway -> You move to the hallway. | go to workshop -> You move to the workshop. Room: This room is called the "
    "workshop. In it, you see: the agent; a substance called air; a table. On the table is: a battery, a black wire, "
    "a orange wire, a blue wire, an electric motor, which is off, a switch, which is off. an ultra low temperature "
    "freezer. The ultra low temperature freezer door is open. In the ultra low temperature freezer is: nothing. You "
    "also see: A door to the hallway (that is open) Inventory: In your inventory, you see: an orange")
GENERATED_TOKENS = 8
"""Tokens generated per ScienceWorld decision (random weights never stop on their own; a gold action is ~8)."""


def timed_calls(lm: ActionLM, prompts: list[str], generate: bool, repeats: int, max_tokens: int = 24) -> dict:
    meter = Meter(len(prompts), devices=(lm.device,))
    slots = list(range(len(prompts)))
    call = ((lambda: lm.generate(prompts, max_tokens=max_tokens)) if generate
            else (lambda: lm.score(prompts, BABYAI_ACTIONS)))
    call()  # warm-up (CUDA context, kernels)
    with GpuMonitor(interval_s=0.02) as monitor:
        started = time.perf_counter()
        for _ in range(repeats):
            out = meter.call(lm.meta.get("role", "quick"), slots, call)
        wall = time.perf_counter() - started
    reading = monitor.reading
    usage = meter.run[lm.meta.get("role", "quick")]
    actions = out.actions if generate else [BABYAI_ACTIONS[i] for i in np.asarray(out).argmax(axis=1)]
    return {"model": lm.name, "device": str(lm.device), "batch": len(prompts), "calls": repeats,
            "ms_per_call_metered": 1000 * usage.compute_s / repeats, "ms_per_call_wall": 1000 * wall / repeats,
            "flops_per_call": usage.flops / repeats, "gpu_s": reading.gpu_s, "gpu_energy_j": reading.gpu_energy_j,
            "nvml_samples": reading.samples, "actions": actions[:2]}


def flan_t5_shape_runs(tokenizer_dir: Path, device: str) -> list[dict]:
    """Flan-T5-small- and -large-shaped models (random weights) on both suites' decisions, per batch size, and the
    large/small ratios of each cost. Prompts are tokenised with a committed ScienceWorld tokenizer (its subword
    lengths are close to T5's own); the ids index the shaped models' 32128-entry vocabulary."""
    from transformers import AutoTokenizer, T5Config, T5ForConditionalGeneration

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    runs: list[dict] = []
    for name, shape in FLAN_T5_SHAPES.items():
        torch.manual_seed(0)
        config = T5Config(vocab_size=32128, feed_forward_proj="gated-gelu", tie_word_embeddings=False,
                          pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                          decoder_start_token_id=tokenizer.pad_token_id, **shape)
        lm = ActionLM(T5ForConditionalGeneration(config), tokenizer, name=name, device=device,
                      meta={"role": "deepthink" if "large" in name else "quick"})
        for suite, prompt, generate, batches in (("babyai", BABYAI_PROMPT, False, (1, 16, 64)),
                                                 ("scienceworld", SW_HISTORY_PROMPT, True, (1, 8))):
            for batch in batches:
                row = timed_calls(lm, [prompt] * batch, generate, repeats=10 if device == "cuda" else 2,
                                  max_tokens=GENERATED_TOKENS)
                row.update(suite=suite, non_embedding_params=lm.size.non_embedding_params,
                           prompt_tokens=len(tokenizer(prompt)["input_ids"]))
                row.pop("actions")
                runs.append(row)
        del lm
        if device == "cuda":
            torch.cuda.empty_cache()
    small, large = FLAN_T5_SHAPES
    for row in [r for r in runs if r["model"] == large]:
        base = next(r for r in runs
                    if r["model"] == small and (r["suite"], r["batch"]) == (row["suite"], row["batch"]))
        runs.append({"ratio": f"{large} / {small}", "suite": row["suite"], "batch": row["batch"], **{
            key: row[key] / base[key] for key in ("ms_per_call_metered", "flops_per_call", "gpu_s", "gpu_energy_j")
            if row.get(key) and base.get(key)}})
    return runs


def main(out_dir: Path, shapes: bool = False) -> None:
    report: dict = {"nvml_status": nvml_status() or "ok", "cuda": torch.cuda.is_available(),
                    "device_name": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                    "torch": torch.__version__, "runs": []}
    pairs = sorted(p.parent for p in (ROOT / "checkpoints" / "cpu").glob("*/londi.json"))
    for path in pairs:
        generate = path.name.startswith("scienceworld-")
        prompt = SW_PROMPT if generate else BABYAI_PROMPT
        same = []
        for batch in (1, 16):
            rows = {}
            for device in ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",):
                lm = ActionLM.load(path, device=device)
                rows[device] = timed_calls(lm, [prompt] * batch, generate, repeats=20 if device == "cuda" else 5)
                report["runs"].append(rows[device])
            same.append(rows["cpu"]["actions"] == rows.get("cuda", rows["cpu"])["actions"])
        report["runs"].append({"model": path.name, "same_actions_cpu_and_cuda": all(same)})
    if shapes:
        tokenizer_dir = next(p for p in pairs if p.name.startswith("scienceworld-deepthink"))
        report["flan_t5_shapes"] = flan_t5_shape_runs(tokenizer_dir, "cuda" if torch.cuda.is_available() else "cpu")
    text = json.dumps(report, indent=1, default=str)
    print(text)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "gpu_check.json").write_text(text)


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    main(Path(args[0] if args else "."), shapes="--flan-t5-shapes" in sys.argv[1:])
