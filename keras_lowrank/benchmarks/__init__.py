"""Benchmarks that measure keras_lowrank on real data and write JSON results.

Each benchmark writes machine-readable results first and renders its tables
and plots from them, so a result can be re-plotted without re-running. The
benchmarks sit on top of the package (data, models, surgery, layers,
schedules) and must not be imported by it.
"""
