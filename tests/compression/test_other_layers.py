"""compress(max_model_bytes=..., other_layers=...): Keras' quantization of the layers that are not tables."""

import keras
import numpy as np
import pytest

import keras_lowrank
from keras_lowrank.compression import other_layers
from keras_lowrank.compression import table_bytes

pytestmark = pytest.mark.backend_agnostic

V, D, L, HIDDEN, CLASSES = 600, 32, 12, 256, 4


def _data(n=256, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.zipf(1.3, size=(n, L)).clip(1, V - 1).astype("int32")
    return x, (x[:, 0] % CLASSES).astype("int32")


def _model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((L,), dtype="int32"),
        keras.layers.Embedding(V, D, mask_zero=True, name="embedding"),
        keras.layers.GlobalAveragePooling1D(),
        keras.layers.Dense(HIDDEN, activation="relu", name="hidden"),
        keras.layers.Dense(CLASSES, name="logits"),
    ])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    x, y = _data()
    model.fit(x, y, epochs=1, verbose=0)
    return model


def _int8_bytes(inputs, units):
    # Keras int8 Dense: an int8 kernel, a float32 scale per output unit, the float32 bias.
    return inputs * units + 4 * units + 4 * units


FLOAT_OTHER = 4 * (D * HIDDEN + HIDDEN + HIDDEN * CLASSES + CLASSES)
INT8_OTHER = _int8_bytes(D, HIDDEN) + _int8_bytes(HIDDEN, CLASSES)


def test_other_bytes_under_int8_match_keras_storage_by_hand():
    model = _model()
    tables = [("embedding", model.get_layer("embedding"))]
    assert other_layers.plan(model, tables, None).bytes == FLOAT_OTHER
    int8 = other_layers.plan(model, tables, "int8")
    assert int8.bytes == INT8_OTHER
    assert int8.quantized == (0, 1) and int8.left_out == ()
    # Measured on a copy: the model keeps its float weights.
    assert all(getattr(layer, "quantization_mode", None) is None for layer in model.layers)


def test_quantizable_layers_are_dense_layers_outside_the_tables():
    model = _model()
    names = [layer.name for layer in other_layers.quantizable_layers(model)]
    assert names == ["hidden", "logits"]


def test_a_budget_only_quantized_other_layers_meet_is_reached():
    model = _model()
    x, y = _data()
    budget = INT8_OTHER + 6000   # float32 other layers alone exceed it
    assert FLOAT_OTHER > budget
    small, report = keras_lowrank.compress(
        model, (x[:192], y[:192]), (x[192:], y[192:]), max_model_bytes=budget, other_layers=("int8",),
        epochs=1, candidates=2, seed=0, verbose=0, return_report=True)
    assert report.other_layers == "int8"
    assert report.model_bytes == table_bytes(small) <= budget
    assert report.budget_bytes == budget - INT8_OTHER
    assert small.get_layer("hidden").quantization_mode == "int8"
    assert small.get_layer("logits").quantization_mode == "int8"
    assert all(c.other_layers == "int8" for c in report.candidates)
    assert "other layers Keras int8" in str(report)
    # The input model is the teacher: never changed.
    assert model.get_layer("hidden").quantization_mode is None


def test_the_ways_of_storing_the_other_layers_compete_in_one_search(tmp_path):
    model = _model()
    x, y = _data()
    budget = FLOAT_OTHER + 8000
    small, report = keras_lowrank.compress(
        model, (x[:192], y[:192]), (x[192:], y[192:]), max_model_bytes=budget, other_layers=("int8", "int4"),
        epochs=1, candidates=6, seed=0, verbose=0, return_report=True)
    modes = {c.other_layers for c in report.candidates}
    assert modes == {None, "int8", "int4"}
    chosen = [c for c in report.candidates if c.recipe == report.recipe and c.other_layers == report.other_layers]
    assert len(chosen) == 1 and chosen[0].final
    assert report.model_bytes == table_bytes(small) <= budget
    # Each mode's tables had what its other layers leave.
    assert report.budget_bytes == budget - other_layers.plan(
        model, [("embedding", model.get_layer("embedding"))], report.other_layers).bytes
    path = tmp_path / "small.keras"
    small.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded.predict(x[:16], verbose=0), small.predict(x[:16], verbose=0), atol=1e-6)


def test_other_layers_without_a_whole_model_budget_is_an_error():
    model = _model()
    x, y = _data()
    with pytest.raises(ValueError, match=r"max_model_bytes.*other_layers=\('int8',\)"):
        keras_lowrank.compress(model, (x, y), (x, y), size=0.1, other_layers=("int8",))


@pytest.mark.parametrize("value", ["int8", ("int2",), ()])
def test_bad_other_layers(value):
    model = _model()
    x, y = _data()
    with pytest.raises(ValueError, match="other_layers="):
        keras_lowrank.compress(model, (x, y), (x, y), max_model_bytes=10**6, other_layers=value)


def test_a_budget_the_other_layers_exceed_names_the_option():
    model = _model()
    x, y = _data()
    with pytest.raises(ValueError, match=rf"other weights alone store {FLOAT_OTHER:,} bytes.*other_layers="):
        keras_lowrank.compress(model, (x, y), (x, y), max_model_bytes=FLOAT_OTHER - 1)


def test_a_plan_applies_to_the_model_it_was_made_for_only():
    model = _model()
    plan = other_layers.plan(model, [("embedding", model.get_layer("embedding"))], "int8")
    copy = keras.models.clone_model(model)
    assert other_layers.quantize_other_layers(copy, plan) == ["hidden", "logits"]
    other = keras.Sequential([keras.Input((L,), dtype="int32"), keras.layers.Embedding(V, D),
                              keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(CLASSES)])
    with pytest.raises(RuntimeError, match="made for layers"):
        other_layers.quantize_other_layers(other, plan)
