"""Amplified decoding (`benchmark.decoding`) on known answers, its leaderboard table and
`mesabench sample`."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from click.testing import CliRunner

from benchmark.decoding import Decoding, amplified_complete, decode_tokens, draw, row_generator
from benchmark.models import complete, load_model, tokenize, within_budget
from tasks import get_task


def rhymes_prompts(n: int) -> list[str]:
    return [ex["prompt"] for ex in get_task("rhymes").generate("test", n, 0)]


def bpe_model(tmp_path):
    """An untrained GPT-2 with a byte-level BPE tokenizer: words span several tokens, so
    the word budget's stop is exercised."""
    from tests.tiny_models import bpe_gpt2_folder

    examples = list(get_task("rhymes").generate("train", 200, 0))
    bpe_gpt2_folder(tmp_path / "model", [e["prompt"] + e["completion"] for e in examples])
    return load_model(tmp_path / "model", torch.device("cpu"))


def plain_sampling(loaded, text: str, max_words: int, seed: int) -> str:
    """Sampling from p, one unpadded prompt at a time with a full forward per token: the
    textbook loop, on the same random stream (`row_generator`) as the decoder."""
    tok, generator = loaded.tokenizer, row_generator(seed, text)
    ids = tokenize(tok, [text])["input_ids"][0]
    out: list[int] = []
    while len(out) < max_words * 8:
        logits = loaded.model(input_ids=torch.tensor([ids + out])).logits[0, -1]
        out.append(draw(F.log_softmax(logits.float(), -1).double().exp(), generator))
        words = tok.decode(out, skip_special_tokens=True).lstrip("\n")
        if out[-1] == tok.eos_token_id or len(words.split()) > max_words or "\n" in words:
            break
    return within_budget(tok.decode(out, skip_special_tokens=True), max_words)


@torch.no_grad()
def test_lambda_zero_is_plain_sampling_and_independent_of_the_batch(tmp_path):
    loaded = bpe_model(tmp_path)
    prompts = rhymes_prompts(6)
    ours = amplified_complete(loaded, prompts, 4, Decoding(width=4, depth=2, lam=0.0, seed=3))
    assert ours == [plain_sampling(loaded, p, 4, seed=3) for p in prompts]
    assert amplified_complete(loaded, prompts, 4, Decoding(lam=0.0, seed=3), batch_size=2) == ours
    assert amplified_complete(loaded, prompts, 4, Decoding(lam=0.0, seed=4)) != ours  # the seed matters
    # At depth 1, q is p renormalised over its top W: p_λ keeps p's argmax, so greedy on
    # p_λ is the harness's greedy decoding, whatever λ.
    greedy = complete(loaded, prompts, 4)
    assert amplified_complete(loaded, prompts, 4, Decoding(width=4, depth=1, lam=1.0, greedy=True)) == greedy


def test_lambda_one_follows_the_beams_first_token_where_greedy_does_not():
    """The validate toy with B (p = 0.35, any of 16 tokens next) above A (p = 0.25, always
    Z next): greedy takes B; the depth-2 beams see that A's future is certain and start
    with A, so greedy on p_λ at λ = 1 writes A then Z; at depth 1 (truncation) it stays on B."""
    from benchmark.amplify import beam_search
    from benchmark.validate import toy_lookahead_model

    model, _ = toy_lookahead_model(weights=(0.25, 0.35, 0.2, 0.2))
    BOS, A, Z, B = 1, 2, 3, 4
    assert beam_search(model, [[BOS]], 4, 2).tokens[0, 0].tolist() == [A, Z]

    def decode(depth: int, lam: float) -> list[int]:
        return decode_tokens(model, [[BOS]], Decoding(4, depth, lam, greedy=True), 2, None, ["toy"])[0]

    assert decode(2, 0.0)[0] == B and decode(1, 1.0)[0] == B
    assert decode(2, 1.0) == [A, Z]


def test_the_leaderboard_shows_amplified_decoding_with_dead_ends_apart(tmp_path):
    from benchmark.report import write_leaderboard
    from synthetic_cells import cell_dict, metrics, store

    root = tmp_path / "results"
    for seed, k in enumerate((60, 62, 64)):
        ref = {"variant": "unstunted", "seed": seed, "profile": "full"}
        store(root, cell_dict(f"ref-unstunted-s{seed}", "rhymes", metrics(90, 0.1, decoding_k=(90, 92, 50, k, 56)), ref))
    store(root, cell_dict("good-model", "rhymes", metrics(80, 0.2, decoding_k=(80, 84, 40, 60, 44))))
    write_leaderboard(root, tmp_path / "leaderboard.md", tmp_path / "none")
    section = (tmp_path / "leaderboard.md").read_text().split("## Amplified decoding")[1].split("## Per task")[0]
    assert "W = 4, D = 2, λ = 0.50, temperature 1.0, seed 0" in section
    good = [line for line in section.splitlines() if line.startswith("| good\\-model")]
    assert good[0].startswith("| good\\-model | rhymes | all | 0.800 [0.711, 0.867] (80/100) |")
    assert "| 0.600 [0.502, 0.691] (60/100) | 0.440 " in good[0] and "| 0.200 [0.180, 0.220] |" in good[0]
    assert good[1].startswith("| good\\-model | rhymes | dead\\-end | 0.800 [0.670, 0.888] (40/50) |")
    pooled = next(line for line in section.splitlines() if line.startswith("| ref\\-unstunted (3 seeds) | rhymes | all"))
    assert "| 0.620 [0.570, 0.670] |" in pooled  # amplified: mean of 60/62/64, t over 3 seeds


def test_sample_command_on_a_submission_and_one_line_errors(tmp_path, tiny_model_dir):
    import benchmark.cli as cli
    from test_submissions import build_nan_model

    build_nan_model(tmp_path / "nan", tiny_model_dir)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "submission.toml").write_text(
        f'name = "tiny"\nmodel = "{tiny_model_dir}"\ntasks = ["rhymes"]\n')
    run = lambda *args: CliRunner().invoke(cli.main, ["sample", *args])
    ok = run(str(tmp_path / "sub"), "--amplify", "2,2,0.5", "--n", "3", "--seed", "1")
    assert ok.exit_code == 0, ok.output
    assert "W=2, D=2, λ=0.5" in ok.output and "pass: " in ok.output
    assert run("sub", "--submissions", str(tmp_path), "--amplify", "2,2,0.5", "--n", "3",
               "--seed", "1").output.split("\n", 1)[1] == ok.output.split("\n", 1)[1]  # by name: same
    for args, message in (((str(tiny_model_dir), "--amplify", "2,x,0.5"), "--amplify takes W,D,λ"),
                          ((str(tiny_model_dir), "--amplify", "2,2,1.5"), "0 <= λ <= 1"),
                          ((str(tiny_model_dir), "--amplify", "2,2,0.5", "--task", "nope"), "unknown task"),
                          ((str(tmp_path / "missing"), "--amplify", "2,2,0.5"), "no model folder or submission"),
                          ((str(tmp_path / "sub"), "--amplify", "2,2,0.5", "--task", "constrained"),
                           "has no model for task constrained"),
                          ((str(tmp_path / "nan"), "--amplify", "2,2,0.5"), "NaN or infinite logits")):
        bad = run(*args)
        assert bad.exit_code == 2 and len(bad.output.strip().splitlines()) == 1, bad.output
        assert message in bad.output


FIRSTS, TAILS = ("a", "b", "c", "d"), tuple(f"t{i}" for i in range(16))


class FirstTwoWords:
    """A toy task for `decoding_success`: item k's prompt is "p<k> go" and it is solved
    when the completion starts with the item's ``answer`` words."""

    max_words = 2

    def __init__(self, n: int, answer: tuple[str, ...]):
        self.items = [{"prompt": f"p{k} go", "answer": answer} for k in range(n)]

    def play(self, examples, complete):
        return complete([ex["prompt"] for ex in examples])

    def check(self, example, completion):
        return tuple(completion.split()[: len(example["answer"])]) == example["answer"]

    def group(self, example):
        return "all"


def toy_language(certain_tails: bool, n_prompts: int = 160, steps: int = 300, seed: int = 0):
    """A word-level GPT-2 trained on "p<k> go FIRST SECOND": FIRST is a (p = 0.3) or b, c, d
    (p ~ 0.23 each). With ``certain_tails`` False, a is always followed by z and the others by
    any of 16 tails: a depth-2 search sees a's certain future, depth 1 does not. With True,
    every first word has one certain follower (a z, b y, c x, d w), so depth 2 finds nothing
    depth 1 does not."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from benchmark.models import LoadedModel, word_tokenizer

    prompts = [f"p{k}" for k in range(n_prompts)]
    tok = word_tokenizer([*prompts, "go", *FIRSTS, "z", "y", "x", "w", *TAILS])
    ids = tok.convert_tokens_to_ids
    follower = dict(zip(FIRSTS, "zyxw"))
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=len(tok), n_positions=8, n_embd=32, n_layer=2, n_head=4,
                     bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    model = GPT2LMHeadModel(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(steps):
        rows = []
        for _ in range(64):
            k = int(torch.randint(n_prompts, (1,), generator=g))
            first = FIRSTS[int(torch.multinomial(torch.tensor([0.3, 0.233, 0.233, 0.234]), 1, generator=g))]
            second = follower[first] if certain_tails or first == "a" else TAILS[int(torch.randint(16, (1,), generator=g))]
            rows.append(ids([prompts[k], "go", first, second, tok.eos_token]))
        batch = torch.tensor(rows)
        logits = model(batch).logits[:, :-1]
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return LoadedModel(model.eval(), tok, Path("toy"))


def test_the_lookahead_lift_fires_where_depth_two_sees_a_certain_future_and_reads_zero_where_it_cannot():
    """`evaluate.decoding_success` on planted cases. Where a is followed by z for sure, the
    depth-2 beams give a about 0.87 of q, so p_λ (λ = 0.5) draws a ~0.59 of the time against
    ~0.30 at depth 1 (truncation): the lookahead lift must be ~0.29 with a lower bound well
    above 0. Where every first word has a certain follower, depth 2 ranks the beams as
    depth 1 does: the lift must read 0 with an interval around it."""
    from benchmark.evaluate import EvalConfig, decoding_success

    cfg, n = EvalConfig(size="quick", n_boot=500, batch_size=160), 160
    planted = FirstTwoWords(n, ("a", "z"))
    found, _ = decoding_success(toy_language(False), planted, planted.items, [""] * n, [""] * n, cfg)
    lift = found["lookahead_lift"]
    assert 0.15 < lift["value"] < 0.45 and lift["lo"] > 0.1, found
    assert found["amplified"]["all"]["k"] > found["amplified_depth1"]["all"]["k"]

    null = FirstTwoWords(n, ("a",))
    found, _ = decoding_success(toy_language(True), null, null.items, [""] * n, [""] * n, cfg)
    lift = found["lookahead_lift"]
    assert abs(lift["value"]) < 0.05 and lift["lo"] <= 0 <= lift["hi"], found
    # Truncation alone moves nothing here either: a keeps its ~0.3 under every sampler.
    assert abs(found["amplified_depth1"]["all"]["k"] - found["sampling"]["all"]["k"]) <= 0.1 * n
