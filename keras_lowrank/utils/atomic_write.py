"""Atomic file writes: a file is complete and new, or old and untouched.

Every file the package writes (`.keras`, `.tflite`, JSON, Markdown, plots)
goes through `atomic_path`: the writer fills a temporary file in the target's
own folder and, only once it succeeded, the temporary file is renamed over the
target with `os.replace` (atomic on POSIX and Windows when both are on the
same filesystem, which the same folder guarantees). An exception, including a
`KeyboardInterrupt`, deletes the temporary file and leaves the old target, if
any, exactly as it was.
"""

import contextlib
import json
import os
import secrets
import stat

TEMP_MARKER = ".tmp-"


def _temporary_name(path):
    folder, name = os.path.split(os.path.abspath(path))
    # Every suffix stays, last: Keras refuses to save a model to a name not
    # ending in `.keras` (weights: `.weights.h5`), and matplotlib picks the
    # image format from it.
    stem, dot, suffixes = name.lstrip(".").partition(".")
    return os.path.join(folder, f".{stem}{TEMP_MARKER}{secrets.token_hex(4)}{dot}{suffixes}")


def _fsync(path):
    # Flushes the new content to disk before the rename, so a crash right
    # after the rename cannot expose an empty file under the target's name.
    if not os.path.isfile(path):
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _default_mode():
    # `umask` can only be read by setting it; restored immediately.
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path that replaces `path` when the block succeeds.

    The temporary file lives in the folder of `path` and keeps its suffix, so
    writers that check or infer the format from the file name (Keras'
    `model.save`, matplotlib's `savefig`) work unchanged. If the block raises
    (any exception, `KeyboardInterrupt` included), the temporary file is
    removed and `path` keeps its previous content; nothing partial is ever
    visible under `path`.

    Example:

    ```python
    with atomic_path("plot.png") as tmp:
        figure.savefig(tmp)
    ```

    Args:
        path: The file to write (a string or path-like). Its folder must exist.

    Yields:
        The temporary path (a string) to write to.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise ValueError(f"Expected `path` to be a file path, received a folder: {path}")
    tmp = _temporary_name(path)
    try:
        yield tmp
        if not os.path.exists(tmp):
            raise ValueError(f"Expected the writer to create {tmp} for {path}; it wrote nothing")
        _fsync(tmp)
        # A replaced file keeps its permissions; a new one gets the usual
        # umask-derived mode rather than the writer's (mkstemp-style 0600).
        if os.path.exists(path):
            mode = stat.S_IMODE(os.stat(path).st_mode)
        else:
            mode = _default_mode()
        if os.path.isfile(tmp):
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            if os.path.isdir(tmp):
                import shutil

                shutil.rmtree(tmp)
            elif os.path.lexists(tmp):
                os.remove(tmp)
        raise


@contextlib.contextmanager
def atomic_open(path, mode="w", **kwargs):
    """Opens a temporary file that atomically replaces `path` on success.

    Args:
        path: The file to write.
        mode: A writing mode of `open` (`"w"` or `"wb"`).
        **kwargs: Passed to `open` (e.g. `encoding="utf-8"`).

    Yields:
        The open file object.
    """
    if not any(flag in mode for flag in "wax"):
        raise ValueError(f"Expected a writing `mode` such as 'w' or 'wb', received: {mode!r}")
    with atomic_path(path) as tmp:
        with open(tmp, mode, **kwargs) as f:
            yield f


def write_text(path, text, encoding="utf-8"):
    """Writes `text` to `path` atomically."""
    with atomic_open(path, "w", encoding=encoding, newline="") as f:
        f.write(text)


def write_bytes(path, data):
    """Writes `data` to `path` atomically."""
    with atomic_open(path, "wb") as f:
        f.write(data)


def write_json(path, value, **kwargs):
    """Writes `value` as JSON (followed by a newline) to `path` atomically.

    Args:
        path: The file to write.
        value: A JSON-serializable value.
        **kwargs: Passed to `json.dump` (e.g. `indent=2`, `default=str`).
    """
    with atomic_open(path, "w", encoding="utf-8") as f:
        json.dump(value, f, **kwargs)
        f.write("\n")


def save_model(model, path, **kwargs):
    """Saves a Keras model to a `.keras` file atomically.

    An interrupted or failed save leaves an existing file at `path` intact,
    which matters when a command replaces its own input.

    Args:
        model: A `keras.Model`.
        path: The `.keras` file to write.
        **kwargs: Passed to `model.save`.
    """
    with atomic_path(path) as tmp:
        model.save(tmp, **kwargs)
