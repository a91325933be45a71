"""The data plumbing of `compress()`: data checks, id probes, fit arguments.

`compress()` takes what `model.fit` takes, restricted to what it can read
several times: `(x, y)` or `(x, y, sample_weight)` arrays, a finite
`tf.data.Dataset` or a finite `keras.utils.PyDataset`. `check_data` refuses
anything else up front (with a message saying what to pass), and so empty
data, non-finite sample weights and labels the loss cannot take.

The id probes find the ids that reach an embedding table over some data
(every call of a table shared by several inputs): they give the token counts
of the planner and check that every id is a row of the table.

TensorFlow is never imported here: a `tf.data.Dataset` or a
`tf.RaggedTensor` can only exist once the caller has imported it. This
module must not plan, build or train.
"""

import collections.abc
import contextlib
import math
import sys

import keras
import numpy as np

from keras_lowrank.surgery.replace import is_graph_model


def check_data(data, name, *, classes=None, ignore_class=None, allow_ragged=False):
    """Checks `data` before `compress()` reads it; raises a `ValueError` if unfit.

    Datasets are read once to their end (a `tf.data.Dataset` of infinite
    cardinality is refused: pass a finite one, e.g. `dataset.take(n)`).

    Args:
        data: `train_data` or `validation_data` of `compress()`.
        name: the argument's name, for messages.
        classes: the number of classes when labels are class ids (a sparse
            categorical loss), else `None` (labels only need be finite).
        ignore_class: a label the loss ignores (allowed out of range).
        allow_ragged: whether ragged inputs are accepted (a model's own
            preprocessor may take them).
    """
    if data is None:
        raise ValueError(f"Expected `{name}` (what `model.fit` accepts), received: {name}=None")
    if isinstance(data, (tuple, list)):
        if len(data) not in (2, 3):
            raise ValueError(
                f"Expected `{name}` as (x, y) or (x, y, sample_weight), received a sequence of {len(data)} items"
            )
        if not allow_ragged:
            _check_dense(keras.tree.flatten(data[0]), name)
        if num_examples(data[0]) == 0:
            raise _empty(name)
        _check_batch(data, name, 0, classes, ignore_class)
        return
    tf = sys.modules.get("tensorflow")
    if tf is not None and isinstance(data, tf.data.Dataset):
        if not allow_ragged and any(isinstance(s, tf.RaggedTensorSpec) for s in tf.nest.flatten(data.element_spec)):
            raise _ragged(name)
        cardinality = int(data.cardinality())
        if cardinality == tf.data.INFINITE_CARDINALITY:
            raise _infinite(name)
        batches = data.as_numpy_iterator()
    elif isinstance(data, keras.utils.PyDataset):
        if data.num_batches is None:
            raise _infinite(name)
        batches = (data[index] for index in range(data.num_batches))
    elif isinstance(data, collections.abc.Iterator):
        raise ValueError(
            f"Expected `{name}` as arrays, a tf.data.Dataset or a keras.utils.PyDataset, received an iterator "
            f"({type(data).__name__}), which can be read only once: compress() reads the data several times"
        )
    else:
        raise ValueError(
            f"Expected `{name}` as (x, y) or (x, y, sample_weight) arrays, a tf.data.Dataset or a "
            f"keras.utils.PyDataset, received: {name}={data!r}"
        )
    seen = 0
    for batch in batches:
        parts = tuple(batch) if isinstance(batch, (tuple, list)) else (batch,)
        if not allow_ragged:
            _check_dense(keras.tree.flatten(parts[0]), name)
        _check_batch(parts, name, seen, classes, ignore_class)
        seen += num_examples(parts[0])
    if seen == 0:
        raise _empty(name)


def class_count(model, loss):
    """`(classes, ignore_class)` when `loss` takes class ids, else `(None, None)`.

    The number of classes is the width of the model's single output; `None`
    when the model does not tell it (a subclassed model).
    """
    sparse = (
        loss == "sparse_categorical_crossentropy"
        if isinstance(loss, str)
        else isinstance(loss, keras.losses.SparseCategoricalCrossentropy)
        or loss is keras.losses.sparse_categorical_crossentropy
    )
    outputs = getattr(model, "outputs", None) or []
    if not sparse or len(outputs) != 1 or outputs[0].shape[-1] is None:
        return None, None
    ignore_class = loss.get_config().get("ignore_class") if isinstance(loss, keras.losses.Loss) else None
    return int(outputs[0].shape[-1]), ignore_class


def token_counts(model, path, layer, data, notes):
    """Per-id counts of the ids that reach `layer` over `data`, or None (said in `notes`).

    Raises:
        ValueError: if an id is outside the table's rows.
    """
    try:
        ids = table_ids(model, path, layer, data)
    except _IdsUnavailable as error:
        notes.append(f"token counts of '{path}' unavailable ({error}): "
                     "pruning keeps the first ids, no frequency weighting")
        return None
    check_id_range(ids, layer, path, "train_data")
    return np.bincount(ids, minlength=int(layer.input_dim)).astype(np.float64)


def check_ids(model, path, layer, data, name):
    """Checks that every id reaching `layer` over `data` is a row of it.

    Ids that cannot be read (see `table_ids`) are not checked here: the
    model then runs on them as it would anyway.
    """
    try:
        ids = table_ids(model, path, layer, data)
    except _IdsUnavailable:
        return
    check_id_range(ids, layer, path, name)


def check_id_range(ids, layer, path, name):
    V = int(layer.input_dim)
    bad = (ids < 0) | (ids >= V)
    if bad.any():
        raise ValueError(
            f"`{name}` holds id {int(ids[np.argmax(bad)])} for embedding '{path}', whose ids must be in [0, {V})"
        )


def table_ids(model, path, layer, data):
    """The ids `layer` looks up when `model` runs on `data` (every call), flat int64.

    Raises:
        _IdsUnavailable: with the reason, when the ids cannot be read.
    """
    calls = 1
    try:
        calls = sum(1 for reverse in forward_calls(model, layer, data) if not reverse) or 1
    except Exception:  # noqa: BLE001 - the probes below say why they fail
        pass
    probe = None
    if calls == 1 and is_graph_model(model) and "/" not in path:
        try:
            probe = keras.Model(model.inputs, layer.input)
        except (ValueError, AttributeError):
            probe = None
    if probe is None and calls == 1 and len(getattr(model, "inputs", None) or []) <= 1 and "/" not in path:
        probe = keras.Sequential([keras.layers.Identity()])
    try:
        if probe is None:
            ids = recorded_ids(model, layer, data, calls)
        else:
            ids = np.asarray(probe.predict(fit_arguments(data, 1024)["x"], verbose=0))
    except _NotCalled:
        raise _IdsUnavailable("the table was not called when the model ran on the data") from None
    except Exception:  # noqa: BLE001 - any failure: no ids, the caller says so
        raise _IdsUnavailable("the model could not be run on the data up to this table") from None
    if not np.issubdtype(ids.dtype, np.integer) and not np.all(np.mod(ids, 1) == 0):
        raise _IdsUnavailable("its inputs are not integer ids")
    return ids.astype(np.int64).ravel()


def forward_calls(model, layer, data):
    """The `reverse` flag of each call of `layer` when `model` runs eagerly on one batch of `data`."""
    flags = []

    def watching_call(original, inputs, *args, **kwargs):
        reverse = bool(kwargs.get("reverse", args[0] if args else False))
        flags.append(reverse)
        return original(inputs if reverse else _within_rows(inputs, layer), *args, **kwargs)

    with call_replaced(layer, watching_call):
        model(next(iter(batches_of_inputs(data, 8))), training=False)
    return flags


def recorded_ids(model, layer, data, calls=1):
    """The ids `layer` receives when `model` runs on `data`, batch by batch.

    For tables whose ids are no model input of a graph model (a backbone
    nested in a task model, a subclassed model) or that are called several
    times per pass (shared by several inputs): each batch runs eagerly until
    `layer` has been called `calls` times, its ids are kept and the pass
    stops there.
    """
    seen = []
    in_batch = [0]

    def recording_call(original, inputs, *args, **kwargs):
        if kwargs.get("reverse"):
            return original(inputs, *args, **kwargs)
        seen.append(keras.ops.convert_to_numpy(inputs))
        in_batch[0] += 1
        if in_batch[0] >= calls:
            raise _IdsRecorded()
        return original(_within_rows(inputs, layer), *args, **kwargs)

    with call_replaced(layer, recording_call):
        for x in batches_of_inputs(data, 256):
            in_batch[0] = 0
            try:
                model(x, training=False)
            except _IdsRecorded:
                continue
            raise _NotCalled(f"layer '{layer.name}' was not called when the model ran")
    return np.concatenate([ids.ravel() for ids in seen]) if seen else np.zeros((0,), np.int64)


@contextlib.contextmanager
def call_replaced(layer, hook):
    """Inside the block, `layer`'s calls go to `hook(original_call, inputs, ...)`."""
    original = layer.call
    layer.call = lambda inputs, *args, **kwargs: hook(original, inputs, *args, **kwargs)
    try:
        yield
    finally:
        del layer.call  # the instance attribute; the class's `call` is back


def preprocessed(model, data, batch_size, notes):
    """`data` with `model.preprocessor` applied to its inputs, if it has one."""
    preprocessor = getattr(model, "preprocessor", None)
    if preprocessor is None or not callable(preprocessor):
        return data
    notes.append(f"training inputs preprocessed once by the model's {type(preprocessor).__name__}")
    if isinstance(data, (tuple, list)):
        x = data[0]
        parts = [preprocessor(x[i : i + 1024]) for i in range(0, num_examples(x), 1024)]
        x = keras.tree.map_structure(
            lambda *arrays: np.concatenate([keras.ops.convert_to_numpy(a) for a in arrays]), *parts
        )
        return (x,) + tuple(data[1:])
    if isinstance(data, keras.utils.PyDataset):
        raise ValueError(
            "Expected `train_data` as arrays or a tf.data.Dataset for a model with a preprocessor, "
            f"received a keras.utils.PyDataset: {data!r}. Pass preprocessed inputs instead."
        )
    # A tf.data.Dataset of (x, y[, w]) batches: KerasHub preprocessors map those.
    return data.map(preprocessor)


def batches_of_inputs(data, batch_size):
    """The model inputs `x` of `data`, batch by batch."""
    if isinstance(data, (tuple, list)):
        x = data[0]
        for start in range(0, num_examples(x), batch_size):
            yield keras.tree.map_structure(lambda a: a[start : start + batch_size], x)
        return
    iterator = data if isinstance(data, keras.utils.PyDataset) else data.as_numpy_iterator()
    for index, batch in enumerate(iterator):
        if isinstance(data, keras.utils.PyDataset) and index >= len(data):
            break
        yield batch[0] if isinstance(batch, (tuple, list)) else batch


def fit_arguments(data, batch_size, shuffle=None):
    """The keyword arguments of `fit`/`evaluate`/`predict` that feed them `data`."""
    if isinstance(data, (tuple, list)):
        args = {"x": data[0], "y": data[1], "batch_size": batch_size}
        if len(data) == 3:
            args["sample_weight"] = data[2]
        if shuffle is not None:
            args["shuffle"] = shuffle
        return args
    # Datasets and PyDatasets shuffle themselves (Keras warns otherwise).
    return {"x": data, "shuffle": False} if shuffle is not None else {"x": data}


def num_examples(x):
    # x may be a dict or list of arrays (several model inputs).
    return len(keras.tree.flatten(x)[0])


def full_batches_per_epoch(data, batch_size):
    """Steps of one pass over `data` that are all full batches (arrays: the
    last partial batch left out, so a traced train step is never traced
    again for a smaller batch; datasets come batched: every batch)."""
    if isinstance(data, (tuple, list)):
        return max(1, num_examples(data[0]) // batch_size)
    return steps_per_epoch(data, batch_size)


def steps_per_epoch(data, batch_size):
    if isinstance(data, (tuple, list)):
        return max(1, math.ceil(num_examples(data[0]) / batch_size))
    try:
        steps = len(data)
    except TypeError:
        steps = None
    if steps is None or steps <= 0:
        try:
            steps = int(data.cardinality())
        except (AttributeError, TypeError):
            steps = 0
    return steps if steps > 0 else 100


class _IdsRecorded(Exception):
    """Stops a forward pass once the embedding's ids are recorded."""


class _NotCalled(ValueError):
    """The table was not called when the model ran."""


class _IdsUnavailable(Exception):
    """The ids reaching a table cannot be read; the message says why."""


def _within_rows(ids, layer):
    """`ids` clipped to the table's rows: a probe's pass goes on past an id
    out of range, which the caller then reports with the data it came from."""
    return keras.ops.clip(ids, 0, int(layer.input_dim) - 1)


def _check_batch(parts, name, offset, classes, ignore_class):
    """Checks the labels and sample weights of one `(x, y[, w])` batch."""
    if len(parts) >= 2 and parts[1] is not None:
        for labels in keras.tree.flatten(parts[1]):
            _check_labels(_numpy(labels), name, classes, ignore_class)
    if len(parts) == 3 and parts[2] is not None:
        weights = _numpy(parts[2])
        if np.issubdtype(weights.dtype, np.number):
            bad = ~np.isfinite(weights.astype(np.float64))
            if bad.any():
                index = np.unravel_index(np.argmax(bad), weights.shape)
                raise ValueError(
                    f"Expected finite sample weights in `{name}`, received: sample_weight="
                    f"{float(weights[index])} at example {offset + int(index[0]) if index else offset}"
                )


def _check_labels(labels, name, classes, ignore_class):
    if not np.issubdtype(labels.dtype, np.number) or not labels.size:
        return
    values = labels.astype(np.float64).ravel()
    bad = ~np.isfinite(values)
    if bad.any():
        raise ValueError(f"Expected finite labels in `{name}`, received: label {float(values[np.argmax(bad)])}")
    if classes is None:
        return
    bad = (values < 0) | (values >= classes) | (values != np.floor(values))
    if ignore_class is not None:
        bad &= values != ignore_class
    if bad.any():
        value = values[np.argmax(bad)]
        raise ValueError(
            f"`{name}` holds label {int(value) if value == int(value) else value!r}, but the model's labels "
            f"are class ids in [0, {classes})"
        )


def _numpy(value):
    return np.asarray(keras.ops.convert_to_numpy(value) if keras.ops.is_tensor(value) else value)


def _check_dense(arrays, name):
    tf = sys.modules.get("tensorflow")
    if tf is not None and any(isinstance(a, tf.RaggedTensor) for a in arrays):
        raise _ragged(name)


def _ragged(name):
    return ValueError(
        f"Expected dense inputs in `{name}`, received ragged tensors: pad the sequences to one length "
        "(e.g. `ragged.to_tensor()`, or `Dataset.padded_batch`)"
    )


def _empty(name):
    return ValueError(f"`{name}` holds no examples: compress() needs data to fine-tune and score on")


def _infinite(name):
    return ValueError(
        f"Expected a finite `{name}`, received an infinite dataset: compress() reads the data to its end, "
        "pass a finite one (e.g. `dataset.take(n)`)"
    )
