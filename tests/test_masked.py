"""The masked reference (benchmark/masked.py): its masking rule, bidirectional attention, mask
filling, the adapter's probe states and task loss, and a whole tiny cell through the normal
evaluate path."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from benchmark import masked
from benchmark.evaluate import EvalConfig
from benchmark.models import LoadedModel, new_gpt2, word_tokenizer
from benchmark.results import cell_path, read_cell
from benchmark.runner import evaluate_folder
from benchmark.safety import SubmissionError
from benchmark.submissions import write_submission_toml
from benchmark.train import TrainConfig, train_reference
from tasks import get_task

S = 5  # a small region for the toys
TINY = TrainConfig(variant="masked", tasks=("rhymes",), size="quick", steps=40, batch_size=16, n_layer=2,
                   n_embd=32, n_head=2, n_positions=64, warmup=5)
TINY_EVAL = EvalConfig(size="quick", n_eval=48, max_success=16, max_amp_examples=16, n_boot=50, future_k=2,
                       batch_size=32, causal_pairs=16)


class LeafLogits(torch.nn.Module):
    """A stand-in model whose logits are a fresh leaf tensor (zeros) on every call, so a test
    can read the loss's gradient at every position."""

    def __init__(self, vocab: int):
        super().__init__()
        self.vocab, self.weight = vocab, torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, attention_mask, **kwargs):
        self.logits = torch.zeros(*input_ids.shape, self.vocab, requires_grad=True)
        return SimpleNamespace(logits=self.logits)


def toy_items() -> list[dict]:
    # Token ids: 0 pad, 1 unk, 2 eos, 3.. words, 9 mask. Prompts of 3 and 4 tokens.
    return [{"ids": [3, 4, 5, 6, 7, 2], "turns": [3]}, {"ids": [3, 5, 4, 8, 6, 7, 8, 2], "turns": [4]}]


def test_the_masking_rule_counts_only_masked_slots_and_never_the_prompt():
    objective = masked.MaskedObjective(mask_id=9, eos_id=2, pad_id=0, slots=S, seed=0)
    counts = []
    for _ in range(400):
        b = objective.batch(toy_items(), torch.device("cpu"))
        is_mask = b.input_ids == 9
        region = torch.zeros_like(is_mask)
        region[torch.arange(2)[:, None], b.where] = True
        assert not (is_mask & ~region).any()  # the prompt (and padding) is never masked
        # A target exactly where a slot is masked; it is the reference token (eos after the end).
        targets = b.targets != masked.IGNORE
        assert torch.equal(targets, is_mask[torch.arange(2)[:, None], b.where])
        expected = torch.tensor([[6, 7, 2, 2, 2], [6, 7, 8, 2, 2]])
        assert torch.equal(b.targets[targets], expected[targets])
        counts += targets.sum(1).tolist()
    # k is uniform on 1..S: every count appears, about equally often.
    assert sorted(set(counts)) == list(range(1, S + 1))
    assert all(abs(counts.count(k) / len(counts) - 1 / S) < 0.05 for k in range(1, S + 1))

    # The loss is the mean cross-entropy over the masked slots and nothing else: with uniform
    # logits it is log V, and its gradient is 0 at every unmasked position.
    model = LeafLogits(vocab=10)
    objective = masked.MaskedObjective(mask_id=9, eos_id=2, pad_id=0, slots=S, seed=1)
    loss, stats = objective.loss(model, toy_items())
    loss.backward()
    assert loss.item() == pytest.approx(torch.log(torch.tensor(10.0)).item())
    touched = model.logits.grad.abs().sum(-1) > 0
    again = masked.MaskedObjective(mask_id=9, eos_id=2, pad_id=0, slots=S, seed=1).batch(toy_items(), torch.device("cpu"))
    assert torch.equal(touched, again.input_ids == 9)  # same seed, same draw
    assert 0 < stats["frac_masked"] <= 1


def test_a_masked_slot_learns_from_both_sides_and_not_from_padding(rhymes_tokenizer):
    def embedding_grads(model) -> torch.Tensor:
        grads = {}

        def keep(_module, _inputs, out) -> None:
            out.register_hook(lambda g: grads.update(g=g))

        model.transformer.wte.register_forward_hook(keep)
        # Two rows, right padded (8 and 6 tokens). Row 0's loss is its middle slot's (2), with
        # the slots after it visible; row 1's is its first slot's. Token 9 stands for the mask.
        regions = torch.tensor([[10, 11, 9, 12, 13], [9, 9, 9, 9, 9]])
        ids, attn, where = masked.layout([[3, 4, 5], [3]], regions, pad_id=0, device=torch.device("cpu"))
        logits, _ = masked.region_logits(model, ids, attn, where)
        (logits[0, 2].logsumexp(-1) + logits[1, 0].logsumexp(-1)).backward()
        return grads["g"].abs().sum(-1)

    bidirectional = masked.make_masked(new_gpt2(rhymes_tokenizer, 2, 32, 2, 64, seed=0), S)
    grads = embedding_grads(bidirectional)
    # Row 0: the prompt before the masked slot and the visible slots after it both get gradient.
    assert (grads[0, :3] > 0).all() and (grads[0, 6:8] > 0).all()
    # Row 1: every real token (the prompt and the masks after its slot); its padding none.
    assert (grads[1, :6] > 0).all() and (grads[1, 6:] == 0).all()
    causal = new_gpt2(rhymes_tokenizer, 2, 32, 2, 64, seed=0)
    grads = embedding_grads(causal)
    assert (grads[0, :3] > 0).all() and (grads[0, 6:8] == 0).all()  # a causal model sees one side only


class PatternModel(torch.nn.Module):
    """A toy "model" that must fill a fixed pattern: the answer is tokens 5 6 7 then the end
    (2), slot 2 is the surest, then the end at slot 3, then slot 0; slot 0 is 5 only once slot
    2 holds 7 (else 8), so the result shows that each fill reads the earlier ones. It records
    which slot each pass filled."""

    answer, confidence = [5, 6, 7, 2, 2], [3.0, 1.0, 5.0, 4.0, 0.5]

    def __init__(self):
        super().__init__()
        self.weight, self.inputs = torch.nn.Parameter(torch.zeros(1)), []

    def forward(self, input_ids, attention_mask, **kwargs):
        self.inputs.append(input_ids.clone())
        logits = torch.zeros(*input_ids.shape, 10)
        start = 2  # every row's visible text is two tokens
        for b in range(input_ids.shape[0]):
            for i, (token, c) in enumerate(zip(self.answer, self.confidence)):
                if i == 0 and input_ids[b, start + 2] != 7:
                    token = 8
                logits[b, start + i, token] = c
                logits[b, start + i, 9] = 100.0  # the mask token: never a fill
        return SimpleNamespace(logits=logits)


def test_mask_filling_fills_the_surest_slot_first_and_stops_at_the_end():
    model = PatternModel()
    out = masked.fill_regions(model, [[3, 4], [4, 3]], slots=S, mask_id=9, eos_id=2, pad_id=0)
    assert out == [[5, 6, 7], [5, 6, 7]]
    # Order: slot 2, the end (3), slot 0, slot 1; then every slot before the end is filled and
    # the last slot is never needed: four passes, not five.
    filled = [(x[0, 2:7] != 9).nonzero().flatten().tolist() for x in model.inputs]
    assert filled == [[], [2], [2, 3], [0, 2, 3]]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A tiny masked rhymes reference, trained with the monitor, as a submission folder."""
    from benchmark.monitor import MonitorConfig

    folder = tmp_path_factory.mktemp("subs") / "ref-masked-s0"
    folder.mkdir()
    train_reference(TINY, folder / "model-rhymes", monitor=MonitorConfig(points=1, gain_examples=16, probe_examples=60))
    write_submission_toml(folder, "ref-masked-s0", "tiny masked", {"rhymes": "model-rhymes"},
                          reference={"variant": "masked", "seed": 0, "profile": "quick"})
    return folder


@pytest.fixture(scope="module")
def loaded(reference):
    from benchmark.models import load_model

    return load_model(reference / "model-rhymes")


def test_the_saved_model_is_a_masked_gpt2_with_its_own_cache_key(reference, loaded, tmp_path):
    from benchmark.baselines import reference_config
    from benchmark.results import model_hash

    config = json.loads((reference / "model-rhymes" / "config.json").read_text())
    assert config["is_causal"] is False and config[masked.SLOTS_KEY] == get_task("rhymes").max_words + 1
    assert loaded.masked and loaded.tokenizer.mask_token == masked.MASK_TOKEN
    # The mask token comes after the words: every other id is the causal references'.
    words = word_tokenizer(get_task("rhymes").vocabulary())
    assert loaded.tokenizer.mask_token_id == len(words)
    assert {k: v for k, v in loaded.tokenizer.get_vocab().items() if k != masked.MASK_TOKEN} == words.get_vocab()
    keys = [reference_config("full", "rhymes", v, 0).to_dict() for v in ("masked", "unstunted")]
    assert keys[0] != keys[1] and {k: v for k, v in keys[0].items() if k != "variant"} == \
        {k: v for k, v in keys[1].items() if k != "variant"}  # same data, steps, batch, lr
    again = train_reference(TINY, tmp_path / "again")  # deterministic for a seed
    assert model_hash(again) == model_hash(reference / "model-rhymes")


def test_probe_states_are_the_decision_token_with_the_completion_masked(loaded):
    from benchmark.models import hidden_states_at

    prompt = "couplet : lonely mothers painted the outside /"
    texts = [prompt + " and so she kept provide", prompt + " and now we saw led"]
    states = hidden_states_at(loaded, texts, [len(prompt)] * 2)
    assert states.shape == (loaded.n_layers + 1, 2, 32)
    assert states[:, 0] == pytest.approx(states[:, 1], abs=1e-6)  # the completion is not seen
    ids = loaded.tokenizer(prompt)["input_ids"]
    S_ = masked.mask_slots(loaded)
    with torch.no_grad():
        direct = loaded.model(input_ids=torch.tensor([ids + [loaded.tokenizer.mask_token_id] * S_]),
                              output_hidden_states=True).hidden_states
        seen = loaded.model(input_ids=loaded.tokenizer(texts[:1], return_tensors="pt")["input_ids"],
                            output_hidden_states=True).hidden_states
    expected = torch.stack([h[0, len(ids) - 1] for h in direct]).numpy()
    assert states[:, 0] == pytest.approx(expected, abs=1e-5)
    visible = torch.stack([h[0, len(ids) - 1] for h in seen]).numpy()
    assert abs(states[1:, 0] - visible[1:]).max() > 1e-3  # with the completion visible it differs


def test_task_loss_scores_each_token_with_the_prefix_and_masks_after(loaded):
    task = get_task("rhymes")
    example = list(task.generate("test", 1, 0))[0]
    (scored,) = masked.token_scores(loaded, task, [example])
    tok = loaded.tokenizer
    prompt, completion = tok(example["prompt"])["input_ids"], tok(example["completion"])["input_ids"]
    assert len(scored["logp"]) == len(completion)
    mask = tok.mask_token_id
    S_ = masked.mask_slots(loaded)
    for j, token in enumerate(completion):
        region = completion[:j] + [mask] * (S_ - j)
        with torch.no_grad():
            logits = loaded.model(input_ids=torch.tensor([prompt + region])).logits[0, len(prompt) + j]
        assert scored["logp"][j].item() == pytest.approx(masked.prediction_logp(logits, mask)[token].item(), abs=1e-5)


def test_chess_turns_are_the_texts_of_the_attacker_moves():
    from tasks.chess.lichess import LICHESS_SAMPLE, load_lichess_csv

    examples, _ = load_lichess_csv(LICHESS_SAMPLE)
    task = get_task("chess-mate")
    example = next(ex for ex in examples if task.meta(ex)["n"] == 2 and len(ex["completion"].split()) == 6)
    texts = masked.turn_texts(task, example)
    moves = example["completion"].split()
    # Turn 1: the prompt; turn 2: the prompt, the first move and the defender's reply.
    assert texts == [example["prompt"], example["prompt"] + " " + " ".join(moves[:4])]
    assert masked.turn_texts(get_task("rhymes"), list(get_task("rhymes").generate("test", 1, 0))[0]) == \
        [list(get_task("rhymes").generate("test", 1, 0))[0]["prompt"]]


def test_a_masked_reference_gets_a_whole_cell_through_the_evaluate_path(reference, tmp_path):
    (outcome,) = evaluate_folder(reference, ["rhymes"], TINY_EVAL, tmp_path / "results")
    assert outcome.status == "ok", outcome.detail
    cell = read_cell(cell_path(tmp_path / "results", "ref-masked-s0", "rhymes"))
    m = cell["metrics"]
    assert m["success_greedy"]["all"]["n"] == 16
    assert 0 < m["task_loss"]["value"] < 10 and m["task_loss"]["n"] == 16
    for name in ("rhyme_slot", "rhyme_word"):
        assert len(m["plan_probe"][name]["own"]["selectivity"]) == 3  # embeddings + 2 layers
    assert m["future_lens"]["own"]["curve"]
    assert m["causal"]["model"] is not None and len(m["causal"]["model"]["per_layer"]) == 3
    # What needs a next-token distribution is not there, and the cell says so in one line.
    assert not {"success_beam", "amplification_gain", "amplified_decoding"} & set(m)
    assert m["not_defined"] == masked.NOT_DEFINED
    rows = [json.loads(line) for line in cell_path(tmp_path / "results", "ref-masked-s0", "rhymes")
            .with_suffix(".examples.jsonl").read_text().splitlines()]
    assert all(r["greedy"].startswith(" ") and r["beam"] is None for r in rows)
    # The monitor watched it: probes at each point, no gain.
    points = cell["monitor"]["points"]
    assert [p["step"] for p in points] == [0, TINY.steps]
    assert all(p["amplification_gain"] is None and p["plan_probe"] for p in points)


def test_what_needs_a_next_token_distribution_refuses_a_masked_model(loaded, tmp_path):
    from benchmark.amplify import beam_search
    from benchmark.models import complete, generate_words
    from benchmark.safety import check_model_folder

    with pytest.raises(ValueError, match="not defined for masked models"):
        beam_search(loaded.model, [[3, 4]], 4, 2)
    with pytest.raises(ValueError, match="not defined for masked models"):
        complete(loaded, ["couplet : a /"], 10, num_beams=4)
    with pytest.raises(ValueError, match="not defined for masked models"):
        generate_words(loaded, torch.tensor([[3, 4]]), torch.ones(1, 2, dtype=torch.long), 10)
    # A BERT-style masked LM would load as a causal LM and be scored as one: refused.
    from transformers import BertConfig, BertForMaskedLM

    BertForMaskedLM(BertConfig(vocab_size=20, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=32)).save_pretrained(tmp_path / "bert")
    with pytest.raises(SubmissionError, match="BertForMaskedLM is not evaluated"):
        check_model_folder(tmp_path / "bert")
    # A bidirectional model without a mask token cannot fill anything.
    plain = LoadedModel(masked.make_masked(new_gpt2(word_tokenizer(["a"]), 1, 16, 2, 32, seed=0), S),
                        word_tokenizer(["a"]), tmp_path)
    with pytest.raises(SubmissionError, match="needs a mask token"):
        masked.check(plain, ["a"])
