"""A learned lookahead amplifier (stunting v5): a small network that re-weights the model's
top-W next tokens by what a depth-D beam search says about each, trained to predict the
next token better than the model alone.

Input: one `benchmark.amplify.amplified_scores` output (the beams stunted-balance computes
anyway, so the amplifier adds no search of its own). For each candidate x_i, the top W
tokens of p, three features from the model's own outputs, each exactly 0 for a depth-1
search (and so carrying nothing beyond p there):

    shift   q_D(x_i) - q_1(x_i): the mass deeper search moves onto x_i beyond truncation
    future  log p(c | x_i) of the best beam continuation c after x_i (0 at depth 1); where
            no beam starts with x_i, the bound its continuations lie below (the W-th beam's
            log-prob minus log p(x_i)), clipped to [-FUTURE_CLIP, 0]
    unseen  1 where no beam starts with x_i

The output is a proper distribution over the vocabulary: the top W keep their total mass
under p and are re-weighted among themselves, every other token keeps p,

    q_A(x_i) = P_top · softmax_i(log p(x_i) + f(z_i)),   q_A(x) = p(x) elsewhere,

with f a bias-free two-layer network plus a linear term, so f(0) = 0: q_A = p for a depth-1
search, and at initialisation (f's output weights start at 0), so the amplifier only
ever adds what the search saw. It cannot gain from recalibrating p (a rank or temperature
correction needs a bias), which keeps its gain a lookahead gain, as `amplify` contrasts
q_D with q_1.

Training (`Amplifier.retrain`): cross-entropy of the true next token under q_A, full batch
Adam on the positions seen since the last retrain (a token outside the top W has q_A = p and
no gradient, so only positions whose truth is a candidate count), on its own optimiser and
its own seeded generator (initialisation only; full-batch steps draw nothing), so a run is
deterministic and the model's random stream is untouched. Each step's positions are scored
by the amplifier before it has trained on them, so the gain it logs is held out.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from benchmark.amplify import lookahead_shift

N_FEATURES = 3
FUTURE_CLIP = 10.0  # nats: a continuation this improbable reads the same as any rarer one
DEFAULT_EVERY = 50  # K: steps between retrains, at most (measured: bench/bench_train_step.py, docs/design.md)
DEFAULT_HIDDEN = 16
DEFAULT_ITERS = 50  # full-batch Adam steps per retrain
DEFAULT_LR = 0.03
MAX_ROWS = 8192  # the most recent positions kept for a retrain


def candidate_features(amp: dict[str, torch.Tensor]) -> torch.Tensor:
    """[N, W, 3] float32 features (shift, future, unseen) of the top W tokens of p, from an
    `amplified_scores` output; all exactly 0 for a depth-1 search."""
    top, top_logp = amp["top_tokens"], amp["top_logp"].double()
    starts = amp["first_tokens"][:, None, :] == top[:, :, None]  # [N, W(candidate), W(beam)]
    beam_lp = amp["beam_logprobs"].double()[:, None, :].expand_as(starts)
    best = beam_lp.masked_fill(~starts, -torch.inf).amax(-1)  # best beam through each candidate
    unseen = ~starts.any(-1)
    # No beam through x_i: all its continuations score below the W-th beam, which bounds them.
    best = torch.where(unseen, amp["beam_logprobs"].double().amin(-1, keepdim=True), best)
    future = (best - top_logp).clamp(-FUTURE_CLIP, 0.0)
    return torch.stack([lookahead_shift(amp), future, unseen.double()], -1).float()


class Amplifier(torch.nn.Module):
    """f(z) = out(tanh(hidden(z))) + skip(z), no biases, so f(0) = 0."""

    def __init__(self, hidden: int = DEFAULT_HIDDEN, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        # skip_init: a Linear's own initialisation would draw from torch's global generator,
        # the model's random stream; the weights come from the amplifier's generator instead.
        self.hidden = torch.nn.utils.skip_init(torch.nn.Linear, N_FEATURES, hidden, bias=False)
        self.out = torch.nn.utils.skip_init(torch.nn.Linear, hidden, 1, bias=False)
        self.skip = torch.nn.utils.skip_init(torch.nn.Linear, N_FEATURES, 1, bias=False)
        with torch.no_grad():
            self.hidden.weight.copy_(torch.randn(hidden, N_FEATURES, generator=g) / N_FEATURES ** 0.5)
            self.out.weight.zero_()
            self.skip.weight.zero_()

    def forward(self, features: torch.Tensor, top_logp: torch.Tensor) -> torch.Tensor:
        """log q_A at the top W tokens [N, W] (float64), from features [N, W, 3] and log p there."""
        top_logp = top_logp.double()
        f = (self.out(torch.tanh(self.hidden(features))) + self.skip(features))[..., 0].double()
        return top_logp.logsumexp(-1, keepdim=True) + torch.log_softmax(top_logp + f, -1)


def gain_per_position(log_q_top: torch.Tensor, top_logp: torch.Tensor, target_index: torch.Tensor) -> torch.Tensor:
    """log q_A(y) - log p(y) per position [N], float64: 0 where the truth y is not among the
    top W (index -1), since q_A = p there."""
    at = target_index.clamp(min=0)[:, None]
    diff = (log_q_top.gather(-1, at) - top_logp.double().gather(-1, at))[:, 0]
    return torch.where(target_index >= 0, diff, torch.zeros_like(diff))


class LearnedAmplifier:
    """The amplifier with its training state: `amplify` scores a step's positions (and keeps
    them for the next retrain), `due` and `retrain` refit it every ``every`` steps."""

    def __init__(self, every: int = DEFAULT_EVERY, hidden: int = DEFAULT_HIDDEN, seed: int = 0,
                 iters: int = DEFAULT_ITERS, lr: float = DEFAULT_LR) -> None:
        self.net = Amplifier(hidden, seed)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=lr)
        self.every, self.iters = every, iters
        self.rows: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []  # since the last retrain
        self.heldout: list[torch.Tensor] = []  # gains of those rows, scored before training on them

    def amplify(self, amp: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``amp`` (an `amplified_scores` output) with "amplifier_q" [N, W] (q_A at its top
        tokens) and "amplifier_gain" [N] (log q_A(y) - log p(y)) added; the positions are kept
        for the next retrain."""
        hit = amp["top_tokens"] == amp["targets"][:, None]
        target_index = torch.where(hit.any(-1), hit.long().argmax(-1), -1)
        log_q, gain = self.score(candidate_features(amp).cpu(), amp["top_logp"].cpu(), target_index.cpu())
        device = amp["top_logp"].device
        return {**amp, "amplifier_q": log_q.exp().to(device), "amplifier_gain": gain.to(device)}

    @torch.no_grad()
    def score(self, features: torch.Tensor, top_logp: torch.Tensor,
              target_index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """log q_A at the candidates [N, W] and the gain per position [N] for features
        [N, W, 3], log p there and the truth's index among them (-1: not a candidate); the
        rows are kept for the next retrain, their gains as its held-out figure."""
        top_logp = top_logp.double()
        log_q = self.net(features, top_logp)
        gain = gain_per_position(log_q, top_logp, target_index)
        self.rows.append((features, top_logp, target_index))
        self.heldout.append(gain)
        return log_q, gain

    def due(self, step: int) -> bool:
        """Retrain after steps K-1, 2K-1, ... (so the first K steps train against q_A = p)."""
        return (step + 1) % self.every == 0 and bool(self.rows)

    def retrain(self, step: int) -> dict[str, float]:
        """Fit on the positions seen since the last retrain; returns the log entry: the gain of
        those positions under the amplifier that scored them (held out), the gain after the
        fit on them (in sample), and how many positions (and how many had their truth among
        the candidates, the only ones that train it)."""
        features, top_logp, target_index = (torch.cat(parts)[-MAX_ROWS:] for parts in zip(*self.rows))
        heldout = torch.cat(self.heldout)
        trains = target_index >= 0
        with torch.enable_grad():
            for _ in range(self.iters if trains.any() else 0):
                log_q = self.net(features[trains], top_logp[trains])
                loss = F.nll_loss(log_q, target_index[trains])
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                self.opt.step()
        with torch.no_grad():
            fitted = gain_per_position(self.net(features, top_logp), top_logp, target_index)
        self.rows, self.heldout = [], []
        return {"step": step, "heldout_gain": round(heldout.mean().item(), 5),
                "fit_gain": round(fitted.mean().item(), 5), "positions": len(heldout),
                "candidates": int(trains.sum())}
