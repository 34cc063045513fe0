"""The format of a result cell: typed records, and the only place a cell's JSON keys are spelled.

A cell is one (submission, task) evaluation, stored as ``results/<submission>/<task>.json``
(`benchmark.results` writes and finds the files; this module says what is in them). Schema 2,
written by harness 4::

    Cell
      submission, task, task_version, status ("ok" | "error"), error (the one-line reason)
      key         Key        model_hash, task_version, config_hash, harness_version
      config      dict       the EvalConfig (`EvalConfig.to_dict()`); "size" is its profile
      seeds       Seeds      data, bootstrap, probe, random_init
      reference   Reference  variant, seed, profile, training (diagnostics); None for a submitted model
      description, authors
      data        Data       dev, test (split sizes), fingerprint
      metrics     Metrics    below; None in an error cell
      versions, git
      run         Run        date, timings, seconds: all that two identical runs may differ in
      monitor     TrainingMonitor  the training monitor's points, copied from the model's
                             train_log.json (`benchmark.monitor`) without its seconds; absent
                             for a model trained before the monitor, or not trained here

    Metrics
      success_greedy, success_beam   SuccessRates {all: Rate, groups: {group: Rate}}
      success_splits                 {split: SuccessRates}   stored as "success_greedy_<split>"
      baselines                      {name: SuccessRates}    stored as "baseline_<name>"
      task_loss                      MeanCI
      amplification_gain             AmplificationGain: gain(D), gain(1) and lookahead = gain(D) - gain(1)
      amplified_decoding             AmplifiedDecoding: success of sampling from p_λ against greedy, beam, plain sampling
      plan_probe                     {target: PlanProbe {reference, own: Selectivity}}
      future_lens                    FutureLensPair {reference, own: FutureLens}
      causal                         CausalCheck {model, random-init: FollowRate}: patching the decision state
      extra                          every other metric, kept exactly as stored

The shape follows inspect_ai's EvalLog (a version number, a status with an error record, the
evaluation's spec apart from its results, and what varies between runs kept apart) and
lm-evaluation-harness's results file (each figure beside its uncertainty, config and library
versions beside the numbers).

Records are strict: an unknown or missing field raises `SchemaError` naming where it is, so a
change of what evaluate.py produces fails loudly here instead of leaving a blank on the
leaderboard. The only open place is `Metrics.extra`, so that new metrics survive a round trip
before they are typed.

**Older files are refused, not upgraded.** A schema-1 file (harness 3 and before) has no
depth-1 gain, no lookahead gain and no joint control, and none can be derived from what it
stores; `Cell.from_dict` refuses it with one line (`OutdatedCell`). `benchmark.results.load_all`
shows such a file as an error cell that asks for re-evaluation, and the runner recomputes it.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Iterable

SCHEMA_VERSION = 2
OK, ERROR = "ok", "error"
FULL, QUICK, MIXED = "full", "quick", "mixed"  # evaluation profiles (`profile_of`)

# The probe controls, in the order tables show them ("joint" is one probe on all the other
# control inputs together; "own-next-word" exists for the own target only).
CONTROLS = ("embedding", "random-init", "bag-of-words", "joint", "own-next-word")


class SchemaError(ValueError):
    """A cell that does not have this schema's shape; the message is one line saying where."""


class OutdatedCell(SchemaError):
    """A cell of an older schema that cannot be upgraded: re-evaluate it."""


# ------------------------------------------------------------------ records from and to JSON


def _key(f: dataclasses.Field) -> str:
    """The JSON key of a field: its name, unless the name cannot be (``lambda``)."""
    return f.metadata.get("key", f.name)


def _renamed(key: str, **kw) -> Any:
    return field(metadata={"key": key}, **kw)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _fail(where: str, message: str) -> typing.NoReturn:
    raise SchemaError(f"{where}: {message}")


def _load(tp: Any, value: Any, where: str) -> Any:
    """``value`` (parsed JSON) as type ``tp``, checked; ``where`` names it in errors."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):  # only ``X | None`` is used
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return None
        return _load(next(a for a in args if a is not type(None)), value, where)
    if isinstance(tp, type) and issubclass(tp, Record):
        return tp._from_json(value, where)
    if origin is list:
        if not isinstance(value, list):
            _fail(where, f"expected a list, got {type(value).__name__}")
        return [_load(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            _fail(where, f"expected an object, got {type(value).__name__}")
        return {str(k): _load(args[1], v, f"{where}.{k}") for k, v in value.items()}
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp in (int, str, bool) and type(value) is tp:
        return value
    _fail(where, f"expected {getattr(tp, '__name__', tp)}, got {value!r}")


def _dump(value: Any) -> Any:
    """A record (or a container of them) as JSON-ready values; nan becomes null."""
    if isinstance(value, Record):
        return value._to_json()
    if isinstance(value, (list, tuple)):
        return [_dump(v) for v in value]
    if isinstance(value, dict):
        return {k: _dump(v) for k, v in value.items()}
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


class Record:
    """Base of every record: read from and written to JSON by its fields' types.

    A field without a default is a required key (its value may still be null when its type
    says ``| None``); a field with a default may be absent."""

    @classmethod
    def from_dict(cls, data: Any, where: str | None = None):
        """The record stored as ``data``; raises SchemaError naming the first mismatch."""
        return cls._from_json(data, where or cls.__name__)

    def to_dict(self) -> dict:
        """The record as JSON-ready values (the inverse of `from_dict`)."""
        return self._to_json()

    @classmethod
    def _from_json(cls, value: Any, where: str):
        if not isinstance(value, dict):
            _fail(where, f"expected an object, got {type(value).__name__}")
        fields = {_key(f): f for f in dataclasses.fields(cls)}
        unknown = sorted(set(value) - set(fields))
        if unknown:
            _fail(where, f"unknown field {unknown[0]!r} (known: {', '.join(fields)})")
        kwargs = {}
        for key, f in fields.items():
            if key in value:
                kwargs[f.name] = _load(_hints(cls)[f.name], value[key], f"{where}.{key}")
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                _fail(where, f"missing field {key!r}")
        return cls(**kwargs)

    def _to_json(self) -> dict:
        # An optional field left at None is not written (an ok cell has no "error": null);
        # a required field is always written, null or not.
        return {_key(f): _dump(getattr(self, f.name)) for f in dataclasses.fields(self)
                if not (f.default is None and getattr(self, f.name) is None)}


# ------------------------------------------------------------------ figures with intervals


@dataclass(frozen=True)
class Rate(Record):
    """A success rate k/n with its Wilson 95% interval (value None when n = 0)."""

    value: float | None
    lo: float | None
    hi: float | None
    k: int
    n: int


@dataclass(frozen=True)
class MeanCI(Record):
    """A mean over n examples with its bootstrap 95% interval."""

    value: float | None
    lo: float | None
    hi: float | None
    n: int


@dataclass(frozen=True)
class SuccessRates(Record):
    """Success overall and per group of the task (constrained: family; chess: mate in N)."""

    all: Rate
    groups: dict[str, Rate] = field(default_factory=dict)


# ------------------------------------------------------------------ amplification gain


@dataclass(frozen=True)
class GainAt(Record):
    """One gain at all completion positions and at decisions (the positions whose
    prediction depends on the plan)."""

    all: MeanCI | None
    decisions: MeanCI | None


@dataclass(frozen=True)
class GroupGain(Record):
    """Gain(D) and the lookahead gain of one group, with the task's λ."""

    all: MeanCI | None
    lookahead: MeanCI | None


@dataclass(frozen=True)
class AmplificationGain(Record):
    """log p_λ − log p with beam search of width W and depth D (``all``, ``decisions``),
    the same at depth 1 (only truncation to the top W), and ``lookahead`` = gain(D) − gain(1):
    what searching deeper adds. Each depth has its own λ, chosen on dev."""

    width: int
    depth: int
    lam: float = _renamed("lambda")
    lam_depth1: float = _renamed("lambda_depth1")
    dev_gain_by_lambda: dict[str, float | None]
    dev_gain_by_lambda_depth1: dict[str, float | None]
    all: MeanCI | None
    decisions: MeanCI | None
    depth1: GainAt
    lookahead: GainAt
    groups: dict[str, GroupGain] = field(default_factory=dict)


@dataclass(frozen=True)
class AmplifiedDecoding(Record):
    """Success when decoding from p_λ (`benchmark.decoding`) against the other decoders, on
    the same test prompts (``split``; Wilson intervals, overall and per group): greedy,
    beam(W) of success_beam, plain sampling from p, sampling from p_λ with a width-W,
    depth-D search, and the same at depth 1 (truncation to the top W, no lookahead). The
    samplers share ``seed``; ``lift`` (amplified − plain sampling) and ``lookahead_lift``
    (depth D − depth 1) are paired per-prompt differences with bootstrap intervals."""

    width: int
    depth: int
    lam: float = _renamed("lambda")
    temperature: float
    seed: int
    split: str
    greedy: SuccessRates
    beam: SuccessRates
    sampling: SuccessRates
    amplified: SuccessRates
    amplified_depth1: SuccessRates
    lift: MeanCI | None
    lookahead_lift: MeanCI | None


# ------------------------------------------------------------------ probes


@dataclass(frozen=True)
class ProbeLayer(Record):
    """One layer's probe, scored on the probe-test split."""

    accuracy: float | None
    majority_accuracy: float | None
    n_train: int
    n_test: int
    n_classes: int
    converged: bool


@dataclass(frozen=True)
class ProbeGroup(Record):
    """The same probes scored on one group's test rows."""

    crossfit_selectivity: float | None
    crossfit_lo: float | None
    crossfit_hi: float | None
    best_layer: int
    layer_accuracy: list[float | None]
    control_accuracy: dict[str, float | None]
    n_test: int


@dataclass(frozen=True)
class Selectivity(Record):
    """A plan probe: accuracy by layer minus the strongest control, with intervals.

    ``crossfit_*`` is the honest figure: the layer (and each control's layer, and the
    strongest control) are chosen on one half of the test rows and scored on the other.
    ``control_layers`` holds each control's layer chosen on half A and on half B (None for
    a control without layers); ``strongest_controls`` the control chosen on each half."""

    layer_accuracy: list[float | None]
    selectivity: list[float | None]
    selectivity_lo: list[float | None]
    selectivity_hi: list[float | None]
    control_accuracy: dict[str, float | None]
    control_layers: dict[str, list[int | None] | None]
    strongest_control: str
    strongest_controls: list[str]
    best_layer: int
    best_selectivity: float | None
    best_lo: float | None
    best_hi: float | None
    crossfit_selectivity: float | None
    crossfit_lo: float | None
    crossfit_hi: float | None
    crossfit_layers: list[int | None]
    n_test: int
    n_boot: int
    seed: int
    layers: list[ProbeLayer]
    n_train: int
    n_classes: int
    groups: dict[str, ProbeGroup] = field(default_factory=dict)


@dataclass(frozen=True)
class PlanProbe(Record):
    """One future target probed twice: as the reference continuation holds it, and as the
    model's own greedy continuation produces it."""

    reference: Selectivity
    own: Selectivity


@dataclass(frozen=True)
class LensPoint(Record):
    """The future lens at offset k; a point with too few rows has only k and its row counts."""

    k: int
    n_train: int
    n_test: int
    best_layer: int | None
    gain: float | None
    crossfit_gain: float | None
    best_accuracy: float | None = None
    control_accuracy: float | None = None
    strongest_control: str | None = None
    gain_lo: float | None = None
    gain_hi: float | None = None
    crossfit_lo: float | None = None
    crossfit_hi: float | None = None
    layer_accuracy: list[float | None] | None = None


@dataclass(frozen=True)
class FutureLens(Record):
    """The future-lens curve over k = 1..K."""

    n_layers: int
    max_rows: int
    seed: int
    n_boot: int
    curve: list[LensPoint]


@dataclass(frozen=True)
class FutureLensPair(Record):
    """The future lens on the true text and on the model's own greedy output."""

    reference: FutureLens | None
    own: FutureLens | None


@dataclass(frozen=True)
class FollowLayer(Record):
    """The causal check at one layer: patched at the decision token and at the control
    token (the same patch where no plan is held), over the pairs whose plans differ."""

    layer: int
    follow: Rate  # the patched completion ends on the donor's plan
    control: Rate  # the same, patched at the control token
    keep: Rate  # the patched completion keeps the recipient's own plan
    base: Rate  # unpatched, the recipient already ends on the donor's plan (all pairs)


@dataclass(frozen=True)
class FollowRate(Record):
    """Causal follow rate of one model (`benchmark.causal`): per layer, and at the best
    layer chosen on the other half of the test examples (cross-fitted, as the probes are)."""

    per_layer: list[FollowLayer]
    best_layers: list[int]  # the layer chosen on each half
    follow: Rate  # at the cross-fitted best layer
    control: Rate  # the control token, at the same layers
    n_pairs: int
    control_position: str


@dataclass(frozen=True)
class CausalCheck(Record):
    """The follow rate of the model and of the random-init model of its architecture."""

    model: FollowRate | None
    random_init: FollowRate | None = _renamed("random-init", default=None)


# ------------------------------------------------------------------ all metrics of a cell


SPLIT_PREFIX, BASELINE_PREFIX = "success_greedy_", "baseline_"


@dataclass(frozen=True)
class Metrics(Record):
    """Every metric of one cell (see the module docstring for the stored keys)."""

    success_greedy: SuccessRates | None = None
    success_beam: SuccessRates | None = None
    success_splits: dict[str, SuccessRates] = field(default_factory=dict)
    baselines: dict[str, SuccessRates] = field(default_factory=dict)
    task_loss: MeanCI | None = None
    amplification_gain: AmplificationGain | None = None
    amplified_decoding: AmplifiedDecoding | None = None
    plan_probe: dict[str, PlanProbe] = field(default_factory=dict)
    future_lens: FutureLensPair | None = None
    causal: CausalCheck | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    # The stored keys of the typed fields that are stored under their own name.
    _PLAIN = ("success_greedy", "success_beam", "task_loss", "amplification_gain", "amplified_decoding",
              "plan_probe", "future_lens", "causal")

    @classmethod
    def _from_json(cls, value: Any, where: str) -> "Metrics":
        if not isinstance(value, dict):
            _fail(where, f"expected an object, got {type(value).__name__}")
        hints = _hints(cls)
        kwargs: dict[str, Any] = {"success_splits": {}, "baselines": {}, "extra": {}}
        for key, v in value.items():
            here = f"{where}.{key}"
            if key in cls._PLAIN:
                # evaluate gives an empty future lens when a task has too few rows for it.
                empty = key == "future_lens" and v == {}
                kwargs[key] = None if empty else _load(hints[key], v, here)
            elif key.startswith(SPLIT_PREFIX):
                kwargs["success_splits"][key[len(SPLIT_PREFIX):]] = SuccessRates._from_json(v, here)
            elif key.startswith(BASELINE_PREFIX):
                kwargs["baselines"][key[len(BASELINE_PREFIX):]] = SuccessRates._from_json(v, here)
            else:
                kwargs["extra"][key] = v
        return cls(**kwargs)

    def _to_json(self) -> dict:
        out = {key: _dump(getattr(self, key)) for key in self._PLAIN
               if getattr(self, key) not in (None, {})}
        out |= {SPLIT_PREFIX + k: v.to_dict() for k, v in self.success_splits.items()}
        out |= {BASELINE_PREFIX + k: v.to_dict() for k, v in self.baselines.items()}
        return out | self.extra


# ------------------------------------------------------------------ mesabench validate


@dataclass(frozen=True)
class ValidationCheck(Record):
    """One known answer of `mesabench validate`: what must come out, what did. ``passed``
    None marks a finding: measured and shown, with no known answer to hold it to."""

    group: str
    name: str
    expected: str
    measured: str
    passed: bool | None


@dataclass(frozen=True)
class Validation(Record):
    """A `mesabench validate` run, stored as ``<results>/validate.json`` beside the cells."""

    profile: str
    date: str
    seconds: float
    checks: list[ValidationCheck]
    breaks: list[str] = field(default_factory=list)
    git: str | None = None
    schema: int = SCHEMA_VERSION

    @property
    def held(self) -> int:
        return sum(c.passed is True for c in self.checks)

    @property
    def known(self) -> int:
        """How many checks have a known answer (findings do not)."""
        return sum(c.passed is not None for c in self.checks)


# ------------------------------------------------------------------ the training monitor


@dataclass(frozen=True)
class MonitorPoint(Record):
    """The training monitor after ``step`` updates (`benchmark.monitor`), on the ``split``
    (dev) drawn with ``seed``: the gain with the dev lookahead and the plan probe of the
    task's first target, as the evaluation computes them (empty when too few rows; no gain
    for a masked model, which has no next-token distribution)."""

    step: int
    split: str
    seed: int
    amplification_gain: AmplificationGain | None
    plan_probe: dict[str, PlanProbe]


@dataclass(frozen=True)
class TrainingMonitor(Record):
    """What a reference's train_log.json holds under "monitor": the `MonitorConfig`, its
    task, the steps between points, and the points (the log's seconds are left out: a cell
    holds what two identical runs agree on, apart from `Run`)."""

    config: dict[str, Any]
    task: str
    every: int
    points: list[MonitorPoint]


# ------------------------------------------------------------------ the cell


@dataclass(frozen=True)
class Key(Record):
    """What must be unchanged for a stored cell to stand (see `benchmark.results.cell_key`)."""

    model_hash: str
    task_version: str
    config_hash: str
    harness_version: str


@dataclass(frozen=True)
class Seeds(Record):
    data: int
    bootstrap: int
    probe: int
    random_init: int


@dataclass(frozen=True)
class Reference(Record):
    """A reference baseline's identity (from its submission.toml): never parsed from names."""

    variant: str
    seed: int | None = None
    profile: str | None = None
    # The model's training diagnostics (`benchmark.train.training_summary` of its
    # train_log.json: v3-v5's worst balance figures, v5's final amplifier gain); added by the
    # runner, absent when the training records none.
    training: dict[str, float] | None = None


@dataclass(frozen=True)
class Data(Record):
    """The evaluation data: split sizes and a fingerprint of every example."""

    dev: int | None = None
    test: int | None = None
    fingerprint: str | None = None


@dataclass(frozen=True)
class Run(Record):
    """What differs between two identical runs: the date, stage timings, wall time."""

    date: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    seconds: float | None = None


@dataclass(frozen=True)
class Cell(Record):
    """One (submission, task) result, finished ("ok") or failed ("error", with its reason)."""

    submission: str
    task: str
    status: str
    error: str | None = None
    task_version: str | None = None
    key: Key | None = None
    config: dict[str, Any] = field(default_factory=dict)
    seeds: Seeds | None = None
    reference: Reference | None = None
    description: str = ""
    authors: list[str] = field(default_factory=list)
    data: Data | None = None
    metrics: Metrics | None = None
    versions: dict[str, str | None] = field(default_factory=dict)
    git: str | None = None
    run: Run = field(default_factory=Run)
    monitor: TrainingMonitor | None = None

    def __post_init__(self) -> None:
        if self.status not in (OK, ERROR):
            _fail(f"cell {self.submission}/{self.task}", f"status must be {OK!r} or {ERROR!r}, got {self.status!r}")
        if (self.status == ERROR) != bool(self.error):
            _fail(f"cell {self.submission}/{self.task}", "an error cell needs an error message, an ok cell has none")

    @property
    def ok(self) -> bool:
        return self.status == OK

    @property
    def profile(self) -> str | None:
        """The evaluation profile ("full" or "quick": the EvalConfig's size)."""
        return self.config.get("size")

    @classmethod
    def from_dict(cls, data: Any, where: str | None = None) -> "Cell":
        """A stored cell; raises OutdatedCell for schema 1, SchemaError for any other mismatch."""
        where = where or "cell"
        if not isinstance(data, dict):
            _fail(where, "not a JSON object")
        version = data.get("schema")
        if version == 1:
            raise OutdatedCell(f"{where}: schema 1 (harness 3 or older) has no depth-1 or lookahead "
                               "gain and no joint control, and cannot be upgraded: re-evaluate it")
        if version != SCHEMA_VERSION:
            _fail(where, f"schema {version!r}, but this harness reads schema {SCHEMA_VERSION}")
        return cls._from_json({k: v for k, v in data.items() if k != "schema"}, where)

    def to_dict(self) -> dict:
        """The cell as stored, schema version first."""
        return {"schema": SCHEMA_VERSION, **self._to_json()}


def refused(submission: str, task: str, err: SchemaError) -> Cell:
    """An error cell standing for a stored file this schema cannot read (the leaderboard shows
    it as an error row; the runner recomputes it, since only "ok" cells are cached)."""
    return Cell(submission=submission, task=task, status=ERROR, error=" ".join(str(err).split()))


def profile_of(cells: Iterable[Cell]) -> str | None:
    """The evaluation profile of a set of cells: "full", "quick", "mixed" when they
    disagree, None when no cell says (none stored)."""
    found = {c.profile for c in cells} - {None}
    if len(found) > 1:
        return MIXED
    return found.pop() if found else None
