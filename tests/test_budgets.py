"""Every face's reference answers fit its generation budget, under any tokenizer.

A budget is in words (`Task.max_words`), cut at the line's end (`within_budget`), with at
most `TOKENS_PER_WORD` tokens a word; a reference answer that did not fit would make the task
unsolvable by construction for that tokenizer (as chess was under byte-level BPE when
budgets were word-level tokens)."""

from __future__ import annotations

import pytest

from benchmark.models import TOKENS_PER_WORD, within_budget
from tasks import get_task, task_names
from tests.test_task_contract import sample
from benchmark.models import train_bpe


def reference_turns(task, examples: list[dict]) -> list[str]:
    """Every answer a perfect solver gives, one per model turn: the reference completion
    (single-turn tasks), or each attacker move of the reference line (chess faces)."""
    answers: list[str] = []
    by_prompt = {ex["prompt"]: ex for ex in examples}

    def complete(texts: list[str]) -> list[str]:
        out = []
        for text in texts:
            prompt = next(p for p in by_prompt if text.startswith(p))
            ex = by_prompt[prompt]
            if not hasattr(task, "transcript"):
                out.append(ex["completion"])
                continue
            import chess

            meta = task.meta(ex)
            start, line = chess.Board(meta["fen"]), meta["line"].split()
            played = len(task.moves_of(start, text[len(prompt):]))
            before = task.transcript(start, line[:played], True)
            out.append(task.transcript(start, line[:played + 1], False)[len(before):])
        answers.extend(out)
        return out

    transcripts = task.play(examples, complete)
    assert all(task.check(ex, t) for ex, t in zip(examples, transcripts)), task.name  # the answers solve
    return answers


@pytest.fixture(scope="module")
def tokenizers():
    """Byte-level BPE (GPT-2), Unigram with Metaspace (SentencePiece, Llama) and classic
    whitespace BPE, trained on the text of every face."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    texts = [ex["prompt"] + ex["completion"] for name in task_names() for ex in sample(get_task(name), 40)]
    unigram = Tokenizer(models.Unigram())
    unigram.pre_tokenizer = pre_tokenizers.Metaspace()
    unigram.train_from_iterator(texts, trainers.UnigramTrainer(vocab_size=400, special_tokens=["<unk>"], unk_token="<unk>"))
    classic = Tokenizer(models.BPE(unk_token="<unk>", end_of_word_suffix="</w>"))
    classic.pre_tokenizer = pre_tokenizers.Whitespace()
    classic.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=400, special_tokens=["<unk>"], end_of_word_suffix="</w>"))
    return {"byte-level BPE": train_bpe(texts, 400), "unigram": unigram, "classic BPE": classic}


@pytest.mark.parametrize("name", task_names())
def test_every_reference_answer_fits_the_budget(name, tokenizers):
    task = get_task(name)
    answers = reference_turns(task, sample(task, 40))
    assert answers
    for answer in answers:
        assert within_budget(answer, task.max_words).split() == answer.split(), (name, answer)
        for kind, tok in tokenizers.items():
            assert len(tok.encode(answer).ids) <= task.max_words * TOKENS_PER_WORD, (name, kind, answer)
