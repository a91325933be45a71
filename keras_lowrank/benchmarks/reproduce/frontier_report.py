"""The accuracy-vs-bytes frontier of compress() beside the fixed recipes, rendered from results.json.

Reads parts of the fixed-recipe grid and parts that ran compress() (its
control, the codebook-only method) on the same cached base models, keeps
the seeds asked for, and draws with `report.plot_frontiers` one picture per
dataset and model: test accuracy, mean and standard deviation over those
seeds, against the table's stored bytes (log scale). Absolute accuracies of
different parts are only comparable when their uncompressed models are the
same, so two parts that hold different results for one run (another base
model, a compress() variant rerun) are refused, naming both; `--control`
takes only the uncompressed and control rows of the parts it names. `--doc` writes the
numbers behind the pictures into a block of docs/reproduction.md. This
module only reads records and writes markdown and pictures.

    python -m keras_lowrank.benchmarks.reproduce.frontier_report \
        --parts DIR [DIR ...] [--control DIR ...] --seeds 0,1,2 --plots docs/results/reproduce/frontier \
        [--methods uncompressed,int4,prune+int4,compress] [--doc docs/reproduction.md --block frontier]
"""

import argparse
import collections
import os

from keras_lowrank.benchmarks.markdown import table
from keras_lowrank.benchmarks.reproduce.compress_report import _load
from keras_lowrank.benchmarks.reproduce.records import record_key
from keras_lowrank.benchmarks.reproduce.report import plot_frontiers
from keras_lowrank.benchmarks.reproduce.report import summary_rows
from keras_lowrank.benchmarks.reproduce.report import update_doc

BLOCK = "frontier"
CONTROL_METHODS = ("uncompressed", "uncompressed+finetune")
SUBTITLE = "fine-tunes: fixed recipes CALR; compress(), codebook, control cosine restarts"
# The uncompressed model and its equal fine-tune, Keras' own int4, the cheap
# competitor, the best fixed whole-vocabulary and pruned stacks of the grid,
# codebook tables alone and the whole search.
DEFAULT_METHODS = (
    "uncompressed", "uncompressed+finetune", "int4", "prune+int4", "online+freq+distill+int4",
    "prune+online+distill+int4", "codebook", "compress",
)


def check_one_result_per_run(records):
    """Raises `ValueError` when two parts hold different results for one run.

    A run is a `records.record_key` (dataset, model, method, size, seed, ...).
    The uncompressed models must agree for the parts' accuracies to share one
    axis, and a compress() variant rerun in another part must not be averaged
    in silently (the first part's row would otherwise win).
    """
    seen = {}
    for r in records:
        key = record_key(r)
        if key in seen and seen[key][0] != r["test_accuracy"]:
            raise ValueError(
                f"Parts '{seen[key][1]}' and '{r['_part']}' hold different results for {r['method']} on "
                f"{r['dataset']} at size {r['size']}, seed {r['seed']} (test accuracy {seen[key][0]} and "
                f"{r['test_accuracy']}): pass one of them, or the other as --control"
            )
        seen.setdefault(key, (r["test_accuracy"], r["_part"]))


def frontier_rows(parts, seeds=None, methods=DEFAULT_METHODS, control=()):
    """`report.summary_rows` of the parts' records of `methods`, restricted to `seeds`.

    `control`: parts whose uncompressed model and control
    (`uncompressed+finetune`) rows only are taken.
    """
    records = _load(parts) + [r for r in _load(control) if r["method"] in CONTROL_METHODS]
    if seeds is not None:
        records = [r for r in records if r["seed"] in set(seeds)]
    for r in records:
        # `_load` names a row's group `dataset/model`; the plots name it themselves.
        r["dataset"] = r["dataset"].split("/")[0]
    check_one_result_per_run(records)
    return summary_rows([r for r in records if r["method"] in methods])


def render_markdown(rows, plot_paths, relative_to, seeds):
    """The block: per dataset and model, each method's test accuracy by size, and its picture."""
    by_group = collections.defaultdict(list)
    for r in rows:
        by_group[(r["dataset"], r["model"], r["vectors"])].append(r)
    seed_text = "every seed" if seeds is None else f"seeds {', '.join(str(s) for s in seeds)}"
    lines = [
        f"Test accuracy (%), mean over {seed_text} (the number of runs in brackets where fewer), "
        "at each size's measured share of the float32 table's bytes; every part's uncompressed model "
        "is the same, seed for seed. `uncompressed+finetune` is the control (the same distilled "
        "fine-tune, uncompressed), `codebook` compress() restricted to codebook tables of every row.",
        "",
    ]
    pictures = {os.path.basename(p): p for p in plot_paths}
    for group, rs in sorted(by_group.items()):
        sizes = sorted({r["size"] for r in rs if r["size"] < 1.0}, reverse=True)
        full = max(r["n"] for r in rs)
        body = []
        for method in DEFAULT_METHODS + tuple(sorted({r["method"] for r in rs} - set(DEFAULT_METHODS))):
            cells = {r["size"]: r for r in rs if r["method"] == method}
            if not cells:
                continue
            row = [f"`{method}`"]
            for size in [1.0] + sizes:
                r = cells.get(size)
                if r is None:
                    row.append("")
                    continue
                n = "" if r["n"] == full else f" ({r['n']})"
                row.append(f"{100 * r['test_mean']:.2f}{n}")
            body.append(row)
        # Keras' int4 lands at 15.0056% of one table, 15.0124% of another.
        header = ["method", "100%"] + [f"{100 * s:.3g}%" for s in sizes]
        lines += [f"**{group[0]} / {group[1]} / {group[2]}**", ""]
        lines += table(header, body, "l" + "r" * (len(header) - 1))
        name = "frontier_" + "_".join(group) + ".png"
        if name in pictures:
            path = os.path.relpath(pictures[name], relative_to)
            lines += ["", f"![{name}]({path})"]
        lines.append("")
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", nargs="+", required=True, metavar="DIR")
    parser.add_argument("--control", nargs="*", default=[], metavar="DIR",
                        help="Parts whose uncompressed and uncompressed+finetune rows only are taken.")
    parser.add_argument("--seeds", default=None, help="Comma-separated seeds to keep (default: all).")
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS), help="Comma-separated methods drawn.")
    parser.add_argument("--plots", required=True, metavar="DIR", help="Folder of the PNGs (one per dataset and model).")
    parser.add_argument("--doc", default=None, help="Rewrite this page's generated block (see --block).")
    parser.add_argument("--block", default=BLOCK, help="The generated block's name (default %(default)s).")
    args = parser.parse_args(argv)
    seeds = None if args.seeds is None else [int(s) for s in args.seeds.split(",")]
    rows = frontier_rows(args.parts, seeds, tuple(args.methods.split(",")), args.control)
    if not rows:
        parser.error(f"no records of {args.methods} in the parts")
    os.makedirs(args.plots, exist_ok=True)
    paths = plot_frontiers(rows, args.plots, subtitle=SUBTITLE, highlight=("compress",))
    relative_to = os.path.dirname(os.path.abspath(args.doc)) if args.doc else os.getcwd()
    lines = render_markdown(rows, paths, relative_to, seeds)
    if args.doc:
        update_doc(args.doc, lines, name=args.block)
    else:
        print("\n".join(lines))


if __name__ == "__main__":
    main()
