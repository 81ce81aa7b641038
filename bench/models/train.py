"""Behaviour cloning of the offline QUICK and DEEPTHINK models from BabyAIBot demonstrations.

A word-level tokenizer is trained on the demonstration text and saved with the model, so
`ActionLM.load(path)` (and transformers' `from_pretrained`) loads the pair back like any
Hugging Face checkpoint. The models are T5 encoder-decoders trained from scratch; the loss
is the cross-entropy of the expert action's tokens (padding masked out with -100).
"""

from __future__ import annotations

import json
import re
import string
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from tqdm import tqdm
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
    T5Config,
    T5ForConditionalGeneration,
    get_cosine_schedule_with_warmup,
)

from bench.envs.babyai_text import ACTIONS
from bench.models.causal import CausalActionLM
from bench.models.lm import LONDI_META, ActionLM

SPECIAL_TOKENS = ("<pad>", "</s>", "<unk>")
LOG_EVERY = 25  # training steps per logged (mean) loss
# Every distance a 22x22 BabyAI grid can put between two cells, in the vocabulary even when the
# demonstrations never needed it: a learner that wanders (DAgger, evaluation) must not read <unk>.
NUMBER_WORDS = tuple(str(n) for n in range(32))
BUCKET_BATCHES = 50  # batches per length bucket: prompts of like length share a batch (less padding)


@dataclass(frozen=True)
class ModelRecipe:
    """Shape and training schedule of one offline model."""

    role: str
    context: str
    d_model: int
    d_ff: int
    layers: int
    heads: int
    steps: int
    batch_size: int = 64
    lr: float = 1e-3
    warmup_steps: int = 100
    weight_decay: float = 0.01
    seed: int = 0
    init_from: str | None = None
    """A Hugging Face checkpoint to fine-tune (its own tokenizer and shape); None trains from scratch."""
    dagger_betas: tuple[float, ...] = ()
    """One DAgger round per entry after behaviour cloning (bench/dagger.py): the probability that the
    bot's action is executed instead of the learner's in that round's rollouts."""
    dagger_episodes: int = 0
    """Rollout episodes per level in each DAgger round."""
    dagger_steps: int = 0
    """Training steps after each DAgger round (continuing the same weights on all data so far)."""
    tokenizer: str = "words"
    """"words": a word-level vocabulary of the demonstrations (BabyAI-Text's closed world); "bpe": subword
    pieces down to single characters, so words never seen in training (ScienceWorld's test variations)
    are still spelled out instead of read as <unk>."""
    generate: bool = False
    """The model generates its action (ScienceWorld) rather than scoring a fixed list; held-out accuracy
    is then exact match of the generated text."""
    vocab_size: int = 2000
    """Size of a "bpe" vocabulary."""
    arch: str = "t5"
    """"t5": an encoder and a decoder of `layers` layers each; a decoder-only model ("gpt2", "llama", "qwen2") of
    2 x `layers` layers of the same width (about the same parameters), reading the prompt and the action as one
    sequence (bench.models.causal)."""


ARCHS = ("t5", "gpt2", "llama", "qwen2")
CAUSAL_POSITIONS = 1024
"""Positions of a decoder-only model trained here (the tokenizers' stated limit): the longest prompt is cut from
its beginning to fit."""
RECIPE_DEFAULTS = {"tokenizer": "words", "generate": False, "vocab_size": 2000, "arch": "t5"}
"""Recipe fields added after models were committed: left out of a model's cache key at these values,
so the keys (and the committed checkpoints) of recipes that do not use them stay valid."""


def key_fields(recipe: dict) -> dict:
    """A recipe (as a dict) as its cache key sees it: fields in RECIPE_DEFAULTS only where they differ."""
    return {k: v for k, v in recipe.items() if RECIPE_DEFAULTS.get(k, object()) != v}


def build_tokenizer(texts: Sequence[str]) -> PreTrainedTokenizerFast:
    """A lower-cased word-level tokenizer over every word in `texts` (and the action strings)."""
    normalizer = normalizers.Lowercase()
    splitter = pre_tokenizers.Whitespace()
    words: set[str] = set()
    for text in list(texts) + list(ACTIONS) + list(NUMBER_WORDS):
        words.update(w for w, _ in splitter.pre_tokenize_str(normalizer.normalize_str(text)))
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
    for word in sorted(words):
        vocab.setdefault(word, len(vocab))
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.normalizer = normalizer
    core.pre_tokenizer = splitter
    core.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", vocab["</s>"])])
    return PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", eos_token="</s>", unk_token="<unk>", model_max_length=1024
    )


WORDS = re.compile(r"\w+|[^\w\s]+")  # what the Whitespace pre-tokenizer splits on
SUFFIX = "</w>"


def learn_bpe(texts: Sequence[str], vocab_size: int, alphabet: str) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Byte-pair merges learnt on `texts` (lower-cased), deterministically: the most frequent pair is merged
    first, ties going to the smallest pair. (The tokenizers library's trainer breaks ties by ids it assigns in
    hash-map order, so the same texts gave a different tokenizer, and model, in every process.)

    The vocabulary: the special tokens, every character of `alphabet` and of the texts both inside a word and
    word-final (`r` and `r</w>`: any word can be written), then one token per merge, until `vocab_size`."""
    counts = Counter(word for text in texts for word in WORDS.findall(text.lower()))
    words = sorted(counts)
    seqs = [[*word[:-1], word[-1] + SUFFIX] for word in words]
    freqs = [counts[word] for word in words]
    chars = set(alphabet) | {c for word in words for c in word}
    symbols = sorted(chars | {c + SUFFIX for c in chars})
    vocab = {token: i for i, token in enumerate([*SPECIAL_TOKENS, *symbols])}
    pairs: Counter[tuple[str, str]] = Counter()
    where: dict[tuple[str, str], set[int]] = defaultdict(set)
    for i, seq in enumerate(seqs):
        for pair in zip(seq, seq[1:], strict=False):
            pairs[pair] += freqs[i]
            where[pair].add(i)
    merges: list[tuple[str, str]] = []
    while len(vocab) < vocab_size and pairs:
        (a, b), count = min(pairs.items(), key=lambda item: (-item[1], item[0]))
        if count < 1:
            break
        merges.append((a, b))
        vocab[a + b] = len(vocab)
        for i in sorted(where.pop((a, b), ())):
            seq, freq = seqs[i], freqs[i]
            for pair in zip(seq, seq[1:], strict=False):
                pairs[pair] -= freq
            merged, j = [], 0
            while j < len(seq):
                if j + 1 < len(seq) and seq[j] == a and seq[j + 1] == b:
                    merged.append(a + b)
                    j += 2
                else:
                    merged.append(seq[j])
                    j += 1
            seqs[i] = merged
            for pair in zip(merged, merged[1:], strict=False):
                pairs[pair] += freq
                where[pair].add(i)
        pairs = Counter({pair: n for pair, n in pairs.items() if n > 0})
    return vocab, merges


def build_bpe_tokenizer(texts: Sequence[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """A lower-cased subword (BPE) tokenizer learnt on `texts`, with every lower-case letter, digit and
    punctuation mark in its alphabet: any word can be written, seen in training or not."""
    vocab, merges = learn_bpe(texts, vocab_size, string.ascii_lowercase + string.digits + string.punctuation)
    core = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", end_of_word_suffix=SUFFIX))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.decoder = decoders.BPEDecoder(suffix=SUFFIX)
    eos = core.token_to_id("</s>")
    core.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", eos)])
    return PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", eos_token="</s>", unk_token="<unk>", model_max_length=1024
    )


def build_model(recipe: ModelRecipe, tokenizer: PreTrainedTokenizerFast) -> PreTrainedModel:
    if recipe.arch not in ARCHS:
        raise ValueError(f"unknown model architecture {recipe.arch!r}; known: {', '.join(ARCHS)}")
    if recipe.arch != "t5":
        return build_causal_model(recipe, tokenizer)
    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=recipe.d_model,
        d_kv=recipe.d_model // recipe.heads,
        d_ff=recipe.d_ff,
        num_layers=recipe.layers,
        num_decoder_layers=recipe.layers,
        num_heads=recipe.heads,
        dropout_rate=0.0,
        feed_forward_proj="relu",
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    return T5ForConditionalGeneration(config)


def build_causal_model(recipe: ModelRecipe, tokenizer: PreTrainedTokenizerFast) -> PreTrainedModel:
    """A decoder-only model from its configuration: 2 x `layers` layers of width `d_model` (the T5 recipe's encoder
    and decoder layers in one stack), no dropout, the token embedding tied to the LM head."""
    special = {"bos_token_id": tokenizer.eos_token_id, "eos_token_id": tokenizer.eos_token_id,
               "pad_token_id": tokenizer.pad_token_id, "tie_word_embeddings": True}
    if recipe.arch == "gpt2":
        return GPT2LMHeadModel(GPT2Config(
            vocab_size=len(tokenizer), n_positions=CAUSAL_POSITIONS, n_embd=recipe.d_model, n_inner=recipe.d_ff,
            n_layer=2 * recipe.layers, n_head=recipe.heads, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
            **special))
    shape = {"vocab_size": len(tokenizer), "hidden_size": recipe.d_model, "intermediate_size": recipe.d_ff,
             "num_hidden_layers": 2 * recipe.layers, "num_attention_heads": recipe.heads,
             "num_key_value_heads": recipe.heads, "max_position_embeddings": CAUSAL_POSITIONS, **special}
    return (Qwen2ForCausalLM(Qwen2Config(**shape)) if recipe.arch == "qwen2"
            else LlamaForCausalLM(LlamaConfig(**shape)))


def auto_class(arch: str) -> type:
    return AutoModelForSeq2SeqLM if arch == "t5" else AutoModelForCausalLM


def causal_batch(tokenizer: PreTrainedTokenizerBase, prompts: list[str], actions: list[str]) -> dict[str, torch.Tensor]:
    """Prompt, separator, action, end as one right-padded sequence (bench.models.causal's layout); the loss on the
    action's tokens and its end only. A prompt too long for the positions loses its beginning."""
    eos = tokenizer.eos_token_id
    rows, targets = [], []
    for prompt, action in zip(prompts, actions, strict=True):
        answer = list(tokenizer(action, add_special_tokens=False)["input_ids"]) + [eos]
        head = (list(tokenizer(prompt, add_special_tokens=False)["input_ids"]) + [eos])
        head = head[-(CAUSAL_POSITIONS - len(answer)):]
        rows.append(head + answer)
        targets.append([-100] * len(head) + answer)
    length = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), length), tokenizer.pad_token_id, dtype=torch.long)
    labels = torch.full((len(rows), length), -100, dtype=torch.long)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    for i, (row, target) in enumerate(zip(rows, targets, strict=True)):
        input_ids[i, :len(row)], labels[i, :len(row)], mask[i, :len(row)] = (
            torch.tensor(row), torch.tensor(target), 1)
    return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}


def _batch(tokenizer: PreTrainedTokenizerFast, prompts: list[str], actions: list[str]) -> dict[str, torch.Tensor]:
    inputs = tokenizer(prompts, padding=True, return_tensors="pt")
    labels = tokenizer(actions, padding=True, return_tensors="pt")
    target = labels["input_ids"].masked_fill(labels["attention_mask"] == 0, -100)
    return {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"], "labels": target}


def step_accuracy(lm: ActionLM, pairs: Sequence[tuple[str, str]], batch_size: int = 256,
                  generate: bool = False) -> float:
    """Fraction of (prompt, expert action) pairs where the model's action is the expert's: its top-scored
    of BabyAI-Text's actions, or (`generate`) its generated text, compared in lower case."""
    correct = 0
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start:start + batch_size]
        prompts = [p for p, _ in chunk]
        chosen = (lm.generate(prompts)[0].actions if generate
                  else [ACTIONS[c] for c in lm.score(prompts, ACTIONS)[0].argmax(axis=1)])
        correct += sum(c.lower() == a.lower() for c, (_, a) in zip(chosen, chunk, strict=True))
    return correct / max(1, len(pairs))


def bucketed_batches(lengths: Sequence[int], batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """One epoch of batches: shuffled, then sorted by length within buckets of BUCKET_BATCHES batches
    (so a batch pads to similar lengths), and the batches shuffled again. Deterministic given `rng`."""
    order = rng.permutation(len(lengths))
    lengths = np.asarray(lengths)
    batches: list[np.ndarray] = []
    span = batch_size * BUCKET_BATCHES
    for start in range(0, len(order), span):
        bucket = order[start:start + span]
        bucket = bucket[np.argsort(lengths[bucket], kind="stable")]
        batches.extend(bucket[i:i + batch_size] for i in range(0, len(bucket), batch_size))
    full = [b for b in batches if len(b) == batch_size] or batches
    return [full[i] for i in rng.permutation(len(full))]


def train(
    recipe: ModelRecipe,
    train_pairs: Sequence[tuple[str, str]],
    heldout_pairs: Sequence[tuple[str, str]],
    out_dir: Path,
    name: str,
    device: str = "cpu",
    init_dir: Path | None = None,
    steps: int | None = None,
    step_offset: int = 0,
    progress: bool = True,
) -> dict:
    """Train one model by behaviour cloning and save model, tokenizer and `londi.json` to `out_dir`.

    With `init_dir` training continues from that checkpoint (its tokenizer, its weights) for `steps`
    steps with a fresh warm-up and cosine decay: what a DAgger round does after adding data.
    """
    # Initial weights and dropout draw from torch's generator: seeded from the recipe in a fork of it, so a
    # training gives the same model wherever it runs and leaves everyone else's random state as it found it.
    devices = [torch.device(device)] if torch.device(device).type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(recipe.seed + step_offset)
        started = time.perf_counter()
        steps = recipe.steps if steps is None else steps
        if init_dir is not None:
            tokenizer = AutoTokenizer.from_pretrained(init_dir)
            model = auto_class(recipe.arch).from_pretrained(init_dir)
        elif recipe.init_from:
            tokenizer = AutoTokenizer.from_pretrained(recipe.init_from)
            model = auto_class(recipe.arch).from_pretrained(recipe.init_from)
        elif recipe.tokenizer == "bpe":
            texts = [p for p, _ in train_pairs] + [a for _, a in train_pairs]
            tokenizer = build_bpe_tokenizer(texts, recipe.vocab_size)
            model = build_model(recipe, tokenizer)
        else:
            tokenizer = build_tokenizer([p for p, _ in train_pairs])
            model = build_model(recipe, tokenizer)
        model.to(device)
        make_batch = _batch if recipe.arch == "t5" else causal_batch
        optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
        schedule = get_cosine_schedule_with_warmup(optimizer, min(recipe.warmup_steps, steps // 4), steps)
        order = np.random.default_rng(recipe.seed + step_offset)
        lengths = [len(p.split()) for p, _ in train_pairs]
        epoch: list[np.ndarray] = []
        log: list[dict] = []
        model.train()
        window: list[float] = []  # losses since the last log line: each logged loss is their mean
        bar = tqdm(range(steps), desc=f"train {name}", unit="step", mininterval=1.0, disable=not progress)
        for step in bar:
            if not epoch:
                epoch = bucketed_batches(lengths, recipe.batch_size, order)
            chunk = [train_pairs[i] for i in epoch.pop()]
            batch = make_batch(tokenizer, [p for p, _ in chunk], [a for _, a in chunk])
            loss = model(**{k: v.to(device) for k, v in batch.items()}).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            window.append(loss.item())
            if (step + 1) % LOG_EVERY == 0 or step == steps - 1:
                mean_loss = float(np.mean(window))
                log.append({"step": step_offset + step, "loss": round(mean_loss, 5), "lr": schedule.get_last_lr()[0]})
                bar.set_postfix(loss=f"{mean_loss:.3f}")
                window = []
        train_s = time.perf_counter() - started
        model.eval()
        lm = (ActionLM if recipe.arch == "t5" else CausalActionLM)(model, tokenizer, name=name,
                                                                  context=recipe.context, device=device)
        meta = {
            "name": name,
            "role": recipe.role,
            "context": recipe.context,
            "recipe": asdict(recipe),
            "train_pairs": len(train_pairs),
            "epochs": steps * recipe.batch_size / max(1, len(train_pairs)),
            "train_s": round(train_s, 2),
            "final_loss": log[-1]["loss"],
            "heldout_step_accuracy": step_accuracy(lm, heldout_pairs, generate=recipe.generate),
            "non_embedding_params": lm.size.non_embedding_params,
            "total_params": lm.size.total_params,
            "torch": torch.__version__,
            "log": log,
        }
        out_dir.mkdir(parents=True, exist_ok=True)
        model.to("cpu").save_pretrained(out_dir)
        tokenizer.save_pretrained(out_dir)
        (out_dir / LONDI_META).write_text(json.dumps(meta, indent=1))
        return meta


