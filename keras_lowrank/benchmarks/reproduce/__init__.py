"""Reproduction of Acharya et al. (2019) on real data: accuracy vs embedding bytes.

`keras-lowrank reproduce` trains the paper's classifiers on bundled (or
user) datasets, compresses their embedding tables with every method at equal
embedding bytes (online and offline low rank, Keras' post-training
quantization, vocabulary pruning, and our stacked variants), fine-tunes with
the chosen schedules, and writes `results.json`, then renders `results.md`
and the plots from it.

- `config`: method names, sizes, schedule specs, `ReproduceConfig`.
- `budget`: byte accounting and the ranks/rows that fit a budget.
- `tasks`: dataset -> encoded splits, vocabulary, initial table; models.
- `fitting`: training with dev-split epoch selection; schedules; distillation.
- `methods`: one function per kind of method, measured.
- `runner`: the grid, resumable, one progress line per run.
- `report`: tables, plots and verdicts from results.json.
- `compress_report`, `search_report`, `frontier_report`: compress() against
  the fixed recipes, against its control per seed, and on the fixed recipes'
  accuracy-vs-bytes axes (each reads parts, writes markdown and pictures).

This package only wires the library together; it must not be imported by
the library itself. Heavy modules (TensorFlow) load only when a grid runs or
results are rendered.
"""

from keras_lowrank.benchmarks.reproduce.config import METHODS
from keras_lowrank.benchmarks.reproduce.config import ReproduceConfig


def run_grid(config, **kwargs):
    """Runs a `ReproduceConfig` (see `runner.run_grid`)."""
    from keras_lowrank.benchmarks.reproduce.runner import run_grid as _run_grid

    return _run_grid(config, **kwargs)


def render(output, records=None, **kwargs):
    """Renders results.md and the plots from results.json (see `report.render`)."""
    from keras_lowrank.benchmarks.reproduce.report import render as _render

    return _render(output, records, **kwargs)


__all__ = ["METHODS", "ReproduceConfig", "render", "run_grid"]
