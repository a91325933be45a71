"""A batch of raw texts: recognizing one, and reading it as a list of strings.

Texts reach the package as lists, tuples or numpy arrays (`(n,)`, or
`(n, 1)` as a model with `Input(shape=(1,), dtype="string")` takes them),
holding `str` or UTF-8 `bytes`. Every place that takes texts (export probes
and calibration, unlabeled data of `compress()`, the reference tokenizer,
the CLI's files) asks this module, so one batch is read one way everywhere.
This module is numpy only.
"""

import numpy as np


def is_text_batch(data):
    """Whether `data` is a non-empty batch of texts (see `text_list`).

    Only the first element is looked at: a batch mixing texts with other
    values is refused by `text_list`, with the argument's name.
    """
    if isinstance(data, np.ndarray):
        return data.size > 0 and isinstance(data.flat[0], (str, bytes))
    # Never an array of a list: `(x, y)` of unequal shapes must stay a pair.
    if not isinstance(data, (list, tuple)) or not data:
        return False
    first = data[0]
    if isinstance(first, (list, tuple, np.ndarray)) and len(first) == 1:
        first = first[0]  # a row of an (n, 1) batch
    return isinstance(first, (str, bytes))


def text_list(data, name, *, allow_empty=False):
    """`data` as a list of `str`, one per example (UTF-8 `bytes` decoded).

    Args:
        data: a sequence or numpy array of texts, of shape `(n,)` or `(n, 1)`.
        name: the argument's name, for the error.
        allow_empty: whether a batch of no texts is accepted.

    Returns:
        A list of `n` strings.

    Raises:
        ValueError: naming `name`, for any other shape, a value that is not
            a text, or (unless `allow_empty`) no texts.
    """
    array = np.asarray(data, dtype=object)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1 or (array.size == 0 and not allow_empty):
        raise ValueError(
            f"Expected `{name}` to be a non-empty batch of texts of shape (n,) or (n, 1), "
            f"received: {name} of shape {array.shape}"
        )
    wrong = next((value for value in array if not isinstance(value, (str, bytes))), None)
    if wrong is not None:
        raise ValueError(f"Expected `{name}` to hold texts (str or bytes), received the value {wrong!r:.60}")
    return [text.decode("utf-8") if isinstance(text, bytes) else str(text) for text in array]
