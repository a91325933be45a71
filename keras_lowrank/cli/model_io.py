"""Loading and saving `.keras` files for the command line, with one-line errors.

Every mistake a user can make with a model path (missing file, not a `.keras`
archive, custom objects that are not importable) becomes a `CLIError` whose
message says what is wrong and how to fix it. Nothing here trains or converts.
"""

import importlib
import os
import re
import warnings
import zipfile

from keras_lowrank.cli.errors import CLIError


def import_custom_modules(module_names):
    """Imports user modules so their registered custom objects are known."""
    for name in module_names or ():
        if not name or name.startswith(".") or name.endswith((".py", "/")) or os.sep in name:
            raise CLIError(
                f"--custom-module expects an absolute module name such as "
                f"'mypackage.layers' (importable from sys.path), received: {name!r}"
            )
        try:
            importlib.import_module(name)
        except KeyboardInterrupt:
            raise
        except SyntaxError as error:
            where = f" ({error.filename}, line {error.lineno})" if error.filename else ""
            raise CLIError(
                f"could not import --custom-module {name!r}: SyntaxError: {error.msg}{where}"
            ) from error
        except Exception as error:
            # Whatever the module raises at import time is the user's code
            # failing, not ours: name the module and the error in one line.
            raise CLIError(
                f"could not import --custom-module {name!r}: "
                f"{type(error).__name__}: {_first_line(error)}"
            ) from error


def load_model(path, *, compile=False, custom_modules=()):
    """Loads a `.keras` model, turning every user error into a `CLIError`.

    Args:
        path: Path of a Keras 3 `.keras` archive.
        compile: Whether to restore the saved training configuration (loss,
            metrics); the optimizer state is never needed by the commands.
        custom_modules: Names of modules to import first, so that custom
            classes they register with Keras can be deserialized.

    Returns:
        The loaded `keras.Model`.
    """
    import_custom_modules(custom_modules)
    if not os.path.exists(path):
        raise CLIError(f"no such file: {path}")
    if os.path.isdir(path):
        raise CLIError(
            f"{path} is a folder; expected a .keras file (a SavedModel folder is not supported)"
        )
    if path.endswith((".h5", ".hdf5")):
        raise CLIError(
            f"{path} is a legacy HDF5 file; load it in Keras and save it again "
            "with model.save('model.keras')"
        )
    if not path.endswith(".keras") or not zipfile.is_zipfile(path):
        raise CLIError(
            f"{path} is not a Keras 3 .keras file; save the model with model.save('model.keras')"
        )

    import keras

    _register_package_objects()
    try:
        with warnings.catch_warnings():
            # A compiled model's optimizer slots are restored lazily; the
            # commands build their own optimizer, so the mismatch is noise.
            warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
            return keras.saving.load_model(path, compile=compile)
    except (TypeError, ValueError, KeyError, AttributeError, OSError, zipfile.BadZipFile) as error:
        missing = _unknown_object(error)
        if missing is not None:
            raise CLIError(
                f"{path} needs the custom {missing}, which is not registered; pass "
                "--custom-module with the module that defines it (decorated with "
                "@keras.saving.register_keras_serializable)"
            ) from error
        raise CLIError(f"could not load {path}: {_first_line(error)}") from error


def _register_package_objects():
    # Importing these modules runs their `register_keras_serializable`
    # decorators, so models holding LowRankEmbedding, CALR optimizers, the
    # bundled models' blocks or folded lookups load without --custom-module.
    import keras_lowrank.export  # noqa: F401
    import keras_lowrank.layers  # noqa: F401
    import keras_lowrank.models  # noqa: F401
    import keras_lowrank.schedules  # noqa: F401


_UNKNOWN_OBJECT = re.compile(r"Could not locate (class|function) '([^']+)'")


def _unknown_object(error):
    """Returns "class 'X'" when Keras failed on an unregistered object."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        match = _UNKNOWN_OBJECT.search(str(error))
        if match:
            return f"{match.group(1)} '{match.group(2)}'"
        error = error.__cause__ or error.__context__
    return None


def _first_line(error):
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def check_output_path(path, suffix=None, *, overwrite=True, option=None):
    """Checks, before any work, that a command can write a file at `path`.

    Every subcommand calls this for every file it will write, so a mistake
    costs a one-line error up front rather than a failure after minutes of
    work. The rule is the same everywhere: the folder that will hold the file
    must already exist (it is never created implicitly) and be writable, and
    `path` must not be a folder.

    Args:
        path: The file the command will write.
        suffix: The required suffix (`".keras"`) or a tuple of accepted
            suffixes; `None` accepts any name.
        overwrite: Whether an existing file may be replaced; when `False`, an
            existing file is an error that suggests `--overwrite`.
        option: The flag that named `path` (e.g. `"--json"`), quoted in the
            messages; `None` for a positional argument.
    """
    path = os.fspath(path)
    named = f"{option} " if option else ""
    if not path:
        raise CLIError(f"{named}output path is empty")
    if os.path.isdir(path):
        raise CLIError(f"{named}output path is a folder; expected a file, received: {path}")
    if suffix is not None:
        suffixes = (suffix,) if isinstance(suffix, str) else tuple(suffix)
        if not path.lower().endswith(tuple(s.lower() for s in suffixes)):
            raise CLIError(
                f"{named}output path must end with {' or '.join(suffixes)}, received: {path}"
            )
    if os.path.exists(path) and not overwrite:
        raise CLIError(f"{path} already exists; pass --overwrite to replace it")
    _check_writable_folder(os.path.dirname(os.path.abspath(path)), option)


def check_output_folder(path, *, option=None):
    """Checks, before any work, that a command can write files into folder `path`.

    The folder itself is created by the command when missing, but its parent
    must exist: the same rule as `check_output_path`, so a typo in a parent
    never silently creates a tree of folders.

    Args:
        path: The output folder.
        option: The flag that named it (e.g. `"--output"`), for the messages.
    """
    path = os.fspath(path)
    named = f"{option} " if option else ""
    if os.path.exists(path) and not os.path.isdir(path):
        raise CLIError(f"{named}must be a folder, received a file: {path}")
    if os.path.isdir(path):
        _check_writable_folder(os.path.abspath(path), option)
    else:
        _check_writable_folder(os.path.dirname(os.path.abspath(path)), option)


def _check_writable_folder(folder, option):
    named = f" for {option}" if option else ""
    if not os.path.isdir(folder):
        if os.path.exists(folder):
            raise CLIError(f"output folder{named} is a file, not a folder: {folder}")
        raise CLIError(f"output folder{named} does not exist: {folder}")
    # Probing with a real file also catches read-only filesystems and runs
    # as root, where `os.access` always says yes.
    import tempfile

    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise CLIError(f"output folder{named} is not writable ({reason}): {folder}") from error


def embedding_layers(model):
    """Returns `(path, layer)` for every Embedding or LowRankEmbedding of `model`."""
    from keras_lowrank.surgery import find_embeddings

    return find_embeddings(model, include_factorized=True)


def check_fine_tune_data(model, x, y, validation=None, *, source="--fine-tune"):
    """Checks fine-tune arrays against `model` before any training starts.

    A label or id out of range otherwise surfaces from inside `fit` as a
    "Graph execution error" that names neither the split nor the value.
    Labels must be class indices in `[0, num_classes)` given the width of the
    model's output (`{0, 1}` for a one-unit output); one-hot labels whose
    width matches the output are accepted as they are. Ids must be in
    `[0, input_dim)` of the model's first embedding table, and the sequence
    length must match a fixed input length.

    Args:
        model: The loaded `keras.Model`.
        x, y: Training ids `(n, sequence_length)` and labels.
        validation: `None` or `(x_val, y_val)`.
        source: Where the arrays come from (the `.npz` path), for messages.

    Raises:
        CLIError: Naming the split, the offending value and the valid range.
    """
    import numpy as np

    splits = [("x", "y", x, y)]
    if validation is not None:
        splits.append(("x_val", "y_val", validation[0], validation[1]))
    embeddings = embedding_layers(model)
    vocab = int(embeddings[0][1].input_dim) if embeddings else None
    inputs = getattr(model, "inputs", None) or []
    length = inputs[0].shape[1] if len(inputs) == 1 and len(inputs[0].shape) > 1 else None
    outputs = getattr(model, "outputs", None) or []
    width = outputs[0].shape[-1] if len(outputs) == 1 and len(outputs[0].shape) > 1 else None

    for x_name, y_name, ids, labels in splits:
        ids, labels = np.asarray(ids), np.asarray(labels)
        if ids.ndim < 2 or not np.issubdtype(ids.dtype, np.integer):
            raise CLIError(
                f"{source}: {x_name} must be an integer array of token ids "
                f"(n, sequence_length), received shape {ids.shape} and dtype {ids.dtype}"
            )
        if len(ids) != len(labels) or len(ids) == 0:
            raise CLIError(
                f"{source}: {x_name} and {y_name} must be non-empty and of equal "
                f"length, received {len(ids)} and {len(labels)}"
            )
        if length is not None and ids.shape[1] != length:
            raise CLIError(
                f"{source}: {x_name} has sequence length {ids.shape[1]}, the model "
                f"takes {length}; received shape {ids.shape}"
            )
        if vocab is not None:
            low, high = int(ids.min()), int(ids.max())
            if low < 0 or high >= vocab:
                bad = low if low < 0 else high
                row = int(np.argwhere(ids == bad)[0][0])
                raise CLIError(
                    f"{source}: {x_name} holds id {bad} (row {row}); the embedding "
                    f"{embeddings[0][0]!r} has input_dim {vocab}, so ids must be in [0, {vocab})"
                )
        if width is None:
            continue
        if labels.ndim == 2 and labels.shape[1] == width and width > 1:
            continue  # One-hot (or soft) labels for a categorical loss.
        flat = labels.reshape(len(labels), -1)
        if flat.shape[1] != 1:
            raise CLIError(
                f"{source}: {y_name} must hold one class index per example (or "
                f"one-hot rows of width {width}), received shape {labels.shape}"
            )
        flat = flat[:, 0]
        if not np.issubdtype(flat.dtype, np.number) or not np.all(np.isfinite(flat)):
            raise CLIError(f"{source}: {y_name} must hold finite numeric labels, received dtype {labels.dtype}")
        classes = max(int(width), 2)
        integral = np.all(flat == np.round(flat))
        if int(width) > 1 and not integral:
            bad = flat[flat != np.round(flat)][0]
            raise CLIError(
                f"{source}: {y_name} holds label {bad:g}; class indices must be "
                f"integers in [0, {classes})"
            )
        low, high = float(flat.min()), float(flat.max())
        if low < 0 or high > classes - 1:
            bad = low if low < 0 else high
            row = int(np.argwhere(flat == bad)[0][0])
            raise CLIError(
                f"{source}: {y_name} holds label {bad:g} (row {row}); the model has "
                f"{int(width)} output(s), so labels must be in [0, {classes - 1}]"
            )
