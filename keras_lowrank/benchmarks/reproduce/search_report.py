"""compress()'s search over every table kind, against its control and an earlier compress().

Reads parts that ran `--methods uncompressed,uncompressed+finetune,compress,codebook,prune+codebook`
(`--parts`) and, optionally, parts of an earlier compress() (`--earlier`:
its `compress` rows are shown as `compress (earlier)`), and writes the
`search` block of docs/reproduction.md: per dataset and size, test accuracy
Δ (points) of each method against the uncompressed model of its own part
and seed, mean over seeds, every compress() row also against
`uncompressed+finetune` (the control: the same distilled fine-tune without
compression), and the kinds compress() chose. This module only reads
records and writes markdown.

    python -m keras_lowrank.benchmarks.reproduce.search_report \
        --parts DIR [DIR ...] [--earlier DIR ...] --doc docs/reproduction.md
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


def render(parts, earlier=()):
    records = _load(parts)
    earlier_records = [dict(r, method=EARLIER) for r in _load(earlier) if r["method"] == "compress"]
    base = _base_means(records)
    # An earlier part's drops are against its own uncompressed model.
    base.update(_base_means(_load(earlier)))
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
            chosen[size][("pruned " if layout["rows"] < layout["input_dim"] else "") + kind] += 1
    datasets = sorted({d for _, d, _ in drops})
    sizes = sorted({s for _, _, s in drops if s is not None}, reverse=True)
    seeds = sorted({r["seed"] for r in records})
    methods = [m for m in METHODS if any(k[0] == m for k in drops)]

    def mean(key):
        values = drops.get(key)
        return None if not values else float(np.mean(values))

    def cell(value):
        return "n/a" if value is None else f"{value:+.2f}"

    def per_seed(dataset, size):
        values = [by_seed[("compress", dataset, size, seed)] - by_seed[(CONTROL, dataset, None, seed)]
                  for seed in seeds
                  if ("compress", dataset, size, seed) in by_seed and (CONTROL, dataset, None, seed) in by_seed]
        return " / ".join(f"{v:+.1f}" for v in values) or "n/a"

    header = (["size", "dataset/model", "Δ control"] + [f"Δ {m}" for m in methods]
              + ["compress − control", "per seed"])
    rows = []
    for size in sizes:
        for dataset in datasets:
            control = mean((CONTROL, dataset, None))
            values = [mean((m, dataset, size)) for m in methods]
            ours = mean(("compress", dataset, size))
            versus = None if ours is None or control is None else ours - control
            rows.append([f"{size:.0%}", dataset, cell(control)] + [cell(v) for v in values]
                        + [cell(versus), per_seed(dataset, size)])
    counted = "; ".join(f"{m}: {sorted(method_seeds[m])}" for m in (CONTROL,) + tuple(methods))
    lines = [
        f"DAN, GloVe 6B 50-d, seeds {seeds} (per method: {counted}). Δ in points of test accuracy against the "
        "uncompressed model of the same part and seed, mean over the seeds each method ran; `compress − control` "
        "is the mean of the per-seed differences' means, `per seed` lists them in seed order. `control` is the uncompressed model given the same distilled "
        "fine-tune (`uncompressed+finetune`); `codebook` is compress() restricted to codebook tables of every row, "
        "`prune+codebook` to codebook tables with pruning allowed"
        + (f"; `{EARLIER}` is compress() before the codebook kind and the search (4 candidates x 5 epochs, "
           "from the parts named in the command)" if earlier_records else "") + ".",
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", required=True, metavar="DIR")
    parser.add_argument("--earlier", nargs="*", default=[], metavar="DIR")
    parser.add_argument("--doc", default=None, help="Rewrite this page's `search` block.")
    args = parser.parse_args(argv)
    lines = render(args.parts, args.earlier)
    if args.doc:
        update_doc(args.doc, lines, name=BLOCK)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
