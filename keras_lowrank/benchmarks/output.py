"""Where a benchmark's results live, and how its reports are rendered from them.

Every benchmark (`keras-lowrank bench svd|export|train`) follows the same
contract, implemented here once:

- `--output DIR` (default `benchmark_results/<name>`) receives
  `results.json`, the machine-readable source of truth, and `results.md`,
  rendered from it. A measurement that replaces an existing `results.json`
  keeps the old one as `DIR/earlier/<its UTC time>.json`, so no measurement
  is lost by a rerun.
- `--render-only` re-renders `results.md` (and the doc section) from
  `DIR/results.json` without measuring.
- `--doc PAGE` also rewrites the generated section of a docs page (see
  `keras_lowrank.benchmarks.markdown`), so that every number in the docs can
  be regenerated from the results files by one command.

This module must not measure anything nor know a benchmark's tables: each
benchmark passes its own `render(results, link_base, heading_level)`.
"""

import glob
import json
import os
import shlex
import time

from keras_lowrank.benchmarks import environment
from keras_lowrank.benchmarks import markdown
from keras_lowrank.utils.atomic_write import atomic_open
from keras_lowrank.utils.atomic_write import write_json

RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"
EARLIER = "earlier"


def add_output_arguments(parser, name):
    """Adds `--output`, `--doc` and `--render-only` to a benchmark's parser.

    Args:
        parser: the `argparse` parser of `keras-lowrank bench <name>`.
        name: the benchmark's name, used for the default output folder.
    """
    default = os.path.join("benchmark_results", name)
    parser.add_argument(
        "--output",
        default=default,
        metavar="DIR",
        help=f"Folder for {RESULTS_JSON} and {RESULTS_MD} (default: {default}). "
        f"An existing {RESULTS_JSON} replaced by a new measurement is kept in "
        f"DIR/{EARLIER}/.",
    )
    parser.add_argument(
        "--doc",
        default=None,
        metavar="PAGE",
        help="Also rewrite the generated section of this Markdown page (the text "
        f"between '{markdown.begin_marker('keras-lowrank bench ' + name + ' --output DIR ...')}' "
        f"and '{markdown.END_MARKER}'); the rest of the page is left untouched.",
    )
    parser.add_argument(
        "--render-only",
        action="store_true",
        help=f"Do not measure: re-render {RESULTS_MD} (and --doc) from DIR/{RESULTS_JSON}.",
    )


def command(name, options, args):
    """The command line that reproduces a run, for the results and the docs.

    Args:
        name: the benchmark (`"svd"`, `"export"`, `"train"`).
        options: `(flag, value)` pairs of the options that differ from their
            defaults, in the order to show them; a value of `True` is a
            switch without a value, a list an option taking several values.
        args: the parsed arguments, for `--output` and `--doc`.

    Returns:
        A string such as `"keras-lowrank bench svd --sizes 400000 --output DIR"`.
    """
    words = ["keras-lowrank", "bench", name]
    for flag, value in options:
        if value is True:
            words.append(flag)
        elif isinstance(value, (list, tuple)):
            words += [flag] + [_word(v) for v in value]
        else:
            words += [flag, _word(value)]
    words += ["--output", _word(args.output)]
    if getattr(args, "doc", None):
        words += ["--doc", _word(args.doc)]
    return " ".join(words)


def load_results(output):
    """Reads `output/results.json`; a `ValueError` says what to run if it is missing."""
    path = os.path.join(output, RESULTS_JSON)
    if not os.path.isfile(path):
        raise ValueError(
            f"`--render-only` needs {path}; run the benchmark with `--output {output}` first."
        )
    with open(path) as f:
        return json.load(f)


def save_results(results, output):
    """Writes `output/results.json`, keeping a replaced one under `earlier/`."""
    os.makedirs(output, exist_ok=True)
    path = os.path.join(output, RESULTS_JSON)
    if os.path.isfile(path):
        with open(path) as f:
            previous = f.read()
        if previous.strip():
            os.makedirs(os.path.join(output, EARLIER), exist_ok=True)
            with atomic_open(os.path.join(output, EARLIER, _earlier_name(previous, path, output)), "w") as f:
                f.write(previous)
    _write_json(results, path)


def write_progress(results, output):
    """Writes `output/results.json` without keeping the replaced file.

    For benchmarks that save after each configuration: call `save_results`
    once first (which keeps the file measured before this run), then this.
    """
    _write_json(results, os.path.join(output, RESULTS_JSON))


def publish(results, args, render, *, name, title, summarize=None):
    """Renders `results` to `results.md` and, with `--doc`, into the docs page.

    Args:
        results: the dict written to `results.json`.
        args: the parsed arguments (`output`, `doc`).
        name: the benchmark (`"svd"`, `"export"`, `"train"`), for the marker.
        render: `render(results, link_base=..., heading_level=...)` returning
            the Markdown body; `link_base` is the path from the page being
            written to the output folder (for links to the JSON and plots).
        title: the title of `results.md`.
        summarize: optional `summarize(results) -> str`, one phrase per
            earlier measurement kept in `earlier/` (listed after the body).

    Returns:
        The Markdown of `results.md`.
    """
    os.makedirs(args.output, exist_ok=True)
    body = render(results, link_base="", heading_level=2)
    page = f"# {title}\n\n{body.strip()}\n" + _earlier_list(args.output, "", summarize)
    with atomic_open(os.path.join(args.output, RESULTS_MD), "w") as f:
        f.write(page)
    if args.doc:
        doc_dir = os.path.dirname(os.path.abspath(args.doc))
        base = os.path.relpath(os.path.abspath(args.output), doc_dir).replace(os.sep, "/")
        section = render(results, link_base=base, heading_level=3).strip() + "\n"
        section += _earlier_list(args.output, base, summarize)
        _update_doc(args, name, section)
    return page


def measure_and_publish(args, measure, render, *, name, title):
    """The whole `run` of a benchmark measured in one call: measure (or, with
    `--render-only`, read), save `results.json`, publish; returns 0.

    Args:
        args: the parsed arguments (`output`, `doc`, `render_only`).
        measure: `measure(args) -> results`, the dict for `results.json`.
        render, name, title: as `publish` takes them.
    """
    check_doc(args, name)
    if args.render_only:
        results = load_results(args.output)
    else:
        results = measure(args)
        save_results(results, args.output)
    print(publish(results, args, render, name=name, title=title))
    return 0


def check_doc(args, name):
    """Fails early (`ValueError`) if `--doc` has no section for this benchmark and output.

    Call it before measuring, so that a long run does not end in an error
    about the page.
    """
    if args.doc:
        _update_doc(args, name, "", dry_run=True)


def _update_doc(args, name, section, dry_run=False):
    marker = f"keras-lowrank bench {name} --output {_word(args.output)} --doc {_word(args.doc)}"
    try:
        if dry_run:
            with open(args.doc, encoding="utf-8") as f:
                markdown.replace_section(f.read(), marker, section)
        else:
            markdown.update_page(args.doc, marker, section)
    except FileNotFoundError:
        raise ValueError(f"`--doc` page not found: {args.doc}") from None
    except ValueError as error:
        raise ValueError(f"{args.doc}: {error}") from None


def link(link_base, filename):
    """The link to `filename` in the output folder from the page being written."""
    return f"{link_base}/{filename}" if link_base else filename


def finish_machine(machine):
    """Adds the load average at the end of a measurement to `machine`; returns it."""
    machine["load_average_after"] = environment.load_average()
    return machine


def _earlier_list(output, link_base, summarize):
    paths = sorted(glob.glob(os.path.join(output, EARLIER, "*.json")))
    if not paths:
        return ""
    lines = [
        "",
        f"Earlier measurements kept in `{EARLIER}/` (replaced by the run above; "
        "load average over 1 minute before / after):",
        "",
    ]
    for path in paths:
        filename = os.path.basename(path)
        try:
            with open(path) as f:
                earlier = json.load(f)
        except (OSError, ValueError):
            continue
        machine = _first_machine(earlier)
        when = machine.get("utc") or filename[: -len(".json")]
        load = "/".join(
            "?" if machine.get(k) is None else f"{machine[k][0]:g}"
            for k in ("load_average_before", "load_average_after")
        )
        text = summarize(earlier) if summarize else ""
        lines.append(
            f"- [{filename}]({link(link_base, EARLIER + '/' + filename)}): {when}, "
            f"load {load}" + (f"; {text}" if text else "")
        )
    return "\n".join(lines) + "\n"


def _first_machine(results):
    machine = results.get("machine")
    if machine is None and results.get("runs"):
        machine = results["runs"][0].get("machine")
    return environment.normalize_machine(machine)


def _earlier_name(text, path, output):
    try:
        utc = _first_machine(json.loads(text)).get("utc")
    except ValueError:
        utc = None
    try:
        stamp = time.strftime("%Y-%m-%dT%H%MZ", time.strptime(utc, "%Y-%m-%d %H:%M UTC"))
    except (TypeError, ValueError):
        stamp = time.strftime("%Y-%m-%dT%H%MZ", time.gmtime(os.path.getmtime(path)))
    name, suffix = f"{stamp}.json", 1
    while os.path.exists(os.path.join(output, EARLIER, name)):
        suffix += 1
        name = f"{stamp}-{suffix}.json"
    return name


def _write_json(results, path):
    # Write then rename, so an interrupted run never leaves half a file.
    write_json(path, results, indent=1)


def _word(value):
    return shlex.quote(str(value))
