"""(Bi)LSTM text classifier with masked mean pooling.

Only builds the model; it must not train, load data or compress.
"""

import keras

from keras_lowrank.models.blocks import MaskedGlobalAveragePooling1D
from keras_lowrank.models.blocks import token_embedding
from keras_lowrank.models.blocks import token_input
from keras_lowrank.models.dan import _check_common


def lstm_classifier(
    vocab_size,
    num_classes,
    *,
    embedding_dim=None,
    embeddings=None,
    trainable_embeddings=True,
    sequence_length=None,
    units=64,
    bidirectional=True,
    dropout=0.3,
    name="lstm",
):
    """Returns an LSTM (default bidirectional) classifier with mean pooling.

    Embedding ("embedding", `mask_zero=True`) -> (Bi)LSTM returning every
    step (padding steps skipped through the mask) -> mean over the
    non-padding steps -> dropout -> `Dense(num_classes)` logits.

    Args:
        vocab_size: number of token ids (padding and OOV included).
        num_classes: number of classes (>= 2).
        embedding_dim: width of an embedding learned from scratch (default
            300); leave `None` when `embeddings` is given.
        embeddings: optional initial table `[vocab_size, dim]`.
        trainable_embeddings: whether the table is trained.
        sequence_length: fixed input length, or `None`.
        units: LSTM units (per direction).
        bidirectional: BiLSTM (concatenated directions) or forward LSTM.
        dropout: dropout rate before the output layer.
        name: model name.

    Returns:
        A Functional `keras.Model` mapping int32 ids to logits.

    References:
        Hochreiter and Schmidhuber, Long Short-Term Memory, 1997;
        Acharya et al., Online Embedding Compression for Text Classification
        using Low Rank Matrix Factorization, AAAI 2019.
    """
    _check_common(num_classes, dropout)
    if not isinstance(units, int) or units < 1:
        raise ValueError(f"Expected `units` to be a positive integer, received: units={units!r}")
    ids = token_input(sequence_length)
    x = token_embedding(
        vocab_size, embedding_dim=embedding_dim, embeddings=embeddings, trainable=trainable_embeddings
    )(ids)
    recurrent = keras.layers.LSTM(units, return_sequences=True, name="lstm")
    if bidirectional:
        recurrent = keras.layers.Bidirectional(recurrent, name="bilstm")
    x = recurrent(x)
    x = MaskedGlobalAveragePooling1D(name="mean_pooling")(x)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    logits = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(ids, logits, name=name)
