"""compress()'s search over every table kind, against its control and an earlier compress().

Reads parts that ran `--methods uncompressed,uncompressed+finetune,compress,codebook,prune+codebook`
(`--parts`) and, optionally, parts of an earlier compress() (`--earlier`:
its `compress` rows, or those of `--earlier-method`, are shown as
`compress (earlier)`), and writes the
`search` block of docs/reproduction.md: per dataset and size, test accuracy
Δ (points) of each method against the uncompressed model of its own part
and seed, mean over seeds, every compress() row also against
`uncompressed+finetune` (the control: the same distilled fine-tune without
compression), and the kinds compress() chose; `--plot` draws compress()
− control per dataset and size. This module only reads records and writes
markdown and a picture.

    python -m keras_lowrank.benchmarks.reproduce.search_report \
        --parts DIR [DIR ...] [--earlier DIR ...] [--earlier-method compress+loss] [--control DIR ...] \
        --doc docs/reproduction.md \
        [--plot docs/results/reproduce/search_vs_control.png]
"""

import argparse
import collections

import numpy as np

from keras_lowrank.benchmarks.markdown import table
from keras_lowrank.benchmarks.reproduce.compress_report import _base_means
from keras_lowrank.benchmarks.reproduce.compress_report import _load
from keras_lowrank.benchmarks.reproduce.report import update_doc

BLOCK = "search"
EARLIER = "compress (earlier)"
METHODS = (EARLIER, "compress", "codebook", "prune+codebook")
CONTROL = "uncompressed+finetune"


def _measured(parts, earlier, control=(), earlier_method="compress"):
    """`(drops, by_seed, method_seeds, chosen, seeds)` of the parts' records.

    `control`: parts whose `uncompressed+finetune` rows serve as the control
    (each against the uncompressed model of its own part) when `parts` ran
    none. `earlier_method`: the method of the `earlier` parts shown as
    `compress (earlier)` (another compress() variant of the same part, say).
    """
    records = _load(parts)
    control_records = _load(control)
    base_of_control = _base_means(control_records)
    records += [r for r in control_records if r["method"] == CONTROL]
    earlier_records = [dict(r, method=EARLIER) for r in _load(earlier) if r["method"] == earlier_method]
    base = _base_means(records)
    # An earlier or control part's drops are against its own uncompressed model.
    base.update(_base_means(_load(earlier)))
    base.update(base_of_control)
    drops = collections.defaultdict(list)
    by_seed = {}
    method_seeds = collections.defaultdict(set)
    chosen = collections.defaultdict(collections.Counter)
    for r in records + earlier_records:
        key = (r["_part"], r["dataset"], r["seed"])
        if key not in base or r["method"] not in METHODS + (CONTROL,):
            continue
        size = None if r["method"] == CONTROL else round(float(r["size"]), 6)
        drop = 100 * (r["test_accuracy"] - base[key])
        drops[(r["method"], r["dataset"], size)].append(drop)
        by_seed[(r["method"], r["dataset"], size, r["seed"])] = drop
        method_seeds[r["method"]].add(r["seed"])
        if r["method"] == "compress" and r.get("recipe"):
            layout = r["recipe"]["layout"]
            kind = layout.get("kind") or ("low-rank" if layout.get("rank") else "dense")
            kind += " + exact rows" if layout.get("exact_rows") else ""
            chosen[size][("pruned " if layout["rows"] < layout["input_dim"] else "") + kind] += 1
    seeds = sorted({r["seed"] for r in records})
    return drops, by_seed, method_seeds, chosen, seeds, bool(earlier_records)


def versus_control(by_seed, dataset, size, seeds, method="compress"):
    """`method` − control in points, per seed (the seeds both ran), in seed order."""
    return [by_seed[(method, dataset, size, seed)] - by_seed[(CONTROL, dataset, None, seed)]
            for seed in seeds
            if (method, dataset, size, seed) in by_seed and (CONTROL, dataset, None, seed) in by_seed]


def versus_earlier(by_seed, dataset, size, seeds):
    """compress() − the earlier compress() in points, per seed both ran, in seed order."""
    return [by_seed[("compress", dataset, size, seed)] - by_seed[(EARLIER, dataset, size, seed)]
            for seed in seeds
            if ("compress", dataset, size, seed) in by_seed and (EARLIER, dataset, size, seed) in by_seed]


# What `compress (earlier)` is, unless `--earlier-note` says otherwise.
EARLIER_NOTE = ("compress() before the codebook kind and the search (4 candidates x 5 epochs, from the parts "
                "named in the command)")


def render(parts, earlier=(), earlier_note=EARLIER_NOTE, control=(), earlier_method="compress"):
    drops, by_seed, method_seeds, chosen, seeds, has_earlier = _measured(parts, earlier, control, earlier_method)
    datasets = sorted({d for _, d, _ in drops})
    # The sizes the parts measured (an earlier part's other sizes have nothing to compare with).
    sizes = sorted({s for m, _, s in drops if s is not None and m != EARLIER}, reverse=True)
    methods = [m for m in METHODS if any(k[0] == m for k in drops)]

    def mean(key):
        values = drops.get(key)
        return None if not values else float(np.mean(values))

    def cell(value):
        # `or 0.0` turns a rounded -0.0 into +0.00.
        return "n/a" if value is None else f"{round(value, 2) or 0.0:+.2f}"

    def control_mean(dataset, size):
        # Over the seeds compress() ran at this size, so that `Δ compress − Δ control`
        # is `compress − control` where a size ran fewer seeds than the control.
        ran = [s for s in seeds if ("compress", dataset, size, s) in by_seed] or seeds
        values = [by_seed[(CONTROL, dataset, None, s)] for s in ran if (CONTROL, dataset, None, s) in by_seed]
        return float(np.mean(values)) if values else None

    header = (["size", "dataset/model", "Δ control"] + [f"Δ {m}" for m in methods]
              + ["compress − control", "per seed"] + (["compress − earlier"] if has_earlier else []))
    rows = []
    for size in sizes:
        for dataset in datasets:
            values = [mean((m, dataset, size)) for m in methods]
            paired = versus_control(by_seed, dataset, size, seeds)
            versus = float(np.mean(paired)) if paired else None
            row = [f"{size:.0%}", dataset, cell(control_mean(dataset, size))] + [cell(v) for v in values] + [
                cell(versus), " / ".join(f"{v:+.1f}" for v in paired) or "n/a"]
            if has_earlier:
                moved = versus_earlier(by_seed, dataset, size, seeds)
                row.append(cell(float(np.mean(moved)) if moved else None))
            rows.append(row)
    counted = "; ".join(f"{m}: {sorted(method_seeds[m])}" for m in (CONTROL,) + tuple(methods))
    lines = [
        f"DAN, GloVe 6B 50-d, seeds {seeds} (per method: {counted}). Δ in points of test accuracy against the "
        "uncompressed model of the same part and seed, mean over the seeds each method ran (`Δ control`: over the "
        "seeds compress() ran at that size); `compress − control` is the mean over those seeds of compress() − "
        "control of the same seed, `per seed` lists them in seed order. `control` is the uncompressed model given the same distilled "
        "fine-tune (`uncompressed+finetune`); `codebook` is compress() restricted to codebook tables of every row, "
        "`prune+codebook` to codebook tables with pruning allowed"
        + (f"; `{EARLIER}` is {earlier_note}, and `compress − earlier` the mean over the seeds both ran of "
           "their difference on the same seed" if has_earlier else "") + ".",
        "",
        *table(header, rows),
        "",
        "Kinds compress() chose (count over datasets and seeds):",
        "",
    ]
    for size in sizes:
        counts = ", ".join(f"{kind} ×{n}" for kind, n in chosen[size].most_common())
        lines.append(f"- {size:.0%}: {counts or 'n/a'}")
    return lines


def plot(parts, earlier, path, control=(), earlier_method="compress"):
    """Draws compress() − control against the table's bytes, one panel per dataset.

    Each seed is a dot, the mean over seeds a line; the earlier compress()
    (when given) a dashed line. Returns `path`, or `None` without matplotlib.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    from keras_lowrank.utils.atomic_write import atomic_path

    drops, by_seed, _, _, seeds, has_earlier = _measured(parts, earlier, control, earlier_method)
    datasets = sorted({d for m, d, _ in drops if m == "compress"})
    if not datasets:
        return None
    sizes = sorted({s for m, _, s in drops if m == "compress"})
    figure, axes = plt.subplots(1, len(datasets), figsize=(3.2 * len(datasets), 3.2), sharey=True, squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        ax.axhspan(-1.0, 0.0, color="0.9", zorder=0, label="within 1 point below")
        ax.axhline(0.0, color="black", linewidth=0.8)
        for method, style, color in (("compress", "-", "tab:blue"), (EARLIER, "--", "tab:gray")):
            if method == EARLIER and not has_earlier:
                continue
            xs, means = [], []
            for size in sizes:
                values = versus_control(by_seed, dataset, size, seeds, method)
                if not values:
                    continue
                if method == "compress":
                    ax.scatter([100 * size] * len(values), values, s=12, color=color, alpha=0.5, zorder=3)
                xs.append(100 * size)
                means.append(float(np.mean(values)))
            ax.plot(xs, means, style, marker="o", color=color, label=f"{method} (mean over seeds)", zorder=4)
        ax.set_xscale("log")
        ax.set_xticks([100 * s for s in sizes])
        ax.set_xticklabels([f"{100 * s:g}%" for s in sizes])
        ax.minorticks_off()
        ax.set_title(dataset, fontsize=10)
        ax.set_xlabel("table bytes (% of float32)")
        ax.grid(True, alpha=0.3)
    axes[0][0].set_ylabel("test accuracy − control (points)")
    axes[0][-1].legend(fontsize=7, loc="lower right")
    figure.suptitle("compress() against its control (the same distilled fine-tune, uncompressed); "
                    "dots: seeds", fontsize=9)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=110)
    plt.close(figure)
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", required=True, metavar="DIR")
    parser.add_argument("--earlier", nargs="*", default=[], metavar="DIR")
    parser.add_argument("--earlier-method", default="compress",
                        help="The method of the --earlier parts shown as the earlier compress() (default: %(default)s).")
    parser.add_argument("--earlier-note", default=EARLIER_NOTE,
                        help="What the --earlier parts are, for the text (default: %(default)s).")
    parser.add_argument("--control", nargs="*", default=[], metavar="DIR",
                        help="Parts whose uncompressed+finetune rows are the control, when --parts ran none.")
    parser.add_argument("--doc", default=None, help="Rewrite this page's generated block (see --block).")
    parser.add_argument("--block", default=BLOCK, help="The generated block's name (default %(default)s).")
    parser.add_argument("--plot", default=None, metavar="PNG",
                        help="Also draw compress() − control per dataset and size into this PNG.")
    args = parser.parse_args(argv)
    lines = render(args.parts, args.earlier, args.earlier_note, args.control, args.earlier_method)
    if args.plot:
        plot(args.parts, args.earlier, args.plot, args.control, args.earlier_method)
    if args.doc:
        update_doc(args.doc, lines, name=args.block)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
