"""The leaderboard: Markdown and plots built from result files only (never a model).

`write_leaderboard` reads ``results/*/*.json`` and writes ``leaderboard.md`` with:

- a ranked table (lookahead index first, every column beside it, intervals and
  denominators everywhere, error rows for failed submissions, stale marks);
- the headline experiment: reference variants aggregated over seeds, with a paragraph
  generated from the numbers, whichever way they fall;
- per-task detail: success by group, baselines, probes with their controls, future lens;
- plots (selectivity by layer per model and per variant, gain per variant).
"""

from __future__ import annotations

import datetime as dt
import html
import json
import re
from collections import defaultdict
from pathlib import Path

import numpy as np

from benchmark import stats
from benchmark.results import library_versions, git_hash, load_all, model_hash

PLOTS = "leaderboard_plots"


# ---------------------------------------------------------------------- small helpers


def escape(text: object) -> str:
    """Make user text inert in Markdown and HTML (names, descriptions, error messages)."""
    # HTML first (only & < >: quotes are harmless outside tags, and the entity '&#x27;'
    # would be broken by the Markdown pass), then backslash every Markdown character, so
    # a name can neither open a tag nor a link nor end a table cell ('|').
    s = html.escape(str(text), quote=False)
    s = re.sub(r"([\\`*_{}\[\]()#+!|~-])", r"\\\1", s)
    return " ".join(s.split())


def fmt(x: float | None, digits: int = 3) -> str:
    return "–" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.{digits}f}"


def fmt_ci(d: dict | None, digits: int = 3, denom: bool = False) -> str:
    """'0.812 [0.77, 0.85] (k/n)' from a {value, lo, hi, k, n} dict."""
    if not d or d.get("value") is None:
        return "–"
    s = f"{fmt(d['value'], digits)} [{fmt(d.get('lo'), digits)}, {fmt(d.get('hi'), digits)}]"
    if denom and "k" in d:
        s += f" ({d['k']}/{d['n']})"
    elif denom and "n" in d:
        s += f" (n={d['n']})"
    return s


def extra_seed(submission: str) -> bool:
    """A reference baseline's seed other than 0: aggregated in the headline experiment,
    left out of the ranking and the per-group tables to keep them readable."""
    return re.search(r"^ref-.*-s[1-9]\d*$", submission) is not None


def headline_target(cell: dict) -> dict | None:
    """The probe result the lookahead index uses: the task's first target, the model's own
    greedy target (what it will produce), cross-fitted best-layer selectivity."""
    probes = cell["metrics"].get("plan_probe") or {}
    for name, by_target in probes.items():
        if "own" in by_target:
            return {"name": name, **by_target["own"]}
    return None


def selectivity_ci(cell: dict) -> dict | None:
    p = headline_target(cell)
    if not p:
        return None
    return {"value": p["crossfit_selectivity"], "lo": p["crossfit_lo"], "hi": p["crossfit_hi"],
            "n": p["n_test"], "layer": p["best_layer"]}


def lookahead_index(cells: list[dict]) -> dict | None:
    """Mean cross-fitted selectivity over tasks; the interval combines the per-task
    half-widths as independent (sqrt of the sum of squares, over the number of tasks)."""
    sels = [s for s in (selectivity_ci(c) for c in cells) if s and s["value"] is not None]
    if not sels:
        return None
    value = float(np.mean([s["value"] for s in sels]))
    half = float(np.sqrt(sum(((s["hi"] - s["lo"]) / 2) ** 2 for s in sels))) / len(sels)
    return {"value": value, "lo": value - half, "hi": value + half, "n": len(sels)}


def _stale(cell: dict, current_hashes: dict[tuple[str, str], str | None]) -> bool:
    key = cell.get("key") or {}
    now = current_hashes.get((cell["submission"], cell["task"]))
    return bool(now and key.get("model_hash") and key["model_hash"] != now)


def _current_hashes(submission_dirs: list[Path], names: set[str]) -> dict[tuple[str, str], str | None]:
    """The model hash each (submission, task) has now (file hashing only; no model is loaded).

    Submissions are matched by the name in their submission.toml, not by folder name."""
    from benchmark.safety import SubmissionError
    from benchmark.submissions import find_submissions, read_submission

    from tasks import task_names

    out: dict[tuple[str, str], str | None] = {}
    by_path: dict[Path, str] = {}  # a model shared by every task is hashed once
    for folder in [f for d in submission_dirs for f in find_submissions(d)]:
        try:
            sub = read_submission(folder)
        except (SubmissionError, OSError):
            continue
        if sub.name not in names:
            continue
        for task in sub.tasks or task_names():
            try:
                path = sub.model_for(task)
                if (sub.name, task) not in out and path.is_dir():
                    by_path[path] = by_path.get(path) or model_hash(path)
                    out[sub.name, task] = by_path[path]
            except OSError:
                continue
    return out


# ---------------------------------------------------------------------- sections


NULL_MODEL = "ref-random-init"


def null_model_note(cells: dict[str, dict], task_order: list[str]) -> list[str]:
    """One paragraph: what the untrained model of the reference architecture scores. Its own
    outputs are a fixed function of the prompt that its own states compute, so its
    own-target selectivity is the floor a trained model has to clear, not 0."""
    figures = []
    for task in task_order:
        ci = selectivity_ci(cells[task]) if cells.get(task, {}).get("status") == "ok" else None
        if ci:
            figures.append(f"{escape(task)} {fmt(ci['value'])} [{fmt(ci['lo'])}, {fmt(ci['hi'])}]")
    if not figures:
        return []
    return [f"**Null model**: `{NULL_MODEL}`, the reference architecture untrained, scores "
            f"own-target selectivity {'; '.join(figures)}. An untrained network's own output "
            "is a fixed function of the prompt that its own states compute, which they may encode "
            "more linearly than the controls do; a model whose figure does not clear this floor "
            "has shown no lookahead beyond it.", ""]


def ranked_table(by_sub: dict[str, dict[str, dict]], task_order: list[str], stale: set) -> list[str]:
    """The main table: one row per submission, ranked by lookahead index."""
    rows = []
    for sub, cells in by_sub.items():
        ok = [c for c in cells.values() if c.get("status") == "ok"]
        errors = [c for c in cells.values() if c.get("status") == "error"]
        idx = lookahead_index(ok)
        rows.append((idx["value"] if idx else -np.inf, sub, cells, idx, errors))
    rows.sort(key=lambda r: (-r[0], r[1]))
    head = ["#", "submission", "lookahead index [95% CI]"]
    for t in task_order:
        head += [f"{t}: success@greedy (k/n)", f"{t}: selectivity (layer)", f"{t}: gain at decisions (nats)"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for rank, (_, sub, cells, idx, errors) in enumerate(rows, 1):
        name = escape(sub) + (" ⚠ stale" if sub in stale else "")
        profiles = {(c.get("reference") or {}).get("profile") for c in cells.values()}
        if "quick" in profiles:  # a smoke-run model: say so wherever its numbers appear
            name += " (quick profile: smoke run)"
        line = [str(rank) if idx else "–", name, fmt_ci(idx)]
        for t in task_order:
            c = cells.get(t)
            if not c:
                line += ["not run"] * 3
            elif c.get("status") != "ok":
                line += [f"error: {escape(c.get('error', '?'))}", "–", "–"]
            else:
                m = c["metrics"]
                sel = selectivity_ci(c)
                sel_s = fmt_ci(sel) + (f" (L{sel['layer']})" if sel else "")
                gain = (m.get("amplification_gain") or {}).get("decisions")
                line += [fmt_ci(m["success_greedy"]["all"], 3, denom=True), sel_s, fmt_ci(gain, 4)]
        out.append("| " + " | ".join(line) + " |")
    return out


def headline_section(cells: list[dict], task_order: list[str], plot_dir: Path, md_dir: Path) -> list[str]:
    """Reference variants aggregated over seeds, with plots and a generated paragraph."""
    refs = [c for c in cells if c.get("status") == "ok" and (c.get("reference") or {}).get("variant")
            not in (None, "random-init")]
    if not refs:
        return ["No reference baselines evaluated yet: run `mesabench baselines train` then `mesabench evaluate`."]
    # Never pool a smoke run with a full one: the full profile wins when both are there.
    profiles = {c["reference"].get("profile") for c in refs}
    profile = "full" if "full" in profiles else sorted(map(str, profiles))[0]
    refs = [c for c in refs if str(c["reference"].get("profile")) == profile]
    variants = list(dict.fromkeys(v for v in ("unstunted", "myopic", "stunted-skip",
                                               "stunted-penalty", "stunted-balance")
                                  if any(c["reference"]["variant"] == v for c in refs)))
    metrics = {
        "task loss (nats/token)": lambda c: c["metrics"]["task_loss"]["value"],
        "success@greedy": lambda c: c["metrics"]["success_greedy"]["all"]["value"],
        "gain at decisions (nats)": lambda c: ((c["metrics"]["amplification_gain"] or {}).get("decisions") or {}).get("value"),
        "gain, all positions (nats)": lambda c: ((c["metrics"]["amplification_gain"] or {}).get("all") or {}).get("value"),
        "selectivity (cross-fitted)": lambda c: (selectivity_ci(c) or {}).get("value"),
    }
    out = [f"Reference baselines of the **{profile}** profile"
           + (" (a smoke run: too little training for the numbers to mean anything)" if profile == "quick" else "")
           + ". Each figure is the mean over seeds with a 95% t-interval over seeds; the seeds "
           "are listed. Per-seed figures, with their intervals over examples, are in the "
           "per-task sections.", ""]
    summary: dict = defaultdict(dict)
    for task in task_order:
        tcells = [c for c in refs if c["task"] == task]
        if not tcells:
            continue
        out += [f"#### {escape(task)}", "", "| variant | seeds | " + " | ".join(metrics) + " |",
                "|---|---|" + "---|" * len(metrics)]
        for v in variants:
            vc = sorted((c for c in tcells if c["reference"]["variant"] == v),
                        key=lambda c: c["reference"].get("seed", 0))
            if not vc:
                continue
            seeds = ",".join(str(c["reference"].get("seed")) for c in vc)
            line = [v, seeds]
            for mname, get in metrics.items():
                vals = [x for x in (get(c) for c in vc) if x is not None]
                if not vals:
                    line.append("–")
                    continue
                mean, lo, hi = stats.mean_interval_over_seeds(vals)
                summary[task].setdefault(v, {})[mname] = (mean, lo, hi, len(vals))
                line.append(f"{fmt(mean)} [{fmt(lo)}, {fmt(hi)}]")
            out.append("| " + " | ".join(line) + " |")
        out.append("")
        plot = plot_variant_curves(tcells, variants, task, plot_dir)
        if plot:
            out += [f"![selectivity by layer per variant, {task}]({plot.relative_to(md_dir).as_posix()})", ""]
    plot = plot_variant_gain(summary, plot_dir)
    if plot:
        out += [f"![amplification gain per variant]({plot.relative_to(md_dir).as_posix()})", ""]
    out += ["**What the numbers show.** " + headline_paragraph(summary), ""]
    return out


def headline_paragraph(summary: dict) -> str:
    """One paragraph comparing each stunted variant with unstunted, from the numbers.

    A difference is called a difference only when the 95% seed intervals do not overlap;
    for each metric the paragraph lists the differences and counts the rest."""
    metrics = (("selectivity (cross-fitted)", "lookahead selectivity"),
               ("gain at decisions (nats)", "amplification gain at decisions"),
               ("task loss (nats/token)", "task loss"))
    found = {word: {"higher": [], "lower": [], "same": 0, "single": 0} for _, word in metrics}
    for task, by_v in summary.items():
        base = by_v.get("unstunted")
        if not base:
            continue
        for v, m in by_v.items():
            for mname, word in metrics:
                if v == "unstunted" or mname not in m or mname not in base:
                    continue
                (a, alo, ahi, na), (b, blo, bhi, nb) = m[mname], base[mname]
                where = f"{v} on {task} ({fmt(a)} vs {fmt(b)})"
                if na < 2 or nb < 2:
                    found[word]["single"] += 1
                elif alo > bhi:
                    found[word]["higher"].append(where)
                elif ahi < blo:
                    found[word]["lower"].append(where)
                else:
                    found[word]["same"] += 1
    total = {w: len(f["higher"]) + len(f["lower"]) + f["same"] + f["single"] for w, f in found.items()}
    if not any(total.values()):
        return "Only the unstunted reference has been evaluated; nothing to compare yet."
    sel = found["lookahead selectivity"]
    if sel["lower"]:
        verdict = f"Stunting lowered lookahead selectivity in {len(sel['lower'])} of {total['lookahead selectivity']} comparisons."
    else:
        verdict = (f"No stunted variant has lower lookahead selectivity than the unstunted reference "
                   f"on any task ({total['lookahead selectivity']} comparisons): this run does not show "
                   "that stunting removes lookahead.")
    base_sel = {task: by_v["unstunted"]["selectivity (cross-fitted)"] for task, by_v in summary.items()
                if "selectivity (cross-fitted)" in by_v.get("unstunted", {})}
    if base_sel:
        above = [t for t, (_, lo, _, n) in base_sel.items() if n >= 2 and lo > 0]
        verdict += (" The unstunted reference itself: " + "; ".join(
            f"{t} {fmt(m)} [{fmt(lo)}, {fmt(hi)}]" for t, (m, lo, hi, _) in base_sel.items()) + (
            f"; above 0 on {', '.join(above)}." if above else
            "; above 0 on no task, so there is no lookahead beyond the controls for stunting to remove."))
    sentences = [verdict, "Against the unstunted reference (mean over seeds; a difference only where "
                          "the 95% seed intervals do not overlap):"]
    for _, word in metrics:
        f = found[word]
        parts = [f"higher for {', '.join(f['higher'])}" if f["higher"] else "higher for none",
                 f"lower for {', '.join(f['lower'])}" if f["lower"] else "lower for none"]
        rest = f"{f['same']} not distinguishable" + (f", {f['single']} with a single seed" if f["single"] else "")
        sentences.append(f"{word[0].upper() + word[1:]}: {'; '.join(parts)} ({rest}).")
    return " ".join(sentences)


def task_section(task: str, cells: list[dict], plot_dir: Path, md_dir: Path) -> list[str]:
    """Per-task detail: success by group and split, baselines, probe curves, future lens."""
    ok = [c for c in cells if c.get("status") == "ok"]
    if not ok:
        return []
    out = [f"### {escape(task)}", ""]
    any_cell = ok[0]
    out.append(f"Task version {any_cell.get('task_version')}; eval data fingerprint "
               f"`{any_cell['data']['fingerprint']}` (dev {any_cell['data']['dev']}, test "
               f"{any_cell['data']['test']} examples, data seed {any_cell['seeds']['data']}).")
    out.append("")
    groups = sorted({g for c in ok for g in c["metrics"]["success_greedy"]["groups"]})
    extra = sorted({k for c in ok for k in c["metrics"] if k.startswith(("success_greedy_", "baseline_"))})
    head = ["submission", "success@greedy", "success@beam", *[f"greedy: {escape(g)}" for g in groups],
            *map(_extra_header, extra),
            "task loss", "gain, all positions", "λ"]
    out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in sorted(ok, key=lambda c: c["submission"]):
        m = c["metrics"]
        gain = m.get("amplification_gain") or {}
        line = [escape(c["submission"]), fmt_ci(m["success_greedy"]["all"], denom=True),
                fmt_ci(m["success_beam"]["all"], denom=True)]
        line += [fmt_ci(m["success_greedy"]["groups"].get(g), denom=True) for g in groups]
        line += [fmt_ci((m.get(k) or {}).get("all"), denom=True) for k in extra]
        line += [fmt_ci(m["task_loss"]), fmt_ci(gain.get("all"), 4), fmt(gain.get("lambda"), 2)]
        out.append("| " + " | ".join(line) + " |")
    out.append("")
    out += group_table(ok, groups, extra)
    out += probe_table(ok)
    plot = plot_model_curves(ok, task, plot_dir)
    if plot:
        out += [f"![selectivity by layer per model, {task}]({plot.relative_to(md_dir).as_posix()})", ""]
    out += future_lens_table(ok)
    return out


def _extra_header(key: str) -> str:
    """Column name of an extra success split or baseline metric."""
    return escape(key.replace("success_greedy_", "greedy on ").replace("baseline_", "baseline: "))


def group_table(cells: list[dict], groups: list[str], extra: list[str]) -> list[str]:
    """Every metric per group of the task (constrained: family; chess: mate in N), for
    seed 0 of each reference and every submitted model. ``extra``: the extra success
    splits and baselines of the task's main table, shown per group too."""
    if len(groups) < 2:
        return []
    target = next((p["name"] for p in map(headline_target, cells) if p), "target")
    out = [f"By group (amplification gain with the λ of the whole task; plan-probe "
           f"selectivity for the model's own `{escape(target)}`, the probes trained on all "
           f"groups and scored on each group's test rows, cross-fitted):", ""]
    head = ["submission", "group", "success@greedy", "success@beam", *map(_extra_header, extra),
            "gain, all positions", "selectivity [95% CI] (n)"]
    out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in sorted(cells, key=lambda c: c["submission"]):
        if extra_seed(c["submission"]):
            continue
        m = c["metrics"]
        gain_groups = (m.get("amplification_gain") or {}).get("groups") or {}
        probe_groups = (headline_target(c) or {}).get("groups") or {}
        for g in groups:
            p = probe_groups.get(g)
            sel = (f"{fmt(p['crossfit_selectivity'])} [{fmt(p['crossfit_lo'])}, "
                   f"{fmt(p['crossfit_hi'])}] (n={p['n_test']})") if p else "–"
            out.append("| " + " | ".join([
                escape(c["submission"]), escape(g),
                fmt_ci(m["success_greedy"]["groups"].get(g), denom=True),
                fmt_ci(m["success_beam"]["groups"].get(g), denom=True),
                *[fmt_ci(((m.get(k) or {}).get("groups") or {}).get(g), denom=True) for k in extra],
                fmt_ci(gain_groups.get(g), 4), sel]) + " |")
    return out + [""]


def probe_table(cells: list[dict]) -> list[str]:
    out = ["Plan probes at the decision point (selectivity = best-layer accuracy − the "
           "strongest control; cross-fitted: the layer is picked on one half of the test "
           "examples and scored on the other):", "",
           "| submission | target | whose | n train/test (classes) | accuracy by layer | "
           "controls: embedding / random-init / bag-of-words / own next word | selectivity, cross-fitted [95% CI] |",
           "|---|---|---|---|---|---|---|"]
    for c in sorted(cells, key=lambda c: c["submission"]):
        for name, by_target in (c["metrics"].get("plan_probe") or {}).items():
            for whose, p in by_target.items():
                ctrl = p["control_accuracy"]
                out.append("| " + " | ".join([
                    escape(c["submission"]), escape(name), whose,
                    f"{p['n_train']}/{p['n_test']} ({p['n_classes']})",
                    " ".join(fmt(a, 2) for a in p["layer_accuracy"]),
                    " / ".join(fmt(ctrl.get(k), 2) for k in ("embedding", "random-init", "bag-of-words",
                                                             "own-next-word") if k in ctrl),
                    f"{fmt(p['crossfit_selectivity'])} [{fmt(p['crossfit_lo'])}, {fmt(p['crossfit_hi'])}]",
                ]) + " |")
    return out + [""]


def future_lens_table(cells: list[dict]) -> list[str]:
    out = ["Future lens (decode the token at t+k from the state at the decision point, minus "
           "a probe that sees only the token at t, and on the model's own output also its token "
           "at t+1, which that state decides; cross-fitted best layer):", "",
           "| submission | text | " + " | ".join(f"k={k}" for k in range(1, 5)) + " |",
           "|---|---|" + "---|" * 4]
    shown = False
    for c in sorted(cells, key=lambda c: c["submission"]):
        for source, curve in (c["metrics"].get("future_lens") or {}).items():
            ks = curve.get("curve", [])
            cols = []
            for entry in ks[:4]:
                if isinstance(entry, dict):
                    cols.append(f"{fmt(entry.get('crossfit_gain', entry.get('gain')))} "
                                f"[{fmt(entry.get('crossfit_lo', entry.get('lo')))}, "
                                f"{fmt(entry.get('crossfit_hi', entry.get('hi')))}]")
            cols += ["–"] * (4 - len(cols))
            out.append(f"| {escape(c['submission'])} | {'true text' if source == 'reference' else 'own greedy output'} | "
                       + " | ".join(cols) + " |")
            shown = True
    return out + [""] if shown else []


# ---------------------------------------------------------------------- plots


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_model_curves(cells: list[dict], task: str, plot_dir: Path) -> Path | None:
    """Selectivity by layer, one line per model (seed-0 references and submissions)."""
    curves = [(c["submission"], headline_target(c)) for c in cells]
    curves = [(n, p) for n, p in curves if p and not extra_seed(n)]
    if not curves:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for name, p in curves:
        x = np.arange(len(p["selectivity"]))
        y = np.array([np.nan if v is None else v for v in p["selectivity"]], float)
        lo = np.array([np.nan if v is None else v for v in p["selectivity_lo"]], float)
        hi = np.array([np.nan if v is None else v for v in p["selectivity_hi"]], float)
        line, = ax.plot(x, y, marker="o", label=name)
        ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.15)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xlabel("layer (0 = embeddings)")
    ax.set_ylabel("selectivity (acc − best control)")
    ax.set_title(f"{task}: plan-probe selectivity by layer ({curves[0][1]['name']}, own target)")
    ax.legend(fontsize=7)
    return _save(fig, plt, plot_dir / f"{task}_selectivity_by_model.png")


def plot_variant_curves(cells: list[dict], variants: list[str], task: str, plot_dir: Path) -> Path | None:
    """Selectivity by layer per reference variant, mean over seeds with min-max band."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    drawn = False
    for v in variants:
        curves = [headline_target(c) for c in cells if c["reference"]["variant"] == v]
        curves = [np.array([np.nan if x is None else x for x in p["selectivity"]], float)
                  for p in curves if p]
        if not curves:
            continue
        arr = np.stack(curves)
        x = np.arange(arr.shape[1])
        line, = ax.plot(x, np.nanmean(arr, 0), marker="o", label=f"{v} ({len(curves)} seeds)")
        ax.fill_between(x, np.nanmin(arr, 0), np.nanmax(arr, 0), color=line.get_color(), alpha=0.15)
        drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xlabel("layer (0 = embeddings)")
    ax.set_ylabel("selectivity")
    ax.set_title(f"{task}: selectivity by layer per variant (band: seed min–max)")
    ax.legend(fontsize=7)
    return _save(fig, plt, plot_dir / f"{task}_selectivity_by_variant.png")


def plot_variant_gain(summary: dict, plot_dir: Path) -> Path | None:
    """Amplification gain at decisions per variant and task, with seed intervals."""
    key = "gain at decisions (nats)"
    tasks_ = [t for t in summary if any(key in m for m in summary[t].values())]
    if not tasks_:
        return None
    plt = _plt()
    variants = list(dict.fromkeys(v for t in tasks_ for v in summary[t]))
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    width = 0.8 / len(variants)
    for i, v in enumerate(variants):
        xs, ys, errs = [], [], [[], []]
        for j, t in enumerate(tasks_):
            if key in summary[t].get(v, {}):
                mean, lo, hi, _ = summary[t][v][key]
                xs.append(j + i * width)
                ys.append(mean)
                errs[0].append(0 if np.isnan(lo) else mean - lo)
                errs[1].append(0 if np.isnan(hi) else hi - mean)
        ax.bar(xs, ys, width, yerr=errs, label=v, capsize=2)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(tasks_))], tasks_)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_ylabel("gain at decision points (nats)")
    ax.set_title("amplification gain per variant (mean over seeds, 95% CI)")
    ax.legend(fontsize=7)
    return _save(fig, plt, plot_dir / "gain_by_variant.png")


def _save(fig, plt, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    # A fixed date in the metadata keeps regenerated PNGs byte-identical.
    fig.savefig(path, dpi=90, metadata={"Software": None})
    plt.close(fig)
    return path


# ---------------------------------------------------------------------- the page


def write_leaderboard(results_dir: Path, out: Path, submission_dirs: Path | list[Path] = Path("submissions")) -> int:
    """Write the leaderboard (and plots beside it) from the result files; returns row count.
    ``submission_dirs`` are searched for the current model hashes (to mark stale rows)."""
    if isinstance(submission_dirs, Path):
        submission_dirs = [submission_dirs]
    from benchmark.results import write_atomic

    cells = load_all(results_dir)
    out = Path(out)
    md_dir = out.parent.resolve()
    plot_dir = md_dir / PLOTS
    by_sub: dict[str, dict[str, dict]] = defaultdict(dict)
    for c in cells:
        by_sub[c["submission"]][c["task"]] = c
    from tasks import task_names

    order = [t for t in task_names() if any(t in cs for cs in by_sub.values())]
    hashes = _current_hashes(submission_dirs, set(by_sub))
    stale = {c["submission"] for c in cells if c.get("status") == "ok" and _stale(c, hashes)}
    main_subs = {s: cs for s, cs in by_sub.items() if not extra_seed(s)}
    versions = next((c["versions"] for c in cells if c.get("versions")), library_versions())
    lines = [
        "# mesabench leaderboard", "",
        "<!-- generated by `mesabench leaderboard`; do not edit by hand -->", "",
        f"Generated {dt.date.today().isoformat()} from {len(cells)} result files computed by harness "
        f"git {', '.join(f'`{h}`' for h in sorted({c.get('git') or 'unknown' for c in cells})) or '–'} "
        f"(leaderboard written at `{git_hash() or 'unknown'}`); " + ", ".join(f"{k} {v}" for k, v in versions.items() if v) + ".",
        "",
        "**Lookahead index**: mean over tasks of the cross-fitted best-layer selectivity of a "
        "linear probe that decodes, at the decision point, the target the model's own greedy "
        "continuation will produce, minus the strongest of four controls (embedding layer, "
        "a random-init model of the same architecture, bag of words of the prompt, the first "
        "word of the model's own continuation). 0 means "
        "no more plan in the hidden state than the controls find. Intervals are 95%; "
        "success rates are Wilson intervals with k/n; gains and selectivities are bootstrap "
        "intervals over test examples (data seed 0). Only seed 0 of each reference baseline "
        "is ranked here; all seeds are aggregated in the headline experiment. "
        "⚠ stale: the model changed since the row was computed.", "",
        "## Ranking", "",
        *ranked_table(main_subs, order, stale), "",
        *null_model_note(by_sub.get(NULL_MODEL, {}), order),
        "## Headline experiment: does stunting reduce lookahead?", "",
        *headline_section(cells, order, plot_dir, md_dir), "",
        "## Per task", "",
    ]
    for task in order:
        lines += task_section(task, [by_sub[s][task] for s in sorted(by_sub) if task in by_sub[s]],
                              plot_dir, md_dir)
    write_atomic(out, "\n".join(lines) + "\n")
    return len(main_subs)
