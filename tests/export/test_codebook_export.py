"""A codebook table (frozen, packed codes) exports to LiteRT with builtin ops.

Reference: the Keras model's own outputs on the same ids, run through the
written file with `run_tflite` (independent of the export's own probe).
"""

import keras
import numpy as np
import pytest

pytest.importorskip("ai_edge_litert")

from keras_lowrank.export import export_tflite  # noqa: E402
from keras_lowrank.export import run_tflite  # noqa: E402
from keras_lowrank.layers import CodebookEmbedding  # noqa: E402
from keras_lowrank.layers import PrunedEmbedding  # noqa: E402


@pytest.mark.parametrize("codes, codebook_dtype, pruned, exact, rotate", [
    (16, "int8", False, None, False), (256, "float32", False, None, False), (16, "int8", True, None, False),
    (16, "int8", False, "mapped", False), (256, "float32", True, "first", False),
    (16, "int8", False, "mapped", True), (256, "float32", True, None, True),
])
def test_codebook_table_exports_with_builtin_ops_and_parity(tmp_path, codes, codebook_dtype, pruned, exact, rotate):
    rng = np.random.default_rng(0)
    table = rng.normal(size=(2_000, 24)).astype("float32")
    layer = CodebookEmbedding.from_embedding(table, groups=6, codes=codes, codebook_dtype=codebook_dtype,
                                             mask_zero=True, iterations=4, exact_rows=150 if exact else 0,
                                             exact_remap=exact == "mapped", rotate=rotate,
                                             row_weights=rng.integers(1, 100, size=2_000))
    if pruned:
        layer = PrunedEmbedding(5_000, layer, remap=True)
        layer.build()
        layer.set_id_map(rng.integers(0, 2_000, size=5_000))
    ids = keras.Input((9,), dtype="int32")
    pooled = keras.layers.GlobalAveragePooling1D()(layer(ids))
    model = keras.Model(ids, keras.layers.Dense(4)(pooled))
    path = tmp_path / "codebook.tflite"
    report = export_tflite(model, str(path))
    assert report.flex_ops == []
    assert "GATHER" in report.ops
    probe = rng.integers(0, 5_000 if pruned else 2_000, size=(16, 9)).astype("int32")
    probe[:, -3:] = 0  # padding, masked out of the average
    expected = keras.ops.convert_to_numpy(model(probe))
    np.testing.assert_allclose(run_tflite(str(path), probe), expected, atol=1e-5)
    # The file holds codes and codebooks, not a decoded 2,000 x 24 float table.
    assert path.stat().st_size < 2_000 * 24 * 4 / 2


@pytest.mark.parametrize("quantize", [None, "dynamic"])
def test_an_int8_rotation_is_written_as_a_constant_kernel(tmp_path, quantize):
    # Dequantized from its variables on every call, the int8 rotation would
    # add a CAST and a MUL to the file and run as a float matmul of computed
    # weights; the file must hold it as one more constant FULLY_CONNECTED.
    # 128 wide: the converter folds small constant expressions by itself.
    rng = np.random.default_rng(1)
    table = rng.normal(size=(600, 128)).astype("float32")
    ops = {}
    for rotate in (False, True):
        layer = CodebookEmbedding.from_embedding(table, groups=16, codes=16, codebook_dtype="int8",
                                                 iterations=2, rotate=rotate, seed=0)
        ids = keras.Input((7,), dtype="int32")
        model = keras.Model(ids, keras.layers.Dense(3)(layer(ids)))
        path = tmp_path / f"rotate_{rotate}.tflite"
        kwargs = {} if quantize is None else {"quantize": quantize}
        ops[rotate] = export_tflite(model, str(path), **kwargs).ops
        probe = rng.integers(0, 600, size=(4, 7)).astype("int32")
        expected = keras.ops.convert_to_numpy(model(probe))
        # After the export the layer computes from its variables again.
        assert layer._rotation_constant is None
        if quantize is None:
            np.testing.assert_allclose(run_tflite(str(path), probe), expected, atol=1e-5)
    assert ops[True].get("FULLY_CONNECTED", 0) == ops[False].get("FULLY_CONNECTED", 0) + 1
    for name in ("CAST", "MUL", "DIV"):
        assert ops[True].get(name, 0) == ops[False].get(name, 0), name
