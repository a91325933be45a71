"""Tests for `keras_lowrank.layers.LowRankEmbedding`.

References are independent of the layer: numpy products and SVDs, the
Eckart-Young bound, and `keras.layers.Embedding` holding the product table.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf
from absl.testing import parameterized

import keras
from keras.src.testing import test_case

from keras_lowrank.layers import LowRankEmbedding

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))


def _dense_reference(lookup, projection, **kwargs):
    """A plain `Embedding` holding the numpy product table."""
    table = np.asarray(lookup, "float32") @ np.asarray(projection, "float32")
    layer = keras.layers.Embedding(*table.shape, **kwargs)
    layer.build()
    layer.embeddings.assign(table)
    return layer


def _numpy_quantize(values, axis, qmax):
    """Symmetric abs-max quantization, `value ~ code / scale`."""
    scale = qmax / (np.max(np.abs(values), axis=axis, keepdims=True) + 1e-7)
    codes = np.clip(np.round(values * scale), -qmax - 1, qmax)
    return codes, scale


def _run_in_fresh_process(script):
    """Runs `script` in a new Python process and returns its stdout."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow")
    env["PYTHONPATH"] = REPO_ROOT + os.pathsep + env.get("PYTHONPATH", "")
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    if result.returncode != 0:
        raise AssertionError(result.stderr[-4000:])
    return result.stdout


class LowRankEmbeddingTest(test_case.TestCase):
    # Keras' own harness, in the configurations of Keras' embedding_test.py.

    def test_layer_basics(self):
        self.run_layer_test(
            LowRankEmbedding,
            {"input_dim": 4, "output_dim": 3, "rank": 1},
            input_shape=(2,),
            input_dtype="int32",
            expected_output_shape=(2, 3),
            expected_num_trainable_weights=2,
            expected_num_non_trainable_weights=0,
            expected_num_seed_generators=0,
            expected_num_losses=0,
            supports_masking=False,
        )
        self.run_layer_test(
            LowRankEmbedding,
            {"input_dim": 5, "output_dim": 4, "rank": 2, "mask_zero": True},
            input_shape=(2, 3),
            input_dtype="int64",
            expected_output_shape=(2, 3, 4),
            expected_num_trainable_weights=2,
            expected_num_non_trainable_weights=0,
            expected_num_seed_generators=0,
            expected_num_losses=0,
            supports_masking=True,
        )

    def test_sparse_layer_harness(self):
        self.run_layer_test(
            LowRankEmbedding,
            {"input_dim": 5, "output_dim": 4, "rank": 2},
            input_shape=(2, 3),
            input_dtype="int32",
            input_sparse=True,
            expected_output_shape=(2, 3, 4),
            expected_num_trainable_weights=2,
            expected_num_non_trainable_weights=0,
            expected_num_seed_generators=0,
            expected_num_losses=0,
            supports_masking=False,
        )

    def test_ragged_layer_harness(self):
        self.run_layer_test(
            LowRankEmbedding,
            {"input_dim": 5, "output_dim": 4, "rank": 2},
            input_shape=(2, 3),
            input_dtype="int32",
            input_ragged=True,
            expected_output_shape=(2, None, 4),
            expected_output_ragged=True,
            expected_num_trainable_weights=2,
            expected_num_non_trainable_weights=0,
            expected_num_seed_generators=0,
            expected_num_losses=0,
            supports_masking=False,
        )

    # Call contract.

    def test_correctness(self):
        lookup = np.array([[0.0], [1.0], [2.0]], "float32")
        projection = np.array([[1.5, -1.0]], "float32")
        layer = LowRankEmbedding(3, 2, 1, weights=[lookup, projection])
        self.assertAllClose(
            layer(np.array([2, 1, 0])),
            np.array([[3.0, -2.0], [1.5, -1.0], [0.0, 0.0]]),
        )

    def test_output_shapes_for_any_id_shape(self):
        layer = LowRankEmbedding(20, 6, 2)
        rng = np.random.default_rng(0)
        for shape in [(), (4,), (2, 3), (2, 3, 4)]:
            ids = rng.integers(0, 20, size=shape)
            self.assertEqual(tuple(layer(ids).shape), (*shape, 6))
            self.assertEqual(layer.compute_output_shape(shape), (*shape, 6))
        symbolic = layer(keras.Input(shape=(None,), dtype="int32"))
        self.assertEqual(tuple(symbolic.shape), (None, None, 6))

    def test_matches_dense_embedding_of_product(self):
        layer = LowRankEmbedding(30, 5, 3)
        layer.build()
        reference = _dense_reference(layer.lookup, layer.projection)
        ids = np.random.default_rng(1).integers(0, 30, size=(4, 7))
        self.assertAllClose(layer(ids), reference(ids), atol=1e-6)
        # Non-integer ids are cast, as Embedding does.
        self.assertAllClose(layer(ids.astype("float32")), reference(ids))

    def test_sparse_ids_match_dense_embedding(self):
        layer = LowRankEmbedding(6, 4, 2)
        layer.build()
        reference = _dense_reference(layer.lookup, layer.projection)
        ids = tf.SparseTensor([[0, 0], [1, 2], [2, 1]], [2, 5, 1], (3, 3))
        outputs = layer(ids)
        self.assertIsInstance(outputs, tf.Tensor)
        self.assertAllClose(outputs, reference(ids), atol=1e-6)

    def test_ragged_ids_match_dense_embedding(self):
        layer = LowRankEmbedding(6, 4, 2, mask_zero=True)
        layer.build()
        reference = _dense_reference(
            layer.lookup, layer.projection, mask_zero=True
        )
        ids = tf.ragged.constant([[1, 2, 5], [0], [3, 4]])
        outputs = layer(ids)
        self.assertIsInstance(outputs, tf.RaggedTensor)
        self.assertAllClose(
            outputs.to_tensor(), reference(ids).to_tensor(), atol=1e-6
        )
        self.assertAllEqual(
            layer.compute_mask(ids).to_tensor(),
            reference.compute_mask(ids).to_tensor(),
        )

    def test_masking(self):
        layer = LowRankEmbedding(3, 2, 1, mask_zero=True)
        self.assertTrue(layer.supports_masking)
        self.assertAllClose(
            layer.compute_mask(np.array([2, 1, 0])),
            np.array([True, True, False]),
        )
        unmasked = LowRankEmbedding(3, 2, 1)
        self.assertIsNone(unmasked.compute_mask(np.array([2, 1, 0])))

    def test_mask_propagates_like_embedding(self):
        layer = LowRankEmbedding(10, 4, 2, mask_zero=True)
        layer.build()
        reference = _dense_reference(
            layer.lookup, layer.projection, mask_zero=True
        )
        ids = np.array([[3, 5, 0, 0], [1, 0, 0, 0]])

        def masked_mean(embedding):
            inputs = keras.Input(shape=(None,), dtype="int32")
            pooled = keras.layers.GlobalAveragePooling1D()(embedding(inputs))
            return keras.Model(inputs, pooled)(ids)

        low_rank, dense = masked_mean(layer), masked_mean(reference)
        self.assertAllClose(low_rank, dense, atol=1e-6)
        # The mask matters: the masked mean differs from the plain mean.
        plain = np.mean(np.asarray(layer(ids)), axis=1)
        self.assertNotAllClose(low_rank, plain)

    def test_config_round_trip(self):
        layer = LowRankEmbedding(
            12,
            5,
            2,
            lookup_initializer="glorot_uniform",
            projection_regularizer="l2",
            lookup_constraint="non_neg",
            mask_zero=True,
            activity_regularizer="l1",
            name="tokens",
        )
        config = layer.get_config()
        self.assertNotIn("lookup_regularizer", config)
        restored = LowRankEmbedding.from_config(config)
        self.assertEqual(restored.get_config(), config)
        self.assertEqual(restored.rank, 2)
        self.assertTrue(restored.mask_zero)
        self.assertIsInstance(
            restored.projection_regularizer, keras.regularizers.L2
        )
        # Registered under the package, so generic deserialization finds it.
        serialized = keras.saving.serialize_keras_object(layer)
        self.assertEqual(
            serialized["registered_name"], "keras_lowrank>LowRankEmbedding"
        )
        again = keras.saving.deserialize_keras_object(serialized)
        self.assertIsInstance(again, LowRankEmbedding)

    def test_default_initializer_matches_embedding_scale(self):
        keras.utils.set_random_seed(0)
        expected_std = 0.05 / np.sqrt(3.0)
        for rank in (1, 8, 32):
            layer = LowRankEmbedding(2000, 256, rank)
            layer.build()
            std = np.std(np.asarray(layer.embeddings))
            self.assertAllClose(std, expected_std, rtol=0.1)

    def test_training_step_changes_both_factors(self):
        layer = LowRankEmbedding(20, 4, 2)
        model = keras.Sequential(
            [keras.Input(shape=(5,), dtype="int32"), layer,
             keras.layers.Flatten(), keras.layers.Dense(1)]
        )
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        before = [np.array(w) for w in (layer.lookup, layer.projection)]
        x = np.random.default_rng(2).integers(0, 20, size=(8, 5))
        model.train_on_batch(x, np.ones((8, 1)))
        after = [np.array(w) for w in (layer.lookup, layer.projection)]
        self.assertNotAllClose(before[0], after[0])
        self.assertNotAllClose(before[1], after[1])
        # Only the rows of ids seen in the batch move.
        unseen = sorted(set(range(20)) - set(x.ravel()))
        self.assertAllClose(before[0][unseen], after[0][unseen])

    def test_regularizers_and_constraints(self):
        layer = LowRankEmbedding(
            10,
            4,
            2,
            lookup_regularizer=keras.regularizers.L2(0.5),
            projection_regularizer=keras.regularizers.L1(0.25),
            projection_constraint="non_neg",
        )
        layer.build()
        lookup, projection = np.array(layer.lookup), np.array(layer.projection)
        expected = 0.5 * np.sum(lookup**2) + 0.25 * np.sum(np.abs(projection))
        self.assertAllClose(sum(layer.losses), expected, rtol=1e-5)
        self.assertIsInstance(
            layer.projection.constraint, keras.constraints.NonNeg
        )

    def test_mixed_bfloat16(self):
        layer = LowRankEmbedding(30, 8, 3, dtype="mixed_bfloat16")
        ids = np.random.default_rng(3).integers(0, 30, size=(4, 6))
        outputs = layer(ids)
        self.assertEqual(keras.backend.standardize_dtype(outputs.dtype),
                         "bfloat16")
        for weight in layer.weights:
            self.assertEqual(weight.dtype, "float32")
        reference = _dense_reference(layer.lookup, layer.projection)(ids)
        # bfloat16 keeps 8 significant bits: relative error ~2**-8 per
        # factor entry, so a few percent of the output scale.
        self.assertAllClose(
            np.asarray(outputs, "float32"), reference,
            atol=0.02 * np.max(np.abs(reference)), rtol=0.02,
        )

    def test_weights_argument(self):
        rng = np.random.default_rng(4)
        lookup = rng.normal(size=(7, 2)).astype("float32")
        projection = rng.normal(size=(2, 3)).astype("float32")
        layer = LowRankEmbedding(7, 3, 2, weights=[lookup, projection])
        self.assertTrue(layer.built)
        self.assertAllClose(layer.embeddings, lookup @ projection)

    def test_save_and_load_in_fresh_process(self):
        layer = LowRankEmbedding(40, 6, 3, mask_zero=True, name="tokens")
        inputs = keras.Input(shape=(None,), dtype="int32")
        pooled = keras.layers.GlobalAveragePooling1D()(layer(inputs))
        model = keras.Model(inputs, keras.layers.Dense(2)(pooled))
        ids = np.random.default_rng(5).integers(0, 40, size=(5, 8))
        path = os.path.join(self.get_temp_dir(), "model.keras")
        model.save(path)
        np.save(path + ".ids.npy", ids)
        stdout = _run_in_fresh_process(
            f"""
            import json, numpy as np, keras
            import keras_lowrank.layers
            model = keras.saving.load_model({path!r})
            layer = model.get_layer("tokens")
            ids = np.load({path + ".ids.npy"!r})
            print(json.dumps({{
                "type": type(layer).__name__,
                "outputs": np.asarray(model(ids)).tolist(),
            }}))
            """
        )
        result = json.loads(stdout.strip().splitlines()[-1])
        self.assertEqual(result["type"], "LowRankEmbedding")
        self.assertAllEqual(np.array(result["outputs"], "float32"),
                            np.asarray(model(ids)))

    # from_embedding / to_embedding.

    def test_from_embedding_reaches_eckart_young_optimum(self):
        rng = np.random.default_rng(6)
        table = rng.normal(size=(60, 12)).astype("float32")
        source = _dense_reference(table, np.eye(12, dtype="float32"))
        singular_values = np.linalg.svd(table.astype("float64"),
                                        compute_uv=False)
        for rank in (1, 4, 7):
            layer = LowRankEmbedding.from_embedding(source, rank=rank)
            error = np.sum((table - np.asarray(layer.embeddings)) ** 2)
            optimum = np.sum(singular_values[rank:] ** 2)
            self.assertAllClose(error, optimum, rtol=1e-4)
            self.assertEqual(layer.rank, rank)

    def test_from_embedding_is_exact_at_true_rank(self):
        rng = np.random.default_rng(7)
        table = (rng.normal(size=(50, 3)) @ rng.normal(size=(3, 10))).astype(
            "float32"
        )
        source = _dense_reference(table, np.eye(10, dtype="float32"))
        layer = LowRankEmbedding.from_embedding(source, rank=3)
        self.assertAllClose(layer.embeddings, table, atol=1e-4)
        ids = rng.integers(0, 50, size=(3, 4))
        self.assertAllClose(layer(ids), source(ids), atol=1e-4)

    def test_from_embedding_copies_layer_settings(self):
        source = keras.layers.Embedding(
            40, 8, mask_zero=True, name="words", dtype="mixed_bfloat16",
            embeddings_regularizer="l2", activity_regularizer="l1",
        )
        source.build()
        layer = LowRankEmbedding.from_embedding(source, compression=0.5)
        self.assertTrue(layer.built)
        self.assertEqual(layer.name, "words")
        self.assertTrue(layer.mask_zero)
        self.assertEqual(layer.dtype_policy.name, "mixed_bfloat16")
        self.assertIsNotNone(layer.activity_regularizer)
        # Table penalties do not translate to the factors: not copied.
        self.assertIsNone(layer.lookup_regularizer)
        self.assertIsNone(layer.projection_regularizer)
        renamed = LowRankEmbedding.from_embedding(source, rank=2, name="small")
        self.assertEqual(renamed.name, "small")

    def test_from_embedding_rank_choices(self):
        rng = np.random.default_rng(8)
        table = rng.normal(size=(100, 20)).astype("float32")
        source = _dense_reference(table, np.eye(20, dtype="float32"))
        # floor((1 - 0.9) * 100 * 20 / 120) = 1
        self.assertEqual(
            LowRankEmbedding.from_embedding(source, compression=0.9).rank, 1
        )
        self.assertEqual(
            LowRankEmbedding.from_embedding(source, compression=0.5).rank, 8
        )
        layer = LowRankEmbedding.from_embedding(source, energy=0.6)
        s2 = np.linalg.svd(table.astype("float64"), compute_uv=False) ** 2
        kept = np.cumsum(s2) / np.sum(s2)
        self.assertEqual(layer.rank, int(np.argmax(kept >= 0.6)) + 1)
        self.assertGreaterEqual(layer.factorization["energy"], 0.6)

    def test_from_embedding_singular_value_split(self):
        rng = np.random.default_rng(9)
        table = rng.normal(size=(30, 8)).astype("float32")
        source = _dense_reference(table, np.eye(8, dtype="float32"))
        balanced = LowRankEmbedding.from_embedding(source, rank=3)
        a, b = np.asarray(balanced.lookup), np.asarray(balanced.projection)
        # Balanced: A^T A = B B^T = diag(S_r).
        s = np.linalg.svd(table.astype("float64"), compute_uv=False)[:3]
        self.assertAllClose(a.T @ a, np.diag(s), atol=1e-3)
        self.assertAllClose(b @ b.T, np.diag(s), atol=1e-3)
        right = LowRankEmbedding.from_embedding(source, rank=3, split="right")
        a = np.asarray(right.lookup)
        self.assertAllClose(a.T @ a, np.eye(3), atol=1e-4)
        self.assertAllClose(right.embeddings, balanced.embeddings, atol=1e-4)

    def test_from_embedding_errors(self):
        with self.assertRaisesRegex(ValueError, "embedding_layer"):
            LowRankEmbedding.from_embedding(keras.layers.Dense(3), rank=1)
        with self.assertRaisesRegex(ValueError, "built"):
            LowRankEmbedding.from_embedding(
                keras.layers.Embedding(10, 4), rank=1
            )
        quantized = keras.layers.Embedding(10, 4)
        quantized.build()
        quantized.quantize("int8")
        with self.assertRaisesRegex(ValueError, "quantized"):
            LowRankEmbedding.from_embedding(quantized, rank=1)
        table = np.ones((10, 4), "float32")
        table[3, 1] = np.nan
        non_finite = _dense_reference(table, np.eye(4, dtype="float32"))
        with self.assertRaisesRegex(ValueError, "finite"):
            LowRankEmbedding.from_embedding(non_finite, rank=1)
        finite = _dense_reference(np.ones((10, 4)), np.eye(4))
        with self.assertRaisesRegex(ValueError, "rank"):
            LowRankEmbedding.from_embedding(finite, rank=1, compression=0.5)
        with self.assertRaisesRegex(ValueError, "rank"):
            LowRankEmbedding.from_embedding(finite, rank=3)
        with self.assertRaisesRegex(ValueError, "split"):
            LowRankEmbedding.from_embedding(finite, rank=1, split="left")

    def test_from_embedding_row_weights_favour_weighted_rows(self):
        rng = np.random.default_rng(15)
        table = rng.normal(size=(40, 10)).astype("float32")
        source = _dense_reference(table, np.eye(10, dtype="float32"))
        weights = np.ones(40)
        weights[:5] = 1000.0
        plain = LowRankEmbedding.from_embedding(source, rank=3)
        weighted = LowRankEmbedding.from_embedding(
            source, rank=3, row_weights=weights
        )

        def head_error(layer):
            return np.sum((table[:5] - np.asarray(layer.embeddings)[:5]) ** 2)

        self.assertLess(head_error(weighted), head_error(plain))

    def test_to_embedding_parity(self):
        layer = LowRankEmbedding(
            25, 6, 2, mask_zero=True, name="tokens", dtype="mixed_bfloat16"
        )
        layer.build()
        embedding = layer.to_embedding()
        self.assertIs(type(embedding), keras.layers.Embedding)
        self.assertTrue(embedding.built)
        self.assertEqual(embedding.name, "tokens")
        self.assertTrue(embedding.mask_zero)
        self.assertEqual(embedding.dtype_policy.name, "mixed_bfloat16")
        self.assertAllClose(embedding.embeddings, layer.embeddings)
        ids = np.random.default_rng(10).integers(0, 25, size=(3, 5))
        self.assertAllClose(
            np.asarray(embedding(ids), "float32"),
            np.asarray(layer(ids), "float32"),
            atol=2e-3,
        )

    # Quantization.

    @parameterized.named_parameters(("int8", "int8", 127), ("int4", "int4", 7))
    def test_quantize_matches_numpy_and_error_bound(self, mode, qmax):
        rng = np.random.default_rng(11)
        lookup = rng.normal(size=(40, 5)).astype("float32")
        projection = rng.normal(size=(5, 9)).astype("float32")
        layer = LowRankEmbedding(40, 9, 5, weights=[lookup, projection])
        ids = rng.integers(0, 40, size=(6, 7))
        float_outputs = np.asarray(layer(ids))
        layer.quantize(mode)
        self.assertEqual(layer.quantization_mode, mode)
        outputs = np.asarray(layer(ids))

        # Independent numpy reference of the documented scheme.
        a_codes, a_scale = _numpy_quantize(lookup, axis=1, qmax=qmax)
        b_codes, b_scale = _numpy_quantize(projection, axis=0, qmax=127)
        a_hat, b_hat = a_codes / a_scale, b_codes / b_scale
        self.assertAllClose(outputs, (a_hat @ b_hat)[ids], atol=1e-5)
        # Rounding moves each code by at most 1/2, so each entry of A by at
        # most 0.5 / row scale and of B by 0.5 / column scale; the output
        # error is bounded by |dA| |B| + |A_hat| |dB| summed over the rank.
        bound = (0.5 / a_scale) * np.sum(np.abs(projection), axis=0) + (
            np.sum(np.abs(a_hat), axis=1, keepdims=True) * (0.5 / b_scale)
        )
        error = np.abs(outputs - float_outputs)
        self.assertTrue(np.all(error <= bound[ids] + 1e-5))

    @parameterized.named_parameters(("int8", "int8"), ("int4", "int4"))
    def test_quantized_sparse_and_ragged_ids(self, mode):
        layer = LowRankEmbedding(20, 6, 3)
        layer.build()
        layer.quantize(mode)
        reference = _dense_reference(*layer.dequantized_factors())
        sparse = tf.SparseTensor([[0, 0], [1, 2]], [2, 5], (2, 3))
        self.assertAllClose(layer(sparse), reference(sparse), atol=1e-6)
        ragged = tf.ragged.constant([[1, 2, 5], [0]])
        self.assertAllClose(
            layer(ragged).to_tensor(), reference(ragged).to_tensor(), atol=1e-6
        )

    def test_storage_bytes(self):
        vocab, dim, rank = 101, 12, 5
        layer = LowRankEmbedding(vocab, dim, rank)
        layer.build()
        self.assertEqual(layer.storage_bytes(), 4 * rank * (vocab + dim))
        layer.quantize("int8")
        # int8 codes of A and B, float32 scale per row of A and column of B.
        self.assertEqual(
            layer.storage_bytes(),
            vocab * rank + rank * dim + 4 * vocab + 4 * dim,
        )
        int4 = LowRankEmbedding(vocab, dim, rank)
        int4.build()
        int4.quantize("int4")
        # Odd rank: ceil(5 / 2) = 3 bytes per row of A.
        self.assertEqual(
            int4.storage_bytes(breakdown=True),
            {
                "lookup": vocab * 3,
                "lookup_scale": 4 * vocab,
                "projection": rank * dim,
                "projection_scale": 4 * dim,
            },
        )

    @parameterized.named_parameters(("int8", "int8"), ("int4", "int4"))
    def test_model_quantize_covers_the_layer(self, mode):
        keras.utils.set_random_seed(0)
        model = keras.Sequential(
            [
                keras.Input(shape=(4,), dtype="int32"),
                LowRankEmbedding(30, 8, 3, name="tokens"),
                keras.layers.GlobalAveragePooling1D(),
                keras.layers.Dense(2),
            ]
        )
        ids = np.random.default_rng(12).integers(0, 30, size=(5, 4))
        float_outputs = np.asarray(model(ids))
        model.quantize(mode)
        layer = model.get_layer("tokens")
        self.assertEqual(layer.quantization_mode, mode)
        self.assertEqual(
            keras.backend.standardize_dtype(layer.lookup.dtype), "int8"
        )
        # Outputs stay close to float (the per-entry bound of this layer is
        # checked in `test_quantize_matches_numpy_and_error_bound`). Here the
        # Dense is quantized too; rounding moves an int8 code by at most
        # 1/254 of its row's range and an int4 code by 1/14, so the relative
        # error of the logits stays at a few percent (int8) or below a
        # quarter (int4, measured ~4-11% over seeds).
        tolerance = {"int8": 0.05, "int4": 0.25}[mode]
        quantized_outputs = model.predict(ids, verbose=0)
        self.assertLess(
            np.linalg.norm(quantized_outputs - float_outputs),
            tolerance * np.linalg.norm(float_outputs),
        )

    @parameterized.named_parameters(("int8", "int8"), ("int4", "int4"))
    def test_quantized_save_and_load(self, mode):
        model = keras.Sequential(
            [
                keras.Input(shape=(4,), dtype="int32"),
                LowRankEmbedding(30, 8, 3, name="tokens", mask_zero=True),
                keras.layers.GlobalAveragePooling1D(),
            ]
        )
        model.get_layer("tokens").quantize(mode)
        ids = np.random.default_rng(13).integers(0, 30, size=(5, 4))
        path = os.path.join(self.get_temp_dir(), f"{mode}.keras")
        model.save(path)
        loaded = keras.saving.load_model(path)
        layer = loaded.get_layer("tokens")
        self.assertEqual(layer.quantization_mode, mode)
        self.assertAllEqual(loaded(ids), model(ids))

    @pytest.mark.slow
    def test_quantized_save_and_load_in_fresh_process(self):
        ids = np.random.default_rng(14).integers(0, 30, size=(5, 4))
        expected, paths = {}, {}
        for mode in ("int8", "int4"):
            model = keras.Sequential(
                [
                    keras.Input(shape=(4,), dtype="int32"),
                    LowRankEmbedding(30, 8, 3, name="tokens"),
                    keras.layers.Flatten(),
                    keras.layers.Dense(3),
                ]
            )
            model.quantize(mode)
            paths[mode] = os.path.join(self.get_temp_dir(), f"{mode}.keras")
            model.save(paths[mode])
            expected[mode] = np.asarray(model(ids))
        stdout = _run_in_fresh_process(
            f"""
            import json, numpy as np, keras
            import keras_lowrank.layers
            ids = np.array({ids.tolist()!r})
            out = {{}}
            for mode, path in {paths!r}.items():
                model = keras.saving.load_model(path)
                out[mode] = [
                    model.get_layer("tokens").quantization_mode,
                    np.asarray(model(ids)).tolist(),
                ]
            print(json.dumps(out))
            """
        )
        result = json.loads(stdout.strip().splitlines()[-1])
        for mode in ("int8", "int4"):
            self.assertEqual(result[mode][0], mode)
            self.assertAllEqual(np.array(result[mode][1], "float32"),
                                expected[mode])

    def test_int4_with_rank_above_keras_default_block_size(self):
        import warnings

        # rank 150 > Keras' default int4 block size (128): A stays per-row
        # (one scale per row, codes packed along the rank) without a warning.
        layer = LowRankEmbedding(1000, 300, 150)
        layer.build()
        dense = np.asarray(layer.embeddings)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            layer.quantize("int4")
        self.assertFalse([w for w in caught if "block_size" in str(w.message)])
        self.assertEqual(tuple(layer.lookup_scale.shape), (1000,))
        ids = np.arange(1000).reshape(10, 100)
        error = np.abs(np.asarray(layer(ids)).reshape(1000, 300) - dense)
        self.assertLess(float(error.max()), 0.2 * float(np.abs(dense).max()))

    def test_quantize_errors(self):
        layer = LowRankEmbedding(10, 4, 2)
        with self.assertRaisesRegex(ValueError, "built"):
            layer.quantize("int8")
        layer.build()
        with self.assertRaisesRegex(NotImplementedError, "LowRankEmbedding"):
            layer.quantize("float8")
        with self.assertRaisesRegex(ValueError, "mode"):
            layer.quantize("int3")
        layer.quantize("int8")
        with self.assertRaisesRegex(ValueError, "already quantized"):
            layer.quantize("int4")

        class Subclass(LowRankEmbedding):
            pass

        subclass = Subclass(10, 4, 2)
        subclass.build()
        with self.assertRaises(NotImplementedError):
            subclass.quantize("int8")

    # Argument validation.

    def test_invalid_dims_and_rank(self):
        for name in ("input_dim", "output_dim", "rank"):
            for bad_value in (3.7, 4.0, "3", None, True, -1, 0):
                kwargs = {"input_dim": 50, "output_dim": 8, "rank": 2}
                kwargs[name] = bad_value
                with self.assertRaisesRegex(
                    ValueError, f"`{name}` to be a positive integer"
                ):
                    LowRankEmbedding(**kwargs)

    def test_rank_that_saves_nothing_is_an_error(self):
        # 10 x 4 table: rank 2 stores 28 < 40 numbers, rank 3 stores 42.
        LowRankEmbedding(10, 4, 2)
        with self.assertRaisesRegex(ValueError, r"rank=3.*saves nothing"):
            LowRankEmbedding(10, 4, 3)
        with self.assertRaisesRegex(ValueError, "saves nothing"):
            LowRankEmbedding(1, 4, 1)

    def test_invalid_mask_zero_and_weights(self):
        with self.assertRaisesRegex(ValueError, "mask_zero='yes'"):
            LowRankEmbedding(10, 4, 2, mask_zero="yes")
        with self.assertRaisesRegex(ValueError, r"weights=an array of shape"):
            LowRankEmbedding(10, 4, 2, weights=np.zeros((10, 4)))
        with self.assertRaises(ValueError):
            LowRankEmbedding(
                10, 4, 2, weights=[np.zeros((10, 3)), np.zeros((3, 4))]
            )
        layer = LowRankEmbedding(10, 4, 2)
        with self.assertRaisesRegex(ValueError, "built"):
            layer.storage_bytes()
        with self.assertRaisesRegex(ValueError, "built"):
            layer.to_embedding()
