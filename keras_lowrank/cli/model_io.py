"""Loading and saving `.keras` files for the command line, with one-line errors.

Every mistake a user can make with a model path (missing file, not a `.keras`
archive, custom objects that are not importable) becomes a `CLIError` whose
message says what is wrong and how to fix it. Nothing here trains or converts.
"""

import contextlib
import importlib
import os
import re
import stat
import warnings
import zipfile

from keras_lowrank.cli.errors import CLIError
from keras_lowrank.utils import texts as texts_lib
from keras_lowrank.utils.atomic_write import name_max


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
    path = os.fspath(path)
    if os.path.isdir(path):
        raise CLIError(
            f"{path} is a folder; expected a .keras file (a SavedModel folder is not supported)"
        )
    check_input_file(path)
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


def check_input_file(path, option=None):
    """Checks that `path` is a regular file the command can read.

    Only regular files (or links to one) are read: a named pipe would block
    the command forever on its first read, a device would be read without
    end.

    Args:
        path: The file the command will read.
        option: The flag that named `path` (e.g. `"--train"`), quoted in the
            messages; `None` for a positional argument.

    Raises:
        CLIError: When `path` is missing, a folder or not a regular file.
    """
    path = os.fspath(path)
    named = f"{option}: " if option else ""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise CLIError(f"{named}no such file: {path}") from None
    except OSError as error:
        raise CLIError(f"{named}cannot read {path}: {error.strerror or type(error).__name__}") from None
    if stat.S_ISDIR(mode):
        raise CLIError(f"{named}expected a file, received a folder: {path}")
    if not stat.S_ISREG(mode):
        raise CLIError(
            f"{named}expected a regular file, received a named pipe, device or socket: {path}"
        )


def same_file(a, b):
    """Whether paths `a` and `b` name one file (through links, `..` or hard links)."""
    a, b = os.fspath(a), os.fspath(b)
    try:
        return os.path.samefile(a, b)
    except OSError:
        # One of them does not exist yet: compare where they would be.
        return os.path.realpath(a) == os.path.realpath(b)


def check_output_path(path, suffix=None, *, overwrite=False, option=None, inputs=(), outputs=()):
    """Checks, before any work, that a command can write a file at `path`.

    Every subcommand calls this for every file it will write, so a mistake
    costs a one-line error up front rather than a failure after minutes of
    work. The rule is the same everywhere: the output is never one of the
    command's inputs (whatever the links or spelling), an existing file is
    replaced only with `--overwrite`, the folder that will hold the file must
    already exist (it is never created implicitly) and be writable, `path`
    must not be a folder, and its name must fit the folder's name length
    limit.

    Args:
        path: The file the command will write.
        suffix: The required suffix (`".keras"`) or a tuple of accepted
            suffixes; `None` accepts any name.
        overwrite: Whether an existing file may be replaced; when `False`, an
            existing file is an error that suggests `--overwrite`.
        option: The flag that named `path` (e.g. `"--json"`), quoted in the
            messages; `None` for a positional argument.
        inputs: `(flag or None, path)` pairs of the files the command reads;
            `None` paths are skipped.
        outputs: `(flag or None, path)` pairs of the other files the command
            writes, which must differ from `path`.

    Raises:
        CLIError: Naming the rule `path` breaks.
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
    for kind, others in (("input", inputs), ("output", outputs)):
        for other_option, other in others:
            if other is not None and same_file(path, other):
                other_named = f"{other_option} " if other_option else ""
                raise CLIError(
                    f"{named}output {path} is the same file as the {other_named}{kind} "
                    f"{other}; write to another file"
                )
    if os.path.lexists(path) and not overwrite:
        raise CLIError(f"{path} already exists; pass --overwrite to replace it")
    if os.path.exists(path) and not os.path.isfile(path):
        raise CLIError(f"{named}output {path} is not a regular file; expected a file to replace")
    # A link is written through (see `atomic_path`): the file it points to
    # is the one replaced, in its own folder.
    target = os.path.realpath(path)
    folder, name = os.path.split(target)
    _check_writable_folder(folder, option)
    limit = name_max(folder)
    if len(os.fsencode(name)) > limit:
        raise CLIError(
            f"{named}output file name is {len(os.fsencode(name))} bytes long, over the "
            f"limit of {limit} of its folder: {path}"
        )


@contextlib.contextmanager
def writing(path, option=None):
    """Turns an `OSError` while writing `path` into a one-line `CLIError`.

    A full disk, an exceeded quota, a read-only or vanished folder surface
    while the file is written; `atomic_path` has then already removed the
    temporary file and left any old `path` as it was.

    Args:
        path: The file being written, named in the message.
        option: The flag that named it, if any.
    """
    try:
        yield
    except OSError as error:
        named = f"{option} " if option else ""
        reason = error.strerror or _first_line(error)
        raise CLIError(f"could not write {named}{path}: {reason}") from error


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


def load_arrays(path, option, required=(), optional=None):
    """Reads the arrays of a `.npz` file, with one-line errors naming the file.

    Args:
        path: The `.npz` file.
        option: The flag that named it (e.g. `"--fine-tune"`), for messages.
        required: Names of the arrays the file must hold.
        optional: Names of further arrays read when present; `None` reads
            every array of the file.

    Returns:
        A dict of array name -> `np.ndarray`.

    Raises:
        CLIError: When `path` is not a regular file, not a `.npz` archive
            (empty, truncated, a `.npy` array, a pickle), lacks a required
            array, or one of its arrays cannot be read.
    """
    import zlib

    import numpy as np

    check_input_file(path, option)
    expected = "a .npz file" + (f" with arrays {', '.join(required)}" if required else "")
    # Each of these is how numpy reports a file that is not a readable
    # archive: empty (EOFError), damaged (BadZipFile, zlib.error), a pickle
    # or a text file (ValueError, OSError).
    unreadable = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)
    try:
        data = np.load(path, allow_pickle=False)
    except unreadable as error:
        raise CLIError(f"{option}: {path} is not {expected} ({_first_line(error)})") from error
    if not hasattr(data, "files"):
        raise CLIError(f"{option}: {path} holds a single .npy array; expected {expected}")
    with data:
        missing = [key for key in required if key not in data.files]
        if missing:
            raise CLIError(f"{option}: {path} lacks array(s) {missing}; found {sorted(data.files)}")
        names = data.files if optional is None else [*required, *optional]
        try:
            return {key: data[key] for key in names if key in data.files}
        except unreadable as error:
            raise CLIError(f"{option}: could not read {path}: {_first_line(error)}") from error


def integer_labels(labels, source, lines=None):
    """Class ids as an `int64` array, refusing any label that is not an integer.

    A label such as `1.7` would otherwise be truncated to class 1 without a
    word. Integer-valued floats (`2.0`, as pandas writes an integer column
    holding a gap) are accepted.

    Args:
        labels: A numeric array, or a sequence of label strings (from a CSV).
        source: The file they come from, named in the message.
        lines: For strings, the line number of each label in the file.

    Returns:
        A 1-D `np.ndarray` of `int64` (or the array's own shape for arrays).

    Raises:
        CLIError: Naming the file and the first label that is not an integer.
    """
    import numpy as np

    if isinstance(labels, np.ndarray) and labels.dtype.kind in "biu":
        return labels.astype(np.int64)
    if isinstance(labels, np.ndarray) and labels.dtype.kind == "f":
        good = np.isfinite(labels) & (labels == np.round(labels)) & (np.abs(labels) < 2.0**63)
        if not np.all(good):
            index = tuple(int(i) for i in np.argwhere(~good)[0])
            where = f"row {index[0]}" if len(index) == 1 else f"index {index}"
            raise CLIError(
                f"{source}: labels must be integer class ids, received {labels[index].item()!r} ({where})"
            )
        return labels.astype(np.int64)
    if isinstance(labels, np.ndarray) and labels.dtype.kind != "U" and labels.dtype.kind != "O":
        raise CLIError(f"{source}: labels must be integer class ids, received dtype {labels.dtype}")
    values = []
    for i, label in enumerate(np.asarray(labels, dtype=object).reshape(-1)):
        value = _integer(label)
        if value is None:
            where = f"line {lines[i]}" if lines is not None else f"row {i}"
            raise CLIError(f"{source}, {where}: labels must be integer class ids, received {label!r}")
        values.append(value)
    return np.asarray(values, dtype=np.int64).reshape(np.shape(labels))


def _integer(label):
    # `int(float("inf"))` raises OverflowError and `int(float("1.7"))` is 1:
    # only text naming an integer that fits int64 is a class id.
    text = str(label).strip()
    try:
        value = int(text)
    except ValueError:
        try:
            number = float(text)
        except ValueError:
            return None
        if not (number == number and abs(number) < 2.0**63 and number.is_integer()):
            return None
        value = int(number)
    return value if -(2**63) <= value < 2**63 else None


def text_input(model):
    """The model's single string input (a `KerasTensor`), or `None`.

    A model that holds its own `TextVectorization` (or `StringLookup`) takes
    raw text: `keras.Input(shape=(), dtype="string")` or `shape=(1,)`.
    """
    from keras_lowrank.export.raw_text import takes_text

    inputs = getattr(model, "inputs", None) or []
    return inputs[0] if len(inputs) == 1 and takes_text(model) else None


def model_texts(model, texts, source):
    """Texts as the model's string input takes them in `fit`/`evaluate`/`predict`.

    On the TensorFlow backend Keras 3 refuses numpy arrays of `str` (`<U`)
    or `bytes` (`S`) (e.g. "Invalid dtype: str832"), and a 2-D object array as
    "Invalid dtype: object"; a `tf.string` tensor is accepted whatever its
    shape. The texts are shaped to the input: `(n,)` for `shape=()`,
    `(n, 1)` for `shape=(1,)`.

    Args:
        model: The loaded `keras.Model`, taking raw text (see `text_input`).
        texts: A sequence or array of `n` texts (`str` or `bytes`), of
            shape `(n,)` or `(n, 1)`.
        source: Where the texts come from (e.g. `"--train data.csv"`), for
            messages.

    Returns:
        A `tf.string` tensor of shape `(n,)` or `(n, 1)`.

    Raises:
        CLIError: When the model's string input takes another shape, or
            TensorFlow (which holds the string ops) is not installed.
    """
    spec = text_input(model)
    shape = tuple(spec.shape[1:])
    if shape not in ((), (1,)):
        raise CLIError(
            f"{source}: the model takes raw text of shape {shape} per example; "
            "only inputs of shape () or (1,) (one text per example) can be fed from a file"
        )
    try:
        texts = texts_lib.text_list(texts, "texts")
    except ValueError as error:
        raise CLIError(f"{source}: {error}") from None
    try:
        import tensorflow as tf
    except ImportError as error:
        raise CLIError(
            f"{source}: the model takes raw text, which needs TensorFlow: pip install keras-lowrank[cpu]"
        ) from error
    tensor = tf.constant(texts, dtype=tf.string)
    return tensor[:, None] if shape == (1,) else tensor


def check_fine_tune_data(model, x, y, validation=None, *, source="--fine-tune"):
    """Checks fine-tune arrays against `model` before any training starts.

    A label or id out of range otherwise surfaces from inside `fit` as a
    "Graph execution error" that names neither the split nor the value.
    Labels must be finite class indices in `[0, num_classes)` given the width
    of the model's output (`{0, 1}` for a one-unit output); one-hot labels
    whose width matches the output are accepted as they are. Ids must be in
    `[0, input_dim)` of the model's first embedding table, and the sequence
    length must match a fixed input length. A model that takes raw strings
    gets its texts as they are (see `model_texts`); only its labels are
    checked. Texts for a model that takes ids, and ids for a model that
    takes raw text, are refused.

    Args:
        model: The loaded `keras.Model`.
        x, y: Training ids `(n, sequence_length)` (or texts) and labels.
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
    takes_text = text_input(model) is not None
    outputs = getattr(model, "outputs", None) or []
    width = outputs[0].shape[-1] if len(outputs) == 1 and len(outputs[0].shape) > 1 else None

    for x_name, y_name, ids, labels in splits:
        ids, labels = np.asarray(ids), np.asarray(labels)
        text = takes_text and ids.dtype.kind in "OUS"
        if takes_text and not text:
            raise CLIError(
                f"{source}: {x_name} holds {ids.dtype} values, but the model takes raw text "
                "(a string input): pass texts, a .csv/.tsv with text and label columns "
                "(--train/--validation) or a .npz whose x holds strings"
            )
        if not takes_text and ids.dtype.kind in "OUS":
            raise CLIError(
                f"{source}: {x_name} holds texts, but the model takes integer token ids "
                f"(n, sequence_length), not raw text: pass a .npz with arrays x (ids) and y"
            )
        if not text and (ids.ndim < 2 or not np.issubdtype(ids.dtype, np.integer)):
            raise CLIError(
                f"{source}: {x_name} must be an integer array of token ids "
                f"(n, sequence_length), received shape {ids.shape} and dtype {ids.dtype}"
            )
        if len(ids) != len(labels) or len(ids) == 0:
            raise CLIError(
                f"{source}: {x_name} and {y_name} must be non-empty and of equal "
                f"length, received {len(ids)} and {len(labels)}"
            )
        if not text and length is not None and ids.shape[1] != length:
            raise CLIError(
                f"{source}: {x_name} has sequence length {ids.shape[1]}, the model "
                f"takes {length}; received shape {ids.shape}"
            )
        if not text and vocab is not None:
            low, high = int(ids.min()), int(ids.max())
            if low < 0 or high >= vocab:
                bad = low if low < 0 else high
                row = int(np.argwhere(ids == bad)[0][0])
                raise CLIError(
                    f"{source}: {x_name} holds id {bad} (row {row}); the embedding "
                    f"{embeddings[0][0]!r} has input_dim {vocab}, so ids must be in [0, {vocab})"
                )
        if not np.issubdtype(labels.dtype, np.number) and labels.dtype != bool:
            raise CLIError(f"{source}: {y_name} must hold numeric labels, received dtype {labels.dtype}")
        finite = np.isfinite(labels)
        if not np.all(finite):
            row = int(np.argwhere(~finite)[0][0])
            bad = labels.reshape(len(labels), -1)[row][~finite.reshape(len(labels), -1)[row]][0]
            raise CLIError(f"{source}: {y_name} holds label {bad.item()!r} (row {row}); labels must be finite")
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
        flat = flat[:, 0].astype(np.float64)
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
