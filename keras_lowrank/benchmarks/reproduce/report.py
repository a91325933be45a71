"""Tables, plots and verdicts rendered from results.json (and nothing else).

results.json is the source of truth: `render` reads it and writes
`results.md` (mean +/- std per dataset x model x vectors x method x size, the
change against the uncompressed model, the frontier and the goals of issue
3), the frontier plots (test accuracy against embedding bytes, log scale,
one line per method) and the learning-rate curves of the schedules. It can
also refresh the generated block of a hand-written document. This module
must not train or change results.
"""

import collections
import os
import re

import numpy as np

from keras_lowrank.benchmarks import markdown
from keras_lowrank.benchmarks.reproduce.config import FINETUNED_METHODS
from keras_lowrank.benchmarks.reproduce.config import METHODS
from keras_lowrank.benchmarks.reproduce.config import schedule_family
from keras_lowrank.benchmarks.reproduce.config import size_label
from keras_lowrank.utils.atomic_write import atomic_open
from keras_lowrank.utils.atomic_write import atomic_path

GOAL_SIZES = (0.1, 0.05, 0.02)
# Goals of issue 3: (size, largest allowed mean loss in points).
GOALS = ((0.1, 0.5), (0.05, 0.5), (0.02, 1.0))
BEGIN_MARK = "<!-- BEGIN GENERATED {name}: keras-lowrank reproduce --render-only -->"
END_MARK = "<!-- END GENERATED {name} -->"
_METHOD_ORDER = {m: i for i, m in enumerate(METHODS)}


def _ok(records):
    return [r for r in records if r.get("status", "ok") == "ok" and r.get("test_accuracy") is not None]


def _dedupe(records):
    """Drops repeated runs (the same configuration recorded by two parts).

    Every part of a split grid records the uncompressed model of its cells;
    merged, the same seed would count twice.
    """
    from keras_lowrank.benchmarks.reproduce.records import record_key

    seen, out = set(), []
    for r in records:
        key = record_key(r)
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


def _group_key(r):
    return (r["dataset"], r["model"], r["vectors"])


def _std(values):
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def summary_rows(records):
    """Aggregates successful records over seeds.

    Returns:
        A list of dicts with dataset, model, vectors, method, schedule, size,
        fraction (mean measured bytes / float32 bytes), rank, vocab_rows,
        dev_mean, test_mean, test_std, n, and `drop`: mean test accuracy
        minus the uncompressed mean, in points (negative: a loss).
    """
    groups = collections.defaultdict(list)
    for r in _dedupe(_ok(records)):
        schedule = r.get("schedule_key") or "-"
        groups[_group_key(r) + (r["method"], schedule, round(float(r["size"]), 6))].append(r)
    base = {}
    for key, rs in groups.items():
        if key[3] == "uncompressed":
            base[key[:3]] = float(np.mean([r["test_accuracy"] for r in rs]))
    rows = []
    for key, rs in groups.items():
        dataset, model, vectors, method, schedule, size = key
        test = [r["test_accuracy"] for r in rs]
        ranks = sorted({r.get("rank") for r in rs if r.get("rank")})
        vrows = sorted({r.get("vocab_rows") for r in rs if r.get("vocab_rows")})
        uncompressed = base.get(key[:3])
        rows.append(
            {
                "dataset": dataset,
                "model": model,
                "vectors": vectors,
                "method": method,
                "schedule": schedule,
                "size": size,
                "fraction": float(np.mean([r["embedding_fraction"] for r in rs])),
                "rank": "/".join(str(x) for x in ranks) or "",
                "vocab_rows": "/".join(str(x) for x in vrows) or "",
                "dev_mean": float(np.mean([r["dev_accuracy"] for r in rs])),
                "test_mean": float(np.mean(test)),
                "test_std": _std(test),
                "n": len(rs),
                "drop": None if uncompressed is None else 100.0 * (float(np.mean(test)) - uncompressed),
            }
        )
    rows.sort(
        key=lambda r: (r["dataset"], r["model"], r["vectors"], -r["size"] if r["method"] not in ("uncompressed",) else -2,
                       _METHOD_ORDER.get(r["method"], 99), r["schedule"])
    )
    return rows


def _main_schedule_rows(rows):
    """Rows of the main grid: one schedule per fine-tuned method."""
    schedules = {r["schedule"] for r in rows if r["method"] in FINETUNED_METHODS}
    return rows, len(schedules) > 1


# ----------------------------------------------------------------- verdicts


OURS = ("online+int8", "online+int4", "online+distill", "online+freq", "online+distill+int4",
        "online+freq+distill+int4", "prune+online", "prune+online+distill+int4",
        "prune+online+freq+distill+int4")


def frontier(rows, size, methods=None):
    """Per group: the method with the best mean *dev* accuracy within `size`.

    Only methods measured at a target size <= `size` (or fixed-size methods
    whose bytes fit) compete; the uncompressed model does not. The choice
    uses dev accuracy only; the returned test change is what it scores.

    Returns:
        A dict `group -> row` of the chosen method.
    """
    best = {}
    for r in rows:
        if r["method"] == "uncompressed" or r["fraction"] > size + 1e-9:
            continue
        if methods is not None and r["method"] not in methods:
            continue
        g = (r["dataset"], r["model"], r["vectors"])
        if g not in best or r["dev_mean"] > best[g]["dev_mean"]:
            best[g] = r
    return best


def method_at_size(rows, method, size, schedule=None):
    """Per group: the row of `method` at target `size` (any schedule if None)."""
    out = {}
    for r in rows:
        if r["method"] != method or abs(r["size"] - size) > 1e-9:
            continue
        if schedule is not None and r["schedule"] != schedule:
            continue
        out[(r["dataset"], r["model"], r["vectors"])] = r
    return out


def _mean(values):
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def verdicts(rows):
    """Measured answers to the questions of issue 3, as markdown lines."""
    lines = []
    groups = sorted({(r["dataset"], r["model"], r["vectors"]) for r in rows if r["method"] == "uncompressed"})
    if not groups:
        return ["No uncompressed runs: nothing to compare."]
    sizes = sorted({r["size"] for r in rows if r["method"] not in ("uncompressed", "float16", "int8", "int4")}, reverse=True)

    # 1. The paper's claim: online at 90% compression within one point.
    online10 = method_at_size(rows, "online", 0.1)
    offline10 = method_at_size(rows, "offline", 0.1)
    if online10:
        drops = {g: r["drop"] for g, r in online10.items()}
        holds = [g for g, d in drops.items() if d is not None and d >= -1.0]
        fails = [g for g, d in drops.items() if d is not None and d < -1.0]
        lines.append(
            f"- **Paper's claim (online at 90% compression loses <= 1 point):** holds for "
            f"{len(holds)} of {len(drops)} dataset x model x vectors groups"
            + (f" ({', '.join('/'.join(g) for g in holds)})" if holds else "")
            + (f"; fails for {', '.join('/'.join(g) + f' ({drops[g]:+.2f})' for g in fails)}" if fails else "")
            + f". Mean change {_mean(drops.values()):+.2f} points."
        )
    if online10 and offline10:
        both = [g for g in online10 if g in offline10]
        wins = [g for g in both if online10[g]["test_mean"] > offline10[g]["test_mean"]]
        lines.append(
            f"- **Online vs offline at 90%:** online is ahead in {len(wins)} of {len(both)} groups "
            f"(mean {_mean([online10[g]['drop'] for g in both]):+.2f} vs "
            f"{_mean([offline10[g]['drop'] for g in both]):+.2f} points)."
        )
    # 2. Our improvements at equal size.
    for variant in ("online+distill", "online+freq"):
        gains = []
        for size in sizes:
            a, b = method_at_size(rows, variant, size), method_at_size(rows, "online", size)
            gains += [100 * (a[g]["test_mean"] - b[g]["test_mean"]) for g in a if g in b]
        if gains:
            better = sum(1 for x in gains if x > 0)
            lines.append(
                f"- **{variant} vs online at the same rank:** mean {np.mean(gains):+.2f} points over "
                f"{len(gains)} group x size pairs, ahead in {better}."
            )
    # 3. Goals: our variants, the best chosen on dev within each size.
    for size, allowed in GOALS:
        for label, methods in (("our variants (online+*, prune+online*)", OURS), ("any method", None)):
            best = frontier(rows, size, methods)
            if not best:
                continue
            drops = [r["drop"] for r in best.values() if r["drop"] is not None]
            mean_drop = _mean(drops)
            worst_g = min(best, key=lambda g: best[g]["drop"] if best[g]["drop"] is not None else 0.0)
            picks = collections.Counter(r["method"] for r in best.values())
            met = mean_drop is not None and mean_drop >= -allowed
            within1 = sum(1 for d in drops if d >= -1.0)
            lines.append(
                f"- **<= {size_label(size)} of the bytes, best of {label} chosen on dev (goal: mean loss <= {allowed}):** "
                f"{'met' if met else 'not met'}; mean Δ {mean_drop:+.2f} points over {len(drops)} groups, "
                f"{within1} of {len(drops)} within 1 point, worst {'/'.join(worst_g)} {best[worst_g]['drop']:+.2f}; picks: "
                + ", ".join(f"{m} x{n}" for m, n in picks.most_common())
                + "."
            )
    # 4. Against the cheap competitor, size by size.
    for size in sizes:
        comp = method_at_size(rows, "prune+int4", size)
        if not comp:
            continue
        ours = {g: r for g, r in frontier([r for r in rows if r["method"] != "prune+int4"], size).items() if g in comp}
        if not ours:
            continue
        ahead = sum(1 for g in ours if ours[g]["test_mean"] > comp[g]["test_mean"])
        diff = _mean([100 * (ours[g]["test_mean"] - comp[g]["test_mean"]) for g in ours])
        lines.append(
            f"- **Dev-selected best of the other methods vs prune+int4 at <= {size_label(size)}:** ahead in "
            f"{ahead} of {len(ours)} groups, mean {diff:+.2f} points."
        )
    # 5. Post-training quantization of the whole table, at its own size.
    for method in ("float16", "int8", "int4"):
        rs = [r for r in rows if r["method"] == method and r["drop"] is not None]
        if rs:
            lines.append(
                f"- **{method}** (no retraining, {100 * np.mean([r['fraction'] for r in rs]):.1f}% of the bytes): "
                f"mean {np.mean([r['drop'] for r in rs]):+.2f} points over {len(rs)} groups, worst "
                f"{min(r['drop'] for r in rs):+.2f}."
            )
    return lines


def quantization_cost(records):
    """Markdown lines: dev accuracy after minus before quantizing the factors."""
    by_method = collections.defaultdict(list)
    for r in _dedupe(_ok(records)):
        if r.get("float_dev_accuracy") is not None and r["method"].endswith(("int8", "int4")):
            by_method[r["method"]].append(100.0 * (r["dev_accuracy"] - r["float_dev_accuracy"]))
    lines = []
    for m in sorted(by_method, key=lambda m: _METHOD_ORDER.get(m, 99)):
        v = by_method[m]
        lines.append(
            f"- **Quantizing the factors after the fine-tune ({m}):** dev accuracy changes by "
            f"{np.mean(v):+.2f} points on average over {len(v)} runs (range {min(v):+.2f} to {max(v):+.2f})."
        )
    return lines


def goal_table(rows):
    """Markdown: mean change vs uncompressed per method and size (all groups)."""
    sizes = sorted({r["size"] for r in rows if r["method"] not in ("uncompressed",)}, reverse=True)
    sized = sorted({r["size"] for r in rows if r["method"] in FINETUNED_METHODS or r["method"] in ("offline", "prune+int4")}, reverse=True)
    if not sized:
        return []
    methods = sorted({r["method"] for r in rows if r["method"] != "uncompressed"}, key=lambda m: _METHOD_ORDER.get(m, 99))
    body = []
    for m in methods:
        cells = []
        for s in sized:
            if m in ("float16", "int8", "int4"):
                vals = [r for r in rows if r["method"] == m and r["fraction"] <= s + 1e-9]
            else:
                vals = [r for r in rows if r["method"] == m and abs(r["size"] - s) < 1e-9]
            drops = [r["drop"] for r in vals if r["drop"] is not None]
            groups = len({(r["dataset"], r["model"], r["vectors"]) for r in vals})
            cells.append(f"{np.mean(drops):+.2f} ({groups})" if drops else "")
        if any(cells):
            body.append([m] + cells)
    for label, methods in (("best of our variants (dev-selected)", OURS), ("best of any method (dev-selected)", None)):
        frontier_cells = []
        for s in sized:
            best = frontier(rows, s, methods)
            drops = [r["drop"] for r in best.values() if r["drop"] is not None]
            frontier_cells.append(f"**{np.mean(drops):+.2f}** ({len(drops)})" if drops else "")
        body.append([label] + frontier_cells)
    _ = sizes
    return _table(["method"] + [size_label(s) for s in sized], body, "l" + "r" * len(sized))


def size_tables(rows):
    """Markdown: per size, Δ test of each method in each group, and the dev pick."""
    sized = sorted({r["size"] for r in rows if r["method"] not in ("uncompressed", "float16", "int8", "int4")}, reverse=True)
    groups = sorted({(r["dataset"], r["model"], r["vectors"]) for r in rows if r["method"] == "uncompressed"})
    base = {(r["dataset"], r["model"], r["vectors"]): r for r in rows if r["method"] == "uncompressed"}
    out = []
    for size in sized:
        methods = sorted({r["method"] for r in rows if abs(r["size"] - size) < 1e-9 and r["method"] != "uncompressed"},
                         key=lambda m: _METHOD_ORDER.get(m, 99))
        if not methods:
            continue
        best = frontier(rows, size)
        out += [f"**<= {size_label(size)} of the float32 embedding bytes** (Δ test in points; dev-selected best "
                "among every method that fits, fixed-size quantizations included)", ""]
        body = []
        for g in groups:
            cells = []
            for m in methods:
                r = method_at_size(rows, m, size).get(g)
                cells.append("" if r is None or r["drop"] is None else f"{r['drop']:+.2f}")
            b = best.get(g)
            pick = "" if b is None else f"{b['method']} ({b['drop']:+.2f})"
            body.append([" / ".join(g), f"{100 * base[g]['test_mean']:.2f}"] + cells + [pick])
        header = ["dataset / model / vectors", "uncompressed"] + methods + ["dev-selected best"]
        out += _table(header, body, "lr" + "r" * len(methods) + "l")
        out.append("")
    return out


# ------------------------------------------------------------------ tables


def _fmt_acc(mean, std):
    return f"{100 * mean:.2f} ± {100 * std:.2f}"


def _table(header, rows, align):
    """Markdown table lines: one cell per column in every row (`|` escaped).

    Args:
        header: the column titles.
        rows: lists of cell values, one per column.
        align: a string of "l"/"r", one per column.
    """
    markdown.check_rows(header, rows)
    rule = "|" + "".join("---:|" if a == "r" else "---|" for a in align)
    return [markdown.row(header), rule] + [markdown.row(cells) for cells in rows]


def results_table(rows, with_schedule):
    """Markdown table per dataset x model x vectors."""
    out = []
    by_group = collections.defaultdict(list)
    for r in rows:
        by_group[(r["dataset"], r["model"], r["vectors"])].append(r)
    for g in sorted(by_group):
        out.append(f"### {g[0]} / {g[1]} / {g[2]}")
        out.append("")
        header = ["method", "size target", "bytes (% of float32)", "rank", "rows", "dev", "test (mean ± std)",
                  "Δ test vs uncompressed", "seeds"]
        if with_schedule:
            header.insert(1, "schedule")
        body = []
        for r in by_group[g]:
            target = "—" if r["method"] in ("uncompressed", "float16", "int8", "int4") else size_label(r["size"])
            drop = "" if r["drop"] is None or r["method"] == "uncompressed" else f"{r['drop']:+.2f}"
            cells = [r["method"]]
            if with_schedule:
                cells.append(r["schedule"])
            cells += [
                target,
                f"{100 * r['fraction']:.2f}",
                str(r["rank"]),
                str(r["vocab_rows"]),
                f"{100 * r['dev_mean']:.2f}",
                _fmt_acc(r["test_mean"], r["test_std"]),
                drop,
                str(r["n"]),
            ]
            body.append(cells)
        out += _table(header, body, "l" * len(header))
        out.append("")
    return out


def schedule_study(rows):
    """Markdown for a schedule study: per family, the dev-selected setting.

    For every dataset x model x vectors x method x size, each family
    (calr, clr, constant, cosine-restarts) is represented by its setting
    with the best mean dev accuracy; the table shows that setting's test
    accuracy. Returns [] when only one schedule was run.
    """
    tuned = [r for r in rows if r["method"] in FINETUNED_METHODS]
    if len({r["schedule"] for r in tuned}) < 2:
        return []
    cells = collections.defaultdict(dict)
    for r in tuned:
        key = (r["dataset"], r["model"], r["vectors"], r["method"], r["size"])
        fam = schedule_family(r["schedule"])
        if fam not in cells[key] or r["dev_mean"] > cells[key][fam]["dev_mean"]:
            cells[key][fam] = r
    families = [f for f in ("calr", "clr", "constant", "cosine-restarts") if any(f in c for c in cells.values())]
    lines = [
        "Each family is represented by its setting with the best mean dev accuracy (chosen on dev, never on test); "
        "cells show mean test accuracy (%) and, in brackets, the chosen setting.",
        "",
    ]
    body = []
    wins = collections.Counter()
    deltas = collections.defaultdict(list)
    for key in sorted(cells):
        c = cells[key]
        best_f = max((f for f in families if f in c), key=lambda f: c[f]["test_mean"])
        wins[best_f] += 1
        if "calr" in c:
            for f in families:
                if f != "calr" and f in c:
                    deltas[f].append(100 * (c["calr"]["test_mean"] - c[f]["test_mean"]))
        vals = []
        for f in families:
            if f in c:
                setting = c[f]["schedule"].partition(":")[2] or "default"
                vals.append(f"{100 * c[f]['test_mean']:.2f} ({setting})")
            else:
                vals.append("")
        body.append([key[0], key[1], key[2], key[3], size_label(key[4])] + vals + [best_f])
    header = ["dataset", "model", "vectors", "method", "size"] + families + ["best on test"]
    lines += _table(header, body, "l" * len(header))
    lines.append("")
    lines.append(
        "Best family on test per cell: " + ", ".join(f"{f} x{n}" for f, n in wins.most_common()) + "."
    )
    for f, d in deltas.items():
        lines.append(f"CALR minus {f}: mean {np.mean(d):+.2f} points over {len(d)} cells, CALR ahead in {sum(1 for x in d if x > 0)}.")
    # One setting for every dataset: each setting's mean over the cells.
    per_setting = collections.defaultdict(list)
    for r in tuned:
        per_setting[r["schedule"]].append(r)
    n_cells = len(cells)
    lines += [
        "",
        "Every setting, averaged over the cells above (a setting missing from a cell is left out):",
        "",
    ]
    body = []
    for spec, rs in sorted(per_setting.items(), key=lambda kv: -np.mean([r["dev_mean"] for r in kv[1]])):
        drops = [r["drop"] for r in rs if r["drop"] is not None]
        body.append([
            spec,
            f"{len(rs)}/{n_cells}",
            f"{100 * np.mean([r['dev_mean'] for r in rs]):.2f}",
            f"{100 * np.mean([r['test_mean'] for r in rs]):.2f}",
            f"{np.mean(drops):+.2f}" if drops else "",
        ])
    header = ["setting", "cells", "mean dev", "mean test", "mean Δ test vs uncompressed"]
    return lines + _table(header, body, "lrrrr")


# ------------------------------------------------------------------- plots


def plot_frontiers(rows, folder, subtitle=None, highlight=()):
    """One PNG per dataset x model x vectors: test accuracy vs bytes (log x).

    Args:
        rows: `summary_rows`.
        folder: where the PNGs go.
        subtitle: the title's second line (default: the fine-tune schedule
            when the fine-tuned methods share one).
        highlight: methods drawn heavier, above the others.

    Returns:
        The paths written (none without matplotlib).
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return []
    paths = []
    by_group = collections.defaultdict(list)
    for r in rows:
        by_group[(r["dataset"], r["model"], r["vectors"])].append(r)
    import matplotlib

    colors = matplotlib.colormaps["tab20"].colors
    for g, rs in sorted(by_group.items()):
        fig = Figure(figsize=(9.5, 5.0), dpi=110)
        FigureCanvasAgg(fig)
        ax = fig.add_axes([0.08, 0.11, 0.58, 0.8])
        by_method = collections.defaultdict(list)
        schedules = sorted({r["schedule"] for r in rs if r["method"] in FINETUNED_METHODS})
        for r in rs:
            label = r["method"] if len(schedules) <= 1 else f"{r['method']} [{r['schedule']}]"
            by_method[label].append(r)
        base = [r for r in rs if r["method"] == "uncompressed"]
        if base:
            ax.axhline(100 * base[0]["test_mean"], color="black", linestyle="--", linewidth=1, label="uncompressed")
            ax.axhspan(100 * base[0]["test_mean"] - 1.0, 100 * base[0]["test_mean"], color="0.9", zorder=0,
                       label="within 1 point")
        markers = "os^vD<>phX*Pd8"
        ordered = sorted(by_method.items(), key=lambda kv: _METHOD_ORDER.get(kv[0].split(" ")[0], 99))
        for label, ms in ordered:
            if label == "uncompressed":
                continue
            i = _METHOD_ORDER.get(label.split(" ")[0], 0)
            # One point per distinct model (reused results at two targets
            # are the same point).
            pts = sorted({(m["fraction"], m["test_mean"], m["test_std"]) for m in ms})
            xs = [100 * p[0] for p in pts]
            ys = [100 * p[1] for p in pts]
            es = [100 * p[2] for p in pts]
            heavy = label in highlight
            ax.errorbar(xs, ys, yerr=es, marker=markers[i % len(markers)],
                        color="crimson" if heavy else colors[i % len(colors)], capsize=2,
                        linewidth=2.6 if heavy else 1.3, markersize=6 if heavy else 5, zorder=5 if heavy else 2,
                        label=label)
        ax.set_xscale("log")
        low = 100 * min(r["fraction"] for r in rs) / 1.5
        ticks = [t for t in (0.2, 0.5, 1, 2, 5, 10, 20, 50, 100) if t >= low]
        ax.set_xticks(ticks)
        ax.set_xticklabels([f"{t:g}%" for t in ticks])
        ax.minorticks_off()
        ax.set_xlabel("embedding bytes (% of the float32 table, log scale)")
        ax.set_ylabel("test accuracy (%)")
        title = f"{g[0]} / {g[1]} / {g[2]}: test accuracy vs embedding bytes (mean ± std over seeds)"
        if subtitle is not None:
            title += f"\n{subtitle}"
        elif len(schedules) == 1:
            title += f"\nfine-tune schedule: {schedules[0]}"
        ax.set_title(title, fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7.5, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
        name = "frontier_" + "_".join(_safe(x) for x in g) + ".png"
        path = os.path.join(folder, name)
        with atomic_path(path) as tmp:
            fig.savefig(tmp)
        paths.append(path)
    return paths


def plot_schedule_curves(folder, specs=("calr", "clr"), steps_per_epoch=100, epochs=5, name="lr_schedules.png"):
    """Learning-rate curves of fine-tune schedule specs (CLR vs CALR, ...).

    Args:
        folder: where to write the PNG.
        specs: schedule specs to draw (see `config.parse_schedule`).
        steps_per_epoch, epochs: the fine-tune drawn (the x axis, in steps).
        name: file name.

    Returns:
        The path, or None when plotting is not available.
    """
    try:
        from keras_lowrank.benchmarks.reproduce.fitting import build_schedule
        from keras_lowrank.schedules import plot_schedules
    except ImportError:
        return None
    schedules = {spec: build_schedule(spec, steps_per_epoch) for spec in specs}
    path = os.path.join(folder, name)
    try:
        plot_schedules(
            schedules,
            steps=steps_per_epoch * epochs,
            path=path,
            title=f"Fine-tune learning rate: {epochs} epochs of {steps_per_epoch} steps",
        )
    except ImportError:
        return None
    return path


def _curve_specs(rows):
    """The schedules to draw: those run, plus CLR with the same range as CALR."""
    specs = sorted({r["schedule"] for r in rows if r["method"] in FINETUNED_METHODS})
    if len(specs) == 1 and schedule_family(specs[0]) == "calr":
        rest = specs[0].partition(":")[2]
        peak = [kv for kv in rest.split(",") if kv.startswith("max=")]
        specs.append("clr" + (":" + peak[0] if peak else ""))
    return specs[:10] or ["calr", "clr"]


def _safe(text):
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(text))


# ------------------------------------------------------------------ render


def render(output, records=None, *, doc=None, doc_block="results", plots=True):
    """Writes results.md and the plots of `output` from its results.json.

    Args:
        output: the results folder (holding results.json).
        records: the records (default: read `<output>/results.json`).
        doc: optional path of a markdown document whose block between
            `BEGIN_MARK` and `END_MARK` (named `doc_block`) is replaced by the
            generated summary (images linked relative to the document).
        doc_block: the name of that block (several result folders can fill
            several blocks of one document).
        plots: whether to draw the PNGs.

    Returns:
        A dict of written paths: `results_md`, `plots` (list), `lr_plot`.
    """
    from keras_lowrank.benchmarks.reproduce.records import RESULTS_FILE
    from keras_lowrank.benchmarks.reproduce.records import load_records

    if records is None:
        records = load_records(os.path.join(output, RESULTS_FILE))
    rows = summary_rows(records)
    rows, with_schedule = _main_schedule_rows(rows)
    os.makedirs(output, exist_ok=True)
    plot_paths, lr_path = [], None
    if plots and rows:
        if not schedule_study(rows):
            plot_paths = plot_frontiers(rows, output)
        lr_path = plot_schedule_curves(output, _curve_specs(rows))
    body = _markdown(records, rows, with_schedule, output, plot_paths, lr_path, relative_to=output)
    md_path = os.path.join(output, "results.md")
    with atomic_open(md_path, "w", encoding="utf-8") as f:
        f.write("\n".join(body) + "\n")
    if doc:
        block = _markdown(records, rows, with_schedule, output, plot_paths, lr_path,
                          relative_to=os.path.dirname(os.path.abspath(doc)), headline_only=True)
        update_doc(doc, block, name=doc_block)
    return {"results_md": md_path, "plots": plot_paths, "lr_plot": lr_path}


def subset_note(records):
    """Says plainly when `records` were trained on a subsample of the training split.

    A subsample (`--quick`, `--max-train`) makes a smoke test of the
    pipeline, not a measurement: its numbers must not be read as results.

    Returns:
        `(title, text)`, or `None` when every model saw its whole training split.
    """
    subsampled = [r for r in _ok(records) if r.get("max_train")]
    if not subsampled:
        return None
    examples = sorted({r["train_examples"] for r in subsampled if r.get("train_examples")})
    seeds = sorted({r["seed"] for r in subsampled})
    epochs = sorted({r["base_epochs"] for r in subsampled if r.get("base_epochs")})
    title = "A quick subset, not the published results."
    text = (
        f"These models were trained on a seeded subsample of "
        f"{' or '.join(f'{n:,}' for n in examples)} training examples"
        + (f" ({' or '.join(str(e) for e in epochs)} epochs)" if epochs else "")
        + f" with {'one seed' if len(seeds) == 1 else f'{len(seeds)} seeds'}: a check that every method runs end to end. Accuracies are "
        "lower than with the whole training split, and differences of a few points between methods "
        "are within the noise of one small run. The measured results are in docs/reproduction.md; "
        "run without `--quick` and `--max-train` for the full grid."
    )
    return title, text


def _markdown(records, rows, with_schedule, output, plot_paths, lr_path, *, relative_to, headline_only=False):
    ok = _ok(records)
    other = collections.Counter(r.get("status") for r in records if r.get("status", "ok") != "ok")
    seeds = sorted({r["seed"] for r in ok})
    lines = []
    if not headline_only:
        lines += [
            "# Reproduction results",
            "",
            "Rendered by `keras-lowrank reproduce --render-only` from `results.json` in this folder "
            "(the source of truth); do not edit by hand.",
            "",
        ]
    note = subset_note(records)
    if note:
        lines += [f"**{note[0]}** {note[1]}", ""]
    lines += [
        f"{len(ok)} successful runs; seeds {seeds}; "
        + (", ".join(f"{n} {s}" for s, n in other.items()) + " (not counted)" if other else "no failed runs")
        + ". Accuracy in %, Δ in points (negative: a loss against the uncompressed model of the same "
        "dataset/model/vectors, mean over seeds). Sizes are fractions of the float32 embedding bytes; bytes are "
        "measured from the stored layer's variables (codes, scales, zero points, group indices: whatever it stores). The rest of the model is not in "
        "these bytes (`other_bytes` in results.json).",
        "",
    ]
    study = schedule_study(rows)
    if study:
        lines += ["## Schedule study", ""] + study
    else:
        lines += ["## Verdicts", ""]
        lines += verdicts(rows)
        lines += quantization_cost(records)
        lines += ["", "## Mean Δ test vs uncompressed, by method and size (number of groups in brackets)", ""]
        lines += goal_table(rows)
        lines += ["", "## Δ test vs uncompressed per group and size", ""]
        lines += size_tables(rows)
    imgs = []
    for p in plot_paths:
        rel = os.path.relpath(p, relative_to)
        imgs.append(f"![{os.path.basename(p)}]({rel})")
    if lr_path:
        imgs.append(f"![learning-rate curves]({os.path.relpath(lr_path, relative_to)})")
    if imgs:
        lines += ["", "## Plots", ""] + [i + "\n" for i in imgs]
    if not headline_only:
        lines += ["", "## All results (mean over seeds)", ""]
        lines += results_table(rows, with_schedule)
        infeasible = collections.defaultdict(set)
        for r in records:
            if r.get("status") == "infeasible":
                why = str(r.get("reason")).split(" (")[0]
                infeasible[(r["method"], r.get("size") or 0, why)].add(f"{r['dataset']}/{r['model']}/{r['vectors']}")
        if infeasible:
            lines += ["## Sizes a method cannot reach", ""]
            for (m, size, why), where in sorted(infeasible.items(), key=lambda kv: (_METHOD_ORDER.get(kv[0][0], 99), -kv[0][1])):
                lines.append(f"- {m} @ {size_label(size)}: {why} ({', '.join(sorted(where))})")
            lines.append("")
        errors = [r for r in records if r.get("status") == "error"]
        if errors:
            lines += ["## Failed runs", ""]
            lines += [f"- {r['dataset']}/{r['model']}/{r['vectors']} s{r['seed']} {r['method']} @ {r.get('size')}: {r.get('reason')}" for r in errors]
    if headline_only:
        # Inside a document the block sits under a section: one level deeper.
        lines = ["#" + line if line.startswith("## ") else line for line in lines]
    return lines


def update_doc(doc, block_lines, name="results"):
    """Replaces the generated block `name` of `doc` (between its markers)."""
    with open(doc, encoding="utf-8") as f:
        text = f.read()
    begin, end = BEGIN_MARK.format(name=name), END_MARK.format(name=name)
    block = begin + "\n" + "\n".join(block_lines) + "\n" + end
    if begin in text and end in text:
        head, _, rest = text.partition(begin)
        _, _, tail = rest.partition(end)
        text = head + block + tail
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    with atomic_open(doc, "w", encoding="utf-8") as f:
        f.write(text)
