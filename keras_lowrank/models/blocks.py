"""Building blocks shared by the classifiers: the token embedding and
mask-aware pooling layers.

Padding (id 0) must never change a classifier's output, so every pooling here
reads the Keras mask produced by the `mask_zero=True` embedding. This module
must not build whole models or know about datasets.
"""

import keras
import numpy as np
from keras import ops


def token_input(sequence_length=None, name="token_ids"):
    """Returns the int32 `keras.Input` of token ids `[batch, sequence_length]`."""
    if sequence_length is not None and (
        not isinstance(sequence_length, (int, np.integer)) or sequence_length < 1
    ):
        raise ValueError(
            "Expected `sequence_length` to be a positive integer or None, "
            f"received: sequence_length={sequence_length!r}"
        )
    return keras.Input(shape=(sequence_length,), dtype="int32", name=name)


def token_embedding(vocab_size, *, embedding_dim=None, embeddings=None, trainable=True):
    """Returns the classifiers' `keras.layers.Embedding` named "embedding".

    `mask_zero=True`, so id 0 is padding and is masked downstream.

    Args:
        vocab_size: number of ids (padding and OOV included).
        embedding_dim: size of a table learned from scratch (default 300);
            must match `embeddings` when both are given.
        embeddings: optional initial table `[vocab_size, dim]` (e.g. from
            `keras_lowrank.data.embedding_matrix`).
        trainable: whether the table is updated during training.

    Returns:
        A `keras.layers.Embedding`.
    """
    if not isinstance(vocab_size, (int, np.integer)) or vocab_size < 2:
        raise ValueError(
            f"Expected `vocab_size` to be an integer >= 2, received: vocab_size={vocab_size!r}"
        )
    weights = None
    if embeddings is not None:
        embeddings = np.asarray(embeddings, dtype=np.float32)
        if embeddings.ndim != 2 or embeddings.shape[0] != vocab_size:
            raise ValueError(
                f"Expected `embeddings` of shape [vocab_size={vocab_size}, dim], "
                f"received shape {embeddings.shape}"
            )
        if embedding_dim is not None and embedding_dim != embeddings.shape[1]:
            raise ValueError(
                f"`embedding_dim`={embedding_dim} does not match the width of "
                f"`embeddings` ({embeddings.shape[1]}); pass only one of them."
            )
        embedding_dim = embeddings.shape[1]
        weights = [embeddings]
    elif embedding_dim is None:
        embedding_dim = 300
    if not isinstance(embedding_dim, (int, np.integer)) or embedding_dim < 1:
        raise ValueError(
            f"Expected `embedding_dim` to be a positive integer, received: embedding_dim={embedding_dim!r}"
        )
    return keras.layers.Embedding(
        int(vocab_size),
        int(embedding_dim),
        mask_zero=True,
        trainable=trainable,
        weights=weights,
        name="embedding",
    )


@keras.saving.register_keras_serializable(package="keras_lowrank")
class MaskedGlobalAveragePooling1D(keras.layers.Layer):
    """Mean over the unmasked time steps; all-masked rows give zeros.

    Unlike `keras.layers.GlobalAveragePooling1D`, a sequence with no unmasked
    step (an empty text) yields zeros instead of NaN.

    Call arguments:
        inputs: `[batch, steps, features]`.
        mask: optional boolean `[batch, steps]`.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, inputs, mask=None):
        if mask is None:
            return ops.mean(inputs, axis=1)
        weights = ops.expand_dims(ops.cast(mask, inputs.dtype), -1)
        total = ops.sum(ops.where(weights > 0, inputs, 0), axis=1)
        return total / ops.maximum(ops.sum(weights, axis=1), 1)

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2])


@keras.saving.register_keras_serializable(package="keras_lowrank")
class MaskedConv1DMaxPooling(keras.layers.Layer):
    """Wide 1-D convolution then max-over-time of the unmasked windows.

    Kim (2014) style: masked steps are zeroed, `kernel_size - 1` zero steps
    are added on both sides (so texts shorter than the kernel still give
    features), and the maximum is taken over the output positions whose window
    overlaps at least one unmasked step. Appending padding therefore never
    changes the output. An all-masked row gives zeros.

    Args:
        filters: number of feature maps.
        kernel_size: window width.
        activation: activation of the convolution.
        **kwargs: base `Layer` arguments.

    Call arguments:
        inputs: `[batch, steps, features]`.
        mask: optional boolean `[batch, steps]`.
    """

    def __init__(self, filters, kernel_size, activation="relu", **kwargs):
        super().__init__(**kwargs)
        if not isinstance(filters, (int, np.integer)) or filters < 1:
            raise ValueError(f"Expected `filters` to be a positive integer, received: filters={filters!r}")
        if not isinstance(kernel_size, (int, np.integer)) or kernel_size < 1:
            raise ValueError(
                f"Expected `kernel_size` to be a positive integer, received: kernel_size={kernel_size!r}"
            )
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.activation = keras.activations.get(activation)
        self.supports_masking = True
        self.conv = keras.layers.Conv1D(
            self.filters, self.kernel_size, activation=activation, name="conv"
        )

    def build(self, input_shape):
        self.conv.build((input_shape[0], None, input_shape[-1]))

    def call(self, inputs, mask=None):
        if mask is None:
            mask = ops.ones(ops.shape(inputs)[:2], dtype="bool")
        weights = ops.cast(mask, inputs.dtype)
        width = self.kernel_size - 1
        x = inputs * ops.expand_dims(weights, -1)
        x = ops.pad(x, [[0, 0], [width, width], [0, 0]])
        y = self.conv(x)  # [batch, steps + width, filters]
        # Output t covers padded steps t .. t + width; it is valid when that
        # window holds an unmasked step.
        padded = ops.pad(ops.expand_dims(weights, -1), [[0, 0], [width, width], [0, 0]])
        ones = ops.ones((self.kernel_size, 1, 1), dtype=inputs.dtype)
        valid = ops.conv(padded, ones, padding="valid") > 0  # [batch, steps + width, 1]
        lowest = ops.cast(-3e38 if inputs.dtype == "float32" else -6e4, inputs.dtype)
        best = ops.max(ops.where(valid, y, lowest), axis=1)
        return ops.where(ops.any(valid, axis=1), best, ops.zeros_like(best))

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.filters)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "kernel_size": self.kernel_size,
                "activation": keras.activations.serialize(self.activation),
            }
        )
        return config
