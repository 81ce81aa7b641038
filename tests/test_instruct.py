"""Prompting mode: an instruction model used without fine-tuning, through its chat template. Checked with a tiny causal
model built here and given a chat template (it need not succeed): the chat it reads, exact candidate scores after the
template's generation prompt, episodes run and metered, and the errors of a model without a template."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from baselines.deepthink_only import DeepthinkOnly
from bench.common.errors import UserError
from bench.envs.babyai_text import ACTIONS
from bench.envs.tasks import get_task
from bench.models.demos import load
from bench.models.instruct import SHOT_TASK, SYSTEM, InstructLM
from bench.models.loader import load_lm, load_model
from bench.models.pair import ModelPair
from bench.models.train import build_tokenizer
from bench.running.evaluate import evaluate

TEMPLATE = ("{% for m in messages %}<{{ m['role'] }}> {{ m['content'] }} </s>{% endfor %}"
            "{% if add_generation_prompt %}<assistant>{% endif %}")
TEXTS = ["go to the red ball. Actions: none. Now: You see a wall 2 steps forward.", SYSTEM["babyai"],
         "system user assistant < > , ."]


def _save(path: Path, template: str | None) -> Path:
    tokenizer = build_tokenizer(TEXTS)
    tokenizer.add_tokens(["<system>", "<user>", "<assistant>"], special_tokens=True)
    if template:
        tokenizer.chat_template = template
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                                         max_position_embeddings=2048, bos_token_id=tokenizer.eos_token_id,
                                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id))
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_the_chat_lists_the_actions_after_solved_steps_and_scores_the_reply(tmp_path: Path) -> None:
    path = _save(tmp_path / "m", TEMPLATE)
    lm = load_model(f"instruct:{path}#shots=2&context=history")
    assert isinstance(lm, InstructLM) and lm.name == f"instruct:{path}" and len(lm.shots) == 2
    prompt = TEXTS[0]
    chat = lm.chat(prompt, ACTIONS)
    assert chat.startswith(f"<system> {SYSTEM['babyai']} </s>") and chat.endswith("<assistant>")
    assert chat.count("<assistant>") == 3 and chat.count(f"Actions: {', '.join(ACTIONS)}.") == 3  # 2 shots + now
    assert lm.shots[0][1] in ACTIONS and prompt in chat
    scores, cost = lm.score([chat], ACTIONS)
    plain = load_lm(path)
    for j, action in enumerate(ACTIONS):  # the reply's tokens and its end, after the generation prompt, no separator
        ids = list(plain.tokenizer(chat, add_special_tokens=False)["input_ids"])
        reply = plain.encode(action)
        with torch.no_grad():
            logp = torch.log_softmax(plain.model(input_ids=torch.tensor([ids + reply])).logits[0].float(), -1)
        assert scores[0, j] == pytest.approx(float(sum(logp[len(ids) + k - 1, t] for k, t in enumerate(reply))),
                                             abs=1e-4)
    assert cost.tokens_in[0] == len(ids)
    decision, decided_cost = lm.decide([prompt], [ACTIONS])
    assert decision.actions[0] == ACTIONS[int(np.argmax(scores[0]))] and decided_cost.flops[0] == cost.flops[0]


def test_prompting_mode_runs_episodes_and_is_metered(tmp_path: Path) -> None:
    path = _save(tmp_path / "m", TEMPLATE)
    models = ModelPair(load_lm(path), load_model(f"instruct:{path}#shots=0"))  # short chats: a quick test
    results = evaluate(DeepthinkOnly(), get_task("babyai/GoToLocal"), models, seed=0, episodes=2, batch_size=2,
                       profile="smoke", sweep="instruct", tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
                       progress=False)
    assert len(results) == 2
    metrics = [r.metrics() for r in results]
    assert all(m["flops_deepthink"] > 0 and m["tokens_in_deepthink"] > 0 for m in metrics)


def test_a_model_without_a_chat_template_or_a_bad_option_is_one_clear_error(tmp_path: Path) -> None:
    path = _save(tmp_path / "plain", None)
    with pytest.raises(UserError, match="no chat template"):
        load_model(f"instruct:{path}")
    with pytest.raises(UserError, match="unknown prompting option temperature"):
        load_model(f"instruct:{path}#temperature=0.7")
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_model(f"instruct:{tmp_path / 'missing'}")


def test_scienceworld_chats_show_solved_gold_steps_and_generate(tmp_path: Path, monkeypatch) -> None:
    """For ScienceWorld the solved steps are a gold path's (played once, then cached), shown without an action list;
    the reply is generated."""
    monkeypatch.setenv("LONDI_CACHE", str(tmp_path / "cache"))
    path = _save(tmp_path / "m", TEMPLATE)
    lm = load_model(f"instruct:{path}#shots=2&context=sw_history")
    assert isinstance(lm, InstructLM) and len(lm.shots) == 2
    gold = [action for _, action in lm.shots]
    played = load(tmp_path / "cache" / "demos" / f"instruct-shots-{SHOT_TASK}-0.jsonl.gz")[0].actions
    assert gold == [played[0], played[-1]]  # spread over the path: its first and last step
    prompt = "Task: find a living thing. Now: You are in the kitchen."
    chat = lm.chat(prompt, None)
    assert chat.startswith(f"<system> {SYSTEM['scienceworld']} </s>") and "Actions:" not in chat
    assert all(f"<assistant> {action} </s>" in chat for action in gold) and chat.endswith("<assistant>")
    decision, cost = lm.decide([prompt], None)
    assert isinstance(decision.actions[0], str) and cost.tokens_out[0] >= 1
    assert list(load_model(f"instruct:{path}#shots=2&context=sw_history").shots) == lm.shots  # from the cache
