"""A language model behind an OpenAI-compatible server (vLLM, SGLang, llama.cpp, `transformers serve`) as QUICK or
DEEPTHINK.

Spelling: the server's base URL, then after `#` the options, `&`-separated:

    http://127.0.0.1:8000/v1#model=Qwen/Qwen2.5-7B-Instruct&context=memory&concurrency=16

- `model`: the served model's id (unset: the server's only model);
- `context`: the context builder of the harness that writes its prompts (bench.envs.contexts; default history);
- `scoring`: `auto` (default: asks the server once whether it returns the log-probabilities of a prompt's tokens),
  `logprobs` or `generate`;
- `sep`: the text between a prompt and a candidate action when candidates are scored (default `</s>`: the separator of
  the causal models this harness trains; a chat or instruction model wants something like `\\nAction: `);
- `concurrency` (8), `timeout` (seconds per request, 60), `retries` (per request, 2): a batch of prompts goes out as at
  most `concurrency` requests at a time, each retried on a connection error, a timeout or a 5xx answer;
- `params`: the served model's non-embedding parameters, if known: FLOPs are then charged as 2 x params per token
  read or written (the server reports no FLOPs; unknown, they are NaN, never 0);
- `tokenizer`: a local path or cached hub id of the served model's tokenizer (unset: the model id, when that is a
  local checkpoint or in the Hugging Face cache). Calibration needs it to build prompts of known lengths; a served
  model is priced, like a local one, from calls timed once in isolation (bench.running.calibrate).

How an action is chosen, recorded as the run parameter `<role>.served.scoring`:
- `logprobs`: each candidate is scored by the summed log-probability of its tokens after the prompt and the separator,
  read from a completions request with `echo` and `logprobs` (vLLM's classic interface). The candidate's tokens are
  those at or after the separator's end (the tokenizer's own end token, if it adds one, included);
- `generate`: the server generates greedily (temperature 0) and the text is mapped onto the closest candidate
  (exact match first, else the highest difflib similarity; ties to the earlier candidate). Margin is the similarity
  gap between the two closest candidates; entropy is not known (NaN). A server that returns no log-probabilities
  (`transformers serve` ignores `logprobs` and `echo`) is used this way.

Metering: tokens as the server reports them (`usage`), each request's latency and the retries it took (the run's
metrics `<role>_server_*`), and the server's model id and version as parameters. A wrong URL or model id fails when
the model is loaded, before any run starts; a server that stops answering mid-run raises ServedModelError after its
retries, whose message says how to resume.
"""

from __future__ import annotations

import difflib
import math
import os
import time
import urllib.parse
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from bench.common.errors import UserError
from bench.models.cost import CallCost
from bench.models.lm import Decision, ModelSize, choose

SCHEMES = ("http://", "https://")
SCORINGS = ("auto", "logprobs", "generate")
MAX_ACTION_TOKENS = 24


class ServedModelError(UserError):
    """A served model that cannot be used: unreachable, unknown, or gone mid-run (the message says what to do)."""


def is_served(spec: object) -> bool:
    return str(spec).startswith(SCHEMES)


@dataclass(frozen=True)
class Endpoint:
    """Where a served model is and how it is called (see the module's docstring for the spelling)."""

    base_url: str
    model: str | None = None
    context: str = "history"
    scoring: str = "auto"
    sep: str = "</s>"
    concurrency: int = 8
    timeout_s: float = 60.0
    retries: int = 2
    params: float | None = None
    tokenizer: str | None = None

    @classmethod
    def parse(cls, spec: str) -> Endpoint:
        url, _, fragment = spec.partition("#")
        options = urllib.parse.parse_qs(fragment, keep_blank_values=True) if fragment else {}
        known = {"model", "context", "scoring", "sep", "concurrency", "timeout", "retries", "params", "tokenizer"}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ServedModelError(f"unknown served-model option {', '.join(unknown)} in {spec!r}; options: "
                                   f"{', '.join(sorted(known))}")
        one = {k: v[-1] for k, v in options.items()}
        try:
            endpoint = cls(base_url=url.rstrip("/"), model=one.get("model") or None,
                           context=one.get("context", "history"), scoring=one.get("scoring", "auto"),
                           sep=one.get("sep", "</s>"), concurrency=int(one.get("concurrency", 8)),
                           timeout_s=float(one.get("timeout", 60)), retries=int(one.get("retries", 2)),
                           params=float(one["params"]) if one.get("params") else None,
                           tokenizer=one.get("tokenizer") or None)
        except ValueError as error:
            raise ServedModelError(f"bad served-model option in {spec!r}: {error}") from None
        if endpoint.scoring not in SCORINGS:
            raise ServedModelError(f"scoring must be one of {', '.join(SCORINGS)}, got {endpoint.scoring!r} in "
                                   f"{spec!r}")
        if endpoint.concurrency < 1 or endpoint.retries < 0 or not endpoint.timeout_s > 0:
            raise ServedModelError(f"concurrency must be >= 1, retries >= 0 and timeout > 0 in {spec!r}")
        return endpoint


def nearest(text: str, candidates: Sequence[str]) -> tuple[int, np.ndarray]:
    """The candidate a generated text stands for, and every candidate's similarity to it (1 for an exact match,
    compared in lower case with runs of spaces collapsed)."""
    said = " ".join(text.lower().split())
    scores = np.array([1.0 if " ".join(c.lower().split()) == said
                       else difflib.SequenceMatcher(None, said, c.lower()).ratio() for c in candidates])
    return int(np.argmax(scores)), scores


@dataclass
class ServerStats:
    """What the calls to one served model cost and how they went: requests, retries, failures, latencies, tokens."""

    requests: int = 0
    retries: int = 0
    failures: int = 0
    exact: int = 0
    mapped: int = 0
    latencies: list[float] = field(default_factory=list)

    def metrics(self, role: str) -> dict[str, float]:
        lat = np.array(self.latencies) if self.latencies else np.array([math.nan])
        return {f"{role}_server_requests": self.requests, f"{role}_server_retries": self.retries,
                f"{role}_server_failures": self.failures, f"{role}_server_latency_p50_s": float(np.median(lat)),
                f"{role}_server_latency_p95_s": float(np.quantile(lat, 0.95)),
                f"{role}_server_generated_exact": self.exact, f"{role}_server_generated_mapped": self.mapped}


class ServedLM:
    """QUICK or DEEPTHINK answered by an OpenAI-compatible server: the same decide() as a local model."""

    needs_candidates = False

    def __init__(self, spec: str, role: str = "model") -> None:
        import openai

        self.spec = spec
        self.endpoint = Endpoint.parse(spec)
        self.source = spec
        self.context = self.endpoint.context
        self.device = torch.device("cpu")
        self.role = role
        self.stats = ServerStats()
        self.client = openai.OpenAI(base_url=self.endpoint.base_url, api_key=os.environ.get("OPENAI_API_KEY", "none"),
                                    max_retries=0, timeout=self.endpoint.timeout_s)
        self._errors = (openai.APIConnectionError, openai.APITimeoutError, openai.InternalServerError)
        self.model_id = self._resolve_model()
        self.name = self.model_id
        self.server_version = self._server_version()
        self.scoring = self.endpoint.scoring if self.endpoint.scoring != "auto" else self._probe_scoring()
        self.tokenizer = self._tokenizer()
        params = int(self.endpoint.params or 0)
        self.size = ModelSize(total_params=params, encoder_params=0, decoder_params=params, encoder_layers=0,
                              decoder_layers=0, attention_width=0)
        self.meta = {"served": True, "base_url": self.endpoint.base_url, "model_id": self.model_id,
                     "server_version": self.server_version, "scoring": self.scoring}

    def reset_stats(self) -> None:
        """Start counting afresh (each evaluation run logs its own requests, retries and latencies)."""
        self.stats = ServerStats()

    # --- set-up: everything here fails before a run starts ------------------------------------------------------
    def _resolve_model(self) -> str:
        try:
            served = [m.id for m in self.client.models.list().data]
        except self._errors as error:
            raise ServedModelError(
                f"cannot reach the model server at {self.endpoint.base_url} ({type(error).__name__}: {error}): start "
                f"it, or give its base URL (as http://HOST:PORT/v1#model=ID)") from None
        except Exception as error:  # noqa: BLE001 - a 404 or an HTML page: not an OpenAI-compatible server
            raise ServedModelError(f"{self.endpoint.base_url} does not answer as an OpenAI-compatible server "
                                   f"(GET /models: {type(error).__name__}: {error}); is the base URL's /v1 missing?"
                                   ) from None
        wanted = self.endpoint.model
        if wanted is None:
            if len(served) != 1:
                raise ServedModelError(f"the server at {self.endpoint.base_url} serves {len(served)} models "
                                       f"({', '.join(served) or 'none'}): name one with #model=ID")
            return served[0]
        if served and wanted not in served:
            raise ServedModelError(f"the server at {self.endpoint.base_url} does not serve {wanted!r}; it serves: "
                                   f"{', '.join(served)}")
        return wanted

    def _server_version(self) -> str:
        """vLLM answers GET /version; other servers are recorded by the name they give in their Server header."""
        root = self.endpoint.base_url.removesuffix("/v1")
        try:
            reply = self.client._client.get(f"{root}/version", timeout=self.endpoint.timeout_s)
            if reply.status_code == 200 and "version" in reply.text:
                return str(reply.json().get("version"))
            return reply.headers.get("server", "unknown")
        except Exception:  # noqa: BLE001 - a version is nice to have, never a reason to stop
            return "unknown"

    def _tokenizer(self) -> Any:
        """The served model's tokenizer where this machine has it (offline: never a download), else None."""
        from transformers import AutoTokenizer

        name = self.endpoint.tokenizer or self.model_id
        try:
            return AutoTokenizer.from_pretrained(name, local_files_only=True)
        except Exception as error:  # noqa: BLE001 - not here: calibration will say so if it needs it
            if self.endpoint.tokenizer:
                raise ServedModelError(f"cannot load the tokenizer {name!r} given for the served model: "
                                       f"{error}") from None
            return None

    def _probe_scoring(self) -> str:
        """`logprobs` when the server returns the log-probabilities of an echoed prompt's tokens, else `generate`."""
        reply = self._request(lambda: self.client.completions.create(
            model=self.model_id, prompt="hello world", max_tokens=1, temperature=0, echo=True, logprobs=1))
        logprobs = reply.choices[0].logprobs
        tokens = getattr(logprobs, "token_logprobs", None) if logprobs is not None else None
        return "logprobs" if tokens and len(tokens) >= (reply.usage.prompt_tokens if reply.usage else 1) else "generate"

    # --- calls ------------------------------------------------------------------------------------------------
    def _request(self, call: Any) -> Any:
        """One request, retried on connection errors, timeouts and 5xx answers; its latency recorded."""
        for attempt in range(self.endpoint.retries + 1):
            started = time.perf_counter()
            try:
                reply = call()
            except self._errors as error:
                if attempt < self.endpoint.retries:
                    self.stats.retries += 1
                    time.sleep(min(2.0, 0.25 * 2 ** attempt))
                    continue
                self.stats.failures += 1
                raise ServedModelError(
                    f"the model server at {self.endpoint.base_url} stopped answering ({type(error).__name__} after "
                    f"{self.endpoint.retries + 1} tries): the episodes finished so far are logged; restart the "
                    f"server, then run again (a bench.reproduce sweep continues with --resume SWEEP)") from None
            self.stats.requests += 1
            self.stats.latencies.append(time.perf_counter() - started)
            return reply
        raise AssertionError("unreachable")

    def _map(self, fn: Any, items: Sequence[Any]) -> list[Any]:
        with ThreadPoolExecutor(max_workers=min(self.endpoint.concurrency, max(1, len(items)))) as pool:
            return list(pool.map(fn, items))

    def _flops(self, tokens_in: np.ndarray, tokens_out: np.ndarray) -> np.ndarray:
        if self.endpoint.params is None:
            return np.full(len(tokens_in), math.nan)
        return 2 * self.endpoint.params * (tokens_in + tokens_out).astype(np.float64)

    def generate(self, prompts: Sequence[str], max_tokens: int = MAX_ACTION_TOKENS,
                 min_tokens: int = 0) -> tuple[Decision, CallCost]:
        """Greedy generation, one request per prompt (`min_tokens` is not part of the OpenAI interface: ignored)."""
        def one(prompt: str) -> Any:
            return self._request(lambda: self.client.completions.create(
                model=self.model_id, prompt=prompt, max_tokens=max_tokens, temperature=0))

        replies = self._map(one, list(prompts))
        texts = [" ".join(r.choices[0].text.split()) for r in replies]
        tokens_in = np.array([r.usage.prompt_tokens if r.usage else 0 for r in replies], dtype=np.int64)
        tokens_out = np.array([r.usage.completion_tokens if r.usage else 0 for r in replies], dtype=np.int64)
        n = len(prompts)
        return (Decision(texts, np.full(n, math.nan), np.full(n, math.nan)),
                CallCost(tokens_in, tokens_out, self._flops(tokens_in, tokens_out)))

    def score(self, prompts: Sequence[str], candidates: Sequence[str]) -> tuple[np.ndarray, CallCost]:
        """Log-likelihood of each candidate after each prompt, from the server's echoed log-probabilities."""
        rows, cost = self._score_lists(prompts, [candidates] * len(prompts))
        return np.stack(rows), cost

    def _score_lists(self, prompts: Sequence[str],
                     candidates: Sequence[Sequence[str]]) -> tuple[list[np.ndarray], CallCost]:
        """Every (prompt, candidate) as one request, all of a batch's requests concurrently (at most `concurrency`)."""
        jobs = [(i, prompt + self.endpoint.sep, c) for i, (prompt, options) in enumerate(zip(prompts, candidates,
                                                                                           strict=True))
                for c in options]

        def one(job: tuple[int, str, str]) -> tuple[float, int]:
            _, prefix, candidate = job
            reply = self._request(lambda: self.client.completions.create(
                model=self.model_id, prompt=prefix + candidate, max_tokens=1, temperature=0, echo=True, logprobs=1))
            return candidate_logprob(reply, len(prefix), len(prefix + candidate))

        results = self._map(one, jobs)
        rows: list[list[float]] = [[] for _ in prompts]
        tokens_in = np.zeros(len(prompts), dtype=np.int64)
        for (i, _, _), (logprob, tokens) in zip(jobs, results, strict=True):
            rows[i].append(logprob)
            tokens_in[i] += tokens
        tokens_out = np.zeros(len(prompts), dtype=np.int64)
        return [np.array(r) for r in rows], CallCost(tokens_in, tokens_out, self._flops(tokens_in, tokens_out))

    def decide(self, prompts: Sequence[str], candidates: Sequence[Sequence[str]] | None) -> tuple[Decision, CallCost]:
        if candidates is None:
            return self.generate(prompts)
        if self.scoring == "logprobs":
            rows, cost = self._score_lists(prompts, candidates)
            return choose(rows, candidates), cost
        decision, cost = self.generate(prompts)
        actions, margins = [], []
        for text, options in zip(decision.actions, candidates, strict=True):
            best, similarity = nearest(text, options)
            self.stats.exact += int(similarity[best] == 1.0)
            self.stats.mapped += int(similarity[best] < 1.0)
            top = np.sort(similarity)
            actions.append(options[best])
            margins.append(float(top[-1] - (top[-2] if len(top) > 1 else 0.0)))
        return Decision(actions, np.array(margins), decision.entropy), cost

    def flops_per_decision(self, prompt_tokens: int, candidates: Sequence[str]) -> float:
        return math.nan if self.endpoint.params is None else 2 * self.endpoint.params * prompt_tokens

    def run_params(self, role: str) -> dict[str, str]:
        """What a run records of the server: where, which model, which version, how actions were chosen."""
        return {f"{role}.served.base_url": self.endpoint.base_url, f"{role}.served.model_id": self.model_id,
                f"{role}.served.server_version": self.server_version, f"{role}.served.scoring": self.scoring,
                f"{role}.served.concurrency": str(self.endpoint.concurrency),
                f"{role}.served.timeout_s": str(self.endpoint.timeout_s)}


def candidate_logprob(reply: Any, start: int, end: int) -> tuple[float, int]:
    """Summed log-probability of the echoed prompt's tokens that end after character `start` (the candidate's, a token
    that joins the separator's last space to the candidate's first word included, and any end token the tokenizer
    appends), and the prompt's token count. `end` is the echoed text's length; the completion's own generated token
    is left out."""
    logprobs = reply.choices[0].logprobs
    if logprobs is None or not logprobs.token_logprobs:
        raise ServedModelError("the server returned no log-probabilities for an echoed prompt: score by generation "
                               "instead (#scoring=generate)")
    prompt_tokens = reply.usage.prompt_tokens if reply.usage else len(logprobs.token_logprobs) - 1
    offsets = list(logprobs.text_offset[:prompt_tokens])
    values = logprobs.token_logprobs[:prompt_tokens]
    ends = offsets[1:] + [end]
    picked = [v for stop, offset, v in zip(ends, offsets, values, strict=True)
              if (stop > start or offset >= start) and v is not None]
    if not picked:
        raise ServedModelError(f"no token of the candidate found after character {start} of the echoed prompt")
    return float(sum(picked)), int(prompt_tokens)
