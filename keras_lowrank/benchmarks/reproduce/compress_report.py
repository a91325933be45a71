"""`compress()` against the controls and the fixed recipes, rendered from results.json.

Reads the parts that ran `--methods uncompressed,uncompressed+finetune,compress`
and the parts that ran the fixed recipes, and writes the comparison block of
docs/reproduction.md. Every drop is measured against the uncompressed model of
its own part (the parts do not share trained models exactly), averaged over
seeds; the fixed recipe compared at each size is the one with the best mean
*dev* accuracy there (test never chooses). This module only reads records and
writes markdown.

    python -m keras_lowrank.benchmarks.reproduce.compress_report \
        --compress DIR [DIR ...] --fixed DIR [DIR ...] --doc docs/reproduction.md
"""

import argparse
import collections
import json
import os

import numpy as np

from keras_lowrank.benchmarks.markdown import table
from keras_lowrank.benchmarks.reproduce.methods import RECIPES
from keras_lowrank.benchmarks.reproduce.records import RESULTS_FILE
from keras_lowrank.benchmarks.reproduce.records import load_records
from keras_lowrank.benchmarks.reproduce.report import update_doc

BLOCK = "compress"
FIXED_RECIPES = tuple(RECIPES)  # every sized method but compress itself


def _load(folders):
    records = []
    for folder in folders:
        for r in load_records(os.path.join(folder, RESULTS_FILE)):
            if r.get("status", "ok") == "ok" and r.get("test_accuracy") is not None:
                # Rows are per dataset and model (`trec/cnn`), never pooled across models.
                group = f"{r['dataset']}/{r['model']}"
                records.append(dict(r, _part=os.path.basename(os.path.normpath(folder)), dataset=group))
    return records


def _by(records, *fields):
    out = collections.defaultdict(list)
    for r in records:
        out[tuple(r.get(f) for f in fields)].append(r)
    return out


def _mean(records, field):
    return float(np.mean([r[field] for r in records])) if records else None


def _base_means(records):
    """`{(dataset, seed): test accuracy}` of each part's uncompressed model, per part."""
    return {
        (r["_part"], r["dataset"], r["seed"]): r["test_accuracy"]
        for r in records
        if r["method"] == "uncompressed"
    }


def _drops(records, base, method_filter):
    """`{(dataset, size): [drop per seed]}` (points) and dev means, per method."""
    drops = collections.defaultdict(list)
    devs = collections.defaultdict(list)
    for r in records:
        if not method_filter(r):
            continue
        key = (r["_part"], r["dataset"], r["seed"])
        if key not in base:
            continue
        size = round(float(r["size"]), 6)
        drops[(r["method"], r["dataset"], size)].append(100 * (r["test_accuracy"] - base[key]))
        devs[(r["method"], r["dataset"], size)].append(100 * r["dev_accuracy"])
    return drops, devs


def compare(compress_records, fixed_records):
    """The comparison rows: per size and dataset, mean drops over seeds."""
    cbase = _base_means(compress_records)
    fbase = _base_means(fixed_records)
    cdrops, _ = _drops(compress_records, cbase, lambda r: r["method"] in ("compress", "uncompressed+finetune"))
    fdrops, fdevs = _drops(fixed_records, fbase, lambda r: r["method"] in FIXED_RECIPES)
    finetuned = {}
    for (method, dataset, _), values in cdrops.items():
        if method == "uncompressed+finetune":
            finetuned[dataset] = float(np.mean(values))
    sizes = sorted({k[2] for k in cdrops if k[0] == "compress"}, reverse=True)
    datasets = sorted({k[1] for k in cdrops if k[0] == "compress"})
    rows = []
    for size in sizes:
        for dataset in datasets:
            values = cdrops.get(("compress", dataset, size), [])
            if not values:
                continue
            candidates = [
                (float(np.mean(fdevs[k])), k[0], float(np.mean(v)), len(v))
                for k, v in fdrops.items()
                if k[1] == dataset and abs(k[2] - size) < 1e-9
            ]
            best = max(candidates) if candidates else None
            base_values = [v for (part, d, _), v in cbase.items() if d == dataset]
            rows.append(
                {
                    "size": size,
                    "dataset": dataset,
                    "seeds": len(values),
                    "uncompressed": 100 * float(np.mean(base_values)),
                    "compress_drop": float(np.mean(values)),
                    "compress_min": float(np.min(values)),
                    "finetune_drop": finetuned.get(dataset),
                    "fixed_method": best[1] if best else None,
                    "fixed_drop": best[2] if best else None,
                    "fixed_seeds": best[3] if best else 0,
                }
            )
    return rows


def recipes_chosen(compress_records):
    """`{size: Counter(family/storage)}` of the recipes compress() chose."""
    out = collections.defaultdict(collections.Counter)
    for r in compress_records:
        if r["method"] == "compress" and r.get("recipe"):
            layout = r["recipe"]["layout"]
            name = f"{r['recipe']['family']} {layout['storage']}"
            if r["recipe"].get("weighting") == "frequency":
                name += " (freq)"
            out[round(float(r["size"]), 6)][name] += 1
    return out


def render_lines(compress_records, fixed_records, machine=None):
    rows = compare(compress_records, fixed_records)
    lines = []
    seeds = sorted({r["seed"] for r in compress_records})
    models = sorted({r["model"].upper() for r in compress_records})
    vectors = sorted({r["vectors"] for r in compress_records})
    lines.append(
        f"{', '.join(models)}, vectors {', '.join(vectors)}, seeds {seeds}. Δ in points of test accuracy against the uncompressed "
        "model of the same part and seed, mean over seeds (negative: a loss); rows are dataset/model. `uncompressed+finetune` "
        "is the uncompressed model given the same distilled fine-tune as each compress() candidate; "
        "`compress − control` is compress()'s Δ minus that control's. The fixed recipe is the one with the "
        "best mean dev accuracy at that size among the reproduction's stacks "
        f"({', '.join('`' + m + '`' for m in FIXED_RECIPES)}), with its Δ against its own part's "
        "uncompressed model."
    )
    lines.append("")
    header = ["size", "dataset/model", "uncompressed (test %)", "Δ compress", "worst seed", "Δ unc.+finetune",
              "compress − control", "best fixed recipe (dev-chosen)", "Δ fixed", "compress − fixed"]
    body = []
    summary = collections.defaultdict(list)
    for row in rows:
        control = row["finetune_drop"]
        vs_control = None if control is None else row["compress_drop"] - control
        vs_fixed = None if row["fixed_drop"] is None else row["compress_drop"] - row["fixed_drop"]
        summary[row["size"]].append((row["compress_drop"], vs_control, vs_fixed, row["fixed_drop"]))
        body.append(
            [
                f"{row['size']:.0%}",
                row["dataset"],
                f"{row['uncompressed']:.2f}",
                f"{row['compress_drop']:+.2f}",
                f"{row['compress_min']:+.2f}",
                "—" if control is None else f"{control:+.2f}",
                "—" if vs_control is None else f"{vs_control:+.2f}",
                row["fixed_method"] or "—",
                "—" if row["fixed_drop"] is None else f"{row['fixed_drop']:+.2f}",
                "—" if vs_fixed is None else f"{vs_fixed:+.2f}",
            ]
        )
    lines += table(header, body)
    lines.append("")
    for size, values in sorted(summary.items(), reverse=True):
        drops = [v[0] for v in values]
        within = sum(1 for d in drops if d >= -1.0)
        text = (
            f"- **{size:.0%}**: compress() mean Δ {np.mean(drops):+.2f} points over {len(drops)} groups "
            f"({within}/{len(drops)} within 1 point; worst {min(drops):+.2f})"
        )
        controls = [v[1] for v in values if v[1] is not None]
        if controls:
            text += f"; against `uncompressed+finetune` {np.mean(controls):+.2f}"
        fixed = [v[2] for v in values if v[2] is not None]
        if fixed:
            behind = sum(1 for v in fixed if v < 0)
            text += f"; against the best fixed recipe {np.mean(fixed):+.2f} (behind it on {behind}/{len(fixed)} groups)"
        lines.append(text + ".")
    lines.append("")
    chosen = recipes_chosen(compress_records)
    lines.append("Recipes compress() chose (count over groups and seeds):")
    lines.append("")
    for size, counts in sorted(chosen.items(), reverse=True):
        lines.append(f"- {size:.0%}: " + ", ".join(f"{name} ×{n}" for name, n in counts.most_common()))
    lines.append("")
    seconds = collections.defaultdict(list)
    for r in compress_records:
        if r["method"] == "compress" and r.get("compress_seconds") is not None:
            seconds[r["dataset"]].append(r["compress_seconds"])
    tried = sorted({(len(r["candidates"]) if isinstance(r.get("candidates"), list) else r.get("candidates"),
                     r.get("finetune_epochs")) for r in compress_records
                    if r["method"] == "compress" and r.get("candidates") is not None})
    plan = " or ".join(f"{n} recipes, {e} epochs" for n, e in tried) or "n/a"
    lines.append(
        f"compress() wall time per call ({plan}, one thread, other jobs sharing the "
        "cores, so an upper bound): "
        + "; ".join(
            f"{d} median {np.median(v):.0f} s (max {max(v):.0f} s)" for d, v in sorted(seconds.items())
        )
        + "."
    )
    if machine:
        lines += ["", machine]
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compress", nargs="+", required=True, help="Parts with compress() runs.")
    parser.add_argument("--fixed", nargs="+", default=[], help="Parts with the fixed recipes.")
    parser.add_argument("--doc", default=None, help="Markdown file whose `compress` block is refreshed.")
    parser.add_argument("--json", default=None, help="Also write the comparison rows as JSON.")
    args = parser.parse_args(argv)
    compress_records, fixed_records = _load(args.compress), _load(args.fixed)
    lines = render_lines(compress_records, fixed_records)
    print("\n".join(lines))
    if args.doc:
        update_doc(args.doc, lines, name=BLOCK)
    if args.json:
        from keras_lowrank.utils.atomic_write import write_json

        write_json(args.json, compare(compress_records, fixed_records), indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
