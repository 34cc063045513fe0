"""Models: load a causal LM from a folder, build reference models, read hidden states.

Everything model-shaped that the rest of the harness needs goes through here:

- `load_model` opens any Hugging Face causal LM folder safely (safetensors only, no
  remote code, local files only; see `benchmark.safety`).
- `word_tokenizer` and `new_gpt2` make the reference models' tokenizer and architecture;
  `bpe_tokenizer` a byte-level BPE one (the pretrained stand-in's, `benchmark.standin`).
- `hidden_states_at` maps character offsets to token positions through the tokenizer's
  offset mapping and returns every layer's state there, from one batched forward pass.
- `complete` is the model side of a task's solver: batched greedy or beam continuations.

A masked model (`LoadedModel.masked`: bidirectional attention, `benchmark.masked`) has no
next-token distribution: `complete` and `hidden_states_at` hand it to that module's adapter,
and `generate_words` refuses it.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

SPECIAL_TOKENS = {"pad_token": "<pad>", "unk_token": "<unk>", "eos_token": "<eos>"}
# The share of one GPU's free memory a model's weights may take there. The rest holds the
# random-init control of the same size, activations and beams; a larger model is split
# over the GPUs (and CPU memory) by accelerate's device_map="auto".
GPU_WEIGHT_SHARE = 0.4


def pick_device() -> torch.device:
    """CUDA when present, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def weight_bytes(folder: Path) -> int:
    """The size of a model folder's safetensors weights."""
    return sum(p.stat().st_size for p in Path(folder).rglob("*.safetensors"))


def wants_device_map(folder: Path, device: torch.device) -> bool:
    """Whether to load with device_map="auto": on CUDA, with accelerate installed, when the
    weights take more than `GPU_WEIGHT_SHARE` of the GPU's free memory. Never on CPU (a CPU
    run needs no accelerate and keeps its numbers)."""
    if device.type != "cuda" or importlib.util.find_spec("accelerate") is None:
        return False
    free, _ = torch.cuda.mem_get_info(device)
    return weight_bytes(folder) > GPU_WEIGHT_SHARE * free


@dataclass
class LoadedModel:
    """A causal LM, its tokenizer and where it came from."""

    model: torch.nn.Module
    tokenizer: object
    path: Path

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def n_layers(self) -> int:
        return int(self.model.config.num_hidden_layers)

    @property
    def masked(self) -> bool:
        """A masked model (``is_causal`` false): it writes by mask filling (`benchmark.masked`)."""
        from benchmark.masked import is_masked

        return is_masked(self.model)

    @property
    def context(self) -> int | None:
        """The most tokens the model reads at once (None: no fixed limit, e.g. Mamba)."""
        return getattr(self.model.config, "max_position_embeddings", None)


def word_tokenizer(vocabulary: list[str], mask_token: str | None = None):
    """A word-level fast tokenizer over space-separated tokens, with offset mapping.

    Reference models use it so that one task word is one token and every task text
    encodes without unknown tokens. ``mask_token`` (the masked reference's) is added after
    the words, so every other id is as without it.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = list(SPECIAL_TOKENS.values())
    extra = [mask_token] if mask_token else []
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(specials + list(vocabulary) + extra))}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=SPECIAL_TOKENS["unk_token"]))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    # Decoding joins words with single spaces, the inverse of the pre-tokenizer.
    core.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    return PreTrainedTokenizerFast(tokenizer_object=core, **SPECIAL_TOKENS,
                                   **({"mask_token": mask_token} if mask_token else {}))


# A word's rime as spelled: its last vowel letters and what follows them, a final silent "e"
# included ("n|ight", "st|one", "aw|ay"), after a consonant. A tokenizer that cuts it off
# (`train_bpe`'s ``rime_pieces``) ends every word on a piece it shares with the words it
# rhymes with by spelling, so a rhyme can be written by copying that piece.
_C = "b-df-hj-np-tv-zB-DF-HJ-NP-TV-Z"
RIME_PATTERN = rf"(?<=[{_C}])(?:[aeiouyAEIOUY]+[{_C}]+[eE]|[aeiouyAEIOUY]+[{_C}]*)(?![A-Za-z'])"


def spelled_rime(word: str) -> str | None:
    """A word's spelled rime (`RIME_PATTERN`): "night" -> "ight"; None when it has none."""
    import re

    found = re.search(RIME_PATTERN, word)
    return found.group(0).lower() if found else None


def train_bpe(texts: list[str], vocab_size: int, rime_pieces: bool = False):
    """A byte-level BPE `tokenizers.Tokenizer` trained on ``texts``, spaces inside tokens as
    GPT-2 has them (specials: an end of text and a "<s>" that a caller may make the BOS).
    ``rime_pieces``: no token spans a word's spelled rime and what precedes it (`RIME_PATTERN`)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    if rime_pieces:
        core.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(RIME_PATTERN), "isolated"),
                                                      core.pre_tokenizer])
    core.decoder = decoders.ByteLevel()
    core.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>", "<s>"],
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return core


def bpe_tokenizer(texts: list[str], vocab_size: int, rime_pieces: bool = False):
    """`train_bpe` as a fast tokenizer that pads with its end of text, as GPT-2's does."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=train_bpe(texts, vocab_size, rime_pieces), eos_token="<|endoftext|>",
                                   pad_token="<|endoftext|>")


def new_gpt2(tokenizer, n_layer: int, n_embd: int, n_head: int, n_positions: int, seed: int,
             tie_embeddings: bool = True):
    """A freshly initialised GPT-2 (deterministic for ``seed``) sized for ``tokenizer``.

    ``tie_embeddings=False`` gives the output layer its own embeddings: a model that must
    copy a prompt word into place (constrained completion) then scores that very word, where
    tied embeddings score every word of its topic alike (docs/experiments/constrained_budget.py)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(
        vocab_size=len(tokenizer), n_positions=n_positions, n_embd=n_embd, n_layer=n_layer,
        n_head=n_head, bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=tie_embeddings,
        # No dropout: the references see each example only a few times in a short budget,
        # and dropout slowed learning there more than it helped generalisation.
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
    )
    cfg._attn_implementation = "sdpa"
    torch.manual_seed(seed)
    return GPT2LMHeadModel(cfg)


def random_init_like(loaded: LoadedModel, seed: int) -> LoadedModel:
    """A randomly initialised model of the same architecture and tokenizer (a probe control)."""
    from transformers import AutoModelForCausalLM

    from benchmark.bottleneck import reinstall

    torch.manual_seed(seed)
    model = reinstall(AutoModelForCausalLM.from_config(loaded.model.config))
    split = getattr(loaded.model, "hf_device_map", None)
    if split:  # the model did not fit on one GPU, so neither does its control: split it alike
        from accelerate import dispatch_model

        model = dispatch_model(model, device_map=split)
    else:
        model.to(loaded.device)
    model.eval()
    return LoadedModel(model=model, tokenizer=loaded.tokenizer, path=loaded.path)


def load_model(folder: str | Path, device: torch.device | None = None) -> LoadedModel:
    """Load a causal LM and its tokenizer from a local folder, safely.

    The model goes to ``device`` (default: CUDA when present); a model too big for one GPU
    is split over the GPUs by accelerate (`wants_device_map`). Raises
    `benchmark.safety.SubmissionError` with a one-line reason when the folder is missing,
    holds pickle weights or custom code, or cannot be loaded.
    """
    from benchmark.safety import check_model_folder, load_checked

    folder = Path(folder)
    check_model_folder(folder)
    device = device or pick_device()
    split = wants_device_map(folder, device)
    model, tokenizer = load_checked(folder, device_map="auto" if split else None)
    from benchmark.bottleneck import reinstall

    reinstall(model)  # a bottleneck model (validate's known answer) keeps its attention
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if device.type == "cpu" and model.dtype in (torch.float16, torch.bfloat16):
        # Half precision on CPU gives the same numbers 6-10x slower (fp16): compute in fp32.
        model = model.float()
    if not split:  # accelerate has placed a split model already
        model.to(device)
    model.eval()
    return LoadedModel(model=model, tokenizer=tokenizer, path=folder)


def adds_bos(tokenizer) -> bool:
    """Whether texts are encoded with the tokenizer's BOS in front: exactly when the
    tokenizer itself adds a BOS and nothing else (a Llama-style post-processor), so a model
    trained with a BOS gets one. The reference tokenizers add none."""
    bos = tokenizer.bos_token_id
    if bos is None:
        return False
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    return tokenizer("a", add_special_tokens=True)["input_ids"] == [bos] + plain


def tokenize(tokenizer, texts, **kwargs):
    """``tokenizer(texts, **kwargs)`` with the special tokens the model expects (`adds_bos`):
    every encoding of task text goes through here, so token positions agree everywhere."""
    return tokenizer(texts, add_special_tokens=adds_bos(tokenizer), **kwargs)


def encode(tokenizer, texts: list[str], device: torch.device, padding_side: str = "right",
           max_length: int | None = None):
    """Tokenize a batch with padding; returns (input_ids, attention_mask, offsets).

    ``max_length`` cuts each text's tail to the model's context: a model's own long
    continuation must not overflow it, and a state at a decision point inside the prompt
    does not depend on what comes after it."""
    tokenizer.padding_side = padding_side
    cut = {"truncation": True, "max_length": max_length} if max_length else {}
    enc = tokenize(tokenizer, texts, return_tensors="pt", padding=True, return_offsets_mapping=True, **cut)
    return enc["input_ids"].to(device), enc["attention_mask"].to(device), enc["offset_mapping"]


def encode_examples(tokenizer, examples: list[dict], add_eos: bool) -> list[dict]:
    """Token ids of prompt + completion (+ EOS), and per example the positions whose next
    token belongs to the completion ("loss": where the completion is scored or trained)
    and the decision positions ("decisions": the last token before each decision offset),
    and each token's first character ("starts", without the EOS).

    Position t predicts token t+1, so the first loss position is the prompt's last token.
    """
    out = []
    for ex in examples:
        enc = tokenize(tokenizer, ex["prompt"] + ex["completion"], return_offsets_mapping=True)
        ids = enc["input_ids"] + ([tokenizer.eos_token_id] if add_eos else [])
        starts = [s for s, _ in enc["offset_mapping"]]
        n_prompt = sum(1 for s in starts if s < len(ex["prompt"]))
        decisions = []
        for d in ex["decisions"]:
            before = [i for i, s in enumerate(starts) if s < d["offset"]]
            if before:
                decisions.append(before[-1])
        out.append({"ids": ids, "loss": list(range(max(n_prompt - 1, 0), len(ids) - 1)),
                    "decisions": decisions, "starts": starts})
    return out


def token_index(offsets: torch.Tensor, mask: torch.Tensor, char_offset: int) -> int:
    """The last real token that starts before ``char_offset`` (the state that has read the
    text up to the decision point and predicts what follows it)."""
    starts = offsets[:, 0]
    ok = (starts < char_offset) & mask.bool().cpu()
    # Padding rows have offsets (0, 0); mask them out so they are never chosen.
    idx = torch.nonzero(ok).flatten()
    if len(idx) == 0:
        raise ValueError(f"no token before character offset {char_offset}")
    return int(idx[-1])


@torch.no_grad()
def hidden_states_at(
    loaded: LoadedModel, texts: list[str], char_offsets: list[int], batch_size: int = 64
) -> np.ndarray:
    """Hidden states of every layer at one character offset per text: [L+1, N, H] float32.

    Layer 0 is the embedding output; right padding keeps every real position's state
    independent of the batch it was computed in. A masked model's state is read with the
    text after the offset masked (`benchmark.masked.hidden_states_at`).
    """
    if loaded.masked:
        from benchmark import masked

        return masked.hidden_states_at(loaded, texts, char_offsets, batch_size)
    out = []
    for start in range(0, len(texts), batch_size):
        chunk = texts[start:start + batch_size]
        ids, mask, offsets = encode(loaded.tokenizer, chunk, loaded.device, max_length=loaded.context)
        res = loaded.model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        layers = torch.stack(res.hidden_states)  # [L+1, B, T, H]
        rows = [token_index(offsets[i], mask[i], char_offsets[start + i]) for i in range(len(chunk))]
        picked = layers[:, torch.arange(len(chunk)), torch.tensor(rows)]
        out.append(picked.float().cpu().numpy())
    return np.concatenate(out, axis=1)


# A budget in words becomes a token budget: exact for a word-level tokenizer (the
# references'), else this many tokens a word (" e2e4" is four byte-level BPE tokens) with a
# stop once the words are there.
TOKENS_PER_WORD = 8


def one_token_per_word(tokenizer) -> bool:
    """Whether the tokenizer is word-level, so that N words are exactly N tokens."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    return backend is not None and type(backend.model).__name__ == "WordLevel"


def within_budget(text: str, max_words: int) -> str:
    """A continuation cut to its first line and its first ``max_words`` words, written as
    the task convention has it: a space, then the words separated by single spaces."""
    body = text.lstrip("\n")
    words = body.split("\n", 1)[0].split()
    return " " + " ".join(words[:max_words])


class _WordBudget:
    """A stopping criterion: a row is done once its continuation has more than
    ``max_words`` words or has ended its line (the cut is made by `within_budget`)."""

    def __init__(self, tokenizer, prompt_length: int, max_words: int):
        self.tokenizer, self.prompt_length, self.max_words = tokenizer, prompt_length, max_words

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        texts = self.tokenizer.batch_decode(input_ids[:, self.prompt_length:], skip_special_tokens=True)
        done = [len(t.split()) > self.max_words or "\n" in t.lstrip("\n") for t in texts]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


def word_budget(loaded: LoadedModel, prompt_length: int, max_words: int,
                stop_from: int | None = None) -> tuple[int, _WordBudget | None]:
    """The token budget of a continuation of ``max_words`` words after ``prompt_length``
    prompt tokens, and its stop (None for a word-level tokenizer, whose budget is exact;
    else a `_WordBudget` that reads the generated tokens from column ``stop_from``, by
    default ``prompt_length``: a batch laid out as `generate` lays it out)."""
    tok = loaded.tokenizer
    exact = one_token_per_word(tok)
    max_new = max_words if exact else max_words * TOKENS_PER_WORD
    if loaded.context:  # never past the model's context (the prompts fit: `check_model_sanity`)
        max_new = max(1, min(max_new, loaded.context - prompt_length))
    return max_new, None if exact else _WordBudget(tok, prompt_length if stop_from is None else stop_from, max_words)


def generate_words(loaded: LoadedModel, ids: torch.Tensor, mask: torch.Tensor, max_words: int,
                   num_beams: int = 1) -> list[str]:
    """Greedy or beam continuations of a left-padded batch, at most ``max_words`` words and
    one line each (`within_budget`), whatever the tokenizer; stops at EOS."""
    from transformers import StoppingCriteriaList

    if loaded.masked:  # `generate` would read a bidirectional model as a causal one
        raise ValueError("generate is not defined for masked models: they write by mask filling")
    tok = loaded.tokenizer
    max_new, stop = word_budget(loaded, ids.shape[1], max_words)
    budget = {"max_new_tokens": max_new}
    if stop:
        budget["stopping_criteria"] = StoppingCriteriaList([stop])
    gen = loaded.model.generate(
        input_ids=ids, attention_mask=mask, num_beams=num_beams, do_sample=False,
        pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
        early_stopping=num_beams > 1, **budget)
    return [within_budget(text, max_words)
            for text in tok.batch_decode(gen[:, ids.shape[1]:], skip_special_tokens=True)]


@torch.no_grad()
def complete(
    loaded: LoadedModel, texts: list[str], max_words: int, num_beams: int = 1,
    batch_size: int = 64,
) -> list[str]:
    """Continue each text greedily (``num_beams=1``) or with beam search: at most
    ``max_words`` words and one line (`generate_words`).

    Returns the continuations as text, each starting with a space (the task convention).
    A masked model writes by mask filling (`benchmark.masked.fill`), greedily only.
    """
    if loaded.masked:
        from benchmark import masked

        if num_beams != 1:
            raise ValueError("beam search is not defined for masked models")
        return masked.fill(loaded, texts, max_words, batch_size)
    results = []
    for start in range(0, len(texts), batch_size):
        ids, mask, _ = encode(loaded.tokenizer, texts[start:start + batch_size], loaded.device, padding_side="left")
        results.extend(generate_words(loaded, ids, mask, max_words, num_beams))
    return results
