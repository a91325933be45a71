"""DAN, (Bi)LSTM and CNN classifiers: build, train one step, padding invariance."""

import keras
import numpy as np
import pytest

from keras_lowrank.models import cnn_classifier
from keras_lowrank.models import dan_classifier
from keras_lowrank.models import lstm_classifier

pytestmark = pytest.mark.backend_agnostic

BUILDERS = {
    "dan": lambda **kw: dan_classifier(40, 3, hidden_units=(16, 16), **kw),
    "lstm": lambda **kw: lstm_classifier(40, 3, units=8, **kw),
    "lstm_forward": lambda **kw: lstm_classifier(40, 3, units=8, bidirectional=False, **kw),
    "cnn": lambda **kw: cnn_classifier(40, 3, filters=6, **kw),
}
IDS = np.array([[5, 6, 7, 8, 0], [2, 3, 0, 0, 0], [9, 0, 0, 0, 0], [0, 0, 0, 0, 0]], np.int32)


@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_builds_and_trains_one_step(kind):
    model = BUILDERS[kind](embedding_dim=8)
    layer = model.get_layer("embedding")
    assert isinstance(layer, keras.layers.Embedding) and layer.mask_zero
    assert model.output_shape == (None, 3)
    model.compile(
        optimizer=keras.optimizers.Adam(0.05),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        # One step: tracing a graph would cost more than the step itself.
        run_eagerly=True,
    )
    before = np.array(layer.embeddings)
    history = model.fit(IDS, np.array([0, 1, 2, 0]), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert not np.allclose(before, np.array(layer.embeddings))


@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_padding_does_not_change_outputs(kind):
    model = BUILDERS[kind](embedding_dim=8)
    # Make the padding row non-zero so a leak through the mask would show.
    table = np.random.default_rng(0).normal(size=(40, 8)).astype("float32")
    model.get_layer("embedding").set_weights([table])
    short = keras.ops.convert_to_numpy(model(IDS, training=False))
    longer = keras.ops.convert_to_numpy(model(np.pad(IDS, [[0, 0], [0, 7]]), training=False))
    np.testing.assert_allclose(short, longer, rtol=1e-5, atol=1e-5)
    assert np.isfinite(short).all()  # also for the all-padding row


@pytest.mark.parametrize("kind", ["dan", "cnn"])
def test_initial_embeddings_and_frozen(kind):
    table = np.random.default_rng(1).normal(size=(40, 5)).astype("float32")
    model = BUILDERS[kind](embeddings=table, trainable_embeddings=False)
    layer = model.get_layer("embedding")
    np.testing.assert_array_equal(np.array(layer.embeddings), table)
    assert layer.output_dim == 5 and not layer.trainable


def test_bad_arguments():
    with pytest.raises(ValueError, match="embeddings"):
        dan_classifier(40, 3, embeddings=np.zeros((39, 5)))
    with pytest.raises(ValueError, match="embedding_dim"):
        dan_classifier(40, 3, embeddings=np.zeros((40, 5)), embedding_dim=8)
    with pytest.raises(ValueError, match="num_classes"):
        cnn_classifier(40, 1)
    with pytest.raises(ValueError, match="vocab_size"):
        lstm_classifier(1, 3)


def test_save_and_load_roundtrip(tmp_path):
    model = BUILDERS["cnn"](embedding_dim=4)
    path = tmp_path / "cnn.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(model(IDS, training=False)), keras.ops.convert_to_numpy(loaded(IDS, training=False)), atol=1e-6
    )
