"""factorize_embeddings: conversion of every kind of model, atomicity, errors.

The reference for every converted model is computed independently: the
Embedding table replaced by its dense rank-r truncated SVD from numpy.
"""

import numpy as np
import pytest

import keras

from keras_lowrank.layers import LowRankEmbedding
from keras_lowrank.surgery import ConversionReport
from keras_lowrank.surgery import factorize_embeddings

pytestmark = pytest.mark.backend_agnostic

VOCAB, DIM, LENGTH = 40, 12, 6


def _trained_table(layer, seed):
    """Gives `layer` a random (non-initializer) table, as training would."""
    rng = np.random.default_rng(seed)
    layer.embeddings.assign(
        rng.normal(size=(layer.input_dim, layer.output_dim)).astype("float32")
    )


def _svd_table(table, rank):
    u, s, vt = np.linalg.svd(np.asarray(table, np.float64), full_matrices=False)
    return (u[:, :rank] * s[:rank]) @ vt[:rank]


def _ids(batch=4, seed=0):
    ids = np.random.default_rng(seed).integers(1, VOCAB, size=(batch, LENGTH))
    ids[:, -2:] = 0  # padding, so masks matter
    return ids.astype("int32")


def _reference_outputs(model, layer, rank, inputs):
    """Outputs of `model` after replacing `layer`'s table by its SVD."""
    saved = keras.ops.convert_to_numpy(layer.embeddings)
    layer.embeddings.assign(_svd_table(saved, rank).astype("float32"))
    try:
        return keras.tree.map_structure(keras.ops.convert_to_numpy, model(inputs))
    finally:
        layer.embeddings.assign(saved)


def _weights_by_id(model):
    return {id(w): keras.ops.convert_to_numpy(w) for w in model.weights}


def _sequential(mask_zero=True):
    model = keras.Sequential(
        [
            keras.Input((LENGTH,), dtype="int32", name="ids"),
            keras.layers.Embedding(VOCAB, DIM, mask_zero=mask_zero, name="embedding"),
            keras.layers.LSTM(5, name="lstm"),
            keras.layers.Dense(3, name="logits"),
        ],
        name="seq",
    )
    _trained_table(model.get_layer("embedding"), 1)
    return model


def _functional_two_embeddings():
    words = keras.Input((LENGTH,), dtype="int32", name="words")
    chars = keras.Input((LENGTH,), dtype="int32", name="chars")
    word_emb = keras.layers.Embedding(VOCAB, DIM, mask_zero=True, name="words_emb")
    char_emb = keras.layers.Embedding(VOCAB, 8, name="chars_emb")
    pool = keras.layers.GlobalAveragePooling1D(name="pool")
    joined = keras.layers.Concatenate(name="concat")(
        [pool(word_emb(words)), pool(char_emb(chars))]
    )
    logits = keras.layers.Dense(3, name="logits")(joined)
    aux = keras.layers.Dense(1, name="aux")(joined)
    model = keras.Model([words, chars], [logits, aux], name="two")
    _trained_table(word_emb, 2)
    _trained_table(char_emb, 3)
    return model


class Classifier(keras.Model):
    """A subclassed model with embeddings in an attribute, a list, a dict."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.embed = keras.layers.Embedding(VOCAB, DIM, mask_zero=True, name="embed")
        self.extra = [keras.layers.Embedding(VOCAB, DIM, name="listed")]
        self.by_name = {"keyed": keras.layers.Embedding(VOCAB, DIM, name="keyed")}
        self.pool = keras.layers.GlobalAveragePooling1D(name="pool")
        self.head = keras.layers.Dense(3, name="head")

    def call(self, ids):
        x = self.embed(ids) + self.extra[0](ids) + self.by_name["keyed"](ids)
        return self.head(self.pool(x))


def _subclassed():
    model = Classifier(name="sub")
    model(_ids())
    for seed, layer in enumerate([model.embed, model.extra[0], model.by_name["keyed"]]):
        _trained_table(layer, 10 + seed)
    return model


def test_sequential_rebuilt_shares_other_layers_and_matches_numpy_svd():
    model = _sequential()
    ids = _ids()
    before = _weights_by_id(model)
    expected = _reference_outputs(model, model.get_layer("embedding"), 4, ids)
    original_out = keras.ops.convert_to_numpy(model(ids))

    converted = factorize_embeddings(model, share_layers=True, rank=4)

    assert converted is not model
    assert [l.name for l in converted.layers] == [l.name for l in model.layers]
    assert isinstance(converted.get_layer("embedding"), LowRankEmbedding)
    assert converted.get_layer("lstm") is model.get_layer("lstm")
    assert converted.get_layer("logits") is model.get_layer("logits")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(converted(ids)), expected, atol=1e-5
    )
    # The original still works with its own table, weights untouched.
    assert isinstance(model.get_layer("embedding"), keras.layers.Embedding)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model(ids)), original_out)
    for w in model.weights:
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(w), before[id(w)])


def test_masking_identical_downstream():
    model = _sequential()
    converted = factorize_embeddings(model, compression=0.5)
    ids = _ids()
    old, new = model.get_layer("embedding"), converted.get_layer("embedding")
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(new.compute_mask(ids)),
        keras.ops.convert_to_numpy(old.compute_mask(ids)),
    )
    # The LSTM skips padded steps: outputs do not depend on padded ids' rows.
    other = ids.copy()
    other[:, -2:] = 0
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(converted(ids)),
        keras.ops.convert_to_numpy(converted(other)),
    )


def test_exactly_low_rank_table_reproduces_original_outputs():
    model = _sequential(mask_zero=False)
    rng = np.random.default_rng(5)
    table = rng.normal(size=(VOCAB, 3)) @ rng.normal(size=(3, DIM))
    model.get_layer("embedding").embeddings.assign(table.astype("float32"))
    ids = _ids()
    converted = factorize_embeddings(model, rank=3)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(converted(ids)),
        keras.ops.convert_to_numpy(model(ids)),
        atol=1e-4,
    )


def test_functional_selection_multiple_inputs_and_outputs():
    model = _functional_two_embeddings()
    ids = [_ids(seed=1), _ids(seed=2)]
    converted, report = factorize_embeddings(model, share_layers=True, rank=3, layer_names=["chars_emb"], return_report=True
    )
    assert converted.name == "two"
    assert [t.name for t in converted.inputs] == ["words", "chars"]
    assert len(converted.outputs) == 2
    assert converted.get_layer("words_emb") is model.get_layer("words_emb")
    assert isinstance(converted.get_layer("chars_emb"), LowRankEmbedding)
    for name in ("pool", "concat", "logits", "aux"):
        assert converted.get_layer(name) is model.get_layer(name)
    assert [row.name for row in report.rows] == ["chars_emb"]
    expected = _reference_outputs(model, model.get_layer("chars_emb"), 3, ids)
    got = keras.ops.convert_to_numpy(converted(ids)[0])
    np.testing.assert_allclose(got, expected[0], atol=1e-5)


def test_all_embeddings_converted_by_default():
    model = _functional_two_embeddings()
    converted = factorize_embeddings(model, compression=0.5)
    assert isinstance(converted.get_layer("words_emb"), LowRankEmbedding)
    assert isinstance(converted.get_layer("chars_emb"), LowRankEmbedding)


def test_shared_embedding_replaced_by_one_shared_layer():
    first = keras.Input((LENGTH,), dtype="int32", name="first")
    second = keras.Input((LENGTH,), dtype="int32", name="second")
    shared = keras.layers.Embedding(VOCAB, DIM, name="shared")
    pool = keras.layers.GlobalAveragePooling1D(name="pool")
    out = keras.layers.Subtract(name="diff")([pool(shared(first)), pool(shared(second))])
    model = keras.Model([first, second], out)
    _trained_table(shared, 7)
    ids = [_ids(seed=3), _ids(seed=4)]
    expected = _reference_outputs(model, shared, 5, ids)

    converted, report = factorize_embeddings(model, rank=5, return_report=True)

    replacements = [l for l in converted.layers if isinstance(l, LowRankEmbedding)]
    assert len(replacements) == 1 and len(report.rows) == 1
    assert len(replacements[0]._inbound_nodes) >= 2
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(converted(ids)), expected, atol=1e-5
    )


def test_nested_models_sequential_in_functional_and_back():
    encoder = keras.Sequential(
        [
            keras.Input((LENGTH,), dtype="int32"),
            keras.layers.Embedding(VOCAB, DIM, name="embedding"),
            keras.layers.GlobalAveragePooling1D(name="pool"),
        ],
        name="encoder",
    )
    _trained_table(encoder.get_layer("embedding"), 8)
    untouched = keras.Sequential(
        [keras.Input((DIM,)), keras.layers.Dense(DIM, name="mix")], name="untouched"
    )
    ids_in = keras.Input((LENGTH,), dtype="int32", name="ids")
    middle = keras.Model(ids_in, untouched(encoder(ids_in)), name="middle")
    outer = keras.Sequential([middle, keras.layers.Dense(2, name="out")], name="outer")
    outer.build((None, LENGTH))
    ids = _ids()
    expected = _reference_outputs(outer, encoder.get_layer("embedding"), 4, ids)

    converted, report = factorize_embeddings(outer, share_layers=True, rank=4, return_report=True)

    assert report.rows[0].name == "middle/encoder/embedding"
    new_middle = converted.get_layer("middle")
    assert new_middle is not middle
    assert new_middle.get_layer("untouched") is untouched  # no target: reused
    assert new_middle.get_layer("encoder").get_layer("pool") is encoder.get_layer("pool")
    assert converted.get_layer("out") is outer.get_layer("out")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(converted(ids)), expected, atol=1e-5
    )
    # Selection by nested path and by plain name.
    by_path = factorize_embeddings(outer, share_layers=True, rank=4, layer_names="middle/encoder/embedding")
    assert isinstance(
        by_path.get_layer("middle").get_layer("encoder").get_layer("embedding"),
        LowRankEmbedding,
    )


def test_subclassed_converted_in_place_including_list_and_dict():
    model = _subclassed()
    ids = _ids()
    head, pool = model.head, model.pool
    head_weights = [keras.ops.convert_to_numpy(w) for w in head.weights]
    tables = {
        name: keras.ops.convert_to_numpy(layer.embeddings)
        for name, layer in [("embed", model.embed), ("listed", model.extra[0]),
                            ("keyed", model.by_name["keyed"])]
    }
    approx = sum(_svd_table(t, 3) for t in tables.values())
    # Reference: same head on the summed SVD tables, computed from numpy.
    expected = np.stack([approx[row].mean(axis=0) for row in ids])
    expected = keras.ops.convert_to_numpy(head(expected.astype("float32")))

    converted, report = factorize_embeddings(model, share_layers=True, rank=3, return_report=True)

    assert converted is model and report.in_place
    assert isinstance(model.embed, LowRankEmbedding)
    assert isinstance(model.extra[0], LowRankEmbedding)
    assert isinstance(model.by_name["keyed"], LowRankEmbedding)
    assert model.head is head and model.pool is pool
    for w, saved in zip(head.weights, head_weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(w), saved)
    tracked = model._layers
    assert not any(type(l) is keras.layers.Embedding for l in tracked)
    assert sum(isinstance(l, LowRankEmbedding) for l in tracked) == 3
    assert len(model.weights) == 3 * 2 + 2
    # Pooling averages over all steps here (the subclass passes no mask).
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(model(ids)), expected, atol=1e-4
    )


def test_failed_conversion_leaves_subclassed_model_untouched():
    model = _subclassed()
    ids = _ids()
    before_out = keras.ops.convert_to_numpy(model(ids))
    first, second = model.embed, model.extra[0]
    table = keras.ops.convert_to_numpy(second.embeddings)
    table[3, 4] = np.nan
    second.embeddings.assign(table)

    with pytest.raises(ValueError, match="non-finite"):
        factorize_embeddings(model, rank=3)

    assert model.embed is first and model.extra[0] is second
    assert list(model._layers)[:3] == [first, second, model.by_name["keyed"]]
    table[3, 4] = 0.0
    second.embeddings.assign(table)
    with pytest.raises(ValueError, match="rank"):
        factorize_embeddings(model, rank=DIM)  # saves nothing: delegated error
    assert model.embed is first


def test_failed_conversion_leaves_functional_model_untouched():
    model = _functional_two_embeddings()
    ids = [_ids(seed=1), _ids(seed=2)]
    before = [keras.ops.convert_to_numpy(o) for o in model(ids)]
    layers = list(model.layers)
    table = keras.ops.convert_to_numpy(model.get_layer("chars_emb").embeddings)
    saved = table[0, 0]
    table[0, 0] = np.inf
    model.get_layer("chars_emb").embeddings.assign(table)
    with pytest.raises(ValueError, match="chars_emb"):
        factorize_embeddings(model, rank=2)
    assert list(model.layers) == layers
    table[0, 0] = saved
    model.get_layer("chars_emb").embeddings.assign(table)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model(ids)[0]), before[0])


def test_converted_model_trains_and_round_trips_keras_file(tmp_path):
    model = _sequential()
    model.compile(optimizer="adam", loss="mse")
    converted = factorize_embeddings(model, rank=4)
    converted.compile(optimizer="adam", loss="mse")
    ids = _ids(batch=8)
    lookup = keras.ops.convert_to_numpy(converted.get_layer("embedding").lookup)
    converted.fit(ids, np.ones((8, 3), "float32"), epochs=1, batch_size=8, verbose=0)
    assert not np.allclose(
        keras.ops.convert_to_numpy(converted.get_layer("embedding").lookup), lookup
    )
    path = tmp_path / "converted.keras"
    converted.save(path)
    restored = keras.models.load_model(path)
    assert isinstance(restored.get_layer("embedding"), LowRankEmbedding)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(restored(ids)),
        keras.ops.convert_to_numpy(converted(ids)),
        atol=1e-6,
    )


def test_compiled_subclassed_model_fits_after_in_place_conversion():
    model = _subclassed()
    model.compile(optimizer="adam", loss="mse")
    ids, target = _ids(batch=8), np.zeros((8, 3), "float32")
    model.fit(ids, target, epochs=1, batch_size=8, verbose=0)
    model.predict(ids, verbose=0)
    factorize_embeddings(model, share_layers=True, rank=3, layer_names="embed")
    assert model.compiled
    model.fit(ids, target, epochs=1, batch_size=8, verbose=0)
    expected = keras.ops.convert_to_numpy(model(ids))
    np.testing.assert_allclose(model.predict(ids, verbose=0), expected, atol=1e-5)


def test_row_weights_forwarded_per_layer():
    model = _functional_two_embeddings()
    weights = np.ones(VOCAB)
    # Uniform weights give the plain SVD.
    converted, report = factorize_embeddings(
        model, rank=3, row_weights={"words_emb": weights}, return_report=True
    )
    assert report.rows[0].relative_error == pytest.approx(
        np.sqrt(1 - report.rows[0].energy_kept), abs=1e-4
    )
    with pytest.raises(ValueError, match="row_weights"):
        factorize_embeddings(model, rank=3, row_weights=weights)
    with pytest.raises(ValueError, match="row_weights"):
        factorize_embeddings(model, rank=3, row_weights={"nope": weights})


def test_report_matches_numpy():
    model = _functional_two_embeddings()
    converted, report = factorize_embeddings(model, rank=3, return_report=True)
    assert isinstance(report, ConversionReport)
    for row in report.rows:
        table = keras.ops.convert_to_numpy(model.get_layer(row.name).embeddings)
        s = np.linalg.svd(table.astype(np.float64), compute_uv=False)
        assert (row.input_dim, row.output_dim, row.rank) == (*table.shape, 3)
        assert row.params_before == table.size
        assert row.params_after == 3 * sum(table.shape)
        assert row.compression == pytest.approx(1 - row.params_after / table.size)
        assert row.energy_kept == pytest.approx(np.sum(s[:3] ** 2) / np.sum(s**2), rel=1e-5)
        error = np.linalg.norm(table - _svd_table(table, 3)) / np.linalg.norm(table)
        assert row.relative_error == pytest.approx(error, rel=1e-4)
    as_dict = report.to_dict()
    assert as_dict["model"]["params_before"] == model.count_params()
    assert as_dict["model"]["params_after"] == converted.count_params()
    assert as_dict["model"]["other_params"] == model.count_params() - VOCAB * (DIM + 8)
    assert as_dict["totals"]["params_after"] == 3 * (VOCAB + DIM) + 3 * (VOCAB + 8)
    text = str(report)
    lines = text.splitlines()
    assert lines[0].startswith("layer") and "words_emb" in text and "total" in text
    assert len({len(line) for line in lines[2:4]}) == 1  # aligned rows


def test_verbose_prints_report(capsys):
    factorize_embeddings(_sequential(), rank=2, verbose=True)
    assert "embedding" in capsys.readouterr().out


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"rank": 0}, "rank"),
        ({"rank": DIM}, "rank"),
        ({"compression": 1.5}, "compression"),
        ({"energy": 0.0}, "energy"),
        ({"rank": 2, "compression": 0.5}, "rank"),
        ({}, "rank"),
        ({"rank": 2, "layer_names": "nope"}, "layer_names='nope'"),
        ({"rank": 2, "layer_names": []}, "layer_names"),
        ({"rank": 2, "split": "left"}, "split"),
        ({"rank": 2, "return_report": "yes"}, "return_report"),
    ],
)
def test_argument_errors_leave_model_untouched(kwargs, match):
    model = _subclassed()
    embed = model.embed
    with pytest.raises(ValueError, match=match):
        factorize_embeddings(model, **kwargs)
    assert model.embed is embed


def test_model_errors():
    with pytest.raises(ValueError, match="keras.Model"):
        factorize_embeddings(keras.layers.Embedding(4, 2), rank=1)
    unbuilt = keras.Sequential([keras.layers.Embedding(VOCAB, DIM)])
    with pytest.raises(ValueError, match="built"):
        factorize_embeddings(unbuilt, rank=2)
    dense = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="Embedding"):
        factorize_embeddings(dense, rank=1)


def test_unknown_layer_name_lists_available():
    with pytest.raises(ValueError, match=r"words_emb.*chars_emb"):
        factorize_embeddings(_functional_two_embeddings(), rank=2, layer_names="logits")


def test_quantized_embedding_rejected():
    model = _sequential(mask_zero=False)
    model.get_layer("embedding").quantize("int8")
    with pytest.raises(ValueError, match="quantiz"):
        factorize_embeddings(model, rank=2)
