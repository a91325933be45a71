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
        try:
            importlib.import_module(name)
        except ImportError as error:
            raise CLIError(f"could not import --custom-module {name!r}: {error}") from error


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


def check_output_path(path, suffix, *, overwrite):
    """Validates an output path's suffix and refuses to overwrite silently."""
    if not path.endswith(suffix):
        raise CLIError(f"output path must end with {suffix}, received: {path}")
    if os.path.exists(path) and not overwrite:
        raise CLIError(f"{path} already exists; pass --overwrite to replace it")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise CLIError(f"output folder does not exist: {parent}")


def embedding_layers(model):
    """Returns `(path, layer)` for every Embedding or LowRankEmbedding of `model`."""
    from keras_lowrank.surgery import find_embeddings

    return find_embeddings(model, include_factorized=True)
