"""Safe loading of submitted models: refuse anything that could run code on our machine.

A submitted folder must hold safetensors weights, a config without custom code
(``auto_map``) and no Python files; pickle files (``*.bin``, ``*.pt``, ...) are refused,
never opened. Transformers is always called with ``trust_remote_code=False`` and
``local_files_only=True``. Every failure is a `SubmissionError` with a one-line reason.
"""

from __future__ import annotations

import json
from pathlib import Path

from benchmark.errors import error_line

PICKLE_SUFFIXES = {".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt"}


class SubmissionError(Exception):
    """A submission cannot be evaluated; the message is one readable line."""


def check_model_folder(folder: Path) -> dict:
    """Check a model folder's files before anything is loaded; returns its config dict."""
    if not folder.is_dir():
        raise SubmissionError(f"model folder not found: {folder}")
    files = [p for p in folder.rglob("*") if p.is_file()]
    pickles = sorted(p.name for p in files if p.suffix in PICKLE_SUFFIXES)
    if pickles and not any(p.suffix == ".safetensors" for p in files):
        raise SubmissionError(
            f"pickle weights refused ({', '.join(pickles[:3])}): save the model with "
            "save_pretrained(..., safe_serialization=True) to get .safetensors")
    code = sorted(p.name for p in files if p.suffix == ".py")
    if code:
        raise SubmissionError(f"model folder contains Python files ({', '.join(code[:3])}): "
                              "custom code is never run")
    if not any(p.suffix == ".safetensors" for p in files):
        raise SubmissionError(f"no .safetensors weights in {folder}")
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise SubmissionError(f"no config.json in {folder}")
    try:
        config = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SubmissionError(f"config.json is not valid JSON: {err}") from None
    if not isinstance(config, dict):
        raise SubmissionError("config.json must hold a JSON object")
    if "auto_map" in config:
        raise SubmissionError("config.json has auto_map (custom model code): refused")
    masked_heads = [a for a in config.get("architectures") or [] if str(a).endswith("ForMaskedLM")]
    if masked_heads:
        # It would load as a causal LM (BERT as BertLMHeadModel) and be scored as one: refused.
        # A masked model is evaluated in the masked reference's form (`benchmark.masked`).
        raise SubmissionError(f"{masked_heads[0]} is not evaluated: save a masked model as a causal-LM class "
                              "with is_causal=false and mesabench_mask_slots, a word-level tokenizer with a "
                              "mask token (docs/design.md, masked reference)")
    return config


def load_checked(folder: Path, device_map: str | None = None):
    """Load (model, tokenizer) from a checked folder with every safety flag set;
    ``device_map`` goes to ``from_pretrained`` (e.g. "auto": accelerate splits the model)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    safe = {"local_files_only": True, "trust_remote_code": False}
    try:
        model = AutoModelForCausalLM.from_pretrained(folder, use_safetensors=True, device_map=device_map, **safe)
    except Exception as err:  # transformers raises many types; the user needs one line
        raise SubmissionError(f"cannot load model: {error_line(err)}") from None
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, **safe)
    except Exception as err:
        raise SubmissionError(f"cannot load tokenizer: {error_line(err)}") from None
    if not getattr(tokenizer, "is_fast", False):
        raise SubmissionError("the tokenizer is not a fast tokenizer, so it has no offset "
                              "mapping; save a tokenizer.json (PreTrainedTokenizerFast)")
    return model, as_saved(tokenizer, folder / "tokenizer.json")


# Texts on which a reloaded tokenizer must give the ids of the saved tokenizer.json: task
# formats, punctuation, digits, runs of spaces, a line break and non-ASCII letters.
ROUND_TRIP_TEXTS = (
    "couplet : the quiet river ran / and", " e2e4 g7g8q mate 1 white : . . . k",
    "Hello, World! It's 12:30 -- two  spaces\nand a new line.", "naïve café, über straße",
)


def as_saved(tokenizer, tokenizer_json: Path):
    """The tokenizer as its ``tokenizer.json`` encodes. AutoTokenizer may rebuild a saved
    tokenizer through the model type's own class (a Qwen2 folder reloads as Qwen2Tokenizer,
    whose pre-tokenizer changed the ids of 180 of 300 task texts); when its ids differ from
    the file's on `ROUND_TRIP_TEXTS`, the file itself is wrapped instead, with the same
    special tokens."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    if not tokenizer_json.is_file():
        return tokenizer
    try:
        saved = Tokenizer.from_file(str(tokenizer_json))
    except Exception as err:
        raise SubmissionError(f"cannot read {tokenizer_json.name}: {error_line(err)}") from None
    if all(tokenizer(t, add_special_tokens=False)["input_ids"] == saved.encode(t, add_special_tokens=False).ids
           for t in ROUND_TRIP_TEXTS):
        return tokenizer
    specials = {name: getattr(tokenizer, name) for name in ("bos_token", "eos_token", "unk_token", "pad_token")
                if getattr(tokenizer, name, None) is not None}
    return PreTrainedTokenizerFast(tokenizer_object=saved, **specials)
