"""Instruction-tuned language models used as they are, without fine-tuning: a prompting mode.

An instruction model (Qwen2.5-0.5B-Instruct, Llama-3.2-1B-Instruct ...) was never trained on the harness's text, so
it is told the task in its own chat template: a system message saying what it controls and how to answer, a few
solved steps from expert demonstrations as earlier turns, then the current step: the context builder's text and
the actions it may take. A candidate action is scored as the assistant's whole reply (its tokens and the end of the
turn) after the template's generation prompt; where the task has no action list (ScienceWorld), the reply is
generated. Everything else (batching, the prompts' cached keys and values, FLOPs, left truncation: the chat's
beginning goes first) is CausalActionLM's.

Spelling: `instruct:` then the checkpoint (hub name or local path), options after `#`:

    instruct:Qwen/Qwen2.5-0.5B-Instruct#context=history&shots=3

`context` (default history; sw_now or sw_history for ScienceWorld) and `shots` (solved steps shown, default 3; 0 for
none): BabyAIBot's steps on GoToLocal for BabyAI, a gold path's steps of find-living-thing for ScienceWorld.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bench.common.errors import UserError
from bench.common.provenance import cache_dir
from bench.envs.babyai_text import ACTIONS
from bench.models.causal import CausalActionLM
from bench.models.cost import CallCost
from bench.models.demos import bot_episode, collect_gold, pairs
from bench.models.lm import Decision, require_checkpoint

PREFIX = "instruct:"
SYSTEM = {
    "babyai": ("You control an agent in a grid world described in text. Each turn you read the mission and what the "
               "agent sees, and you answer with exactly one of the listed actions, nothing else."),
    "scienceworld": ("You control an agent in a text simulation of a science experiment. Each turn you read the task "
                     "and what the agent observes, and you answer with exactly one action command, nothing else."),
}
SHOT_LEVEL = "BabyAI-GoToLocal-v0"
"""The BabyAI level whose BabyAIBot episodes give the solved steps (short, and every action but toggle in them)."""
SHOT_TASK = "find-living-thing"
"""The ScienceWorld task whose gold path (training variation 0) gives the solved steps: short (10 steps), and its
kinds of action (open a door, go to a room, look around, focus on, pick up, move into a box) are the registered
tasks' own."""


def is_instruct(spec: object) -> bool:
    return str(spec).startswith(PREFIX)


def suite_of(context: str) -> str:
    return "scienceworld" if context.startswith("sw_") else "babyai"


def babyai_shots(context: str, shots: int, max_steps: int = 64) -> list[tuple[str, str]]:
    """`shots` (prompt, expert action) steps of BabyAIBot episodes, spread over the episodes' steps, in `context`."""
    if shots <= 0:
        return []
    steps: list[tuple[str, str]] = []
    seed = 0
    while len(steps) < 4 * shots and seed < 50:
        demo = bot_episode(SHOT_LEVEL, seed, max_steps)
        if demo is not None:
            steps += list(pairs([demo], context))
        seed += 1
    picks = np.linspace(0, len(steps) - 1, shots).round().astype(int)
    return [steps[i] for i in picks]


def scienceworld_shots(context: str, shots: int) -> list[tuple[str, str]]:
    """`shots` (prompt, gold action) steps of SHOT_TASK's gold path, spread over its steps, in `context`; the path
    is played once (one JVM) and kept in the cache."""
    if shots <= 0:
        return []
    demos = collect_gold([(SHOT_TASK, 0)], 64, cache_dir() / "demos" / f"instruct-shots-{SHOT_TASK}-0.jsonl.gz",
                         progress=False)
    steps = list(pairs(demos, context))
    picks = np.linspace(0, len(steps) - 1, min(shots, len(steps))).round().astype(int)
    return [steps[i] for i in picks]


class InstructLM(CausalActionLM):
    """A decoder-only instruction model prompted through its chat template (see the module's docstring)."""

    shots: list[tuple[str, str]]

    def configure(self, shots: Sequence[tuple[str, str]]) -> InstructLM:
        if not getattr(self.tokenizer, "chat_template", None):
            raise UserError(f"{self.name} has no chat template: prompting mode is for instruction-tuned models "
                            f"(give the checkpoint without `instruct:` to score with it as a plain causal model)")
        self.shots = list(shots)
        self.prompt_end = []  # the template's generation prompt ends the prompt
        self.suite = suite_of(self.context)
        return self

    @classmethod
    def from_spec(cls, spec: str, device: str = "cpu") -> InstructLM:
        name, _, fragment = spec.removeprefix(PREFIX).partition("#")
        options = {k: v[-1] for k, v in urllib.parse.parse_qs(fragment).items()} if fragment else {}
        unknown = sorted(set(options) - {"context", "shots"})
        if unknown:
            raise UserError(f"unknown prompting option {', '.join(unknown)} in {spec!r}; options: context, shots")
        try:
            shots = int(options.get("shots", 3))
        except ValueError:
            raise UserError(f"shots must be a whole number in {spec!r}") from None
        context = options.get("context", "history")
        require_checkpoint(name)
        lm = cls.from_dir(Path(name) if Path(name).exists() else name, device=device, context=context)
        lm.name = f"{PREFIX}{lm.name}"
        lm.source = spec
        examples = (babyai_shots if suite_of(context) == "babyai" else scienceworld_shots)(context, shots)
        return lm.configure(examples)

    def chat(self, prompt: str, candidates: Sequence[str] | None) -> str:
        """The chat of one step, as text: system, the solved steps as earlier turns, the step itself."""
        def user(text: str, options: Sequence[str] | None) -> dict[str, str]:
            listed = f"\nActions: {', '.join(options)}." if options else ""
            return {"role": "user", "content": text + listed}

        messages = [{"role": "system", "content": SYSTEM[self.suite]}]
        for shot_prompt, action in self.shots:
            messages += [user(shot_prompt, ACTIONS if candidates is not None else None),
                         {"role": "assistant", "content": action}]
        messages.append(user(prompt, candidates))
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def decide(self, prompts: Sequence[str], candidates: Sequence[Sequence[str]] | None) -> tuple[Decision, CallCost]:
        chats = [self.chat(p, None if candidates is None else c)
                 for p, c in zip(prompts, candidates if candidates is not None else [None] * len(prompts), strict=True)]
        return super().decide(chats, candidates)
