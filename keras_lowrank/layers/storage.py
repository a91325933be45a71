"""Quantized storage: how the numbers of a table are kept, and what they cost.

One owner for the storages every table kind uses (`STORAGES`):

- float32 arrays, 4 bytes a number;
- int8 codes with one float32 scale per vector (symmetric abs-max,
  `value = code / scale`, as Keras' quantizers do);
- int4 codes in `[-8, 7]` with one float32 scale per vector, two codes
  packed per int8 byte along the vector (Keras' `pack_int4` layout);
- unsigned codes into codebooks, 4 bits (two per byte) for at most 16
  codewords, else 8 bits.

It gives the byte count of each (`vector_bytes`, `code_bytes`), the numpy
quantizers the planner's proxy and the codebook layer use, the `keras.ops`
unpacking that keeps exported graphs in TFLite's builtin ops, and the small
helpers every layer of the package shares. It imports no layer of this
package and never walks a model.
"""

import numpy as np
from keras import backend
from keras import ops

STORAGES = ("float32", "int8", "int4")

# Bytes of one quantization scale: Keras and the layers here keep them in
# float32.
SCALE_BYTES = 4

# Largest code magnitude of each integer storage (symmetric abs-max).
_LEVELS = {"int8": 127, "int4": 7}

# Codebooks of at most this many codewords store two codes per byte.
NIBBLE_CODES = 16


def check_storage(storage, name="storage", allowed=STORAGES):
    """Raises a `ValueError` naming `name` unless `storage` is in `allowed`."""
    if storage not in allowed:
        raise ValueError(f"Expected `{name}` to be one of {allowed}, received: {name}={storage!r}")


def vector_bytes(count, length, storage):
    """Bytes of `count` vectors of `length` numbers kept in `storage`.

    float32: 4 bytes a number. int8: a byte a number plus a float32 scale per
    vector. int4: half a byte a number (an odd length pads one nibble per
    vector) plus a float32 scale per vector.
    """
    check_storage(storage)
    if storage == "float32":
        return 4 * count * length
    width = length if storage == "int8" else (length + 1) // 2
    return count * width + SCALE_BYTES * count


def bits_per_code(codes):
    """Bits of one stored codebook code: 4 for at most 16 codewords, else 8."""
    return 4 if codes <= NIBBLE_CODES else 8


def code_bytes(count, groups, codes):
    """Bytes of `count` rows of `groups` packed codes into `codes` codewords."""
    return count * (-(-groups * bits_per_code(codes) // 8))


def fake_quantize(values, storage, axis):
    """`values` through `storage` and back (numpy), one scale per vector.

    Args:
        values: a float array.
        storage: `"float32"` (returned unchanged), `"int8"` or `"int4"`.
        axis: the axis along which each vector runs (its scale is the
            abs-max over that axis).
    """
    check_storage(storage)
    if storage == "float32":
        return values
    scale = np.max(np.abs(values), axis=axis, keepdims=True)
    scale = np.where(scale > 0, scale / _LEVELS[storage], 1.0)
    return np.round(values / scale) * scale


def quantize_int8(values, axis):
    """Symmetric abs-max int8 along `axis`: `(codes, scale)`, value = code / scale.

    A vector of zeros gets scale 1.
    """
    peak = np.max(np.abs(values), axis=axis)
    scale = np.where(peak > 0, 127.0 / np.where(peak > 0, peak, 1.0), 1.0)
    codes = np.clip(np.round(values * np.expand_dims(scale, axis)), -127, 127)
    return codes.astype(np.int8), scale.astype(np.float32)


def pack_codes(codes, bits):
    """Unsigned codes `(V, groups)` as uint8 bytes.

    With 4 bits, group `2j` sits in the low nibble of byte `j` and group
    `2j+1` in its high nibble (0 for an odd count).
    """
    codes = np.asarray(codes, np.uint8)
    if bits == 8:
        return codes
    if codes.shape[1] % 2:
        codes = np.concatenate([codes, np.zeros((codes.shape[0], 1), np.uint8)], axis=1)
    return (codes[:, 0::2] | (codes[:, 1::2] << 4)).astype(np.uint8)


def unpack_codes(packed, groups, bits):
    """Inverse of `pack_codes` in `keras.ops`: int32 codes `(..., groups)`.

    Arithmetic rather than bitwise unpacking keeps the graph in TFLite's
    builtin ops.
    """
    packed = ops.cast(packed, "int32")
    if bits == 8:
        return packed
    nibbles = ops.stack([ops.mod(packed, 16), ops.floor_divide(packed, 16)], axis=-1)
    width = ops.shape(packed)[-1]
    return ops.reshape(nibbles, (*ops.shape(packed)[:-1], 2 * width))[..., :groups]


def int4_nibbles(packed):
    """Signed low and high nibbles (int32 in [-8, 7]) of int8-packed int4 codes."""
    unsigned = ops.mod(ops.cast(packed, "int32") + 256, 256)
    low = ops.mod(unsigned, 16)
    high = ops.floor_divide(unsigned, 16)
    return ops.mod(low + 8, 16) - 8, ops.mod(high + 8, 16) - 8


def to_numpy(variable):
    """A variable or tensor as a numpy array, on every backend, without warnings."""
    # numpy 2 warns when converting a TensorFlow variable (its `__array__`
    # lacks the `copy` keyword), and `Variable.numpy()` warns on JAX.
    if backend.backend() == "tensorflow" and hasattr(variable, "numpy"):
        return variable.numpy()
    return ops.convert_to_numpy(variable)


def array_initializer(values):
    """An initializer returning `values` (a numpy array of the right shape)."""

    def initializer(shape, dtype=None):
        if tuple(shape) != values.shape:
            raise ValueError(
                f"Expected initial values of shape {tuple(shape)}, "
                f"received: {values.shape}"
            )
        return ops.convert_to_tensor(values, dtype=dtype)

    return initializer


def check_positive_int(name, value):
    """Raises a `ValueError` naming `name` unless `value` is a positive integer."""
    if (
        not isinstance(value, (int, np.integer))
        or isinstance(value, (bool, np.bool_))
        or value <= 0
    ):
        raise ValueError(
            f"Expected `{name}` to be a positive integer, received: "
            f"{name}={value!r} (of type {type(value).__name__})"
        )
