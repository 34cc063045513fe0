"""The pre-caching calibration task: its data, its myopic training and its probe (tiny sizes)."""

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from benchmark.calibration import (QUICK, Regressor, expectations, make_data, own_position_loss,
                                   probe_r2_by_layer, ridge_r2, run_calibration, split_data, window_targets)
from benchmark.stunting import StuntConfig, prepared

TINY = replace(QUICK, seq_len=8, window=3, n_embd=16, n_head=2, n_inner=32, steps=3, batch=4, n_eval=8, n_probe=16)


# --------------------------------------------------------------------------- data


def test_window_targets_by_hand():
    x = torch.tensor([[0.3, -1.2, 0.7, 2.0, -0.4]])
    flags = torch.tensor([[False, False, True, False, False]])
    s = [math.sin(v) for v in x[0].tolist()]
    # shift 1, W 2: y_t = sin x_{t-2} + sin x_{t-1} (terms before position 0 left out); y_2 is x_2.
    y = window_targets(x, flags, window=2, shift=1, freq=1.0)[0].tolist()
    assert y == pytest.approx([0.0, s[0], 0.7, s[1] + s[2], s[2] + s[3]], abs=1e-6)
    # shift 0: the window ends at t itself.
    y = window_targets(x, flags, window=2, shift=0, freq=1.0)[0].tolist()
    assert y == pytest.approx([s[0], s[0] + s[1], 0.7, s[2] + s[3], s[3] + s[4]], abs=1e-6)


@pytest.mark.parametrize("shift", [0, 1])
def test_window_targets_match_a_plain_loop(shift):
    g = torch.Generator().manual_seed(3)
    x, flags = torch.randn(4, 12, generator=g), torch.rand(4, 12, generator=g) < 0.3
    y = window_targets(x, flags, window=5, shift=shift, freq=10.0)
    for b in range(4):
        for t in range(12):
            want = x[b, t].item() if flags[b, t] else sum(
                math.sin(10 * x[b, j - shift].item()) for j in range(t - 4, t + 1) if j - shift >= 0)
            assert y[b, t].item() == pytest.approx(want, abs=1e-5)


def test_data_is_deterministic_and_flags_mark_x_targets():
    a = make_data(32, QUICK, 1, torch.Generator().manual_seed(7))
    b = make_data(32, QUICK, 1, torch.Generator().manual_seed(7))
    assert all(torch.equal(a[k], b[k]) for k in a)
    x, flags = a["inputs"][..., 0], a["flags"]
    assert torch.equal(a["inputs"][..., 1], flags.float()) and 0 < flags.float().mean() < 0.5
    assert torch.equal(a["targets"][flags], x[flags])
    assert torch.allclose(a["feature"], torch.sin(QUICK.freq * x))
    # Held-out sets depend on (seed, shift) only, not on the variant or on each other.
    _, ev0, pr0 = split_data(QUICK, 1, 0)
    _, ev1, _ = split_data(QUICK, 1, 1)
    assert not torch.equal(ev0["inputs"], pr0["inputs"]) and not torch.equal(ev0["inputs"], ev1["inputs"])


def test_with_shift_one_a_position_never_needs_its_own_feature():
    g = torch.Generator().manual_seed(0)
    x, flags = torch.randn(1, 10, generator=g), torch.zeros(1, 10, dtype=torch.bool)
    moved = x.clone()
    moved[0, 4] += 0.5
    for shift, own_changes in ((1, False), (0, True)):
        before = window_targets(x, flags, 3, shift, 10.0)
        after = window_targets(moved, flags, 3, shift, 10.0)
        assert (before[0, 4] != after[0, 4]).item() is own_changes
        assert before[0, 5] != after[0, 5] and torch.equal(before[0, :4], after[0, :4])
    # The no-pre-caching floor: with shift 1 it is the loss of "x where flagged, else 0".
    data = make_data(64, QUICK, 1, torch.Generator().manual_seed(1))
    floor = own_position_loss(data, QUICK, 1)
    unflagged = ~data["flags"]
    assert floor == pytest.approx(float((data["targets"] * unflagged).pow(2).mean()), rel=1e-6)


# --------------------------------------------------------------------------- myopic training


def grad_into_earlier(model: Regressor, t: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient of the prediction at t w.r.t. the inputs: (positions < t, position t)."""
    inputs = make_data(1, TINY, 1, torch.Generator().manual_seed(0))["inputs"].requires_grad_(True)
    model(inputs)[0, t].backward()
    return inputs.grad[0, :t], inputs.grad[0, t]


def test_myopic_training_sends_no_gradient_into_earlier_positions():
    torch.manual_seed(0)
    model = Regressor(TINY).eval()
    earlier, _ = grad_into_earlier(model)
    assert earlier.abs().sum() > 0  # the ordinary model does
    ordinary = model(make_data(2, TINY, 1, torch.Generator().manual_seed(1))["inputs"]).detach()
    with prepared(model.gpt, "myopic", StuntConfig(beta=0.0)):
        model.zero_grad()
        earlier, own = grad_into_earlier(model)
        assert torch.all(earlier == 0) and own.abs().sum() > 0
        same = model(make_data(2, TINY, 1, torch.Generator().manual_seed(1))["inputs"]).detach()
        assert torch.allclose(same, ordinary, atol=1e-5)  # the forward pass is unchanged
    with prepared(model.gpt, "myopic", StuntConfig(beta=1.0)):  # the control: ordinary gradients
        model.zero_grad()
        earlier, _ = grad_into_earlier(model)
        assert earlier.abs().sum() > 0
    assert model.gpt.config._attn_implementation == "sdpa"  # an ordinary model again


# --------------------------------------------------------------------------- probe


def test_ridge_r2_reads_a_planted_feature_and_not_noise():
    rng = np.random.default_rng(0)
    h = rng.normal(size=(2000, 16))
    planted = h @ rng.normal(size=16)
    assert ridge_r2(h[:1000], planted[:1000], h[1000:], planted[1000:]) > 0.99
    noise = rng.normal(size=2000)
    assert abs(ridge_r2(h[:1000], noise[:1000], h[1000:], noise[1000:])) < 0.03
    # A nonlinear function of a feature the state holds only linearly is not read either.
    x = rng.normal(size=2000)
    state = np.c_[x, rng.normal(size=(2000, 7))]
    feature = np.sin(10 * x)
    assert ridge_r2(state[:1000], feature[:1000], state[1000:], feature[1000:]) < 0.03


def test_probe_is_zero_at_the_embeddings_and_finds_a_planted_state():
    cfg = replace(TINY, n_probe=64)
    torch.manual_seed(0)
    model = Regressor(cfg)
    data = make_data(cfg.n_probe, cfg, 1, torch.Generator().manual_seed(0))
    r2, best = probe_r2_by_layer(model, data, cfg.ridge)
    assert len(r2) == cfg.n_layer + 1 and 0 <= best <= cfg.n_layer
    assert abs(r2[0]) < 0.05  # the read-in is linear in (x, flag): sin(freq x) is not in it

    class Planted(torch.nn.Module):  # a "model" whose layer-1 state holds the feature
        def eval(self):
            return self

        def __call__(self, inputs, hidden=False):
            noise = torch.randn(*inputs.shape[:2], 8, generator=torch.Generator().manual_seed(1))
            angle = cfg.freq * inputs[..., :1]
            # A row of constant norm and mean 0, so the probe's layer norm keeps sin(angle) linear.
            state = torch.cat([angle.sin(), angle.cos(), -angle.sin(), -angle.cos(), 0.05 * noise[..., :4]], -1)
            return None, (noise, state)

    r2, best = probe_r2_by_layer(Planted(), data, cfg.ridge)
    assert r2[1] > 0.95 and abs(r2[0]) < 0.05 and best == 1


# --------------------------------------------------------------------------- end to end


def test_run_calibration_reports_what_it_promises():
    out = run_calibration(1, "myopic", seed=0, cfg=TINY)
    for key in ("loss", "zero_loss", "own_position_loss", "probe_r2", "probe_r2_best", "probe_r2_init",
                "probe_best_layer", "seconds", "config", "train_curve"):
        assert key in out
    assert len(out["probe_r2"]) == TINY.n_layer + 1 and out["config"]["window"] == TINY.window
    assert out["zero_loss"] > out["own_position_loss"] > 0
    with pytest.raises(ValueError):
        run_calibration(2, "vanilla", 0, cfg=TINY)
    with pytest.raises(ValueError):
        run_calibration(1, "unstunted", 0, cfg=TINY)


def fake(shift, variant, seed, loss, r2, beta=0.0):
    return {"shift": shift, "variant": variant, "seed": seed, "beta": beta, "loss": loss, "probe_r2_best": r2}


def test_expectations_pass_on_the_known_answer_and_fail_when_myopia_is_broken():
    good = [fake(1, "vanilla", 0, 0.1, 0.9), fake(1, "myopic", 0, 1.8, 0.05),
            fake(0, "vanilla", 0, 0.1, 0.9), fake(0, "myopic", 0, 0.15, 0.9),
            fake(1, "myopic", 0, 0.12, 0.85, beta=1.0)]
    assert all(ok for _, ok, _ in expectations(good))
    # beta = 1 trains like vanilla: as "the myopic model" it fails the shift-1 checks.
    control = {name: ok for name, ok, _ in expectations(good, myopic_beta=1.0)}
    assert not control["shift 1: myopic loss >= 5x vanilla"]
    assert not control["shift 1: myopic probe R2 <= 0.2"]
    # A missing seed is a failure, not a pass.
    assert not all(ok for _, ok, _ in expectations(good[1:]))
