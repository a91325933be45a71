"""The machine a benchmark ran on: one description shared by every benchmark.

A timing means little without the machine behind it, and on a shared machine
without its load. `describe_machine()` collects what the benchmarks record in
their `results.json` (CPU model, cores, memory, platform, library versions,
time and load average), and `machine_summary()` renders it as one line of
Markdown, also for results written by earlier versions of the benchmarks.

This module only observes: it must not change thread settings, environment
variables or anything else that would alter what is measured, and it must not
import TensorFlow or Keras itself (the caller names the libraries it uses).
"""

import importlib
import os
import platform
import time

# Older results files used other names for the same facts; read them too.
_LEGACY_KEYS = {
    "cpu_count": ("cpus", "cores_visible"),
    "load_average_before": ("load_average",),
    "load_average_after": ("load_average_at_end",),
}

# Display names of the libraries a benchmark may ask to record.
_LIBRARY_LABELS = {
    "numpy": "NumPy",
    "scipy": "SciPy",
    "tensorflow": "TensorFlow",
    "keras": "Keras",
    "ai_edge_litert": "ai-edge-litert",
    "ai_edge_quantizer": "ai-edge-quantizer",
}


def describe_machine(libraries=("numpy",)):
    """Describes this machine and its current load as a JSON-ready dict.

    Args:
        libraries: names of the Python packages whose versions matter to the
            benchmark (e.g. `("numpy", "scipy")`). A package that is not
            installed is recorded as `None`; one without `__version__` as
            `"installed"`.

    Returns:
        A dict with `cpu` (model name), `cpu_count` (logical CPUs),
        `cores_usable` (CPUs this process may run on), `memory_gib`,
        `platform`, `python`, `libraries` (name -> version), `utc` (time of
        the call) and `load_average_before` (1, 5 and 15 minute load
        average). Record the load at the end with
        `machine["load_average_after"] = load_average()`.

    Example:

    ```python
    machine = describe_machine(("numpy",))
    ...  # measure
    machine["load_average_after"] = load_average()
    ```
    """
    return {
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "cores_usable": _cores_usable(),
        "memory_gib": _memory_gib(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "libraries": {name: _version(name) for name in libraries},
        "utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_average_before": load_average(),
    }


def load_average():
    """The 1, 5 and 15 minute load averages, rounded; `None` where unknown."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def cpu_name():
    """The CPU model name from /proc/cpuinfo, else what `platform` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def normalize_machine(machine):
    """Returns `machine` with the current key names, legacy names mapped.

    Results written before this module existed name some facts differently
    (`cpus`, `cores_visible`, `load_average`, `load_average_at_end`) and keep
    library versions at the top level; this maps them so that old and new
    results render alike. The input is not modified.
    """
    machine = dict(machine or {})
    for key, legacy in _LEGACY_KEYS.items():
        for old in legacy:
            if key not in machine and old in machine:
                machine[key] = machine.pop(old)
    libraries = dict(machine.get("libraries") or {})
    for name in _LIBRARY_LABELS:
        if name in machine and name not in libraries:
            libraries[name] = machine.pop(name)
    machine["libraries"] = libraries
    return machine


def machine_summary(machine):
    """One line of Markdown describing `machine` (as `describe_machine` returns).

    Facts missing from older results are left out, except the load average,
    which is reported as "not recorded" because it qualifies every timing.
    """
    machine = normalize_machine(machine)
    parts = [machine.get("cpu") or "unknown CPU"]
    if machine.get("cpu_count"):
        cores = f"{machine['cpu_count']} logical CPUs"
        usable = machine.get("cores_usable")
        if usable and usable != machine["cpu_count"]:
            cores += f" ({usable} usable)"
        parts.append(cores)
    if machine.get("memory_gib"):
        parts.append(f"{machine['memory_gib']} GiB RAM")
    if machine.get("platform"):
        parts.append(machine["platform"])
    versions = [f"Python {machine['python']}"] if machine.get("python") else []
    versions += [
        f"{_LIBRARY_LABELS.get(name, name)} {version}"
        for name, version in machine["libraries"].items()
        if version
    ]
    text = ", ".join(parts)
    if versions:
        text += "; " + ", ".join(versions)
    text += "."
    if machine.get("utc"):
        text += f" Measured {machine['utc']}."
    before, after = machine.get("load_average_before"), machine.get("load_average_after")
    if before is None and after is None:
        text += " Load average: not recorded."
    else:
        text += (
            f" Load average (1, 5, 15 min): {_load_text(before)} before, "
            f"{_load_text(after)} after."
        )
    return text


def _load_text(load):
    return "not recorded" if load is None else "[" + ", ".join(f"{x:g}" for x in load) + "]"


def _cores_usable():
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count()


def _memory_gib():
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        return round(psutil.virtual_memory().total / 2**30, 1)
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (AttributeError, ValueError, OSError):
        return None


def _version(name):
    try:
        module = importlib.import_module(name)
    except ImportError:
        return None
    version = getattr(module, "__version__", None)
    if version is None:
        # Some packages (AI Edge Quantizer) record their version only in
        # their distribution's metadata, under the dashed name.
        from importlib import metadata

        try:
            version = metadata.version(_LIBRARY_LABELS.get(name, name).replace("_", "-"))
        except metadata.PackageNotFoundError:
            version = "installed"
    return version
