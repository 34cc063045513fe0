"""The causal follow rate: the patch hook on several architectures, and the metric on a
planted model (it must fire), on a decision point the model does not use (it must not),
and on the random-init control."""

import json
import random

import pytest
import torch

from benchmark.causal import (
    _pairs, best_layer, decoder_blocks, follow_rate, greedy, patched, states_at_tokens,
)
from benchmark.models import LoadedModel, complete, new_gpt2, random_init_like, word_tokenizer


def _tiny(kind: str):
    from transformers import (AutoModelForCausalLM, GPT2Config, GPTNeoXConfig, LlamaConfig,
                              Qwen2Config)

    common = dict(vocab_size=40, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                  num_attention_heads=2, max_position_embeddings=32, bos_token_id=0,
                  eos_token_id=0, pad_token_id=0)
    cfg = {
        "gpt2": lambda: GPT2Config(vocab_size=40, n_positions=32, n_embd=16, n_layer=2, n_head=2,
                                   bos_token_id=0, eos_token_id=0, pad_token_id=0),
        "llama": lambda: LlamaConfig(num_key_value_heads=1, **common),
        "neox": lambda: GPTNeoXConfig(**common),
        "qwen2": lambda: Qwen2Config(num_key_value_heads=1, **common),
    }[kind]()
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(cfg).eval()


def _batch():
    """Three rows, the last two left-padded (pad id 0), as generate would see them."""
    torch.manual_seed(1)
    ids = torch.randint(1, 40, (3, 7))
    mask = torch.ones_like(ids)
    ids[1, :2] = 0
    mask[1, :2] = 0
    ids[2, :1] = 0
    mask[2, :1] = 0
    return ids, mask


def _n_hooks(model) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


@pytest.mark.parametrize("kind", ["gpt2", "llama", "neox", "qwen2"])
def test_patch_with_the_models_own_state_is_bit_exact(kind):
    model = _tiny(kind)
    ids, mask = _batch()
    pos = [3, 4, 6]  # padded coordinates
    with torch.no_grad():
        ref = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        for layer in range(len(ref.hidden_states)):
            own = ref.hidden_states[layer][torch.arange(3), torch.tensor(pos)]
            with patched(model, layer, pos, own):
                out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
            assert torch.equal(out.logits, ref.logits), (kind, layer)
            # A real change: earlier positions untouched, the patched state is what
            # output_hidden_states reports, and later logits move.
            with patched(model, layer, pos, torch.zeros_like(own)):
                out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
            assert torch.equal(out.hidden_states[layer][torch.arange(3), torch.tensor(pos)],
                               torch.zeros_like(own))
            assert torch.equal(out.logits[0, :3], ref.logits[0, :3])
            assert not torch.equal(out.logits[0, 3:], ref.logits[0, 3:])


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_hooks_are_removed_after_the_block_and_after_an_exception(kind):
    model = _tiny(kind)
    ids, mask = _batch()
    model(input_ids=ids, attention_mask=mask, output_hidden_states=True)  # transformers' own hooks
    before = _n_hooks(model)
    vec = torch.zeros(3, 16)
    for layer in (0, 1, 2):
        with patched(model, layer, [1, 2, 3], vec):
            assert _n_hooks(model) == before + 2
        assert _n_hooks(model) == before
        with pytest.raises(RuntimeError, match="boom"):
            with patched(model, layer, [1, 2, 3], vec):
                raise RuntimeError("boom")
        assert _n_hooks(model) == before
    # A bad vector shape fails before any hook is left behind.
    with pytest.raises(ValueError):
        with patched(model, 1, [1, 2, 3], torch.zeros(2, 16)):
            pass
    assert _n_hooks(model) == before


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_cached_generation_patches_the_prompt_pass_only(kind):
    """generate with the KV cache under the patch equals a cache-free greedy loop that
    patches the same prompt position on every full pass: the patch reaches later tokens
    through the cache, and the one-token steps (even at position 0) are not patched."""
    model = _tiny(kind)
    ids, mask = _batch()
    torch.manual_seed(2)
    vec = torch.randn(3, 16) * 3
    for pos in ([0, 2, 1], [6, 6, 6]):
        with torch.no_grad(), patched(model, 1, pos, vec):
            gen = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=5,
                                 do_sample=False, pad_token_id=0, eos_token_id=None)
        seq, m = ids.clone(), mask.clone()
        for _ in range(5):
            position_ids = (m.cumsum(1) - 1).clamp(min=0)
            with torch.no_grad(), patched(model, 1, pos, vec):
                logits = model(input_ids=seq, attention_mask=m, position_ids=position_ids,
                               use_cache=False).logits
            nxt = logits[:, -1].argmax(-1, keepdim=True)
            seq, m = torch.cat([seq, nxt], 1), torch.cat([m, torch.ones_like(nxt)], 1)
        assert torch.equal(gen, seq), (kind, pos)
        # The patch did something (tiny random models repeat a token, so compare logits).
        with torch.no_grad():
            plain = model(input_ids=seq[:, :-1], attention_mask=m[:, :-1],
                          position_ids=position_ids, use_cache=False).logits
        assert not torch.equal(logits, plain)


def test_decoder_blocks_are_found_generically():
    for kind, base_name in [("gpt2", "GPT2Model"), ("llama", "LlamaModel"),
                            ("neox", "GPTNeoXModel"), ("qwen2", "Qwen2Model")]:
        base, blocks = decoder_blocks(_tiny(kind))
        assert type(base).__name__ == base_name and len(blocks) == 2


# ---------------------------------------------------------------------------------------
# A planted model: the answer is a fixed function of one prompt word
# ---------------------------------------------------------------------------------------

KEYS = [f"k{i}" for i in range(8)]
FILLERS = [f"f{i}" for i in range(10)]


class ToyTask:
    """``c FILLER... KEY / and o(T) T`` with T = (3 KEY + 1) mod 8: the answer T is fixed by
    the key word alone. ``at`` puts the decision point at the key token (whose state
    carries the answer) or at ``/`` (which the model does not need: later tokens read the
    key itself)."""

    max_words = 5

    def __init__(self, at: str):
        self.at = at

    @staticmethod
    def first_step(completion: str, example: dict | None = None) -> str | None:
        return next(iter(completion.split()), None)

    @staticmethod
    def in_first_step(plan: str | None, step: str | None) -> bool:
        return plan == step

    @staticmethod
    def play(examples: list[dict], complete) -> list[str]:
        return complete([ex["prompt"] for ex in examples])

    @staticmethod
    def vocabulary() -> list[str]:
        return ["c", "/", "and", *KEYS, *FILLERS, *(f"o{i}" for i in range(4)),
                *(f"t{i}" for i in range(8))]

    def example(self, rng: random.Random) -> dict:
        k = rng.randrange(8)
        t = (3 * k + 1) % 8
        fill = " ".join(rng.choice(FILLERS) for _ in range(rng.randint(1, 3)))
        line1 = f"c {fill} k{k}"
        text = f"{line1} / and o{t % 4} t{t}"
        cut = len(line1) if self.at == "key" else len(line1) + 2
        return {"id": "", "prompt": text[:cut], "completion": text[cut:], "meta": "{}",
                "decisions": [{"name": "answer", "offset": cut, "target": f"t{t}", "horizon": 3}]}

    def target_from_completion(self, example: dict, completion: str, name: str) -> str | None:
        """The answer word after ``and o?``, or None when the completion is off-format."""
        w = completion.split()
        i = w.index("and") + 2 if "and" in w else len(w)
        return w[i] if i < len(w) and w[i].startswith("t") else None


@pytest.fixture(scope="module")
def toy_model() -> LoadedModel:
    """A 2-layer GPT-2 trained for 300 steps (~3 s) to 100% on the toy task."""
    tok = word_tokenizer(ToyTask.vocabulary())
    model = new_gpt2(tok, n_layer=2, n_embd=64, n_head=2, n_positions=16, seed=0)
    task, rng = ToyTask("key"), random.Random(0)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(300):
        rows = [task.example(rng) for _ in range(32)]
        enc = tok([r["prompt"] + r["completion"] + " <eos>" for r in rows], return_tensors="pt",
                  padding=True, add_special_tokens=False)
        labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
        loss = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                     labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    loaded = LoadedModel(model=model.eval(), tokenizer=tok, path=None)
    exs = _toy_examples("key", 60, seed=99)
    comps = complete(loaded, [e["prompt"] for e in exs], ToyTask.max_words)
    solved = sum(task.target_from_completion(e, c, "answer") == e["decisions"][0]["target"]
                 for e, c in zip(exs, comps))
    assert solved >= 57, f"toy model did not learn the task ({solved}/60)"
    return loaded


def _toy_examples(at: str, n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    return [ToyTask(at).example(rng) for _ in range(n)]


def test_follow_rate_fires_where_the_plan_is_carried(toy_model):
    task = ToyTask("key")
    res = follow_rate(toy_model, task, _toy_examples("key", 80, seed=1), n_pairs=80)
    json.dumps(res)  # JSON-friendly
    by_layer = {row["layer"]: row for row in res["per_layer"]}
    # Layer 0 at the key token is the key word itself: the donor's key replaces the
    # recipient's, so the completion must end on the donor's answer.
    assert by_layer[0]["decision"]["follow"]["rate"] >= 0.95
    assert by_layer[0]["decision"]["keep"]["rate"] <= 0.05
    assert by_layer[0]["decision"]["base"]["rate"] <= 0.05
    best = best_layer(res)
    assert best["layer"] == 0 and best["lo"] > 0.9
    # The control token ("c", the same in every prompt) holds no plan.
    for row in res["per_layer"]:
        assert row["control"]["follow"]["rate"] <= 0.05
        assert row["control"]["keep"]["rate"] >= 0.95
    # The donor's reference answer is its plan here (the model solves the task).
    assert by_layer[0]["decision"]["follow_reference"]["rate"] >= 0.95


class ToyTwoTurns(ToyTask):
    """The toy task played in two turns, as chess is: the model writes ``/ and``, then
    the even rows are asked again with that text appended (the odd rows stop), so the
    answer of an even row comes from a second forward pass over a longer text (an odd
    row keeps its first answer whole)."""

    def play(self, examples: list[dict], complete) -> list[str]:
        out = complete([ex["prompt"] for ex in examples])
        first = [" " + " ".join(c.split()[:2]) for c in out]
        again = list(range(0, len(examples), 2))
        for i, answer in zip(again, complete([examples[i]["prompt"] + first[i] for i in again])):
            out[i] = first[i] + answer
        return out


def test_the_patch_holds_at_every_turn_of_a_played_task(toy_model):
    """Each turn is a fresh forward pass over the prompt and the answers so far: the patch
    must be applied in each (found again in the longer text, the right donor per row), or
    the second turn reads the recipient's own key and the even rows stop following."""
    res = follow_rate(toy_model, ToyTwoTurns("key"), _toy_examples("key", 80, seed=1), n_pairs=80)
    layer0 = next(row for row in res["per_layer"] if row["layer"] == 0)["decision"]
    assert layer0["follow"]["n"] >= 60
    assert layer0["follow"]["rate"] >= 0.95


def test_follow_rate_reads_zero_where_the_state_is_not_used(toy_model):
    """NULL: at ``/`` the model solves the task (it reads the key word itself, later), so
    swapping the ``/`` state must not move the answer. At layer 0 the swap is an exact
    no-op (the ``/`` embedding is the same in every prompt)."""
    res = follow_rate(toy_model, ToyTask("slash"), _toy_examples("slash", 80, seed=2),
                      n_pairs=80, control_position="previous")
    assert res["own_plan_defined"]["rate"] >= 0.95
    for row in res["per_layer"]:
        assert row["decision"]["follow"]["n"] >= 70
        assert row["decision"]["follow"]["rate"] <= 0.1
    layer0 = res["per_layer"][0]["decision"]
    assert layer0["follow"]["k"] == 0 and layer0["keep"]["rate"] == 1.0
    # The control here is the key token, which does carry the answer at layer 0.
    assert res["per_layer"][0]["control"]["follow"]["rate"] >= 0.95


def test_random_init_model_does_not_follow(toy_model):
    res = follow_rate(random_init_like(toy_model, 0), ToyTask("key"),
                      _toy_examples("key", 80, seed=1), n_pairs=80)
    for row in res["per_layer"]:
        assert row["decision"]["follow_all"]["rate"] <= 0.05
        assert row["control"]["follow_all"]["rate"] <= 0.05


def test_patching_a_row_with_its_own_state_keeps_its_completion(toy_model):
    exs = _toy_examples("key", 20, seed=3)
    prompts = [e["prompt"] for e in exs]
    pos = [len(toy_model.tokenizer(p, add_special_tokens=False)["input_ids"]) - 1 for p in prompts]
    plain = greedy(toy_model, prompts, 5, batch_size=7)
    assert plain == complete(toy_model, prompts, 5)
    for layer in (0, 1, 2):
        own = states_at_tokens(toy_model, prompts, pos, [layer])[0]
        assert greedy(toy_model, prompts, 5, layer=layer, token_positions=pos, vectors=own,
                      batch_size=7) == plain


def test_pairs_are_deterministic_and_differ_in_target():
    items = [{"name": "a", "target": str(i % 3)} for i in range(9)] + [{"name": "b", "target": "x"}]
    pairs = _pairs(items, 20, seed=5)
    assert pairs == _pairs(items, 20, seed=5) and pairs != _pairs(items, 20, seed=6)
    assert len(pairs) == len(set(pairs)) == 20
    assert all(items[r]["target"] != items[d]["target"] for r, d in pairs)
    assert all(9 not in p for p in pairs)  # "b" has no donor with another target
    assert len(_pairs(items, 10_000, seed=0)) == 9 * 6


def test_follow_rate_runs_on_the_rhymes_task(tiny_model_dir):
    from benchmark.models import load_model
    from tasks import get_task

    loaded = load_model(tiny_model_dir, torch.device("cpu"))
    task = get_task("rhymes")
    exs = [e for e in task.generate("test", 30, 0) if e["decisions"]]
    res = follow_rate(loaded, task, exs, layers=[0, 2], n_pairs=12)
    assert res["n_pairs"] == 12 and [r["layer"] for r in res["per_layer"]] == [0, 2]
    # Rhymes prompts all start with "couplet": the first-token control is an exact no-op.
    for row in res["per_layer"]:
        c = row["control"]
        assert c["follow_all"]["k"] == c["base"]["k"]
    json.dumps(res)


def test_a_plan_decided_by_the_first_step_is_not_informative():
    """Chess: a one-move completion's mating square is its first move's destination; holding
    that move fixed, no patch can change it, so such pairs must not count (they would read a
    follow rate of 0 by construction)."""
    from benchmark.causal import _score
    from tasks import get_task

    chess_task = get_task("chess-mate")
    pairs = [(0, 1), (1, 0)]
    own, first = {0: "e4", 1: "f7"}, {0: "e2e4", 1: "f2f7"}
    scored = _score(pairs, own, first, ["e4", "f7"], ["e2e4", "f2f7"], {0: "e4", 1: "f7"},
                    chess_task.in_first_step)
    assert scored["follow"]["n"] == 0
    assert _score(pairs, own, first, ["e4", "f7"], ["e2e4", "f2f7"], {0: "e4", 1: "f7"})["follow"]["n"] == 2
    assert chess_task.in_first_step("e2e4", "e2e4") and not chess_task.in_first_step("g7", "e2e4")
    assert not chess_task.in_first_step("e4", None)
