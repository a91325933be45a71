"""Benchmark: truncated SVD of embedding tables versus table size.

Measures the time, peak memory and reconstruction error of
`keras_lowrank.decomposition.truncated_svd` (auto, and the TSQR fallback)
against `numpy.linalg.svd`, `scipy.linalg.svd` (gesdd), the randomized SVD and
`scipy.sparse.linalg.svds` on the same synthetic float32 tables (d = 300 by
default), for vocabulary sizes from 10k to 2M rows. Slow references are skipped
above a size, and the table says so.

Results are written as `results.json` (machine-readable, the source of truth),
rendered to `results.md` and a log-log plot `svd_time.png` of time versus V;
`--render-only` re-renders them, and `--doc PAGE` the page's generated
section, from the JSON (see `keras_lowrank.benchmarks.output`). Where `auto`
and `numpy` ran on the same size, the report leads with their comparison.
Wired into the command line as `keras-lowrank bench svd`. This module must not
import Keras or TensorFlow: it measures the numpy core on its own.
"""

import os
import statistics
import threading
import time
import tracemalloc

import numpy as np

from keras_lowrank.benchmarks import environment
from keras_lowrank.benchmarks import markdown
from keras_lowrank.benchmarks import output
from keras_lowrank.utils.atomic_write import atomic_path

DEFAULT_SIZES = (10_000, 50_000, 100_000, 400_000, 2_000_000)
QUICK_SIZES = (2_000, 10_000)

# name: (label, largest V it runs on by default, callable factory key)
METHODS = {
    "auto": "keras_lowrank truncated_svd (auto: Gram)",
    "qr": "keras_lowrank truncated_svd (qr: TSQR fallback)",
    "randomized": "randomized SVD (Halko, 4 power iterations)",
    "numpy": "numpy.linalg.svd (float64, full_matrices=False)",
    "scipy_gesdd": "scipy.linalg.svd (float64, gesdd)",
    "svds": "scipy.sparse.linalg.svds (ARPACK)",
}
DEFAULT_LIMITS = {
    "auto": None,
    "qr": 400_000,
    "randomized": 400_000,
    "numpy": 100_000,
    "scipy_gesdd": 100_000,
    "svds": 400_000,
}
# A method whose first run takes longer than this is not repeated.
_REPEAT_BUDGET_S = 10.0
PLOT = "svd_time.png"


def add_arguments(parser):
    """Adds the `bench svd` options to an argparse parser."""
    output.add_output_arguments(parser, "svd")
    parser.add_argument(
        "--sizes",
        type=lambda text: tuple(int(v) for v in text.split(",")),
        default=None,
        help="Comma-separated vocabulary sizes V (default: "
        + ",".join(str(v) for v in DEFAULT_SIZES)
        + ").",
    )
    parser.add_argument("--dim", type=int, default=300, help="Columns d (300).")
    parser.add_argument("--rank", type=int, default=30, help="Rank r (30).")
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="Repeats per measurement; the median is reported (3). Runs longer "
        f"than {_REPEAT_BUDGET_S:.0f} s are not repeated.",
    )
    parser.add_argument(
        "--reference-max-rows",
        type=int,
        default=None,
        help="Largest V for numpy.linalg.svd and scipy.linalg.svd "
        f"(default {DEFAULT_LIMITS['numpy']}).",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"A seconds-long run: V in {QUICK_SIZES}, one repeat.",
    )
    parser.add_argument(
        "--methods",
        type=lambda text: tuple(text.split(",")),
        default=tuple(METHODS),
        help="Comma-separated subset of: " + ",".join(METHODS) + " (all).",
    )
    parser.add_argument("--seed", type=int, default=0, help="Random seed (0).")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="BLAS threads (needs threadpoolctl; otherwise set "
        "OPENBLAS_NUM_THREADS before starting). Default: the BLAS default. "
        "On a shared machine 1 thread gives steadier numbers.",
    )


def run(args):
    """Runs the benchmark described by parsed `args` (or re-renders it); returns 0."""
    output.check_doc(args, "svd")
    if args.render_only:
        results = output.load_results(args.output)
    elif args.threads is not None:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            raise ValueError(
                "`--threads` needs the threadpoolctl package; alternatively "
                "set OPENBLAS_NUM_THREADS (or OMP_NUM_THREADS) before starting."
            ) from None

        with threadpool_limits(limits=args.threads, user_api="blas"):
            results = measure(args)
    else:
        results = measure(args)
    if not args.render_only:
        output.save_results(results, args.output)
    markdown_text = output.publish(
        results, args, render_markdown, name="svd",
        title="SVD scaling benchmark results", summarize=summarize,
    )
    plot(results, os.path.join(args.output, PLOT))
    print(markdown_text)
    print(f"Wrote {args.output}/{output.RESULTS_JSON}, {output.RESULTS_MD}, {PLOT}"
          + (f" and the generated section of {args.doc}" if args.doc else ""))
    return 0


def measure(args):
    """Measures every method on every size of `args`; returns the results dict."""
    sizes = args.sizes or (QUICK_SIZES if args.quick else DEFAULT_SIZES)
    repeats = 1 if args.quick else max(1, args.repeats)
    unknown = [m for m in args.methods if m not in METHODS]
    if unknown:
        raise ValueError(
            f"Unknown `--methods` {unknown}; expected some of {list(METHODS)}"
        )
    for name in ("dim", "rank", "repeats"):
        if getattr(args, name) < 1:
            raise ValueError(
                f"Expected `--{name}` to be a positive integer, received: "
                f"{name}={getattr(args, name)}"
            )
    limits = dict(DEFAULT_LIMITS)
    if args.reference_max_rows is not None:
        limits["numpy"] = limits["scipy_gesdd"] = args.reference_max_rows
    blas_threads = args.threads or os.environ.get("OPENBLAS_NUM_THREADS") or os.environ.get(
        "OMP_NUM_THREADS"
    )
    results = {
        "benchmark": "svd",
        "command": _command(args),
        "machine": environment.describe_machine(("numpy", "scipy")),
        "dim": args.dim,
        "rank": args.rank,
        "repeats": repeats,
        "repeat_budget_s": _REPEAT_BUDGET_S,
        "blas_threads": str(blas_threads) if blas_threads else "default",
        "limits": {k: v for k, v in limits.items()},
        "methods": {m: METHODS[m] for m in METHODS if m in args.methods},
        "rows": [],
    }
    for num_rows in sizes:
        table = make_table(num_rows, args.dim, seed=args.seed)
        norm = _frobenius(table)
        for method in results["methods"]:
            limit = limits[method]
            row = {"V": num_rows, "d": args.dim, "method": method}
            if limit is not None and num_rows > limit:
                row["skipped"] = f"V > {limit}"
                results["rows"].append(row)
                _print_row(row)
                continue
            times, peaks, rss = [], [], []
            for index in range(repeats):
                (u, s, vt), seconds, traced, rss_peak = _measure(
                    lambda: _call(method, table, args.rank)
                )
                times.append(seconds)
                peaks.append(traced)
                rss.append(rss_peak)
                if seconds > _REPEAT_BUDGET_S:
                    break
            row.update(
                seconds=statistics.median(times),
                runs=len(times),
                traced_peak_mib=statistics.median(peaks) / 2**20,
                rss_peak_increase_mib=statistics.median(rss) / 2**20,
                relative_error=_relative_error(table, u, s, vt, norm),
            )
            results["rows"].append(row)
            _print_row(row)
        del table
    output.finish_machine(results["machine"])
    return results


def _command(args):
    options = []
    if args.sizes:
        options.append(("--sizes", ",".join(str(v) for v in args.sizes)))
    if args.quick:
        options.append(("--quick", True))
    if tuple(args.methods) != tuple(METHODS):
        options.append(("--methods", ",".join(args.methods)))
    for flag, value, default in (
        ("--dim", args.dim, 300),
        ("--rank", args.rank, 30),
        ("--repeats", args.repeats, 3),
        ("--reference-max-rows", args.reference_max_rows, None),
        ("--seed", args.seed, 0),
        ("--threads", args.threads, None),
    ):
        if value != default:
            options.append((flag, value))
    text = output.command("svd", options, args)
    # The BLAS thread count changes the timings: show it when it was set
    # through the environment rather than `--threads`.
    for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        if args.threads is None and os.environ.get(variable):
            return f"{variable}={os.environ[variable]} {text}"
    return text


def make_table(num_rows, dim, seed=0):
    """A float32 table with an embedding-like spectrum (power-law decay + noise).

    Built in row blocks: `rows @ diag(k^-0.5) @ mixing + 0.05 * noise`, so the
    top singular values fall off like word-vector tables and the tail is flat.
    """
    rng = np.random.default_rng(seed)
    mixing = np.linalg.qr(rng.standard_normal((dim, dim)))[0].astype(np.float32)
    decay = (np.arange(1, dim + 1, dtype=np.float32) ** -0.5)[:, None]
    mixing = decay * mixing
    table = np.empty((num_rows, dim), dtype=np.float32)
    step = 65536
    for start in range(0, num_rows, step):
        stop = min(start + step, num_rows)
        block = rng.standard_normal((stop - start, dim), dtype=np.float32)
        table[start:stop] = block @ mixing
        table[start:stop] += 0.05 * rng.standard_normal(
            (stop - start, dim), dtype=np.float32
        )
    return table


def render_markdown(results, link_base="", heading_level=2):
    """Renders results (as in `results.json`) as Markdown.

    Args:
        results: the results dict.
        link_base: path from the page being written to the output folder,
            for the links to `results.json` and the plot.
        heading_level: unused (the report has no subsections); accepted so
            that every benchmark renders through the same call.

    Returns:
        The Markdown text: comparisons with the references, the full table,
        the method labels, the machine and the command.
    """
    del heading_level
    budget = results.get("repeat_budget_s", _REPEAT_BUDGET_S)
    lines = []
    comparisons = _comparisons(results)
    if comparisons:
        lines += comparisons + [""]
    lines += [
        f"Truncated SVD, d = {results['dim']}, rank = {results['rank']}, float32 "
        f"tables; median of up to {results['repeats']} runs (runs over "
        f"{budget:.0f} s are not repeated). Raw numbers: "
        f"[{output.RESULTS_JSON}]({output.link(link_base, output.RESULTS_JSON)}).",
        "",
    ]
    rows = []
    for row in results["rows"]:
        if "skipped" in row:
            rows.append([f"{row['V']:,}", row["method"], f"skipped ({row['skipped']})", "", "", "", ""])
            continue
        rows.append([
            f"{row['V']:,}", row["method"], f"{row['seconds']:.3f}", row["runs"],
            f"{row['traced_peak_mib']:.0f}", f"{row['rss_peak_increase_mib']:.0f}",
            f"{row['relative_error']:.6g}",
        ])
    lines += markdown.table(
        ["V", "method", "time (s)", "runs", "traced peak (MiB)",
         "RSS peak increase (MiB)", "relative error"],
        rows, align=["r", "l", "r", "r", "r", "r", "r"],
    )
    lines += ["", "Methods:", ""]
    lines += [f"- `{key}`: {label}" for key, label in results["methods"].items()]
    lines += [
        "",
        f"Machine: {environment.machine_summary(results['machine'])} BLAS threads: "
        f"{results.get('blas_threads', 'default')}.",
        "",
        f"Command: `{results['command']}`",
    ]
    if len({row["V"] for row in results["rows"]}) > 1:
        lines += ["", f"![time versus V]({output.link(link_base, PLOT)})"]
    return "\n".join(lines) + "\n"


def summarize(results):
    """One phrase about a results dict, for the list of earlier measurements."""
    parts = []
    for row in results["rows"]:
        if row["method"] in ("auto", "numpy") and "seconds" in row:
            parts.append(f"{row['method']} {row['seconds']:.2f} s at V={row['V']:,}")
    return ", ".join(parts)


def _comparisons(results):
    """One line per size where `auto` and a reference were both measured."""
    lines = []
    measured = {(r["V"], r["method"]): r for r in results["rows"] if "seconds" in r}
    for size in sorted({v for v, _ in measured}):
        auto = measured.get((size, "auto"))
        reference = measured.get((size, "numpy"))
        if auto is None or reference is None:
            continue
        lines.append(
            f"- V = {size:,}, d = {results['dim']}, rank {results['rank']}: "
            f"`truncated_svd` (auto) {auto['seconds']:.2f} s (median of {auto['runs']}), "
            f"traced peak {auto['traced_peak_mib']:.0f} MiB, RSS +{auto['rss_peak_increase_mib']:.0f} MiB; "
            f"`numpy.linalg.svd` {reference['seconds']:.2f} s ({reference['runs']} run"
            f"{'s' if reference['runs'] != 1 else ''}), traced peak "
            f"{reference['traced_peak_mib']:.0f} MiB, RSS +{reference['rss_peak_increase_mib']:.0f} MiB: "
            f"{reference['seconds'] / auto['seconds']:.1f}x faster, "
            f"peak memory {reference['traced_peak_mib'] / max(auto['traced_peak_mib'], 1e-9):.1f}x "
            f"smaller (traced) and {reference['rss_peak_increase_mib'] / max(auto['rss_peak_increase_mib'], 1e-9):.1f}x "
            "smaller (RSS); "
            f"relative error {auto['relative_error']:.6g} vs {reference['relative_error']:.6g}."
        )
    return lines


def plot(results, path):
    """Writes a log-log plot of time versus V, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method, label in results["methods"].items():
        rows = [
            r for r in results["rows"] if r["method"] == method and "seconds" in r
        ]
        if rows:
            ax.plot(
                [r["V"] for r in rows],
                [r["seconds"] for r in rows],
                marker="o",
                label=label,
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("vocabulary size V (rows)")
    ax.set_ylabel("time (s, median)")
    ax.set_title(
        f"Truncated SVD, d={results['dim']}, rank={results['rank']}, float32"
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)


def _call(method, table, rank):
    if method in ("auto", "qr", "randomized"):
        from keras_lowrank.decomposition import truncated_svd

        return tuple(truncated_svd(table, rank, method=method))
    if method == "numpy":
        u, s, vt = np.linalg.svd(table.astype(np.float64), full_matrices=False)
        return u[:, :rank], s[:rank], vt[:rank]
    if method == "scipy_gesdd":
        import scipy.linalg

        u, s, vt = scipy.linalg.svd(
            table.astype(np.float64),
            full_matrices=False,
            lapack_driver="gesdd",
            check_finite=False,
        )
        return u[:, :rank], s[:rank], vt[:rank]
    if method == "svds":
        import scipy.sparse.linalg

        u, s, vt = scipy.sparse.linalg.svds(table, k=rank, random_state=0)
        order = np.argsort(s)[::-1]
        return u[:, order], s[order], vt[order]
    raise ValueError(f"Unknown method: {method!r}")


def _measure(function):
    """Returns (result, seconds, traced peak bytes, RSS peak increase bytes)."""
    import psutil

    process = psutil.Process()
    baseline = process.memory_info().rss
    peak = [baseline]
    done = threading.Event()

    def sample():
        # LAPACK workspaces are malloc'ed outside tracemalloc: watch RSS too.
        while not done.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            done.wait(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    tracemalloc.start()
    sampler.start()
    start = time.perf_counter()
    result = function()
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    traced = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    peak[0] = max(peak[0], process.memory_info().rss)
    return result, seconds, traced, peak[0] - baseline


def _frobenius(table):
    total = 0.0
    for start in range(0, table.shape[0], 65536):
        block = table[start : start + 65536].astype(np.float64)
        total += float(np.einsum("ij,ij->", block, block))
    return np.sqrt(total)


def _relative_error(table, u, s, vt, norm):
    """||E - U diag(s) Vt||_F / ||E||_F, in float64 row blocks."""
    right = np.asarray(s, dtype=np.float64)[:, None] * np.asarray(vt, np.float64)
    total = 0.0
    for start in range(0, table.shape[0], 65536):
        stop = start + 65536
        residual = table[start:stop].astype(np.float64) - (
            np.asarray(u[start:stop], np.float64) @ right
        )
        total += float(np.einsum("ij,ij->", residual, residual))
    return float(np.sqrt(total) / norm)


def _print_row(row):
    if "skipped" in row:
        print(f"V={row['V']:>9,} {row['method']:<12} skipped ({row['skipped']})")
    else:
        print(
            f"V={row['V']:>9,} {row['method']:<12} {row['seconds']:8.3f} s "
            f"traced {row['traced_peak_mib']:7.0f} MiB "
            f"rss +{row['rss_peak_increase_mib']:6.0f} MiB "
            f"err {row['relative_error']:.6g}",
            flush=True,
        )
