"""The learned lookahead amplifier of stunting v5: a proper distribution, a known answer
(depth-2 lookahead reveals the truth: it beats the model) and nulls (no gain)."""

import pytest
import torch

from benchmark.amplifier import LearnedAmplifier, candidate_features
from benchmark.amplify import amplified_scores
from benchmark.validate import toy_lookahead_model


@pytest.fixture(scope="module")
def toy():
    """validate's toy language: A (p ~ 0.3) is always followed by Z, B, C, D by any of 16."""
    return toy_lookahead_model()


def first_token_amp(model, texts: torch.Tensor, depth: int) -> dict:
    return amplified_scores(model, texts, None, [(r, 0) for r in range(len(texts))], width=4, depth=depth)


def test_q_is_a_distribution_over_the_vocabulary_that_keeps_p_off_the_candidates(toy):
    model, text = toy
    amp = first_token_amp(model, text, 2)
    amplifier = LearnedAmplifier(every=1)
    amplifier.amplify(amp)
    amplifier.retrain(0)  # trained, so q_A differs from p
    out = amplifier.amplify(amp)
    q_top, p_top = out["amplifier_q"].double(), amp["top_logp"].double().exp()
    assert (q_top - p_top).abs().max() > 0.1
    # The candidates keep their total mass, so with p elsewhere q_A sums to 1 over the vocabulary.
    assert torch.allclose(q_top.sum(-1), p_top.sum(-1), atol=1e-12) and (q_top >= 0).all()


def test_features_are_zero_for_a_depth_one_search_so_q_is_p(toy):
    model, text = toy
    amp = first_token_amp(model, text, 1)
    assert torch.equal(candidate_features(amp), torch.zeros(len(text), 4, 3))
    amplifier = LearnedAmplifier(every=1)
    amplifier.amplify(amp)
    assert amplifier.retrain(0)["fit_gain"] == 0.0  # nothing to learn from
    out = amplifier.amplify(amp)
    assert torch.allclose(out["amplifier_q"].double(), amp["top_logp"].double().exp(), atol=1e-12)
    assert out["amplifier_gain"].abs().max() < 1e-12


def test_known_answer_depth_two_reveals_the_truth_and_the_amplifier_beats_the_model(toy):
    """The truth is always A, whose continuation is certain; the model gives it ~0.3. Trained
    on one batch, the amplifier's loss on the next (held out) is far below the model's."""
    model, text = toy
    amp = first_token_amp(model, text, 2)
    features = candidate_features(amp)
    a_index = (amp["top_tokens"][0] == text[0, 1]).nonzero()[0, 0]
    assert features[0, a_index, 1] > -0.1 and (features[0, :, 1] < -1).sum() == 3  # A's future is certain
    amplifier = LearnedAmplifier(every=1)
    before = amplifier.amplify(amp)
    assert before["amplifier_gain"].abs().max() == 0  # untrained: q_A = p
    amplifier.retrain(0)
    after = amplifier.amplify(amp)
    model_loss = -amp["logp_true"].double().mean().item()
    amplifier_loss = model_loss - after["amplifier_gain"].mean().item()
    assert model_loss > 1.0 and amplifier_loss < 0.5 * model_loss
    assert amplifier.retrain(1)["heldout_gain"] > 0.5  # the held-out figure the train log shows


def test_null_features_without_information_give_no_held_out_gain():
    """Targets drawn from p itself and features independent of them: trained on 4,000
    positions, the amplifier gains ~0 on 4,000 others (it may lose a little, never much)."""
    g = torch.Generator().manual_seed(0)

    def draw(n: int):
        logits = torch.randn(n, 5, generator=g, dtype=torch.float64) * 1.5  # 4 candidates + "other"
        logp = torch.log_softmax(logits, -1)
        truth = torch.multinomial(logp.exp(), 1, generator=g)[:, 0]
        target_index = torch.where(truth < 4, truth, -1)
        return torch.randn(n, 4, 3, generator=g), logp[:, :4], target_index

    amplifier = LearnedAmplifier(every=1)
    amplifier.score(*draw(4000))
    fit = amplifier.retrain(0)
    amplifier.score(*draw(4000))
    heldout = amplifier.retrain(1)["heldout_gain"]
    assert -0.01 < heldout < 0.005, (fit, heldout)


def test_calibrated_model_on_its_own_language_gives_no_held_out_gain(toy):
    """On text drawn from the toy language itself the model is (nearly) calibrated and the
    search's features identify tokens but add nothing about the truth: ~0 held out."""
    model, _ = toy
    g = torch.Generator().manual_seed(1)
    firsts = torch.tensor([2, 4, 5, 6])[torch.multinomial(torch.tensor([0.3, 0.233, 0.233, 0.234]), 800, True,
                                                        generator=g)]
    texts = torch.stack([torch.ones(800, dtype=torch.long), firsts], 1)
    amplifier = LearnedAmplifier(every=1)
    amplifier.amplify(first_token_amp(model, texts[:400], 2))
    amplifier.retrain(0)
    amplifier.amplify(first_token_amp(model, texts[400:], 2))
    assert abs(amplifier.retrain(1)["heldout_gain"]) < 0.02


def test_retraining_is_deterministic_and_leaves_the_global_generator_alone(toy):
    model, text = toy
    amp = first_token_amp(model, text, 2)

    def run() -> tuple[dict, torch.Tensor]:
        amplifier = LearnedAmplifier(every=1, seed=3)
        amplifier.amplify(amp)
        log = amplifier.retrain(0)
        return log, amplifier.amplify(amp)["amplifier_q"]

    torch.manual_seed(0)
    state = torch.get_rng_state()
    (log_a, q_a), (log_b, q_b) = run(), run()
    assert log_a == log_b and torch.equal(q_a, q_b)
    assert torch.equal(torch.get_rng_state(), state)
