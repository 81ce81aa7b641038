"""The GPU path, run where a GPU is lent (`python3 scripts/gpu_check.py OUT_DIR`): NVML GPU-seconds and energy
around real model calls on CUDA, the meter's synchronised seconds, and the same decisions on CUDA as on the CPU.

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

from bench.gpu import GpuMonitor, nvml_status
from bench.lm import ActionLM
from bench.metering import Meter

ROOT = Path(__file__).resolve().parent.parent
BABYAI_ACTIONS = ("turn left", "turn right", "go forward", "pick up", "drop", "toggle")
BABYAI_PROMPT = ("Mission: go to the red ball. Last action: turn left. You see a wall 3 steps forward. "
                 "You see a red ball 2 steps left and 1 step forward")
SW_PROMPT = ("Task: Your task is to turn on the red light bulb. First, focus on the red light bulb. Then, create an "
             "electrical circuit that powers it on. Last action: go to workshop. Result: You move to the workshop. "
             "Room: This room is called the workshop. In it, you see: the agent; a red light bulb, which is off; a "
             "table. On the table is: a battery, a black wire, a orange wire.")


def timed_calls(lm: ActionLM, prompts: list[str], generate: bool, repeats: int) -> dict:
    meter = Meter(len(prompts), devices=(lm.device,))
    slots = list(range(len(prompts)))
    call = (lambda: lm.generate(prompts)) if generate else (lambda: lm.score(prompts, BABYAI_ACTIONS))
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


def main(out_dir: Path) -> None:
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
    text = json.dumps(report, indent=1, default=str)
    print(text)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "gpu_check.json").write_text(text)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "."))
