"""The results store: one JSON per (submission, task), written atomically.

``results/<submission>/<task>.json`` holds one `benchmark.schema.Cell` (its format is defined
there and nowhere else); ``<task>.examples.jsonl`` beside it holds the per-example log. A
cell whose stored key equals the current one is not recomputed.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import tempfile
from pathlib import Path

from benchmark.schema import Cell, Key, SchemaError, refused

# Bumped whenever the harness changes how a number is computed, so old cells recompute.
HARNESS_VERSION = "6"  # 6: λ < 1 in the gain's grid; results are standard JSON
# Files that describe a model folder but do not change its behaviour.
TRAIN_LOG = "train_log.json"  # written beside a trained model (`benchmark.train.save_reference`)
IGNORED_IN_HASH = {TRAIN_LOG, "submission.toml"}


def read_json(text: str):
    """JSON as mesabench writes it, reading the non-standard NaN / Infinity that files
    written before harness 6 hold (the gain at λ = 1 could be -inf) as null."""
    return json.loads(text, parse_constant=lambda _: None)


def train_log(model_dir: Path) -> dict | None:
    """A model folder's train_log.json (None: there is none, or it does not read as a JSON
    object)."""
    try:
        log = read_json((Path(model_dir) / TRAIN_LOG).read_text())
    except (OSError, ValueError):
        return None
    return log if isinstance(log, dict) else None


def model_hash(folder: Path) -> str:
    """SHA-256 over every file of a model folder (weights, config, tokenizer)."""
    h = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        if path.name in IGNORED_IN_HASH:
            continue
        h.update(str(path.relative_to(folder)).encode() + b"\x00")
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:20]


def config_hash(config: dict) -> str:
    """A short stable hash of a JSON-able config."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


def cell_key(model_digest: str, task_version: str, config: dict) -> Key:
    """What must be unchanged for a stored cell to stand."""
    return Key(model_hash=model_digest, task_version=task_version,
               config_hash=config_hash(config), harness_version=HARNESS_VERSION)


def cell_path(results_dir: Path, submission: str, task: str) -> Path:
    """Where the cell of (submission, task) is stored."""
    return Path(results_dir) / submission / f"{task}.json"


def read_cell(path: Path) -> dict | None:
    """A stored cell's JSON as written, or None if absent or unreadable (an unreadable cell
    is recomputed). `load_cell` gives the typed record."""
    try:
        return read_json(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def load_cell(path: Path) -> Cell | None:
    """The stored cell as a record; None if absent, unreadable or of another schema."""
    data = read_cell(path)
    try:
        return None if data is None else Cell.from_dict(data, str(path))
    except SchemaError:
        return None


def is_fresh(path: Path, key: Key) -> bool:
    """True when a finished cell exists with exactly this key."""
    cell = load_cell(path)
    return cell is not None and cell.ok and cell.key == key


def write_atomic(path: Path, text: str) -> None:
    """Write to a temporary file in the same folder, then rename: never a half file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def non_finite(value, where: str = "") -> str | None:
    """The path of the first NaN or infinite number inside ``value`` (None: every number is
    finite). Result files are standard JSON, which has no NaN or Infinity."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"{where or 'value'} = {value}"
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found = non_finite(item, f"{where}.{key}" if where else str(key))
        if found:
            return found
    return None


def check_finite(cell: Cell) -> None:
    """Raise SchemaError naming the first non-finite number of ``cell`` (a metric that came
    out NaN or infinite fails its cell in one line, instead of a file no JSON parser reads)."""
    found = non_finite(cell.to_dict())
    if found:
        raise SchemaError(f"a metric is not a finite number: {found}")


def write_cell(path: Path, cell: Cell, examples: list[dict] | None = None) -> None:
    """Store a cell (and its per-example log first, so the JSON marks a complete cell);
    standard JSON only: the record already writes NaN as null, and an infinity raises
    ValueError here before any file is touched (the runner's `check_finite` fails such a
    cell in one line first)."""
    text = json.dumps(cell.to_dict(), indent=1, sort_keys=True, allow_nan=False)
    if examples is not None:
        write_atomic(Path(path).with_suffix(".examples.jsonl"),
                     "".join(json.dumps(e, sort_keys=True) + "\n" for e in examples))
    write_atomic(path, text)


def library_versions() -> dict:
    """Versions of the libraries that decide the numbers."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("torch", "transformers", "tokenizers", "datasets", "scikit-learn", "numpy",
                 "chess", "pronouncing", "mesabench"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def git_hash() -> str | None:
    """The harness's git commit (None outside a checkout)."""
    try:
        here = Path(__file__).resolve().parent
        res = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=here,
                             capture_output=True, text=True, timeout=5)
        return res.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def load_all(results_dir: Path) -> list[Cell]:
    """Every stored cell under results_dir, in path order. A file this schema refuses (an
    older schema) stands as an error cell saying why, named by its path; a file that is not
    JSON at all is skipped (a run killed mid-write leaves none: writes are atomic)."""
    cells = []
    for path in sorted(Path(results_dir).glob("*/*.json")):
        data = read_cell(path)
        if data is None:
            continue
        try:
            cells.append(Cell.from_dict(data, f"{path.parent.name}/{path.name}"))
        except SchemaError as err:
            cells.append(refused(path.parent.name, path.stem, err))
    return cells
