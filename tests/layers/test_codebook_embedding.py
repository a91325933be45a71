"""Tests for `keras_lowrank.CodebookEmbedding`.

References are independent of the layer: numpy gathers of codebooks by
codes, nearest codewords by explicit distance loops, bits unpacked with
numpy shifts, `keras.layers.Embedding` for masks, and byte counts by hand.
"""

import io
import json
import os
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest
from absl.testing import parameterized

import keras
from keras.src.testing import test_case

from keras_lowrank.compression import table_bytes
from keras_lowrank.layers import CodebookEmbedding
from tests.decomposition.test_kmeans import brute_force_codes

pytestmark = pytest.mark.backend_agnostic

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))


def _numpy(x):
    return keras.ops.convert_to_numpy(x)


def _gather(codebooks, codes):
    """Rows `concat_g codebooks[g, codes[:, g]]`, by a loop over groups."""
    return np.concatenate([codebooks[g][codes[:, g]] for g in range(codebooks.shape[0])], axis=1)




def _unpack_nibbles(packed, groups):
    """Two 4-bit codes per byte, low nibble first, with numpy shifts."""
    packed = np.asarray(packed, np.uint8)
    both = np.stack([packed & 0x0F, packed >> 4], axis=-1).reshape(len(packed), -1)
    return both[:, :groups]


def _table(rows=40, dim=6, seed=0):
    return np.random.default_rng(seed).normal(size=(rows, dim)).astype("float32")


def _run_in_fresh_process(script):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env["PYTHONPATH"] = REPO_ROOT + os.pathsep + env.get("PYTHONPATH", "")
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True, text=True, env=env, timeout=300,
    )
    if result.returncode != 0:
        raise AssertionError(result.stderr[-4000:])
    return result.stdout


class CodebookEmbeddingTest(test_case.TestCase, parameterized.TestCase):
    # Keras' own harness: build, config round trip, symbolic call, a
    # training step, mixed precision.

    def test_layer_basics(self):
        self.run_layer_test(
            CodebookEmbedding,
            {"input_dim": 5, "output_dim": 4, "groups": 2, "codes": 3, "mask_zero": True},
            input_shape=(2, 3),
            input_dtype="int32",
            expected_output_shape=(2, 3, 4),
            expected_num_trainable_weights=2,
            expected_num_non_trainable_weights=1,
            expected_num_seed_generators=0,
            expected_num_losses=1,
            supports_masking=True,
        )
        self.run_layer_test(
            CodebookEmbedding,
            {"input_dim": 5, "output_dim": 4, "groups": 2, "codes": 3, "codes_frozen": True},
            input_shape=(2,),
            input_dtype="int32",
            expected_output_shape=(2, 4),
            expected_num_trainable_weights=1,
            expected_num_non_trainable_weights=1,
            expected_num_seed_generators=0,
            expected_num_losses=0,
            supports_masking=False,
        )

    # Call contract.

    def test_frozen_rows_are_a_gather_of_codebooks_by_codes(self):
        table = _table()
        layer = CodebookEmbedding.from_embedding(table, groups=3, codes=4)
        codebooks = _numpy(layer.codebooks)
        codes = _unpack_nibbles(_numpy(layer.packed_codes), 3)
        self.assertFalse(hasattr(layer, "embeddings"))
        ids = np.random.default_rng(1).integers(0, 40, size=(3, 5))
        self.assertAllClose(layer(ids), _gather(codebooks, codes)[ids])
        self.assertAllClose(layer.decoded_table(), _gather(codebooks, codes))

    def test_nearest_codeword_matches_brute_force(self):
        layer = CodebookEmbedding(30, 6, groups=3, codes=5)
        layer.build()
        layer.embeddings.assign(_table(30, 6, seed=2))
        layer.codebooks.assign(np.random.default_rng(3).normal(size=(3, 5, 2)).astype("float32"))
        expected = brute_force_codes(_numpy(layer.embeddings), _numpy(layer.codebooks))
        self.assertAllEqual(layer.get_codes(), expected)
        # The training-form call outputs exactly those codewords.
        ids = np.arange(30).reshape(5, 6)
        self.assertAllClose(layer(ids), _gather(_numpy(layer.codebooks), expected)[ids])
        layer.freeze_codes()
        self.assertAllEqual(layer.get_codes(), expected)
        self.assertAllClose(layer(ids), _gather(_numpy(layer.codebooks), expected)[ids])

    def test_losses_are_codebook_plus_commitment(self):
        layer = CodebookEmbedding(12, 4, groups=2, codes=3, beta=0.4)
        ids = np.array([[1, 2, 3], [3, 0, 11]])
        layer(ids)
        rows = _numpy(layer.embeddings)[ids]
        quantized = layer.decoded_table()[ids]
        expected = (1.0 + 0.4) * np.mean((rows - quantized) ** 2)
        self.assertLen(layer.losses, 1)
        self.assertAllClose(layer.losses[0], expected, rtol=1e-5)

    def test_straight_through_gradient_reaches_table_and_codebooks(self):
        layer = CodebookEmbedding(20, 4, groups=2, codes=4, beta=0.0)
        model = keras.Sequential(
            [keras.Input(shape=(3,), dtype="int32"), layer, keras.layers.Flatten(), keras.layers.Dense(1)]
        )
        model.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse")
        x = np.array([[1, 2, 3], [4, 5, 6]])
        before = [_numpy(layer.embeddings), _numpy(layer.codebooks)]
        model.fit(x, np.full((2, 1), 3.0), epochs=1, batch_size=2, verbose=0)
        after = [_numpy(layer.embeddings), _numpy(layer.codebooks)]
        self.assertNotAllClose(before[0][1:7], after[0][1:7])
        self.assertAllClose(before[0][7:], after[0][7:])
        self.assertNotAllClose(before[1], after[1])

    def test_frozen_layer_fine_tunes_codebooks_only(self):
        layer = CodebookEmbedding.from_embedding(_table(20, 4), groups=2, codes=4)
        model = keras.Sequential(
            [keras.Input(shape=(3,), dtype="int32"), layer, keras.layers.Flatten(), keras.layers.Dense(1)]
        )
        model.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse")
        codes, codebooks = layer.get_codes(), _numpy(layer.codebooks)
        model.fit(np.array([[1, 2, 3], [4, 5, 6]]), np.full((2, 1), 3.0), verbose=0)
        self.assertAllEqual(layer.get_codes(), codes)
        self.assertNotAllClose(_numpy(layer.codebooks), codebooks)

    def test_mask_matches_embedding(self):
        layer = CodebookEmbedding(10, 4, groups=2, codes=3, mask_zero=True)
        reference = keras.layers.Embedding(10, 4, mask_zero=True)
        ids = np.array([[3, 5, 0, 0], [1, 0, 2, 0]])
        self.assertAllEqual(layer.compute_mask(ids), reference.compute_mask(ids))
        self.assertIsNone(CodebookEmbedding(10, 4, 2, 3).compute_mask(ids))
        inputs = keras.Input(shape=(None,), dtype="int32")
        pooled = keras.layers.GlobalAveragePooling1D()(layer(inputs))
        outputs = _numpy(keras.Model(inputs, pooled)(ids))
        rows, mask = layer.decoded_table()[ids], (ids != 0)[..., None]
        self.assertAllClose(outputs, np.sum(rows * mask, axis=1) / np.sum(mask, axis=1), atol=1e-6)

    def test_ragged_ids(self):
        if keras.backend.backend() != "tensorflow":
            self.skipTest("ragged ids are TensorFlow tensors")
        import tensorflow as tf

        layer = CodebookEmbedding.from_embedding(_table(6, 4), groups=2, codes=3)
        outputs = layer(tf.ragged.constant([[1, 2, 5], [0]]))
        self.assertIsInstance(outputs, tf.RaggedTensor)
        self.assertAllClose(outputs.flat_values, layer.decoded_table()[[1, 2, 5, 0]])

    # Storage.

    @parameterized.named_parameters(
        ("nibbles_odd_groups", 16, 3, 2),
        ("nibbles_even_groups", 2, 4, 2),
        ("bytes", 17, 3, 3),
    )
    def test_packed_codes_unpack_to_the_codes(self, codes, groups, width):
        table = _table(50, 12, seed=4)
        layer = CodebookEmbedding.from_embedding(table, groups=groups, codes=codes)
        packed = _numpy(layer.packed_codes)
        self.assertEqual(packed.shape, (50, width))
        self.assertEqual(packed.dtype, np.uint8)
        unpacked = _unpack_nibbles(packed, groups) if codes <= 16 else packed
        expected = brute_force_codes(table, _numpy(layer.codebooks))
        self.assertAllEqual(unpacked, expected)
        self.assertAllEqual(layer.get_codes(), expected)

    @parameterized.named_parameters(
        ("float32_nibbles", 16, "float32"), ("float32_bytes", 200, "float32"), ("int8", 16, "int8")
    )
    def test_stored_bytes(self, codes, codebook_dtype):
        vocab, dim, groups = 300, 12, 3
        layer = CodebookEmbedding.from_embedding(
            _table(vocab, dim), groups=groups, codes=codes, codebook_dtype=codebook_dtype, iterations=2
        )
        code_bytes = vocab * (2 if codes <= 16 else 3)
        if codebook_dtype == "int8":
            expected = code_bytes + groups * codes * (dim // groups) + 4 * groups
        else:
            expected = code_bytes + 4 * groups * codes * (dim // groups)
        self.assertEqual(layer.stored_bytes(), expected)
        self.assertEqual(table_bytes(layer), expected)

    def test_int8_codebooks(self):
        layer = CodebookEmbedding(30, 6, groups=3, codes=4, codebook_dtype="int8")
        layer.build()
        layer.codebooks.assign(np.random.default_rng(5).normal(size=(3, 4, 2)).astype("float32"))
        float_codebooks, codes = _numpy(layer.codebooks), layer.get_codes()
        layer.freeze_codes()
        self.assertEqual(layer.trainable_weights, [])
        scale = 127.0 / np.max(np.abs(float_codebooks), axis=(1, 2))
        dequantized = np.round(float_codebooks * scale[:, None, None]) / scale[:, None, None]
        self.assertAllClose(layer.dequantized_codebooks(), dequantized, atol=1e-6)
        ids = np.arange(30)
        self.assertAllClose(layer(ids), _gather(dequantized, codes), atol=1e-6)

    # Serialization.

    def test_keras_round_trip_in_a_fresh_process(self):
        ids = np.random.default_rng(6).integers(0, 40, size=(4, 5))
        paths, expected = {}, {}
        for form in ("training", "frozen", "int8"):
            layer = CodebookEmbedding.from_embedding(
                _table(), groups=3, codes=4, freeze=form != "training", mask_zero=True,
                codebook_dtype="int8" if form == "int8" else "float32", name="tokens",
            )
            inputs = keras.Input(shape=(None,), dtype="int32")
            pooled = keras.layers.GlobalAveragePooling1D()(layer(inputs))
            model = keras.Model(inputs, keras.layers.Dense(2)(pooled))
            paths[form] = os.path.join(self.get_temp_dir(), f"{form}.keras")
            model.save(paths[form])
            expected[form] = _numpy(model(ids))
        stdout = _run_in_fresh_process(
            f"""
            import json, numpy as np, keras
            import keras_lowrank
            ids = np.array({ids.tolist()!r})
            out = {{}}
            for form, path in {paths!r}.items():
                model = keras.saving.load_model(path)
                layer = model.get_layer("tokens")
                out[form] = {{
                    "type": type(layer).__name__,
                    "frozen": layer.codes_frozen,
                    "outputs": keras.ops.convert_to_numpy(model(ids)).tolist(),
                }}
            print(json.dumps(out))
            """
        )
        result = json.loads(stdout.strip().splitlines()[-1])
        for form in paths:
            self.assertEqual(result[form]["type"], "CodebookEmbedding")
            self.assertEqual(result[form]["frozen"], form != "training")
            self.assertAllEqual(np.array(result[form]["outputs"], "float32"), expected[form])
        # A frozen file holds no input_dim x output_dim table; a training one does.
        self.assertIn((40, 6), self._saved_shapes(paths["training"]))
        for form in ("frozen", "int8"):
            self.assertNotIn((40, 6), self._saved_shapes(paths[form]))

    def _saved_shapes(self, path):
        import h5py

        shapes = []
        with zipfile.ZipFile(path) as archive:
            with h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r") as weights:
                weights.visititems(lambda _, item: shapes.append(getattr(item, "shape", None)))
        return [tuple(shape) for shape in shapes if shape is not None]

    def test_config_records_the_form(self):
        layer = CodebookEmbedding(12, 4, groups=2, codes=3, codebook_dtype="int8", beta=0.1)
        layer.build()
        layer.freeze_codes()
        config = layer.get_config()
        self.assertTrue(config["codes_frozen"])
        restored = CodebookEmbedding.from_config(config)
        self.assertEqual(restored.get_config(), config)
        serialized = keras.saving.serialize_keras_object(layer)
        self.assertEqual(serialized["registered_name"], "keras_lowrank>CodebookEmbedding")

    # from_embedding / to_embedding.

    def test_from_embedding_is_deterministic_and_improves_with_codes(self):
        table = _table(200, 8, seed=7)
        first = CodebookEmbedding.from_embedding(table, groups=2, codes=8, seed=3)
        second = CodebookEmbedding.from_embedding(table, groups=2, codes=8, seed=3)
        self.assertAllEqual(first.get_codes(), second.get_codes())
        self.assertAllEqual(first.codebooks, second.codebooks)
        errors = [
            np.sum((CodebookEmbedding.from_embedding(table, 2, codes).decoded_table() - table) ** 2)
            for codes in (2, 4, 16, 64)
        ]
        self.assertEqual(errors, sorted(errors, reverse=True))
        self.assertLess(errors[-1], errors[0])

    def test_from_embedding_row_weights_favour_weighted_rows(self):
        table = _table(100, 4, seed=8)
        weights = np.ones(100)
        weights[:5] = 1000.0
        plain = CodebookEmbedding.from_embedding(table, 2, 4)
        weighted = CodebookEmbedding.from_embedding(table, 2, 4, row_weights=weights)

        def head_error(layer):
            return np.sum((layer.decoded_table()[:5] - table[:5]) ** 2)

        self.assertLess(head_error(weighted), head_error(plain))

    def test_from_embedding_layer_and_training_form(self):
        source = keras.layers.Embedding(30, 6, mask_zero=True, name="words")
        source.build()
        layer = CodebookEmbedding.from_embedding(source, groups=3, codes=4, freeze=False)
        self.assertEqual(layer.name, "words")
        self.assertTrue(layer.mask_zero)
        self.assertFalse(layer.codes_frozen)
        self.assertAllClose(layer.embeddings, source.embeddings)
        frozen = CodebookEmbedding.from_embedding(source, groups=3, codes=4)
        self.assertAllEqual(layer.get_codes(), frozen.get_codes())
        embedding = frozen.to_embedding()
        ids = np.array([[1, 2, 0]])
        self.assertAllClose(embedding(ids), frozen(ids))
        self.assertAllEqual(embedding.compute_mask(ids), frozen.compute_mask(ids))

    def test_argument_errors(self):
        cases = [
            ({"input_dim": 0}, "input_dim=0"),
            ({"output_dim": 6.0}, "output_dim"),
            ({"groups": 4}, "groups=4"),
            ({"codes": 1}, "codes=1"),
            ({"codes": 257}, "codes=257"),
            ({"codebook_dtype": "int4"}, "codebook_dtype='int4'"),
            ({"beta": -0.5}, "beta=-0.5"),
            ({"beta": float("nan")}, "beta=nan"),
            ({"mask_zero": "yes"}, "mask_zero='yes'"),
            ({"codes_frozen": 1}, "codes_frozen=1"),
        ]
        for change, message in cases:
            arguments = {"input_dim": 10, "output_dim": 6, "groups": 3, "codes": 4, **change}
            with self.assertRaisesRegex(ValueError, message):
                CodebookEmbedding(**arguments)
        with self.assertRaisesRegex(ValueError, "table"):
            CodebookEmbedding.from_embedding(keras.layers.Dense(3), 1, 2)
        with self.assertRaisesRegex(ValueError, "built"):
            CodebookEmbedding.from_embedding(keras.layers.Embedding(10, 4), 2, 2)
        with self.assertRaisesRegex(ValueError, "freeze"):
            CodebookEmbedding.from_embedding(_table(), 3, 4, freeze="no")
        with self.assertRaisesRegex(ValueError, "built"):
            CodebookEmbedding(10, 6, 3, 4).freeze_codes()
