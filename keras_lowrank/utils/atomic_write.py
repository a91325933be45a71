"""Atomic file writes: a file is complete and new, or old and untouched.

Every file the package writes (`.keras`, `.tflite`, JSON, Markdown, plots)
goes through `atomic_path`: the writer fills a temporary file in the target's
own folder and, only once it succeeded, the temporary file is renamed over the
target with `os.replace` (atomic on POSIX and Windows when both are on the
same filesystem, which the same folder guarantees). An exception, including a
`KeyboardInterrupt`, deletes the temporary file and leaves the old target, if
any, exactly as it was. A target that is a symbolic link is written through:
the file it points to is replaced and the link stays, as `cp` and editors do.
"""

import contextlib
import errno
import json
import os
import secrets
import signal
import stat
import threading

TEMP_MARKER = ".tmp-"
# POSIX's limit on one file name where `pathconf` cannot tell (255 bytes on
# every common filesystem).
DEFAULT_NAME_MAX = 255


def name_max(folder):
    """The longest file name, in bytes, that `folder` accepts."""
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (AttributeError, OSError, ValueError):
        return DEFAULT_NAME_MAX


def _temporary_name(path):
    folder, name = os.path.split(path)
    # Every suffix stays, last: Keras refuses to save a model to a name not
    # ending in `.keras` (weights: `.weights.h5`), and matplotlib picks the
    # image format from it.
    stem, _, suffixes = name.lstrip(".").partition(".")
    parts = suffixes.split(".") if suffixes else []
    token = secrets.token_hex(4)
    limit = name_max(folder)
    # A target name near the limit would overflow it once the marker is
    # added: the stem is shortened first, then the leading suffixes, so the
    # last suffix (the format) is kept whenever it fits at all.
    for kept in range(len(parts) + 1):
        tail = "".join("." + part for part in parts[kept:])
        fixed = len(os.fsencode(f".{TEMP_MARKER}{token}{tail}"))
        room = limit - fixed
        if room >= 0:
            short = os.fsencode(stem)[:room].decode(errors="ignore")
            return os.path.join(folder, f".{short}{TEMP_MARKER}{token}{tail}")
    return os.path.join(folder, f".{TEMP_MARKER}{token}")


# SIGINTs seen inside the outermost `record_interrupts` block.
_interrupts = {"depth": 0, "count": 0}


def _on_sigint(signum, frame):
    _interrupts["count"] += 1
    signal.default_int_handler(signum, frame)


@contextlib.contextmanager
def record_interrupts():
    """Remembers every Ctrl-C while active, even one that Python loses.

    A `KeyboardInterrupt` raised while a `__del__` method or a callback runs
    (TensorFlow runs many of them while training and saving) is only printed
    as "Exception ignored" and the program goes on. Inside this block each
    SIGINT is counted before it is raised, so `atomic_path` refuses to
    replace its target after one and `interrupted()` reports it. Nested
    blocks share the count of the outermost one. Outside the main thread,
    or when SIGINT has a handler other than Python's default, the block
    records nothing.
    """
    if _interrupts["depth"]:
        _interrupts["depth"] += 1
        try:
            yield
        finally:
            _interrupts["depth"] -= 1
        return
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return
    _interrupts.update(depth=1, count=0)
    signal.signal(signal.SIGINT, _on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        _interrupts.update(depth=0, count=0)


def interrupted():
    """Whether a SIGINT arrived inside the current `record_interrupts` block."""
    return _interrupts["depth"] > 0 and _interrupts["count"] > 0


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
    except OSError as error:
        # Some network and FUSE filesystems cannot fsync (EINVAL); any other
        # error (ENOSPC, EDQUOT, EIO) means the data may not be on disk.
        if error.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
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
    visible under `path`. A Ctrl-C that the writer swallowed (one raised in a
    `__del__` method, see `record_interrupts`) fails the block as well.

    A `path` that is a symbolic link is written through: the file it points
    to is replaced, in that file's folder, and the link is kept. The
    temporary name is shortened where needed so that it fits the folder's
    limit on name length whenever `path` itself does.

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
    # Renaming over a link would replace the link itself and leave the file
    # it names unchanged.
    target = os.path.realpath(path)
    tmp = _temporary_name(target)
    try:
        with record_interrupts():
            yield tmp
            if not os.path.exists(tmp):
                raise ValueError(f"Expected the writer to create {tmp} for {path}; it wrote nothing")
            _fsync(tmp)
            # A replaced file keeps its permissions; a new one gets the usual
            # umask-derived mode rather than the writer's (mkstemp-style 0600).
            if os.path.exists(target):
                mode = stat.S_IMODE(os.stat(target).st_mode)
            else:
                mode = _default_mode()
            if os.path.isfile(tmp):
                os.chmod(tmp, mode)
            if interrupted():
                raise KeyboardInterrupt
            os.replace(tmp, target)
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

    An interrupted or failed save leaves an existing file at `path` intact.

    Args:
        model: A `keras.Model`.
        path: The `.keras` file to write.
        **kwargs: Passed to `model.save`.
    """
    with atomic_path(path) as tmp:
        model.save(tmp, **kwargs)
