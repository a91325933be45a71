"""The argument checks of `compress()`: every option, the budget and the model.

Each check raises a one-line `ValueError` naming the argument and echoing
the received value, before anything is planned or trained. This module must
not read data (`compression.data`) or plan (`compression.planner`).
"""

import math
import numbers

import keras
import numpy as np

from keras_lowrank.compression.embedding_objective import OBJECTIVES
from keras_lowrank.compression.other_layers import MODES as OTHER_LAYER_MODES
from keras_lowrank.layers.storage import STORAGES
from keras_lowrank.layers.table_kinds import TABLE_KINDS
from keras_lowrank.surgery.replace import normalize_layer_names

# How a finalist's weights are chosen: its best-scoring checkpoint, or the
# mean of its last rung's checkpoints (`search.Trial.average_weights`).
CHECKPOINTS = ("best", "average")

DEFAULT_OPTIONS = {
    "epochs": 5,
    "candidates": 12,
    "batch_size": 64,
    "learning_rate": None,
    "temperature": 2.0,
    "alpha": 0.5,
    "loss": None,
    "metrics": None,
    "monitor": None,
    "checkpoint": "average",
    "storages": STORAGES,
    "kinds": None,
    "other_layers": None,
    "prune": None,
    "objective": None,
    "oov_id": None,
    "seed": None,
    "verbose": 1,
}


def check_options(options):
    """`options` merged over `DEFAULT_OPTIONS`, every value checked.

    Args:
        options: the `**options` of `compress()`.

    Returns:
        A new dict with every option (`storages` as a tuple).

    Raises:
        ValueError: for an unknown option or a value of the wrong type or
            out of range.
    """
    unknown = sorted(set(options) - set(DEFAULT_OPTIONS))
    if unknown:
        raise ValueError(f"Unknown option(s) {unknown}; expected some of {sorted(DEFAULT_OPTIONS)}")
    opts = dict(DEFAULT_OPTIONS, **options)
    for name, low in (("epochs", 0), ("candidates", 1), ("batch_size", 1)):
        if not _is_int(opts[name]) or opts[name] < low:
            raise ValueError(f"Expected `{name}` to be an integer >= {low}, received: {name}={opts[name]!r}")
    learning_rate = opts["learning_rate"]
    if learning_rate is not None and not isinstance(
        learning_rate, keras.optimizers.schedules.LearningRateSchedule
    ):
        _check_positive_float(learning_rate, "learning_rate", "None, a positive finite float or a "
                              "keras.optimizers.schedules.LearningRateSchedule")
    _check_positive_float(opts["temperature"], "temperature", "a positive finite float")
    alpha = opts["alpha"]
    if not _is_real(alpha) or not 0 <= alpha <= 1:
        raise ValueError(f"Expected `alpha` to be a float in [0, 1], received: alpha={alpha!r}")
    loss = opts["loss"]
    if loss is not None and not (callable(loss) or (isinstance(loss, str) and _is_loss_name(loss))):
        raise ValueError(f"Expected `loss` to be None, a Keras loss name or a callable loss, received: loss={loss!r}")
    metrics = opts["metrics"]
    if metrics is not None and (
        not isinstance(metrics, (list, tuple)) or not all(isinstance(m, str) or callable(m) for m in metrics)
    ):
        raise ValueError(
            f"Expected `metrics` to be None or a list of metric names or objects, received: metrics={metrics!r}"
        )
    monitor = opts["monitor"]
    if monitor is not None and (not isinstance(monitor, str) or not monitor):
        raise ValueError(f"Expected `monitor` to be None or a validation log name, received: monitor={monitor!r}")
    if opts["checkpoint"] not in CHECKPOINTS:
        raise ValueError(f"Expected `checkpoint` to be one of {CHECKPOINTS}, received: "
                         f"checkpoint={opts['checkpoint']!r}")
    opts["storages"] = _check_choices(opts["storages"], "storages", STORAGES)
    kinds = tuple(TABLE_KINDS)
    opts["kinds"] = kinds if opts["kinds"] is None else _check_choices(opts["kinds"], "kinds", kinds)
    if opts["other_layers"] is not None:
        opts["other_layers"] = _check_choices(opts["other_layers"], "other_layers", OTHER_LAYER_MODES)
    if opts["prune"] is not None:
        check_bool(opts["prune"], "prune")
    if opts["objective"] is not None and opts["objective"] not in OBJECTIVES:
        raise ValueError(f"Expected `objective` to be None or one of {OBJECTIVES}, received: "
                         f"objective={opts['objective']!r}")
    for name in ("oov_id", "seed"):
        value = opts[name]
        if value is not None and (not _is_int(value) or value < 0):
            raise ValueError(f"Expected `{name}` to be None or a non-negative integer, received: {name}={value!r}")
    verbose = opts["verbose"]
    if not isinstance(verbose, (bool, np.bool_)) and (not _is_int(verbose) or verbose not in (0, 1, 2)):
        raise ValueError(f"Expected `verbose` to be 0, 1 or 2, received: verbose={verbose!r}")
    return opts


def _check_choices(values, name, allowed):
    """`values` as a tuple, if it is a non-empty list or tuple of names in `allowed`."""
    if (
        isinstance(values, str)
        or not isinstance(values, (list, tuple))
        or not values
        or any(not isinstance(v, str) or v not in allowed for v in values)
    ):
        raise ValueError(f"Expected `{name}` to be a non-empty list of {allowed}, received: {name}={values!r}")
    return tuple(values)


def check_budget(size, max_bytes, max_model_bytes=None, other_layers=None):
    """Checks that exactly one budget is given: `size` in (0, 1), or `max_bytes` / `max_model_bytes` >= 1.

    `other_layers` (quantizing the layers that are not tables) serves a
    whole-model budget only.
    """
    given = [value is not None for value in (size, max_bytes, max_model_bytes)]
    if sum(given) != 1:
        raise ValueError(
            "Expected exactly one of `size`, `max_bytes` and `max_model_bytes`, received: "
            f"size={size!r}, max_bytes={max_bytes!r}, max_model_bytes={max_model_bytes!r}"
        )
    if size is not None and (not _is_real(size) or not 0 < size < 1):
        raise ValueError(f"Expected `size` to be a fraction in (0, 1), received: size={size!r}")
    for name, value in (("max_bytes", max_bytes), ("max_model_bytes", max_model_bytes)):
        if value is not None and (not _is_int(value) or value < 1):
            raise ValueError(f"Expected `{name}` to be a positive integer, received: {name}={value!r}")
    if other_layers is not None and max_model_bytes is None:
        raise ValueError(
            "Expected `max_model_bytes` with `other_layers` (the other layers' bytes count against a whole-model "
            f"budget only), received: other_layers={other_layers!r}, max_model_bytes=None"
        )


def check_layer_names(layer_names):
    """Checks `layer_names` (None, a name or a list of names)."""
    normalize_layer_names(layer_names)


def check_model(model, loss):
    """Checks that `model` is a built, single-output `keras.Model` with a loss.

    Args:
        model: the model given to `compress()`.
        loss: the `loss` option (`None`: the model's compiled loss).
    """
    if not isinstance(model, keras.Model):
        raise ValueError(f"Expected `model` to be a keras.Model, received: model={model!r}")
    if not model.built:
        raise ValueError(f"Expected `model` to be built (trained), received the unbuilt model '{model.name}'")
    outputs = getattr(model, "outputs", None) or []
    if len(outputs) > 1:
        # The distillation matches one output's logits with the teacher's.
        raise ValueError(
            f"Expected `model` to have a single output, received model '{model.name}' with {len(outputs)} outputs: "
            "compress() fine-tunes single-output models only"
        )
    if loss is None and getattr(model, "loss", None) is None:
        raise ValueError(
            f"Model '{model.name}' is not compiled with a loss: compile it, or pass `loss=` "
            "(for example loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))."
        )


def check_bool(value, name):
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"Expected `{name}` to be a boolean, received: {name}={value!r}")


def _check_positive_float(value, name, expected):
    if not _is_real(value) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"Expected `{name}` to be {expected}, received: {name}={value!r}")


def _is_loss_name(name):
    try:
        keras.losses.get(name)
    except ValueError:
        return False
    return True


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def _is_real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
