"""Speed benchmarks of decoder-only and served models (`make bench`; skipped by `make test`).

The causal models are the cpu profile's causal pair where it is cached (`python -m bench.models --pair causal`),
else models of its exact shapes with random weights (a decision's seconds do not depend on the weights), on the
committed T5 pair's tokenizers. Served: the same checkpoint behind `transformers serve` on 127.0.0.1, started and
stopped here by its process id; it returns no log-probabilities, so a served decision is a greedy generation mapped
onto the candidates, and `server_overhead` compares it with the same generation run locally, prompt by prompt.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.envs.babyai_text import ACTIONS
from bench.models.cache import committed_dir, model_dir
from bench.models.causal import CausalActionLM
from bench.models.lm import LONDI_META
from bench.models.loader import load_lm
from bench.models.profiles import get_profile, with_pair
from bench.models.served import ServedLM
from bench.models.train import build_causal_model
from tests.test_benchmarks import _prompts
from tests.test_served import _serve, _stop

ROLES = ("quick", "deepthink")


@pytest.fixture(scope="module")
def causal_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    cpu = get_profile("cpu")
    causal = with_pair(cpu, "causal")
    dirs = {}
    for role in ROLES:
        recipe = getattr(causal, role)
        trained = model_dir(causal, recipe)
        if (trained / LONDI_META).exists():
            dirs[role] = trained
            continue
        out = tmp_path_factory.mktemp(f"causal-{role}")
        tokenizer = load_lm(committed_dir(cpu, getattr(cpu, role))).tokenizer
        torch.manual_seed(0)
        build_causal_model(recipe, tokenizer).save_pretrained(out)
        tokenizer.save_pretrained(out)
        (out / LONDI_META).write_text(f'{{"name": "cpu-causal-{role}-shape", "context": "{recipe.context}"}}')
        dirs[role] = out
    return dirs


@pytest.fixture(scope="module")
def causal_pair(causal_dirs: dict[str, Path]) -> dict[str, CausalActionLM]:
    return {role: load_lm(path) for role, path in causal_dirs.items()}


@pytest.fixture(scope="module")
def served_deepthink(causal_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedLM]:
    process, url = _serve(causal_dirs["deepthink"], tmp_path_factory.mktemp("serve") / "serve.log")
    try:
        yield ServedLM(f"{url}#context=memory&concurrency=16")
    finally:
        _stop(process)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("batch", [1, 16])
def test_causal_decision_latency(benchmark: pytest.FixtureRequest, causal_pair: dict[str, CausalActionLM],
                                 role: str, batch: int) -> None:
    lm = causal_pair[role]
    prompts = _prompts(lm, batch)
    benchmark.extra_info.update(model=lm.name, batch=batch, torch_threads=torch.get_num_threads(),
                                non_embedding_params=lm.size.non_embedding_params,
                                flops_per_decision=float(lm.score(prompts, ACTIONS)[1].flops.mean()))
    benchmark(lm.decide, prompts, [ACTIONS] * batch)


@pytest.mark.parametrize("batch", [1, 16])
def test_served_decision_latency(benchmark: pytest.FixtureRequest, causal_pair: dict[str, CausalActionLM],
                                 served_deepthink: ServedLM, batch: int) -> None:
    """A served DEEPTHINK's decision (greedy generation mapped onto the candidates, `batch` concurrent requests), and
    the server's overhead per call: its seconds less those of the same generations run locally one by one."""
    local = causal_pair["deepthink"]
    prompts = _prompts(local, batch)
    started = time.perf_counter()
    for prompt in prompts:
        local.generate([prompt])
    local_s = (time.perf_counter() - started) / batch
    started = time.perf_counter()
    served_deepthink.decide(prompts, [ACTIONS] * batch)
    served_s = (time.perf_counter() - started) / batch
    benchmark.extra_info.update(batch=batch, scoring=served_deepthink.scoring, local_generation_s=local_s,
                                served_s_per_prompt=served_s, server_overhead_s_per_call=served_s - local_s)
    benchmark(served_deepthink.decide, prompts, [ACTIONS] * batch)


def _naive_scores(lm: CausalActionLM, prompts: list[str], candidates: tuple[str, ...]) -> np.ndarray:
    """Candidate scoring without the prompt's cache: every (prompt, candidate) as one full sequence, batched."""
    rows = [lm.encode_prompt(p) + lm.encode(c) for p in prompts for c in candidates]
    starts = [len(lm.encode_prompt(p)) for p in prompts for _ in candidates]
    length = max(len(r) for r in rows)
    ids = torch.full((len(rows), length), lm.pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, row in enumerate(rows):
        ids[i, :len(row)], mask[i, :len(row)] = torch.tensor(row), 1
    with torch.inference_mode():
        logp = torch.log_softmax(lm.model(input_ids=ids, attention_mask=mask).logits.float(), dim=-1)
    scores = [float(sum(logp[i, t - 1, rows[i][t]] for t in range(starts[i], len(rows[i])))) for i in range(len(rows))]
    return np.array(scores).reshape(len(prompts), len(candidates))


@pytest.mark.parametrize("scoring", ["prefix_reused", "full_sequences"])
def test_prefix_reuse_speed_up(benchmark: pytest.FixtureRequest, causal_pair: dict[str, CausalActionLM],
                               scoring: str) -> None:
    """DEEPTHINK's candidate scoring at batch 16 with the prompts' keys and values reused per candidate (what the
    harness does) and with every prompt-candidate sequence run in full; the two give the same scores."""
    lm = causal_pair["deepthink"]
    prompts = _prompts(lm, 16)
    reused = lm.score(prompts, ACTIONS)[0]
    np.testing.assert_allclose(_naive_scores(lm, prompts, ACTIONS), reused, atol=1e-3)
    benchmark.extra_info.update(scoring=scoring, batch=16, candidates=len(ACTIONS))
    if scoring == "prefix_reused":
        benchmark(lm.score, prompts, ACTIONS)
    else:
        benchmark(_naive_scores, lm, prompts, ACTIONS)
