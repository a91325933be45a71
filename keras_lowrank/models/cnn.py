"""Kim (2014) convolutional text classifier.

Only builds the model; it must not train, load data or compress.
"""

import keras

from keras_lowrank.models.blocks import MaskedConv1DMaxPooling
from keras_lowrank.models.blocks import token_embedding
from keras_lowrank.models.blocks import token_input
from keras_lowrank.models.dan import _check_common


def cnn_classifier(
    vocab_size,
    num_classes,
    *,
    embedding_dim=None,
    embeddings=None,
    trainable_embeddings=True,
    sequence_length=None,
    kernel_sizes=(3, 4, 5),
    filters=100,
    dropout=0.5,
    name="cnn",
):
    """Returns a Kim-2014 CNN: parallel convolutions, max-over-time, logits.

    Embedding ("embedding", `mask_zero=True`) -> one ReLU convolution of
    `filters` maps per width in `kernel_sizes`, each max-pooled over time on
    the non-padding windows (`MaskedConv1DMaxPooling`) -> concatenation ->
    dropout -> `Dense(num_classes)` logits. (Kim's max-norm constraint on the
    output weights is left out.)

    Args:
        vocab_size: number of token ids (padding and OOV included).
        num_classes: number of classes (>= 2).
        embedding_dim: width of an embedding learned from scratch (default
            300); leave `None` when `embeddings` is given.
        embeddings: optional initial table `[vocab_size, dim]`.
        trainable_embeddings: whether the table is trained.
        sequence_length: fixed input length, or `None`.
        kernel_sizes: filter widths.
        filters: feature maps per width.
        dropout: dropout rate before the output layer.
        name: model name.

    Returns:
        A Functional `keras.Model` mapping int32 ids to logits.

    References:
        Kim, Convolutional Neural Networks for Sentence Classification,
        EMNLP 2014. https://aclanthology.org/D14-1181/
    """
    _check_common(num_classes, dropout)
    if not kernel_sizes:
        raise ValueError(f"Expected at least one kernel size, received: kernel_sizes={kernel_sizes!r}")
    ids = token_input(sequence_length)
    x = token_embedding(
        vocab_size, embedding_dim=embedding_dim, embeddings=embeddings, trainable=trainable_embeddings
    )(ids)
    pooled = [
        MaskedConv1DMaxPooling(filters, int(k), name=f"conv_{k}")(x) for k in kernel_sizes
    ]
    x = pooled[0] if len(pooled) == 1 else keras.layers.Concatenate(name="concat")(pooled)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    logits = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(ids, logits, name=name)
