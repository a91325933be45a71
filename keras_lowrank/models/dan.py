"""Deep averaging network (DAN) text classifier (Iyyer et al., 2015).

Only builds the model; it must not train, load data or compress.
"""

import keras

from keras_lowrank.models.blocks import MaskedGlobalAveragePooling1D
from keras_lowrank.models.blocks import token_embedding
from keras_lowrank.models.blocks import token_input


def dan_classifier(
    vocab_size,
    num_classes,
    *,
    embedding_dim=None,
    embeddings=None,
    trainable_embeddings=True,
    sequence_length=None,
    hidden_units=(300, 300),
    dropout=0.3,
    name="dan",
):
    """Returns a DAN: masked mean of word embeddings -> ReLU layers -> logits.

    The embedding (named "embedding", `mask_zero=True`) is averaged over the
    non-padding tokens, passed through `len(hidden_units)` ReLU `Dense`
    layers each followed by dropout, and a final `Dense(num_classes)` gives
    logits (train with `from_logits=True`).

    Example:

    ```python
    model = keras_lowrank.models.dan_classifier(vocabulary.size, 7, embeddings=table)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    ```

    Args:
        vocab_size: number of token ids (padding and OOV included).
        num_classes: number of classes (>= 2).
        embedding_dim: width of an embedding learned from scratch (default
            300); leave `None` when `embeddings` is given.
        embeddings: optional initial table `[vocab_size, dim]`.
        trainable_embeddings: whether the table is trained.
        sequence_length: fixed input length, or `None` for variable length.
        hidden_units: widths of the ReLU layers.
        dropout: dropout rate after each hidden layer.
        name: model name.

    Returns:
        A Functional `keras.Model` mapping int32 ids `[batch, length]` to
        logits `[batch, num_classes]`.

    References:
        Iyyer et al., Deep Unordered Composition Rivals Syntactic Methods for
        Text Classification, ACL 2015. https://aclanthology.org/P15-1162/
    """
    _check_common(num_classes, dropout)
    ids = token_input(sequence_length)
    x = token_embedding(
        vocab_size, embedding_dim=embedding_dim, embeddings=embeddings, trainable=trainable_embeddings
    )(ids)
    x = MaskedGlobalAveragePooling1D(name="mean_pooling")(x)
    for i, units in enumerate(hidden_units):
        x = keras.layers.Dense(int(units), activation="relu", name=f"hidden_{i}")(x)
        x = keras.layers.Dropout(dropout, name=f"dropout_{i}")(x)
    logits = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(ids, logits, name=name)


def _check_common(num_classes, dropout):
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(
            f"Expected `num_classes` to be an integer >= 2, received: num_classes={num_classes!r}"
        )
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"Expected `dropout` to be in [0, 1), received: dropout={dropout!r}")
