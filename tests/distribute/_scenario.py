"""The small fine-tune scenario shared by the distributed checks.

A masked-average text classifier on fixed random ids, fixed start weights,
conversion at a fixed rank, and an SGD fine-tune with the cyclically
annealed learning rate. Every process that imports this module builds exactly
the same data and weights, so a distributed run and a single-device run can
be compared number for number. Import it after TensorFlow's devices are
configured.
"""

import keras
import numpy as np

from keras_lowrank.schedules import CyclicallyAnnealedLearningRate

VOCAB, DIM, LENGTH, CLASSES, RANK = 120, 16, 10, 3, 4
GLOBAL_BATCH, EXAMPLES, EPOCHS = 16, 64, 3
STEPS = EPOCHS * (EXAMPLES // GLOBAL_BATCH)


def data():
    """Fixed token ids (zero-padded, so masking matters) and labels."""
    rng = np.random.default_rng(1)
    ids = rng.integers(1, VOCAB, size=(EXAMPLES, LENGTH)).astype("int32")
    lengths = rng.integers(3, LENGTH + 1, size=EXAMPLES)
    ids[np.arange(LENGTH)[None, :] >= lengths[:, None]] = 0
    labels = rng.integers(0, CLASSES, size=EXAMPLES).astype("int32")
    return ids, labels


def functional_model():
    ids = keras.Input(shape=(LENGTH,), dtype="int32")
    x = keras.layers.Embedding(VOCAB, DIM, mask_zero=True, name="embedding")(ids)
    x = keras.layers.GlobalAveragePooling1D()(x)
    x = keras.layers.Dense(8, activation="tanh", name="hidden")(x)
    return keras.Model(ids, keras.layers.Dense(CLASSES, name="logits")(x))


def initial_weights():
    """Fixed start weights (numpy), drawn independently of any TF seed."""
    rng = np.random.default_rng(0)
    shapes = [w.shape for w in functional_model().get_weights()]
    return [rng.normal(0.0, 0.5, size=shape).astype("float32") for shape in shapes]


def fine_tune_optimizer():
    """Plain SGD (deterministic, no state to drift) on the CALR schedule."""
    schedule = CyclicallyAnnealedLearningRate(
        initial_learning_rate=0.05, maximal_learning_rate=0.5, step_size=3, decay=0.5
    )
    return keras.optimizers.SGD(learning_rate=schedule)


def compile_for_fine_tune(model):
    model.compile(
        optimizer=fine_tune_optimizer(),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )


def weights(model):
    return [np.array(w) for w in model.get_weights()]
