"""Exports a Keras text classifier to a verified TFLite flatbuffer.

One call takes a trained (possibly factorized, possibly int8-factor) model to
a `.tflite` file: cast to float32 if the model runs in mixed precision, fold
low-rank projections (`keras_lowrank.export.folding`), freeze the variables
into constants, convert with builtin TFLite ops only, then check the file:
no Flex (Select TF) ops, and the `ai_edge_litert` interpreter reproduces the
Keras outputs on a probe batch.

Why freezing: `TFLiteConverter.from_concrete_functions` keeps Keras 3
variables as resource variables unless they are tracked, and then silently
writes a weightless model whose outputs are NaN. Freezing the concrete
function first makes every weight a constant of the graph.

Why recurrent layers are unrolled for a dynamic batch: a Keras recurrent
layer runs a `while` loop over a TensorList whose element shape contains the
batch size; TFLite's builtin lowering needs that shape static. Unrolling over
the (known) sequence length computes the same thing with builtin ops only.
With a fixed `batch_size` the loop is kept.

This module must not change the model it is given (what it sets for the
trace, recurrent layers' `unroll` and a table kind's `traced_for_export`, is
put back before it returns), and must not train.
"""

import contextlib
import dataclasses
import keyword
import os
import unicodedata

import numpy as np

from keras_lowrank import _compat
from keras_lowrank import _keras_private
from keras_lowrank.export import keras_hub_task
from keras_lowrank.export import metadata
from keras_lowrank.export import raw_text
from keras_lowrank.export.text_tokenizer import METADATA_NAME
from keras_lowrank.layers import table_kinds
from keras_lowrank.utils import texts as texts_lib
from keras_lowrank.utils.atomic_write import atomic_path

SIGNATURE_KEY = "serving_default"

QUANTIZE_MODES = (None, "dynamic", "float16", "int8", "int4")
# Per-mode tolerance on the max abs difference against Keras, used by tests
# and benchmarks to judge an export (logits of small classifiers).
TOLERANCES = {None: 1e-4, "dynamic": 0.1, "float16": 1e-2, "int8": 0.5, "int4": 0.5}


@dataclasses.dataclass
class ExportReport:
    """What `export_tflite` wrote and how it was checked.

    Attributes:
        path: The `.tflite` file written.
        bytes: Its size in bytes.
        quantize: The quantization mode used.
        ops: Builtin op name -> count, over all subgraphs.
        flex_ops: Custom/Flex ops found (always empty: export fails otherwise).
        max_abs_difference: Max |TFLite - Keras| over the probe batch.
        probe_shape: Shape of the probe batch of ids.
        input_shape: The input signature, `None` for a dynamic dimension.
        folded: Whether projections were folded into consumers.
        fold_report: The `FoldReport` (or `None` when `fold=False`).
        unrolled: Names of recurrent layers unrolled for a dynamic batch.
        cast_to_float32: Whether a mixed-precision model was cast first.
        tokenizer: For a raw-text model, its tokenizer's settings without
            the vocabulary (`TextTokenizer.summary()`); the whole settings
            are inside the file (`TextRunner` reads them). For a KerasHub
            task, its tokenizer class, vocabulary size, sequence length and
            pad id (`read_task_settings` reads the whole settings). `None`
            otherwise.
        tokenizer_bytes: Bytes of the file that are the tokenizer's
            settings and vocabulary (its metadata entry; 0 without one): a
            raw-text or KerasHub file is larger than its weights by this.
        signature: The names of the file's `serving_default` signature:
            `{"inputs": {keras name: file name}, "outputs": {...}}`. A file
            name differs from the Keras one where the Keras name is not a
            valid signature name (see `export_tflite`).
    """

    path: str
    bytes: int
    quantize: str | None
    ops: dict
    flex_ops: list
    max_abs_difference: float
    probe_shape: tuple
    input_shape: tuple
    folded: bool
    fold_report: object = None
    unrolled: list = dataclasses.field(default_factory=list)
    cast_to_float32: bool = False
    signature: dict = dataclasses.field(default_factory=dict)
    tokenizer: dict | None = None
    tokenizer_bytes: int = 0

    def to_dict(self):
        out = dataclasses.asdict(self)
        out["fold_report"] = (
            self.fold_report.to_dict() if self.fold_report is not None else None
        )
        return out

    def __str__(self):
        ops = ", ".join(f"{k} x{v}" for k, v in sorted(self.ops.items()))
        shape = ", ".join("dynamic" if d is None else str(d) for d in self.input_shape)
        lines = [
            f"{self.path}: {self.bytes:,} bytes (quantize={self.quantize or 'none'})",
            f"  input ({shape}); ops: {ops}",
            f"  max |tflite - keras| on probe {self.probe_shape}: "
            f"{self.max_abs_difference:.3g}",
        ]
        if self.signature:
            lines.append(f"  signature {SIGNATURE_KEY}: " + "; ".join(
                f"{kind} " + ", ".join(
                    name if name == file_name else f"{name} -> {file_name}"
                    for name, file_name in self.signature[kind].items()
                )
                for kind in ("inputs", "outputs")
            ))
        if self.tokenizer is not None and "standardize" not in self.tokenizer:
            t = self.tokenizer
            lines.append(
                f"  KerasHub task: {t['tokenizer'] or 'no'} tokenizer"
                + (f", vocabulary of {t['vocabulary_size']:,} tokens" if t["vocabulary_size"] else "")
                + f"; segment ids 0 and padding mask (token_ids != {t['pad_id']}) computed in the file; "
                f"settings inside the file (metadata {keras_hub_task.METADATA_NAME!r}, "
                f"{self.tokenizer_bytes:,} bytes)"
            )
        elif self.tokenizer is not None:
            t = self.tokenizer
            length = t["sequence_length"] or "the longest text of a batch"
            lines.append(
                f"  raw text: vocabulary of {t['vocabulary_size']:,} tokens, standardize={t['standardize']}, "
                f"split={t['split']}, ngrams={t['ngrams']}, padded to {length}; settings inside the file "
                f"(metadata {METADATA_NAME!r}, {self.tokenizer_bytes:,} bytes, read by "
                "keras_lowrank.export.TextRunner); "
                f"compared from {self.probe_shape[0]} raw texts"
            )
        if self.cast_to_float32:
            lines.append("  cast from mixed precision to float32")
        if self.fold_report is not None:
            lines.append("  " + str(self.fold_report).replace("\n", "\n  "))
        if self.unrolled:
            lines.append(f"  unrolled for dynamic batch: {', '.join(self.unrolled)}")
        return "\n".join(lines)


def export_tflite(
    model,
    path,
    *,
    quantize=None,
    fold=True,
    representative_dataset=None,
    probe=None,
    sequence_length=None,
    batch_size=None,
):
    """Exports a Keras text model to a `.tflite` file and verifies it.

    The model takes integer token ids of shape `(batch, sequence_length)`.
    The exported signature takes int32 ids; the batch is dynamic (resize the
    interpreter's input) unless `batch_size` is given. Low-rank projections
    are folded into their consumers first (`fold_projections`); a
    `LowRankEmbedding` quantized with `layer.quantize("int8")` keeps its int8
    factors in the file. Only builtin TFLite ops are allowed.

    The file has one `serving_default` signature named after the model's
    input and output, made valid signature names the way TensorFlow names
    `tf.function` parameters: each character that is not an ASCII letter or
    digit becomes `_` (accents are dropped first: `ïdś` -> `ids`), `arg_` is
    prefixed to a name not starting with a letter, `_` is appended to a
    Python keyword (`class` -> `class_`), and `_1`, `_2`, ... make the input
    and output names distinct. `ExportReport.signature` maps the Keras names
    to the file's.

    A model that takes raw text through its `TextVectorization` exports as
    the graph of its token ids (input `token_ids`) with the vocabulary and
    tokenizer settings inside the file; `keras_lowrank.export.TextRunner`
    runs it on strings, and the check compares it with Keras from the texts
    themselves. A KerasHub text task (`BertTextClassifier`, ...) exports in
    the same call: the file takes `token_ids` alone, computes the segment
    ids (0) and the padding mask (ids other than the tokenizer's pad id),
    and carries the tokenizer's vocabulary and settings
    (`keras_lowrank.export.read_task_settings`); with a preprocessor, the
    check runs the task on texts through it.

    After conversion the file is opened in `ai_edge_litert`'s interpreter:
    its signature must have exactly those names, and run on a probe batch it
    is compared with the Keras model. A missing or misnamed signature, a NaN
    output or a Flex op is an error, and then no file is written (an
    existing file at `path` is left as it was).

    Args:
        model: A built `keras.Model` with one integer input, one that takes
            raw text through a `TextVectorization`, or a KerasHub text task.
        path: Output file, must end in `.tflite`.
        quantize: `None` (float32), `"dynamic"` (int8 weights, float
            activations), `"float16"` (float16 weights), `"int8"` (full
            integer; needs `representative_dataset`) or `"int4"` (int4
            weights of the fully connected ops, one scale per output
            channel, activations quantized on the fly; AI Edge Quantizer's
            `dynamic_wi4_afp32` recipe, in the `[export]` and `[hub]`
            extras). Tables stay as the converter writes them (a float32
            gather stays float32): compress them first.
        fold: Whether to fold low-rank projections into their consumers.
        representative_dataset: For `quantize="int8"`: an array of ids
            `(n, sequence_length)`, or a callable returning an iterable of
            `[ids]` lists, as TFLite expects.
        probe: Ids `(n, sequence_length)` to compare TFLite with Keras on,
            or, for a raw-text model or a KerasHub task with a preprocessor,
            a list of texts. Default: 8 random padded sequences, or texts of
            the vocabulary's words with capitals, punctuation and unknown
            words.
        sequence_length: Needed only when the model input has no fixed
            length (and always then for recurrent layers).
        batch_size: Fix the batch dimension (default: dynamic; 1 for a
            model with a backward recurrent layer, e.g. `Bidirectional`,
            see `ExportReport.input_shape`).

    Returns:
        An `ExportReport`.

    Example:

    ```python
    report = keras_lowrank.export_tflite(model, "model.tflite", quantize="dynamic")
    print(report.bytes, report.max_abs_difference)
    ```
    """
    if quantize not in QUANTIZE_MODES:
        raise ValueError(
            "Expected `quantize` to be one of None, 'dynamic', 'float16', "
            f"'int8', 'int4', received: quantize={quantize!r}"
        )
    if quantize == "int8" and representative_dataset is None:
        raise ValueError(
            "`quantize='int8'` (full integer) needs `representative_dataset` "
            "to calibrate activation ranges, received: "
            "representative_dataset=None"
        )
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path).endswith(
        ".tflite"
    ):
        raise ValueError(
            f"Expected `path` to be a file name ending in '.tflite', received: "
            f"path={path!r}"
        )
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size <= 0):
        raise ValueError(
            "Expected `batch_size` to be None or a positive integer, received: "
            f"batch_size={batch_size!r}"
        )
    import keras

    from keras_lowrank.export import folding
    from keras_lowrank.export import keras_quantized

    backend = keras.backend.backend()
    if backend not in _CONVERTERS:
        raise ImportError(_NO_ROUTE.get(backend, f"`export_tflite` does not support the {backend!r} backend."))
    tf = _compat.import_tensorflow(
        f"`export_tflite` (the TFLite converter, also on the {backend} backend)"
    )
    _compat.require_litert("`export_tflite`")
    if quantize == "int4":
        _compat.require_quantizer("`export_tflite(quantize='int4')`")

    if not isinstance(model, keras.Model) or not model.built or not model.inputs:
        raise ValueError(
            "Expected `model` to be a built keras.Model with a defined input, "
            f"received: model={model!r}"
        )
    task = keras_hub_task.split_task(model, sequence_length)
    task_model = None
    if task is not None:
        task_model, model = model, task.ids_model
    if len(model.inputs) != 1:
        raise ValueError(
            "Expected `model` to take one input of token ids, received a model "
            f"with {len(model.inputs)} inputs"
        )
    keras_model = model
    text = raw_text.split_raw_text(model)
    if text is not None:
        model = text.ids_model
        _check_text_sequence_length(text, sequence_length)
    # Keras-int8/int4 Dense/EinsumDense (e.g. `compress(other_layers=...)`)
    # back to float32 kernels for the converter; other Keras quantization refused.
    model = keras_quantized.dequantized(model)

    seq_len = model.inputs[0].shape[1] if len(model.inputs[0].shape) > 1 else None
    if sequence_length is not None:
        if not isinstance(sequence_length, int) or sequence_length <= 0:
            raise ValueError(
                "Expected `sequence_length` to be a positive integer, received: "
                f"sequence_length={sequence_length!r}"
            )
        if seq_len is not None and seq_len != sequence_length:
            raise ValueError(
                f"`sequence_length={sequence_length}` differs from the model "
                f"input length {seq_len}"
            )
        seq_len = sequence_length

    # Checked before converting: out-of-range ids only surface deep inside
    # the converter's calibration as a long RuntimeError, and negative ids
    # would calibrate silently on garbage rows.
    vocab = _vocabulary_size(model)
    if representative_dataset is not None and not callable(representative_dataset):
        if text is not None and texts_lib.is_text_batch(representative_dataset):
            representative_dataset = text.tokenizer.tokenize(representative_dataset)
        representative_dataset = _check_ids(
            representative_dataset, "representative_dataset", vocab, seq_len
        )
    texts = task_inputs = None
    if text is not None:
        texts = texts_lib.text_list(probe, "probe") if probe is not None else _default_texts(text.tokenizer)
        probe = _tokenize_like_keras(text, texts)
    elif task is not None and task.preprocessor is not None and (probe is None or texts_lib.is_text_batch(probe)):
        # From texts through the task's own preprocessor: the file's ids and
        # derived mask are checked against what the task is given in `predict`.
        texts = texts_lib.text_list(probe, "probe") if probe is not None else _default_task_texts(task.tokenizer)
        task_inputs = task.preprocessor(texts)
        if isinstance(task_inputs, (tuple, list)):
            task_inputs = task_inputs[0]
        probe = _check_ids(keras.ops.convert_to_numpy(task_inputs["token_ids"]), "probe", vocab, seq_len)
    elif probe is not None:
        probe = _check_ids(probe, "probe", vocab, seq_len)

    export_model, cast = _as_float32(model, folding)
    fold_report = None
    if fold:
        export_model, fold_report = folding.fold_projections(export_model)

    recurrent = _recurrent_layers(export_model)
    if recurrent and seq_len is None:
        raise ValueError(
            "The model has recurrent layers "
            f"({', '.join(l.name for l in recurrent)}) and no fixed input "
            "length: pass `sequence_length`."
        )
    if batch_size is None and any(
        getattr(layer, "go_backwards", False) for layer in recurrent
    ):
        # Keras' unrolled loop zeroes the masked outputs of a backward layer
        # at the wrong (unreversed) steps, so unrolling would not reproduce
        # the model: keep the loop, which needs a static batch.
        batch_size = 1
    unroll = recurrent if batch_size is None else []
    input_shape = (batch_size, seq_len)
    signature = _signature_names(keras_model, raw_text.IDS_INPUT_NAME if text is not None else None)
    with _tables_traced_for_export(export_model):
        flatbuffer = _CONVERTERS[backend](
            export_model, input_shape, None if quantize == "int4" else quantize, representative_dataset, unroll, tf,
            names=(
                next(iter(signature["inputs"].values())),
                next(iter(signature["outputs"].values())),
            ),
        )
    if quantize == "int4":
        flatbuffer = _int4_weights(flatbuffer)
    settings = None
    if text is not None:
        settings = (METADATA_NAME, text.tokenizer.to_json().encode("utf-8"))
    elif task is not None:
        settings = (keras_hub_task.METADATA_NAME, task.settings().encode("utf-8"))
    if settings is not None:
        flatbuffer = metadata.with_metadata(flatbuffer, *settings)
    ops, flex = _ops_used(flatbuffer)
    if flex:
        raise RuntimeError(
            f"The converted model uses non-builtin ops {flex}; it would need "
            "the Flex delegate. Please report the model architecture."
        )

    if probe is None:
        probe = _default_probe(keras_model, seq_len or 16, batch_size or 8)
    probe = np.asarray(probe, dtype="int32")
    # A raw-text model is compared from the strings themselves: the file on
    # the reference tokenizer's ids against Keras on the texts.
    if task_inputs is not None:
        expected = keras.ops.convert_to_numpy(task_model(task_inputs, training=False))
    else:
        expected = keras.ops.convert_to_numpy(
            keras_model(_as_text_input(keras_model, texts) if texts is not None else probe, training=False)
        )
    # Checked on the written file, under its temporary name: what a phone
    # loads is the file, and a failed check must leave nothing at `path`.
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(flatbuffer)
        got = _verify_file(tmp, signature, probe)
        if np.isnan(got).any() and not np.isnan(expected).any():
            raise RuntimeError(
                "The TFLite model outputs NaN where Keras does not: its weights "
                "were not captured. Please report the model architecture."
            )
    difference = float(np.max(np.abs(got.astype("float64") - expected)))
    return ExportReport(
        path=os.fspath(path),
        bytes=len(flatbuffer),
        quantize=quantize,
        ops=ops,
        flex_ops=flex,
        max_abs_difference=difference,
        probe_shape=tuple(probe.shape),
        input_shape=input_shape,
        folded=bool(fold_report is not None and fold_report.applied),
        fold_report=fold_report,
        unrolled=[l.name for l in unroll],
        cast_to_float32=cast,
        signature=signature,
        tokenizer=(text.tokenizer.summary() if text is not None
                   else task.summary() if task is not None else None),
        tokenizer_bytes=len(settings[1]) if settings is not None else 0,
    )


def _verify_file(path, signature, probe):
    """Checks the file's signature names, returns its outputs on `probe`."""
    interpreter = make_interpreter(path)
    expected = {
        "inputs": list(signature["inputs"].values()),
        "outputs": list(signature["outputs"].values()),
    }
    found = interpreter.get_signature_list()
    if found.get(SIGNATURE_KEY) != expected:
        raise RuntimeError(
            f"The converted model has no {SIGNATURE_KEY!r} signature with "
            f"inputs {expected['inputs']} and outputs {expected['outputs']} "
            f"(found {found or 'no signature'}), so LiteRT's signature runner "
            "could not call it; no file was written. Please report the "
            "model's input and output names."
        )
    return run_tflite(path, probe)


def run_tflite(model_content, ids, num_threads=None):
    """Runs a TFLite flatbuffer (bytes or path) on a batch of ids.

    Uses `ai_edge_litert.interpreter.Interpreter`; resizes a dynamic batch
    to `len(ids)`, and runs a file with a fixed batch `b` in chunks of `b`
    rows. Returns the first output as a numpy array.
    """
    return run_interpreter(make_interpreter(model_content, num_threads=num_threads), ids)


def run_interpreter(interpreter, ids):
    """Runs an `ai_edge_litert` interpreter on a batch of ids (see `run_tflite`)."""
    ids = np.asarray(ids, dtype="int32")
    detail = interpreter.get_input_details()[0]
    batch = int(detail.get("shape_signature", detail["shape"])[0])
    if batch > 0 and len(ids) != batch and len(ids) % batch == 0:
        # A file exported with a fixed batch (`batch_size=1` for phones)
        # cannot be resized: its reshapes hold that batch. Run it chunk by chunk.
        prepare_interpreter(interpreter, (batch,) + ids.shape[1:])
        return np.concatenate([invoke(interpreter, ids[i : i + batch]) for i in range(0, len(ids), batch)])
    prepare_interpreter(interpreter, ids.shape)
    return invoke(interpreter, ids)


def make_interpreter(model_content, num_threads=None):
    """An `ai_edge_litert` interpreter for a flatbuffer (bytes) or a path."""
    from ai_edge_litert.interpreter import Interpreter

    if isinstance(model_content, (bytes, bytearray)):
        return Interpreter(model_content=bytes(model_content), num_threads=num_threads)
    return Interpreter(model_path=os.fspath(model_content), num_threads=num_threads)


def prepare_interpreter(interpreter, shape):
    """Resizes the input to `shape` where the signature allows, allocates."""
    detail = interpreter.get_input_details()[0]
    if tuple(detail["shape"]) != tuple(shape):
        interpreter.resize_tensor_input(detail["index"], list(shape))
    interpreter.allocate_tensors()


def invoke(interpreter, ids):
    """Sets `ids`, runs, returns a copy of the first output."""
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], ids)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).copy()


def ops_used(model_content):
    """Op name -> count in a TFLite flatbuffer (bytes or path), all subgraphs.

    Custom ops are named by their custom code (Flex ops start with "Flex").
    """
    if not isinstance(model_content, (bytes, bytearray)):
        with open(model_content, "rb") as f:
            model_content = f.read()
    return _ops_used(bytes(model_content))[0]


def _ops_used(flatbuffer):
    from ai_edge_litert import schema_py_generated as schema

    names = {
        value: name
        for name, value in vars(schema.BuiltinOperator).items()
        if not name.startswith("_")
    }
    model = schema.Model.GetRootAsModel(flatbuffer, 0)
    codes = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        if builtin == schema.BuiltinOperator.CUSTOM:
            codes.append(code.CustomCode().decode())
        else:
            codes.append(names.get(builtin, str(builtin)))
    ops = {}
    for s in range(model.SubgraphsLength()):
        graph = model.Subgraphs(s)
        for o in range(graph.OperatorsLength()):
            name = codes[graph.Operators(o).OpcodeIndex()]
            ops[name] = ops.get(name, 0) + 1
    builtin = set(names.values()) - {"CUSTOM"}
    flex = sorted(name for name in ops if name not in builtin)
    return ops, flex


@contextlib.contextmanager
def _tables_traced_for_export(model):
    """Enters each table kind's `traced_for_export` for the model's tables."""
    # A wrapped table (`PrunedEmbedding`) is listed with its wrapper: entered once.
    tables = {id(table_kinds.stored_table(layer)): layer
              for layer in _keras_private.flatten_layers(model, include_self=False)
              if table_kinds.kind_of(layer) is not None}
    with contextlib.ExitStack() as stack:
        for layer in tables.values():
            kind = table_kinds.kind_of(layer)
            if kind.traced_for_export is not None:
                stack.enter_context(kind.traced_for_export(layer))
        yield


def _as_float32(model, folding):
    """The model itself if it computes in float32, else a float32 copy."""
    import keras

    layers = list(_keras_private.flatten_layers(model, include_self=False))
    # Integer layers (a KerasHub task's tokenizer, a lookup) are not precision.
    if all(
        keras.backend.standardize_dtype(l.compute_dtype) not in ("float16", "bfloat16")
        for l in layers
        if not isinstance(l, keras.layers.InputLayer)
    ):
        return model, False
    if not (isinstance(model, keras.Sequential) or folding._is_functional(model)):
        raise ValueError(
            "Cannot cast a subclassed mixed-precision model to float32 for "
            "export; build it under the float32 policy and load its weights."
        )

    def to_float32(layer):
        if not isinstance(layer, keras.layers.Layer):
            return layer  # a plain op of the graph (e.g. `ids != 0`)
        config = layer.get_config()
        mode = getattr(layer, "quantization_mode", None)
        # Keep quantized layers quantized: only their source policy changes.
        config["dtype"] = (
            keras.dtype_policies.QuantizedDTypePolicy(mode, "float32")
            if mode is not None
            else "float32"
        )
        new = layer.__class__.from_config(config)
        return new

    copy = keras.models.clone_model(model, clone_function=to_float32)
    for src, dst in zip(model.weights, copy.weights):
        dst.assign(keras.ops.cast(src, dst.dtype))
    return copy, True


def _recurrent_layers(model):
    import keras

    found = []
    for layer in _keras_private.flatten_layers(model, include_self=False):
        if isinstance(layer, keras.layers.RNN) and not isinstance(
            layer, keras.layers.Bidirectional
        ):
            found.append(layer)
    return found


def _signature_names(model, input_name=None):
    """The `serving_default` names: `{"inputs": {keras: file}, "outputs": ...}`.

    The model's own names, as Keras' export uses them, made names that the
    converter keeps as they are (see `_signature_name`), and distinct: the
    input keeps its name, an output equal to it gets a `_1` suffix. A
    raw-text model's file takes ids, not its text: `input_name` names them.
    """
    output_names = list(getattr(model, "output_names", None) or [])
    input_name = input_name or getattr(model.inputs[0], "name", None) or "ids"
    output_name = output_names[0] if len(output_names) == 1 else "output_0"
    taken = set()
    names = {}
    for kind, name, fallback in (
        ("inputs", input_name, "ids"),
        ("outputs", output_name, "output_0"),
    ):
        file_name = _signature_name(name) or fallback
        unique, suffix = file_name, 0
        while unique in taken:
            suffix += 1
            unique = f"{file_name}_{suffix}"
        taken.add(unique)
        names[kind] = {str(name): unique}
    return names


def _signature_name(name):
    """`name` as a TFLite signature input or output name; `""` if none is left.

    TensorFlow derives a signature's names from `tf.function` parameters: a
    character that is not alphanumeric becomes `_`, and `arg_` is prefixed
    to a name not starting with a letter. Saving the signature also needs a
    graph op name (ASCII only, no leading `_`) and a Python parameter name
    (no keyword); where a name breaks a rule, the converter does not fail:
    it writes a file with no signature at all. The name returned satisfies
    every rule, so the converter keeps it unchanged.

    Args:
        name: A Keras input or output name.

    Returns:
        A string matching `[A-Za-z][A-Za-z0-9_]*` that is not a Python
        keyword, or `""` when `name` has no ASCII letter or digit.
    """
    # Accents are dropped rather than replaced, so `ïdś` reads `ids`.
    decomposed = unicodedata.normalize("NFKD", str(name or ""))
    ascii_name = "".join(
        c if c.isascii() and c.isalnum() else "_"
        for c in decomposed
        if not unicodedata.combining(c)
    )
    if not any(c.isalnum() for c in ascii_name):
        return ""
    if not ascii_name[0].isalpha():
        ascii_name = "arg_" + ascii_name
    return ascii_name + "_" if keyword.iskeyword(ascii_name) else ascii_name


def _convert_from_jax(
    model, input_shape, quantize, representative_dataset, unroll, tf, names=("ids", "output_0")
):
    """JAX backend: Keras' own SavedModel export (jax2tf), then the converter.

    The folded model is exported by `model.export(format="tf_saved_model")`
    and converted from that SavedModel with builtin ops only, under the same
    quantization options and the same checks as the TensorFlow route.
    """
    import tempfile

    import keras

    previous = [layer.unroll for layer in unroll]
    with tempfile.TemporaryDirectory() as folder:
        try:
            for layer in unroll:
                layer.unroll = True
            model.export(
                folder, format="tf_saved_model", verbose=False,
                input_signature=[keras.InputSpec(shape=input_shape, dtype="int32")],
            )
        finally:
            for layer, value in zip(unroll, previous):
                layer.unroll = value
        # Keras' export names the signature `inputs`/`output_0`; a thin
        # function over the loaded endpoint gives it the model's names, as
        # the TensorFlow route does.
        loaded = tf.saved_model.load(folder)
        input_name, output_name = names
        spec = tf.TensorSpec(list(input_shape), tf.int32, name=input_name)

        def signature(ids):
            outputs = loaded.serve(ids)
            if isinstance(outputs, (list, tuple)):
                outputs = outputs[0]
            return {output_name: outputs}

        signature = tf.function(signature, input_signature=[spec], autograph=False)
        converter = tf.lite.TFLiteConverter.from_concrete_functions(
            [signature.get_concrete_function()], loaded
        )
        _configure(converter, quantize, representative_dataset, input_shape, tf)
        return converter.convert()


def _int4_weights(flatbuffer):
    """The float32 `flatbuffer` with int4 weights: AI Edge Quantizer's `dynamic_wi4_afp32`.

    The converter has no int4 mode; the quantizer rewrites the fully
    connected (and other weight-bearing) ops of a float32 file to int4
    weights with one scale per output channel, their inputs quantized on
    the fly (dynamic range). Weight-only int4 (`weight_only_wi4_afp32`)
    keeps float matmuls and runs many times slower on CPU, so it is not
    offered.
    """
    import contextlib
    import io

    from ai_edge_quantizer import quantizer
    from ai_edge_quantizer import recipe

    # The quantizer prints progress bars and a summary: an export is quiet.
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        result = quantizer.Quantizer(bytes(flatbuffer), recipe.dynamic_wi4_afp32()).quantize()
    return bytes(result.quantized_model)


def _configure(converter, quantize, representative_dataset, input_shape, tf):
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif quantize == "int8":
        # Integer kernels where TFLite has them, float builtins otherwise
        # (the mask arithmetic); never Select TF ops.
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
            tf.lite.OpsSet.TFLITE_BUILTINS,
        ]
        converter.representative_dataset = _representative(
            representative_dataset, input_shape
        )


def _convert(
    model, input_shape, quantize, representative_dataset, unroll, tf, names=("ids", "output_0")
):
    input_name, output_name = names
    spec = tf.TensorSpec(list(input_shape), tf.int32, name=input_name)

    @tf.function(input_signature=[spec])
    def serve(ids):
        return model(ids, training=False)

    previous = [layer.unroll for layer in unroll]
    try:
        for layer in unroll:
            layer.unroll = True
        concrete = serve.get_concrete_function()
    finally:
        for layer, value in zip(unroll, previous):
            layer.unroll = value
    frozen = _keras_private.freeze_concrete_function(concrete)

    # Freezing drops the structured signature, and without one the file has
    # no SignatureDef: LiteRT's `get_signature_runner()` and Android's
    # `runSignature` could not run it. A thin function over the frozen one
    # restores named input and output; given a trackable object, the converter
    # lowers it through a SavedModel and writes it as `serving_default`.
    def signature(*args):
        outputs = frozen(*args)
        if isinstance(outputs, (list, tuple)):
            outputs = outputs[0]
        return {output_name: outputs}

    signature = tf.function(signature, input_signature=[spec], autograph=False)
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [signature.get_concrete_function()], tf.Module()
    )
    _configure(converter, quantize, representative_dataset, input_shape, tf)
    return converter.convert()


# Backend -> conversion route. PyTorch has none here: see `_NO_ROUTE`.
_CONVERTERS = {"tensorflow": _convert, "jax": _convert_from_jax}
_NO_ROUTE = {
    "torch": (
        "`export_tflite` has no PyTorch route: save the model (`model.save("
        "'m.keras')`) and export it under KERAS_BACKEND=tensorflow (or jax), "
        "or use Keras' own LiteRT export, `model.export('m.tflite', "
        "format='litert')`, with the `litert-torch` package (no folding or "
        "parity check)."
    ),
}


def _representative(dataset, input_shape):
    if callable(dataset):
        return dataset
    ids = np.asarray(dataset, dtype="int32")
    if ids.ndim != 2:
        raise ValueError(
            "Expected `representative_dataset` to be ids of shape (n, "
            f"sequence_length) or a callable, received shape {ids.shape}"
        )
    step = input_shape[0] or 1

    def generate():
        for start in range(0, len(ids) - step + 1, step):
            yield [ids[start : start + step]]

    return generate


def _vocabulary_size(model):
    """The largest `input_dim` of the model's tables, `None` if there is none.

    The largest, not the first: a transformer's segment and position tables
    (2 or 512 rows) come before or next to its token table.
    """
    sizes = [
        layer.input_dim
        for layer in _keras_private.flatten_layers(model, include_self=False)
        if isinstance(getattr(layer, "input_dim", None), int) and not isinstance(layer.input_dim, bool)
    ]
    return max(sizes) if sizes else None


def _check_ids(ids, argument, vocab, seq_len):
    """`ids` as an int32 array, or a one-line `ValueError` on what is wrong."""
    array = np.asarray(ids)
    if array.ndim != 2 or array.shape[0] == 0:
        raise ValueError(
            f"Expected `{argument}` to be token ids of shape (n, sequence_length) "
            f"with n >= 1, received shape {array.shape}"
        )
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(
            f"Expected `{argument}` to hold integer token ids, received dtype {array.dtype}"
        )
    if seq_len is not None and array.shape[1] != seq_len:
        raise ValueError(
            f"Expected `{argument}` to have sequence length {seq_len} (the model's "
            f"input length), received shape {array.shape}"
        )
    low, high = int(array.min()), int(array.max())
    if low < 0 or (vocab is not None and high >= vocab):
        bad = low if low < 0 else high
        where = tuple(int(i) for i in np.argwhere(array == bad)[0])
        bound = f"[0, {vocab})" if vocab is not None else ">= 0"
        raise ValueError(
            f"Expected `{argument}` ids in {bound} (the embedding's vocabulary), "
            f"received id {bad} at index {where}"
        )
    return array.astype("int32")


def _default_probe(model, seq_len, batch):
    """Random padded id sequences within the vocabulary (the largest table)."""
    vocab = _vocabulary_size(model)
    vocab = vocab if vocab is not None and vocab > 1 else 2
    rng = np.random.default_rng(0)
    ids = rng.integers(1, vocab, size=(batch, seq_len)).astype("int32")
    lengths = rng.integers(1, seq_len + 1, size=batch)
    for row, length in enumerate(lengths):
        ids[row, length:] = 0
    return ids


def _check_text_sequence_length(text, sequence_length):
    """A raw-text model's length is its `TextVectorization`'s: one line otherwise."""
    fixed = text.tokenizer.sequence_length
    if sequence_length is None or sequence_length == fixed:
        return
    if fixed is None:
        raise ValueError(
            f"`sequence_length={sequence_length!r}` cannot be used for a raw-text model: its "
            f"TextVectorization {text.layer.name!r} pads each batch to its longest text; set its "
            "`output_sequence_length` to fix the length"
        )
    raise ValueError(
        f"`sequence_length={sequence_length!r}` differs from the output_sequence_length {fixed} "
        f"of the model's TextVectorization {text.layer.name!r}"
    )


def _default_texts(tokenizer):
    """Probe strings from the vocabulary, with case, punctuation and unknown words."""
    rng = np.random.default_rng(0)
    words = [w for w in tokenizer.vocabulary[2:] if w] or ["text"]
    texts = []
    for length in (1, 3, 7, 12, 25, 40, 2, 9):
        picked = [str(words[i]) for i in rng.integers(0, len(words), size=length)]
        texts.append(" ".join(picked))
    texts[1] = texts[1].upper() + "!"
    texts[2] = "Qzxv, " + texts[2] + " -- unknownword?"
    texts[3] = "\t " + texts[3].replace(" ", "  ") + " \n"
    return texts


def _default_task_texts(tokenizer):
    """Probe texts of a task: words of its tokenizer's vocabulary, and unknown ones."""
    rng = np.random.default_rng(0)
    vocabulary = [str(t) for t in tokenizer.get_vocabulary()] if tokenizer is not None else []
    words = [w for w in vocabulary if w.isalpha() and not w.startswith("[")] or ["text"]
    texts = [" ".join(words[i] for i in rng.integers(0, len(words), size=n)) for n in (1, 4, 9, 30)]
    return texts + ["Qzxv, unknown words!", texts[2].upper()]


def _as_text_input(model, texts):
    """`texts` as a `tf.string` tensor shaped like the model's string input."""
    import tensorflow as tf

    tensor = tf.constant(list(texts), dtype=tf.string)
    return tensor[:, None] if tuple(model.inputs[0].shape[1:]) == (1,) else tensor


def _tokenize_like_keras(text, texts):
    """The reference tokenizer's ids for `texts`, checked against the layer's own."""
    import keras
    import tensorflow as tf

    ids = text.tokenizer.tokenize(texts)
    keras_ids = keras.ops.convert_to_numpy(text.layer(tf.constant(list(texts), dtype=tf.string)))
    if keras_ids.shape != ids.shape or not np.array_equal(keras_ids, ids):
        rows = [i for i in range(len(texts)) if i >= len(keras_ids) or not np.array_equal(keras_ids[i], ids[i])]
        raise RuntimeError(
            f"The reference tokenizer differs from TextVectorization {text.layer.name!r} on the text "
            f"{texts[rows[0]]!r:.80}, so the file could not be run from raw text; no file was written. "
            "Please report the layer's settings."
        )
    return ids
