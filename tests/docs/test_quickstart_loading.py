"""Loading a saved model needs `import keras_lowrank` first, and the Quickstart says so.

Keras imports only its own packages while it deserializes a `.keras` file, so
the classes of this package exist for it only once the package is imported.
"""

import json
import os
import pathlib
import re
import subprocess
import sys

import keras
import numpy as np

import keras_lowrank

ROOT = pathlib.Path(__file__).resolve().parents[2]
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.M | re.S)


def _quickstart_sections():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    return {"README.md Quickstart": section, "docs/quickstart.md": (ROOT / "docs" / "quickstart.md").read_text()}


def test_quickstarts_import_the_package_before_loading():
    for name, text in _quickstart_sections().items():
        loading = [code for code in _BLOCK.findall(text) if "load_model(" in code]
        assert loading, f"{name} does not show how to load the saved model"
        code = loading[0]
        assert re.search(r"^import .*\bkeras_lowrank\b", code, re.M), name
        assert re.search(r"^import .*\bkeras_lowrank\b", code, re.M).start() < code.index("load_model("), name
        # The prose names the import and the error a missing import gives.
        assert "import keras_lowrank" in text and "Could not locate class" in text, name


REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _load_in_fresh_process(path, *, import_package):
    code = "\n".join([
        "import json, sys",
        "import keras, numpy as np",
        "import keras_lowrank" if import_package else "",
        f"model = keras.saving.load_model({str(path)!r})",
        "x = np.array([[1, 2, 3, 0]], dtype='int32')",
        "print(json.dumps(np.asarray(model(x)).tolist()))",
    ])
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    # The package under test, whether or not (or wherever) it is installed.
    env["PYTHONPATH"] = REPO_ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env=env, cwd=path.parent)


def test_saved_model_loads_in_a_fresh_process_after_import(tmp_path):
    model = keras.Sequential([
        keras.Input((4,), dtype="int32"),
        keras_lowrank.LowRankEmbedding(20, 6, 2),
        keras.layers.GlobalAveragePooling1D(),
        keras.layers.Dense(3),
    ])
    path = tmp_path / "small.keras"
    model.save(path)
    expected = np.asarray(model(np.array([[1, 2, 3, 0]], dtype="int32")))

    without = _load_in_fresh_process(path, import_package=False)
    assert without.returncode != 0
    assert "Could not locate class 'LowRankEmbedding'" in without.stderr

    loaded = _load_in_fresh_process(path, import_package=True)
    assert loaded.returncode == 0, loaded.stderr
    np.testing.assert_allclose(json.loads(loaded.stdout.strip().splitlines()[-1]), expected, rtol=1e-6)
