"""Evaluating one (model, task) cell: every metric of DESIGN.md, as one JSON-ready dict.

The steps, in order (each a function below):

1. data: the task's dev and test splits (dev trains probes and picks λ; test scores);
2. success: the task's solver plays each test prompt with greedy and with beam search, the
   task's verifier judges; Wilson intervals, overall and per group;
   amplified decoding: the same prompts sampled from p and from p_λ (`benchmark.decoding`);
3. token scores: one pass gives the log-probability of every completion token (task loss)
   and, through `benchmark.amplify`, the amplified distribution's probability of it;
   amplification gain with λ picked on dev, reported on test with a bootstrap interval;
4. probes: hidden states at decision points, a linear probe per layer for the reference
   target and for the model's own greedy target, against three controls (embedding
   layer, a random-init model of the same architecture, bag of words of the prompt) and,
   for the own target, a fourth: the first word the model's own continuation emits
   (`Task.first_step`: for chess the first move, two or three words);
5. future lens: token t+k from the state at t, against a current-token control (on the
   model's own output, the control also sees its next token).

A masked model (`benchmark.masked`) is scored through its adapter: greedy success by mask
filling, task loss, probes and the causal check; success@beam, the amplification gain and
amplified decoding are left out, and the cell says so in one line (``not_defined``).

Nothing here prints or writes files; `benchmark.runner` stores what this returns.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from scipy import sparse

from benchmark import stats
from benchmark.amplify import DEFAULT_DEPTH, DEFAULT_LAMBDAS, DEFAULT_WIDTH, gain_per_position
from benchmark.models import (LoadedModel, complete, encode, encode_examples, hidden_states_at,
                              random_init_like, token_index)
from benchmark.safety import SubmissionError

Progress = Callable[[str], None]


@dataclass(frozen=True)
class EvalConfig:
    """Everything that decides an evaluation's numbers (its hash is part of the cache key)."""

    size: str = "full"  # which Task.sizes entry: number of examples per eval split
    n_eval: int | None = None  # overrides the size's number of examples per split (tests)
    seed: int = 0  # data seed of the eval splits; also bootstrap and probe seeds
    max_success: int = 300  # test prompts played for success@greedy / success@beam
    beam_width: int = 4  # W of success@beam(W)
    amp_width: int = DEFAULT_WIDTH  # amplification beam width W (the stunted training's too)
    amp_depth: int = DEFAULT_DEPTH  # amplification beam depth D (the stunted training's too)
    max_amp_examples: int = 300  # examples per split whose tokens are amplified
    lambdas: tuple[float, ...] = DEFAULT_LAMBDAS
    future_k: int = 4
    future_lens_rows: int = 400  # probe-train (and test) rows per offset k: its fits over
    # a vocabulary of classes were the slowest part of a cell (45 s of 70 at 1,000 rows)
    n_boot: int = 1000
    batch_size: int = 64
    causal_pairs: int = 200  # (recipient, donor) pairs of the causal check, over both halves
    # Test prompts decoded by sampling, plain and from p_λ (W, D as above): three passes that
    # took 3-22 s per reference cell (median 13-29% of the cell), bench/bench_sample.py.
    max_sampled: int = 300
    sample_lambda: float = 0.5  # λ of amplified decoding: fixed, as success is too dear to tune on dev
    # (task, path, sha256) of files scored as a task's "real" split instead of its own
    # (`Task.with_real_file`); the hash keys the cache to the file's content.
    real_files: tuple[tuple[str, str, str], ...] = ()

    def __post_init__(self) -> None:
        if not self.lambdas or not all(0 <= lam < 1 for lam in self.lambdas):
            raise ValueError(f"every λ of the gain's grid must be in [0, 1), got {self.lambdas}: at λ = 1, "
                             "p_λ is the beams' distribution, whose log-loss is infinite off the beams")

    def task(self, name: str):
        """The task ``name`` as this config scores it (with its real file, if one is given)."""
        from tasks import get_task

        task = get_task(name)
        for task_name, path, _ in self.real_files:
            if task_name == name:
                task = task.with_real_file(Path(path))
        return task

    def to_dict(self) -> dict:
        d = asdict(self)
        d["lambdas"] = list(self.lambdas)
        if not self.real_files:  # absent unless given, so existing cells keep their keys
            del d["real_files"]
        else:
            d["real_files"] = [list(f) for f in self.real_files]
        return d


def _rate(flags: list[bool]) -> dict:
    return rate_of(int(sum(flags)), len(flags))


def rate_of(k: int, n: int) -> dict:
    """k/n with its Wilson 95% interval, as the schema's Rate stores it."""
    lo, hi = stats.wilson_interval(k, n)
    return {"value": round(k / n, 4) if n else None, "lo": round(lo, 4), "hi": round(hi, 4),
            "k": k, "n": n}


def success_rates(task, examples: list[dict], completions: list[str]) -> tuple[dict, list[bool]]:
    """Share of examples whose completion passes the verifier, overall and per group."""
    flags = [bool(task.check(ex, c)) for ex, c in zip(examples, completions)]
    groups: dict[str, list[bool]] = {}
    for ex, ok in zip(examples, flags):
        groups.setdefault(task.group(ex), []).append(ok)
    return {"all": _rate(flags), "groups": {g: _rate(v) for g, v in sorted(groups.items())}}, flags


def solver(loaded: LoadedModel, max_words: int, num_beams: int, batch_size: int):
    """The model side of a task's solver (`tasks.base.CompleteFn`)."""
    return lambda texts: complete(loaded, texts, max_words, num_beams, batch_size)


def decoding_success(loaded: LoadedModel, task, scored: list[dict], greedy_out: list[str],
                     beam_out: list[str], cfg: EvalConfig) -> tuple[dict, dict[str, list[str]]]:
    """Amplified decoding against the other decoders, on the first ``cfg.max_sampled``
    scored test prompts: greedy and beam(W) (their completions given), plain sampling from
    p, sampling from p_λ with the cell's W and D, and the same at depth 1 (truncation to the
    top W, no lookahead). The samplers share one seed, so each prompt draws the same
    uniforms under each (paired); ``lift`` and ``lookahead_lift`` are the per-prompt
    differences of success, amplified − plain and depth D − depth 1, bootstrapped.
    Returns the metric and the sampled completions by decoder."""
    from benchmark import decoding

    items = scored[: cfg.max_sampled]
    decoders = {"sampling": decoding.Decoding(lam=0.0, seed=cfg.seed),
                "amplified": decoding.Decoding(cfg.amp_width, cfg.amp_depth, cfg.sample_lambda, seed=cfg.seed),
                "amplified_depth1": decoding.Decoding(cfg.amp_width, 1, cfg.sample_lambda, seed=cfg.seed)}
    out = {"width": cfg.amp_width, "depth": cfg.amp_depth, "lambda": cfg.sample_lambda,
           "temperature": 1.0, "seed": cfg.seed, "split": "test"}
    out["greedy"], _ = success_rates(task, items, greedy_out[: len(items)])
    out["beam"], _ = success_rates(task, items, beam_out[: len(items)])
    flags, completions = {}, {}
    for name, how in decoders.items():
        completions[name] = task.play(items, decoding.solver(loaded, task.max_words, how, cfg.batch_size))
        out[name], flags[name] = success_rates(task, items, completions[name])
    diff = lambda a, b: np.array(flags[a], float) - np.array(flags[b], float)
    out["lift"] = _mean_ci(diff("amplified", "sampling"), cfg)
    out["lookahead_lift"] = _mean_ci(diff("amplified", "amplified_depth1"), cfg)
    return out, completions


# --------------------------------------------------------------------------------------
# Token scores: task loss and amplification gain
# --------------------------------------------------------------------------------------


def completion_positions(tokenizer, task, examples: list[dict]) -> list[dict]:
    """Per example: token ids of the full text, the positions whose next token lies in the
    completion, and which of those predict a word the plan decides (`Task.plan_spans`)."""
    out = []
    for ex, enc in zip(examples, encode_examples(tokenizer, examples, add_eos=False)):
        spans = task.plan_spans(ex)
        starts = enc["starts"]
        out.append({"ids": enc["ids"], "positions": enc["loss"],
                    "decision": [any(a <= starts[t + 1] < b for a, b in spans) for t in enc["loss"]]})
    return out


@torch.no_grad()
def token_scores(loaded: LoadedModel, task, examples: list[dict], cfg: EvalConfig) -> list[dict]:
    """log p(true token) and the mass on it of the depth-D and the depth-1 amplified
    distributions, per completion token. A masked model has log p only
    (`benchmark.masked.token_scores`): it has no next-token distribution to amplify."""
    from benchmark.amplify import amplified_scores

    if loaded.masked:
        from benchmark import masked

        return masked.token_scores(loaded, task, examples, cfg.batch_size)

    items = completion_positions(loaded.tokenizer, task, examples)
    pad = loaded.tokenizer.pad_token_id
    for start in range(0, len(items), cfg.batch_size):
        chunk = items[start:start + cfg.batch_size]
        width = max(len(it["ids"]) for it in chunk)
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for i, it in enumerate(chunk):
            ids[i, : len(it["ids"])] = torch.tensor(it["ids"])
            mask[i, : len(it["ids"])] = 1
        positions = [(i, t) for i, it in enumerate(chunk) for t in it["positions"]]
        scores = amplified_scores(loaded.model, ids.to(loaded.device), mask.to(loaded.device),
                                  positions, cfg.amp_width, cfg.amp_depth)
        logp, q, q1 = (scores[k].double().cpu() for k in ("logp_true", "q_true", "q1_true"))
        if torch.isnan(logp).any() or torch.isnan(q).any():
            raise SubmissionError("the model returns NaN log-probabilities")
        k = 0
        for it in chunk:
            n = len(it["positions"])
            it["logp"], it["q"], it["q1"] = logp[k:k + n], q[k:k + n], q1[k:k + n]
            k += n
    return items


def _gain_terms(items: list[dict], lam: float, decisions_only: bool, q_key: str = "q") -> np.ndarray:
    """Per example: mean of log p_λ(x) − log p(x) with q = ``item[q_key]`` (the depth-D "q"
    or the depth-1 "q1"); examples without scored positions give nan."""
    out = []
    for it in items:
        sel = torch.tensor(it["decision"], dtype=torch.bool) if decisions_only else torch.ones(len(it["logp"]), dtype=torch.bool)
        if not sel.any():
            out.append(np.nan)
            continue
        out.append(float(gain_per_position(it["logp"][sel], it[q_key][sel], lam).mean()))
    return np.array(out)


def _mean_ci(terms: np.ndarray, cfg: EvalConfig) -> dict | None:
    terms = terms[~np.isnan(terms)]
    if len(terms) == 0:
        return None
    mean, lo, hi = stats.bootstrap_mean(terms, seed=cfg.seed, n_boot=cfg.n_boot)
    return {"value": round(mean, 5), "lo": round(lo, 5), "hi": round(hi, 5), "n": len(terms)}


def _best_lambda(dev: list[dict], cfg: EvalConfig, q_key: str) -> tuple[float, dict]:
    """λ with the highest mean dev gain at all positions (ties go to the smaller λ)."""
    dev_gain = {lam: float(np.nanmean(_gain_terms(dev, lam, False, q_key))) for lam in cfg.lambdas}
    best = max(cfg.lambdas, key=lambda lam: (round(dev_gain[lam], 12), -lam))
    return best, {str(k): round(v, 5) if np.isfinite(v) else None for k, v in dev_gain.items()}


def amplification_gain(dev: list[dict], test: list[dict], cfg: EvalConfig,
                       test_groups: list[str] | None = None) -> dict:
    """gain(D), gain(1) and the lookahead part gain(D) − gain(1), each with its own λ chosen
    on dev (all positions) and reported on test with a bootstrap interval over examples (the
    lookahead part paired: one difference per example): at all completion positions, at the
    positions the plan decides, and per group of the test examples (same λ)."""
    lam, dev_by_lam = _best_lambda(dev, cfg, "q")
    lam1, dev_by_lam1 = _best_lambda(dev, cfg, "q1")
    out = {"width": cfg.amp_width, "depth": cfg.amp_depth, "lambda": lam, "lambda_depth1": lam1,
           "dev_gain_by_lambda": dev_by_lam, "dev_gain_by_lambda_depth1": dev_by_lam1,
           "depth1": {}, "lookahead": {}}

    def terms(items: list[dict], only: bool) -> tuple[np.ndarray, np.ndarray]:
        return _gain_terms(items, lam, only, "q"), _gain_terms(items, lam1, only, "q1")

    for label, only in (("all", False), ("decisions", True)):
        deep, shallow = terms(test, only)
        out[label] = _mean_ci(deep, cfg)
        out["depth1"][label] = _mean_ci(shallow, cfg)
        out["lookahead"][label] = _mean_ci(deep - shallow, cfg)
    if test_groups is not None:
        out["groups"] = {}
        for g in sorted(set(test_groups)):
            deep, shallow = terms([it for it, h in zip(test, test_groups) if h == g], False)
            out["groups"][g] = {"all": _mean_ci(deep, cfg), "lookahead": _mean_ci(deep - shallow, cfg)}
    return out


def task_loss(items: list[dict], cfg: EvalConfig) -> dict:
    """Mean negative log-likelihood per completion token (per-example means, bootstrapped)."""
    per_example = np.array([-float(it["logp"].mean()) for it in items if len(it["logp"])])
    mean, lo, hi = stats.bootstrap_mean(per_example, seed=cfg.seed, n_boot=cfg.n_boot)
    return {"value": round(mean, 5), "lo": round(lo, 5), "hi": round(hi, 5), "n": len(per_example)}


# --------------------------------------------------------------------------------------
# Probes
# --------------------------------------------------------------------------------------


def decision_rows(task, examples: list[dict], completions: list[str]) -> list[dict]:
    """One row per (example, decision): the text, the offset and both targets."""
    rows = []
    for ex, comp in zip(examples, completions):
        for d in ex["decisions"]:
            rows.append({"text": ex["prompt"] + ex["completion"], "offset": d["offset"],
                         "name": d["name"], "reference": d["target"],
                         "own": task.target_from_completion(ex, comp, d["name"]) or "<none>",
                         "own_next": task.first_step(comp, ex) or "<none>",
                         "group": task.group(ex),
                         "prompt_text": (ex["prompt"] + ex["completion"])[: d["offset"]],
                         "own_text": ex["prompt"] + comp, "prompt_len": len(ex["prompt"])})
    return rows


class StateCache:
    """Hidden states at (text, offset) pairs, computed once per model: chess has two
    targets at the same decision point, and the plan probes and the future lens probe the
    same states."""

    def __init__(self, batch_size: int):
        self.batch_size = batch_size
        self.memo: dict[tuple[int, str, int], np.ndarray] = {}

    def at(self, model: LoadedModel, texts: list[str], offsets: list[int]) -> np.ndarray:
        """[L+1, N, H] states of ``model`` at each (text, offset)."""
        keys = [(id(model), t, o) for t, o in zip(texts, offsets)]
        missing = list(dict.fromkeys(k for k in keys if k not in self.memo))
        if missing:
            acts = hidden_states_at(model, [k[1] for k in missing], [k[2] for k in missing],
                                    self.batch_size)
            for i, k in enumerate(missing):
                self.memo[k] = acts[:, i]
        return np.stack([self.memo[k] for k in keys], axis=1)


def plan_probes(loaded: LoadedModel, control: LoadedModel, task, dev_rows: list[dict],
                test_rows: list[dict], cfg: EvalConfig, states: StateCache,
                names: tuple[str, ...] | None = None) -> dict:
    """Selectivity curves for every target name (or only ``names``), reference and own
    target, with controls."""
    from benchmark import probes

    out: dict = {}
    for name in names or task.target_names:
        tr = [r for r in dev_rows if r["name"] == name]
        te = [r for r in test_rows if r["name"] == name]
        if len(tr) < 20 or len(te) < 20:
            continue
        acts = {}
        for label, model in (("model", loaded), ("random-init", control)):
            acts[label] = tuple(states.at(model, [r["text"] for r in rows], [r["offset"] for r in rows])
                                for rows in (tr, te))
        bow_train, bow_test = probes.bag_of_words_features(
            [r["prompt_text"] for r in tr], [r["prompt_text"] for r in te])
        out[name] = {}
        for target in ("reference", "own"):
            y_tr = [r[target] for r in tr]
            y_te = [r[target] for r in te]
            layers = probes.probe_layers(acts["model"][0], y_tr, acts["model"][1], y_te, cfg.seed)
            controls = {
                "embedding": layers[0],
                "random-init": probes.probe_layers(acts["random-init"][0], y_tr,
                                                   acts["random-init"][1], y_te, cfg.seed),
                "bag-of-words": probes.fit_probe(bow_train, y_tr, bow_test, y_te, cfg.seed),
            }
            # The joint control sees every control's input at once: a state that merely holds
            # two controls' knowledge side by side must not count as a plan.
            joint = [(acts["model"][0][0], acts["model"][1][0]), acts["random-init"], (bow_train, bow_test)]
            if target == "own":
                # What the model says next is a readout of the state we probe; a model that
                # picks only its next word and lets the rest follow from it (a random model
                # repeating one word) must score 0, so plan = beyond its next word.
                next_tr, next_te = probes.one_hot_features([r["own_next"] for r in tr],
                                                           [r["own_next"] for r in te])
                controls["own-next-word"] = probes.fit_probe(next_tr, y_tr, next_te, y_te, cfg.seed)
                joint.append((next_tr, next_te))
            controls["joint"] = probes.fit_probe(probes.stack_features([a for a, _ in joint]), y_tr,
                                                 probes.stack_features([b for _, b in joint]), y_te, cfg.seed)
            sel = probes.selectivity(layers, controls, seed=cfg.seed, n_boot=cfg.n_boot)
            out[name][target] = {
                **sel.to_dict(),
                "layers": [r.to_dict() for r in layers],
                "n_train": len(tr),
                "n_classes": len(set(y_tr)),
                "groups": _selectivity_by_group(layers, controls, [r["group"] for r in te], cfg),
            }
    return out


def _selectivity_by_group(layers: list, controls: dict, groups: list[str], cfg: EvalConfig) -> dict:
    """The same probes (trained on every group) scored on each group's test rows alone;
    groups with fewer than 20 test rows are left out (no meaningful interval)."""
    from benchmark import probes

    out = {}
    for g in sorted(set(groups)):
        rows = np.flatnonzero(np.array(groups) == g)
        if rows.size < 20:
            continue

        def on_group(probe):  # a probe, or a per-layer list of them (random-init control)
            if isinstance(probe, list):
                return [probes.restrict(p, rows) for p in probe]
            return probes.restrict(probe, rows)

        sel = probes.selectivity(on_group(layers), {k: on_group(v) for k, v in controls.items()},
                                 seed=cfg.seed, n_boot=cfg.n_boot).to_dict()
        out[g] = {k: sel[k] for k in ("crossfit_selectivity", "crossfit_lo", "crossfit_hi",
                                      "best_layer", "layer_accuracy", "control_accuracy", "n_test")}
    return out


def future_lens_curves(loaded: LoadedModel, control: LoadedModel, dev_rows: list[dict],
                       test_rows: list[dict], cfg: EvalConfig, states: StateCache) -> dict:
    """Future lens at the decision points, for the true text and the model's own output,
    against the current token(s) and the plan probes' controls."""
    from benchmark import probes

    # One row per decision point: several targets at one point add nothing here.
    dev_rows, test_rows = (list({(r["text"], r["offset"]): r for r in rows}.values())
                           for rows in (dev_rows, test_rows))
    rows = dev_rows + test_rows
    if len(dev_rows) < 20 or len(test_rows) < 20:
        return {}
    train_mask = np.array([True] * len(dev_rows) + [False] * len(test_rows))
    # The plan probes' controls, at the same decision points (prompt-side, so the same for
    # both sources): the random-init model's states and the prompt's bag of words.
    bow_train, bow_test = probes.bag_of_words_features([r["prompt_text"] for r in dev_rows],
                                                       [r["prompt_text"] for r in test_rows])
    controls = {"random-init": states.at(control, [r["text"] for r in rows], [r["offset"] for r in rows]),
                "bag-of-words": sparse.vstack([bow_train, bow_test], format="csr")}
    out = {}
    for source, text_key in (("reference", "text"), ("own", "own_text")):
        texts = [r[text_key] for r in rows]
        acts = states.at(loaded, texts, [r["offset"] for r in rows])
        current, future = [], []
        for start in range(0, len(rows), cfg.batch_size):
            chunk = slice(start, start + cfg.batch_size)
            ids, mask, offsets = encode(loaded.tokenizer, texts[chunk], torch.device("cpu"), max_length=loaded.context)
            for i, r in enumerate(rows[chunk]):
                t = token_index(offsets[i], mask[i], r["offset"])
                n = int(mask[i].sum())  # right padding: real tokens are 0..n-1
                future.append([int(ids[i, t + k]) if t + k < n else -1
                               for k in range(1, cfg.future_k + 1)])
                # On its own output the model's next token is a readout of the state at t
                # (a model repeating one word "predicts" every later token): the control
                # sees it too, so the curve measures what lies beyond it.
                current.append([int(ids[i, t])] + ([future[-1][0]] if source == "own" else []))
        out[source] = probes.future_lens(acts, np.array(future), np.array(current), train_mask,
                                         controls={**controls, "embedding": acts[0]},
                                         seed=cfg.seed, n_boot=cfg.n_boot,
                                         max_rows=cfg.future_lens_rows)
    return out


def _follow_summary(halves: list[dict]) -> dict | None:
    """One model's follow rate from `causal.follow_rate` on the two halves of the test
    examples: per layer summed over both, and at the best layer chosen on the other half."""
    from benchmark.causal import best_layer

    def summed(rows: list[dict]) -> dict:
        return rate_of(sum(r["k"] for r in rows), sum(r["n"] for r in rows))

    if any(not h.get("per_layer") for h in halves):
        return None
    layers = halves[0]["layers"]
    per_layer = []
    for li, layer in enumerate(layers):
        rows = [h["per_layer"][li] for h in halves]
        per_layer.append({"layer": layer, "follow": summed([r["decision"]["follow"] for r in rows]),
                          "control": summed([r["control"]["follow"] for r in rows]),
                          "keep": summed([r["decision"]["keep"] for r in rows]),
                          "base": summed([r["decision"]["base"] for r in rows])})
    # The layer chosen on half A scores half B and the other way round: no pair is scored
    # by a choice made with its help.
    chosen = [(best_layer(h) or {"layer": layers[0]})["layer"] for h in halves]
    scored = [halves[1 - i]["per_layer"][layers.index(layer)] for i, layer in enumerate(chosen)]
    return {"per_layer": per_layer, "best_layers": chosen,
            "follow": summed([r["decision"]["follow"] for r in scored]),
            "control": summed([r["control"]["follow"] for r in scored]),
            "n_pairs": sum(h["n_pairs"] for h in halves), "control_position": halves[0]["control_position"]}


def causal_checks(loaded: LoadedModel, control: LoadedModel, task, test: list[dict], cfg: EvalConfig) -> dict:
    """The causal follow rate (`benchmark.causal`): the decision state of a donor example
    patched into a recipient at one layer; how often the recipient's completion switches to
    the donor's plan. For the model and the random-init model, each on the two halves of
    the test examples, with the task's control position (`Task.control_offset`)."""
    from benchmark.causal import follow_rate

    out = {}
    for label, model in (("model", loaded), ("random-init", control)):
        halves = [follow_rate(model, task, test[h::2], n_pairs=cfg.causal_pairs // 2, seed=cfg.seed + h,
                              control_position="task", batch_size=cfg.batch_size) for h in (0, 1)]
        out[label] = _follow_summary(halves)
    return out


# --------------------------------------------------------------------------------------
# The cell
# --------------------------------------------------------------------------------------


def check_model_sanity(loaded: LoadedModel, examples: list[dict]) -> None:
    """Refuse, up front and with one line, a model that cannot be evaluated: a tokenizer
    that maps task text to unknown tokens or to ids the model does not have, or a model
    whose logits are NaN or infinite. Failing here beats a crash deep inside generation."""
    tok = loaded.tokenizer
    sample = [ex["prompt"] + ex["completion"] for ex in examples[:200]]
    ids = [tok(text, add_special_tokens=False)["input_ids"] for text in sample]
    if tok.unk_token_id is not None:
        bad = sum(row.count(tok.unk_token_id) for row in ids)
        if bad:
            raise SubmissionError(f"the tokenizer cannot encode the task's text ({bad} unknown "
                                  f"tokens in the first {len(sample)} examples)")
    if tok.pad_token_id is None:
        raise SubmissionError("the tokenizer has no eos token (needed to stop generation and to pad)")
    config = loaded.model.config
    if not any(getattr(config, name, None) for name in ("num_attention_heads", "n_head")):
        raise SubmissionError(f"models without attention ({config.model_type}) are not supported yet: the "
                              "amplification beam search and the patching hooks need attention layers")
    specials = [i for i in (tok.pad_token_id, tok.eos_token_id) if i is not None]
    top = max([max(row, default=0) for row in ids] + specials)
    if top >= config.vocab_size:
        raise SubmissionError(f"the tokenizer produces id {top}, beyond the model's vocabulary "
                              f"of {config.vocab_size}")
    context = getattr(config, "max_position_embeddings", None)
    longest = max(len(row) for row in ids)
    if context and longest > context:
        raise SubmissionError(f"the task's texts are up to {longest} tokens, longer than the "
                              f"model's context of {context}")
    # One small forward pass: NaN or infinite weights show here, before any generation.
    batch, mask, _ = encode(tok, sample[:8], loaded.device)
    with torch.no_grad():
        logits = loaded.model(input_ids=batch, attention_mask=mask).logits
    if not torch.isfinite(logits[mask.bool()]).all():
        raise SubmissionError("the model returns NaN or infinite logits")
    if loaded.masked:
        from benchmark import masked

        masked.check(loaded, [ex["prompt"] for ex in examples[:200]])


_SPLITS: dict[tuple, tuple[list[dict], list[dict]]] = {}


def eval_splits(task, cfg: EvalConfig) -> tuple[list[dict], list[dict]]:
    """The dev split (probe training, λ) and the test split of ``task`` for ``cfg``.

    Kept in memory for the life of the process: a worker evaluates several submissions on
    the same splits (constrained takes ~3 s to generate them). Call it once before
    evaluating on several processes, so a slow generator (chess) fills its disk cache once
    instead of racing itself."""
    n_eval = cfg.n_eval or task.sizes[cfg.size][1]
    key = (task.name, task.version, task.data_version, n_eval, cfg.seed)
    if key not in _SPLITS:
        dev = list(task.generate("dev", n_eval * task.dev_factor, cfg.seed))
        _SPLITS[key] = dev, list(task.generate("test", n_eval, cfg.seed))
    dev, test = _SPLITS[key]
    return list(dev), list(test)


def evaluate_cell(loaded: LoadedModel, task, cfg: EvalConfig, progress: Progress = lambda s: None) -> dict:
    """Every metric of one (model, task) cell; returns {"metrics", "examples", "timings", ...}."""
    timings: dict[str, float] = {}
    clock = time.time()

    def lap(name: str) -> None:
        nonlocal clock
        timings[name] = round(time.time() - clock, 2)
        clock = time.time()

    dev, test = eval_splits(task, cfg)
    check_model_sanity(loaded, dev + test)
    # A masked model goes through its adapter (`benchmark.masked`): greedy is mask filling,
    # and what needs a next-token distribution is left out, said in one line.
    masked = loaded.masked
    lap("data")

    progress("greedy")
    greedy = solver(loaded, task.max_words, 1, cfg.batch_size)
    dev_out = task.play(dev, greedy)
    test_out = task.play(test, greedy)
    scored = test[: cfg.max_success]
    metrics: dict = {}
    metrics["success_greedy"], greedy_flags = success_rates(task, scored, test_out[: cfg.max_success])
    lap("greedy")
    beam_out, beam_flags = [None] * len(scored), [None] * len(scored)
    if not masked:
        progress(f"beam search (W={cfg.beam_width})")
        beam = solver(loaded, task.max_words, cfg.beam_width, cfg.batch_size)
        beam_out = task.play(scored, beam)
        metrics["success_beam"], beam_flags = success_rates(task, scored, beam_out)
    for split in task.extra_success_splits:
        extra = list(task.generate(split, cfg.max_success, cfg.seed))
        metrics[f"success_greedy_{split}"], _ = success_rates(task, extra, task.play(extra, greedy))
    for name, baseline in task.baseline_solvers(cfg.seed).items():
        metrics[f"baseline_{name}"], _ = success_rates(task, scored, task.play(scored, baseline))
    lap("beam")

    sampled: dict[str, list[str]] = {}
    if not masked:
        progress(f"amplified decoding (W={cfg.amp_width}, D={cfg.amp_depth}, λ={cfg.sample_lambda})")
        metrics["amplified_decoding"], sampled = decoding_success(loaded, task, scored, test_out, beam_out, cfg)
        lap("amplified_decoding")

    progress("task loss" if masked else "amplification")
    if not masked:
        dev_scores = token_scores(loaded, task, dev[: cfg.max_amp_examples], cfg)
    test_scores = token_scores(loaded, task, test[: cfg.max_amp_examples], cfg)
    metrics["task_loss"] = task_loss(test_scores, cfg)
    if not masked:
        test_groups = [task.group(ex) for ex in test[: cfg.max_amp_examples]]
        metrics["amplification_gain"] = amplification_gain(dev_scores, test_scores, cfg, test_groups)
    lap("amplification")

    progress("probes")
    control = random_init_like(loaded, seed=cfg.seed)
    dev_rows = decision_rows(task, dev, dev_out)
    test_rows = decision_rows(task, test, test_out)
    states = StateCache(cfg.batch_size)
    metrics["plan_probe"] = plan_probes(loaded, control, task, dev_rows, test_rows, cfg, states)
    lap("probes")
    progress("future lens")
    metrics["future_lens"] = future_lens_curves(loaded, control, dev_rows, test_rows, cfg, states)
    lap("future_lens")
    progress("causal check")
    metrics["causal"] = causal_checks(loaded, control, task, test, cfg)
    lap("causal")
    if masked:
        from benchmark.masked import NOT_DEFINED

        metrics["not_defined"] = NOT_DEFINED

    examples = [
        {"id": ex["id"], "group": task.group(ex), "prompt": ex["prompt"],
         "reference": ex["completion"], "greedy": g, "greedy_ok": gf, "beam": b, "beam_ok": bf}
        for ex, g, gf, b, bf in zip(scored, test_out, greedy_flags, beam_out, beam_flags)
    ]
    for i, row in enumerate(examples[: cfg.max_sampled]):  # the sampled completions, by decoder
        row.update({name: out[i] for name, out in sampled.items()})
    fingerprint = stats_fingerprint(dev + test)
    return {"metrics": metrics, "examples": examples, "timings": timings,
            "data": {"dev": len(dev), "test": len(test), "fingerprint": fingerprint}}


def stats_fingerprint(examples: list[dict]) -> str:
    """A short hash of the evaluation data, so a number can be traced to its inputs."""
    import hashlib

    h = hashlib.sha256()
    for ex in examples:
        h.update((ex["id"] + "\x00" + ex["prompt"] + "\x00" + ex["completion"] + "\x01").encode())
    return h.hexdigest()[:16]
