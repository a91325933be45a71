"""Tests for `keras_lowrank.layers.LowRankReversibleEmbedding`.

The first half runs the configurations of Keras' own
`keras/src/layers/core/reversible_embedding_test.py` (Keras 3.15), with the
weight counts of a factorized layer (two factors per table) and int4 scales
kept per row. References are numpy products of the factors and Keras'
`ReversibleEmbedding` holding the product table.
"""

import math
import os

import numpy as np
import pytest
from absl.testing import parameterized

import keras
from keras import ops
from keras.quantizers import AbsMaxQuantizer
from keras.quantizers import Int4QuantizationConfig
from keras.quantizers import Int8QuantizationConfig
from keras.src.testing import test_case
from keras.src.testing.test_utils import named_product

from keras_lowrank.layers.table_layout import TableLayout
from keras_lowrank.layers.table_layout import table_bytes
from keras_lowrank.layers import LowRankReversibleEmbedding


def _layer(input_dim, output_dim, rank, **kwargs):
    layer = LowRankReversibleEmbedding(input_dim, output_dim, rank, **kwargs)
    layer.build()
    return layer


class KerasReversibleEmbeddingConfigurationsTest(test_case.TestCase):
    """Keras' `ReversibleEmbeddingTest`, one test per Keras test."""

    @parameterized.named_parameters(
        ("int8", "int8", {"axis": -1}, {"axis": -1}),
        (
            "int4",
            "int4",
            {"axis": -1, "value_range": (-8, 7), "output_dtype": "int8"},
            {"axis": -1},
        ),
        ("int8_weight_only", "int8", {"axis": -1}, None),
    )
    def test_reversible_embedding_quantize(
        self, mode, weight_quantizer_args, activation_quantizer_args
    ):
        layer = _layer(10, 6, 2, tie_weights=True)
        activation = (
            None
            if activation_quantizer_args is None
            else AbsMaxQuantizer(**activation_quantizer_args)
        )
        config_class = {"int8": Int8QuantizationConfig, "int4": Int4QuantizationConfig}[mode]
        extra = {"block_size": None} if mode == "int4" else {}
        config = config_class(
            weight_quantizer=AbsMaxQuantizer(**weight_quantizer_args),
            activation_quantizer=activation,
            **extra,
        )
        layer.quantize(mode, config=config)
        if activation is None:
            self.assertIsNone(layer.inputs_quantizer)
        else:
            self.assertIsInstance(layer.inputs_quantizer, AbsMaxQuantizer)
        y = layer(np.random.random((2, 6)).astype("float32"), reverse=True)
        self.assertEqual(y.shape, (2, 10))

    @parameterized.named_parameters(("tie_weights", True), ("untie_weights", False))
    def test_reversible_embedding_basics(self, tie_weights):
        self.run_layer_test(
            LowRankReversibleEmbedding,
            init_kwargs={
                "input_dim": 100,
                "output_dim": 32,
                "rank": 8,
                "tie_weights": tie_weights,
                "lookup_initializer": "HeNormal",
                "logit_soft_cap": 50,
            },
            input_data=np.random.randint(low=0, high=100, size=(4, 10)),
            expected_output_shape=(4, 10, 32),
            # Two factors per table (Keras: 1 tied, 2 untied).
            expected_num_trainable_weights=2 if tie_weights else 4,
        )

    @parameterized.named_parameters(("tie_weights", True), ("untie_weights", False))
    def test_saving(self, tie_weights):
        input_data = np.random.randint(low=0, high=100, size=(4, 10))
        hidden = np.random.random((4, 32)).astype("float32")
        layer = LowRankReversibleEmbedding(100, 32, 8, tie_weights=tie_weights)
        model = keras.Sequential([layer])
        path = os.path.join(self.get_temp_dir(), "model.keras")
        output = model(input_data)
        logits = layer(hidden, reverse=True)
        model.save(path)
        restored = keras.saving.load_model(path)
        self.assertAllClose(output, restored(input_data))
        self.assertAllClose(logits, restored.layers[0](hidden, reverse=True))

    def test_correctness(self):
        table = np.array([[0.0, 0.0], [2.0, 2.0], [3.0, 3.0]])
        # The table has rank 1: A = [0, 2, 3]^T, B = [1, 1].
        weights = [np.array([[0.0], [2.0], [3.0]]), np.array([[1.0, 1.0]])]
        layer = LowRankReversibleEmbedding(3, 2, 1, weights=weights)
        self.assertAllClose(layer(np.array([2, 1, 0])), table[[2, 1, 0]])
        out = layer(np.array([[1.0, 1.0]]), reverse=True)
        self.assertAllClose(out, np.array([[0.0, 4.0, 6.0]]))

        layer = LowRankReversibleEmbedding(3, 2, 1, logit_soft_cap=5, weights=weights)
        out = layer(np.array([[1.0, 1.0]]), reverse=True)
        self.assertAllClose(out, np.array([[0.0, 3.320184, 4.168273]]))

    def test_reverse_dtype(self):
        for dtype in ("float32", "float16"):
            layer = LowRankReversibleEmbedding(100, 16, 4, reverse_dtype=dtype)
            output = layer(ops.ones((4, 10, 16)), reverse=True)
            self.assertEqual(output.shape, (4, 10, 100))
            self.assertDType(output, dtype)

    @parameterized.named_parameters(
        named_product(mode=("int4", "int8"), tie_weights=(False, True))
    )
    def test_quantize_int(self, mode, tie_weights):
        layer = _layer(10, 16, 4, tie_weights=tie_weights)
        x = np.random.randint(0, 9, size=(64, 3))
        x_reverse = np.random.uniform(size=(64, 16)).astype("float32")
        y_float = layer(x)
        y_reverse_float = layer(x_reverse, reverse=True)
        layer.quantize(mode)
        if not tie_weights:
            self.assertDType(layer.reverse_lookup, "int8")
            self.assertDType(layer.reverse_projection, "int8")
            self.assertDType(layer.reverse_lookup_scale, layer.variable_dtype)
        y_quantized = layer(x)
        y_reverse_quantized = layer(x_reverse, reverse=True)
        self.assertLess(ops.mean(ops.square(y_float - y_quantized)), 1e-3)
        self.assertLess(
            ops.mean(ops.square(y_reverse_float - y_reverse_quantized)), 1e-2
        )

        model = keras.Sequential([layer])
        path = os.path.join(self.get_temp_dir(), "quantized_model.keras")
        model.save(path)
        new_model = keras.saving.load_model(path)
        self.assertAllClose(model.predict(x, verbose=0), new_model.predict(x, verbose=0))
        self.assertAllClose(
            layer(x_reverse, reverse=True),
            new_model.layers[0](x_reverse, reverse=True),
        )

        path = os.path.join(self.get_temp_dir(), "quantized_model.weights.h5")
        model.save_weights(path)
        new_model = keras.Sequential(
            [LowRankReversibleEmbedding(10, 16, 4, tie_weights=tie_weights)]
        )
        new_model.build((None, 3))
        new_model.quantize(mode)
        new_model.load_weights(path)
        self.assertAllClose(model.predict(x, verbose=0), new_model.predict(x, verbose=0))

    @parameterized.named_parameters(
        # Keras: 2 (tied) and 4 (untied) non-trainable weights; here codes
        # and scales of two factors per table.
        ("int8_tie_weights", "int8_from_mixed_bfloat16", True, 0, 4),
        ("int8_untie_weights", "int8_from_mixed_bfloat16", False, 0, 8),
        ("int4_tie_weights", "int4_from_mixed_bfloat16", True, 0, 4),
        ("int4_untie_weights", "int4_from_mixed_bfloat16", False, 0, 8),
    )
    def test_quantize_dtype_argument(
        self, dtype, tie_weights, num_trainable_weights, num_non_trainable_weights
    ):
        self.run_layer_test(
            LowRankReversibleEmbedding,
            init_kwargs={
                "input_dim": 100,
                "output_dim": 32,
                "rank": 8,
                "tie_weights": tie_weights,
                "lookup_initializer": "HeNormal",
                "dtype": dtype,
            },
            input_data=np.random.randint(low=0, high=100, size=(4, 10)),
            expected_output_shape=(4, 10, 32),
            expected_num_trainable_weights=num_trainable_weights,
            expected_num_non_trainable_weights=num_non_trainable_weights,
            expected_num_non_trainable_variables=num_non_trainable_weights,
        )

    def test_reversible_embedding_int8_custom_quantizer(self):
        weight_range = (-20, 20)
        config = Int8QuantizationConfig(
            weight_quantizer=AbsMaxQuantizer(axis=-1, value_range=weight_range)
        )
        layer = _layer(100, 16, 4)
        layer.quantize("int8", config=config)
        new_layer = LowRankReversibleEmbedding.from_config(layer.get_config())
        self.assertIsInstance(new_layer.quantization_config, Int8QuantizationConfig)
        quantizer = new_layer.quantization_config.weight_quantizer
        self.assertIsInstance(quantizer, AbsMaxQuantizer)
        self.assertAllEqual(quantizer.value_range, weight_range)

    def test_masking(self):
        layer = _layer(3, 2, 1, mask_zero=True)
        out = layer(np.array([2, 1, 0]))
        mask = keras.src.backend.get_keras_mask(out)
        self.assertAllClose(mask, np.array([True, True, False]))
        out = layer(np.array([[1.0, 2.0], [0.0, 0.0]]), reverse=True)
        self.assertIsNone(keras.src.backend.get_keras_mask(out))

    @parameterized.named_parameters(
        named_product(block_size=(64, 128, None, -1), tie_weights=(True, False))
    )
    def test_int4_quantization_block_size(self, block_size, tie_weights):
        # A row of `A` holds `rank` values: every block size >= rank is one
        # block per row, so the scales are per row whatever the block size.
        input_dim, output_dim = 100, 256
        layer = _layer(input_dim, output_dim, 32, tie_weights=tie_weights)
        x = np.random.randint(0, input_dim, size=(4, 8))
        x_reverse = np.random.random((4, output_dim)).astype("float32")
        y_float = layer(x)
        y_reverse_float = layer(x_reverse, reverse=True)
        layer.quantize("int4", config=Int4QuantizationConfig(block_size=block_size))
        self.assertEqual(layer.lookup_scale.shape, (input_dim,))
        if not tie_weights:
            self.assertEqual(layer.reverse_lookup_scale.shape, (input_dim,))
        self.assertLess(ops.mean(ops.square(y_float - layer(x))), 1e-3)
        self.assertLess(
            ops.mean(ops.square(y_reverse_float - layer(x_reverse, reverse=True))),
            1e-2,
        )

    @parameterized.named_parameters(
        named_product(block_size=(64, 128, None), tie_weights=(True, False))
    )
    def test_int4_block_size_serialization(self, block_size, tie_weights):
        layer = _layer(50, 128, 16, tie_weights=tie_weights)
        layer.quantize("int4", config=Int4QuantizationConfig(block_size=block_size))
        x = np.random.randint(0, 50, size=(2, 8))
        hidden = np.random.random((2, 128)).astype("float32")
        y_before = layer(x)
        logits_before = layer(hidden, reverse=True)
        model = keras.Sequential([layer])
        path = os.path.join(self.get_temp_dir(), f"int4_{tie_weights}.keras")
        model.save(path)
        loaded = keras.saving.load_model(path)
        loaded_layer = loaded.layers[0]
        self.assertIsInstance(loaded_layer.quantization_config, Int4QuantizationConfig)
        self.assertEqual(loaded_layer.quantization_config.block_size, block_size)
        self.assertAllClose(y_before, loaded(x))
        self.assertAllClose(logits_before, loaded_layer(hidden, reverse=True))

    @parameterized.named_parameters(("grouped_block_4", 4), ("grouped_block_8", 8))
    def test_int4_subchannel_g_idx_created(self, block_size):
        # Keras groups the columns of the dense table; the factors are
        # quantized one block per row of `A`, so a block shorter than the
        # rank is refused and no `g_idx` exists.
        layer = _layer(100, 16, block_size + 1)
        with self.assertRaisesRegex(ValueError, "block_size"):
            layer.quantize("int4", config=Int4QuantizationConfig(block_size=block_size))
        layer = _layer(10, 16, block_size // 2)
        layer.quantize("int4", config=Int4QuantizationConfig(block_size=block_size))
        self.assertFalse(hasattr(layer, "g_idx"))

    def test_int4_perchannel_no_g_idx(self):
        layer = _layer(10, 16, 4)
        layer.quantize("int4", config=Int4QuantizationConfig(block_size=None))
        self.assertFalse(hasattr(layer, "g_idx"))


class LowRankReversibleEmbeddingTest(test_case.TestCase):
    """Parity with numpy and with Keras' layer holding the product table."""

    @parameterized.named_parameters(("tied", True), ("untied", False))
    def test_matches_numpy_both_directions(self, tie_weights):
        layer = _layer(40, 12, 3, tie_weights=tie_weights, logit_soft_cap=20.0)
        lookup, projection = (ops.convert_to_numpy(w) for w in layer.weights[:2])
        reverse = (lookup, projection)
        if not tie_weights:
            reverse = tuple(ops.convert_to_numpy(w) for w in layer.weights[2:])
        ids = np.random.randint(0, 40, size=(2, 7))
        hidden = np.random.randn(2, 7, 12).astype("float32")
        self.assertAllClose(layer(ids), (lookup @ projection)[ids], atol=1e-6)
        logits = hidden @ (reverse[0] @ reverse[1]).T
        self.assertAllClose(
            layer(hidden, reverse=True), 20.0 * np.tanh(logits / 20.0), atol=1e-5
        )

    @parameterized.named_parameters(("tied", True), ("untied", False))
    def test_from_embedding_is_the_svd_of_each_table(self, tie_weights):
        source = keras.layers.ReversibleEmbedding(
            60, 20, tie_weights=tie_weights, logit_soft_cap=30.0, mask_zero=True
        )
        source.build()
        rng = np.random.default_rng(0)
        table = rng.standard_normal((60, 4)) @ rng.standard_normal((4, 20))
        source.embeddings.assign(table)
        kernel = (rng.standard_normal((60, 4)) @ rng.standard_normal((4, 20))).T
        if not tie_weights:
            source.reverse_embeddings.assign(kernel)
        layer = LowRankReversibleEmbedding.from_embedding(source, rank=4)
        self.assertEqual(
            (layer.tie_weights, layer.logit_soft_cap, layer.mask_zero),
            (tie_weights, 30.0, True),
        )
        ids = rng.integers(0, 60, size=(3, 5))
        hidden = rng.standard_normal((3, 20)).astype("float32")
        # Rank-4 tables: the factorization is exact, both directions equal
        # Keras' layer.
        self.assertAllClose(layer(ids), source(ids), atol=1e-4)
        self.assertAllClose(
            layer(hidden, reverse=True), source(hidden, reverse=True), atol=1e-3
        )
        dense = layer.to_embedding()
        self.assertIsInstance(dense, keras.layers.ReversibleEmbedding)
        self.assertAllClose(
            dense(hidden, reverse=True), layer(hidden, reverse=True), atol=1e-4
        )
        # The configured initializers are kept, not the SVD arrays.
        config = layer.get_config()
        self.assertNotIn("reverse_lookup_initializer", config)
        LowRankReversibleEmbedding.from_config(config)

    def test_from_embedding_energy_uses_one_rank(self):
        source = keras.layers.ReversibleEmbedding(60, 20, tie_weights=False)
        source.build()
        layer = LowRankReversibleEmbedding.from_embedding(source, energy=0.5)
        self.assertEqual(layer.reverse_lookup.shape, (60, layer.rank))
        self.assertIn("reverse_energy", layer.factorization)

    @parameterized.named_parameters(("tied", True), ("untied", False))
    def test_bytes_and_layout(self, tie_weights):
        layer = _layer(100, 32, 8, tie_weights=tie_weights)
        tables = 1 if tie_weights else 2
        self.assertEqual(table_bytes(layer), tables * 4 * 8 * (100 + 32))
        layout = TableLayout.of(layer)
        self.assertEqual((layout.rank, layout.input_dim, layout.output_dim), (8, 100, 32))
        self.assertEqual(layout.untied_reverse, not tie_weights)
        self.assertEqual(layout.stored_bytes(), table_bytes(layer))
        self.assertEqual(layout.params(), tables * 8 * (100 + 32))
        for mode in ("int8", "int4"):
            quantized = _layer(100, 32, 8, tie_weights=tie_weights)
            quantized.quantize(mode)
            self.assertEqual(TableLayout.of(quantized).stored_bytes(), table_bytes(quantized))

    def test_functional_model_with_tied_head_trains(self):
        ids = keras.Input((6,), dtype="int32")
        embedding = LowRankReversibleEmbedding(30, 8, 2)
        hidden = keras.layers.Dense(8)(embedding(ids))
        model = keras.Model(ids, embedding(hidden, reverse=True))
        model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        x = np.random.randint(0, 30, size=(16, 6))
        before = [ops.convert_to_numpy(w) for w in embedding.weights]
        model.fit(x, x, epochs=1, verbose=0)
        for old, new in zip(before, embedding.weights):
            self.assertFalse(np.allclose(old, ops.convert_to_numpy(new)))

    def test_errors(self):
        with self.assertRaisesRegex(ValueError, "tie_weights"):
            LowRankReversibleEmbedding(10, 4, 1, tie_weights="yes")
        with self.assertRaisesRegex(ValueError, "logit_soft_cap"):
            LowRankReversibleEmbedding(10, 4, 1, logit_soft_cap=-1)
        with self.assertRaisesRegex(ValueError, "4 arrays"):
            LowRankReversibleEmbedding(
                10, 4, 1, tie_weights=False, weights=[np.zeros((10, 1)), np.zeros((1, 4))]
            )
        with self.assertRaises(NotImplementedError):
            _layer(10, 4, 1).quantize("float8")


@pytest.mark.parametrize("tie_weights", [True, False])
def test_model_quantize_covers_the_layer(tie_weights):
    ids = keras.Input((5,), dtype="int32")
    embedding = LowRankReversibleEmbedding(30, 8, 2, tie_weights=tie_weights)
    model = keras.Model(ids, embedding(embedding(ids), reverse=True))
    x = np.random.randint(0, 30, size=(4, 5))
    before = ops.convert_to_numpy(model(x))
    model.quantize("int8")
    assert embedding.quantization_mode == "int8"
    after = ops.convert_to_numpy(model(x))
    assert math.isfinite(float(np.abs(after - before).max()))
    assert np.abs(after - before).max() < 0.05 * (np.abs(before).max() + 1e-6) + 1e-3
