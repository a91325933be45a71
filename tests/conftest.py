"""Test configuration shared by the whole suite.

The suite runs on TensorFlow by default. Test files whose every test runs on
any Keras backend carry `pytestmark = pytest.mark.backend_agnostic` at their
top; `.ci/run` runs those again under `KERAS_BACKEND=jax` and `torch`, each in
a venv without TensorFlow. There, files without the marker are not even
collected (their module-level `import tensorflow` would fail), the few
TensorFlow-only tests inside marked files are skipped with their reason
(`TENSORFLOW_ONLY`), and a selection that finds no test fails instead of
passing with pytest's "no tests ran" status.
"""

import importlib.util
import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# One BLAS thread: the suite's matrices are small, and two OpenBLAS threads
# competing with TensorFlow's own pool on a 2-core machine are many times
# slower than one. Must be set before numpy is first imported.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

MARKER = "backend_agnostic"
_MARKER_LINE = f"pytestmark = pytest.mark.{MARKER}"
HAS_TENSORFLOW = importlib.util.find_spec("tensorflow") is not None
BACKEND = os.environ["KERAS_BACKEND"]

# Tests inside backend-agnostic files that need the TensorFlow backend
# ("path::test_name", all parameters -> why); skipped on the other backends.
TENSORFLOW_ONLY = {
    "tests/layers/test_low_rank_embedding_reliability.py::"
    "test_int4_block_size_of_a_row_or_more_is_per_row_without_warning": (
        "on JAX `LowRankEmbedding._to_numpy` (Variable.numpy()) raises numpy 2's "
        "`__array__` copy DeprecationWarning, which this test turns into an error"
    ),
    "tests/compression/test_compress.py::test_datasets_are_accepted": "feeds a tf.data.Dataset",
    "tests/compression/test_prune_vocabulary.py::test_text_vectorization_is_pruned_consistently": (
        "TextVectorization needs TensorFlow"
    ),
}


def _is_marked(path):
    try:
        with open(path, encoding="utf-8") as file:
            return _MARKER_LINE in file.read()
    except OSError:
        return False


def _has_marked_file(directory):
    for root, _, files in os.walk(directory):
        if any(f.startswith("test_") and f.endswith(".py") and _is_marked(os.path.join(root, f)) for f in files):
            return True
    return False


def pytest_ignore_collect(collection_path, config):
    # Without TensorFlow only backend-agnostic files are imported at all.
    if HAS_TENSORFLOW:
        return None
    path = str(collection_path)
    if os.path.isdir(path):
        return None if _has_marked_file(path) else True
    name = os.path.basename(path)
    if name.startswith("test_") and name.endswith(".py"):
        return None if _is_marked(path) else True
    return None


def pytest_collection_modifyitems(config, items):
    if BACKEND == "tensorflow":
        return
    for item in items:
        reason = TENSORFLOW_ONLY.get(item.nodeid.split("[")[0])
        if reason is not None:
            item.add_marker(pytest.mark.skip(reason=f"TensorFlow backend only: {reason}"))


def pytest_sessionfinish(session, exitstatus):
    # Exit status 5 (no tests collected) would let a mistyped marker or an
    # ignored folder pass CI on JAX or PyTorch silently.
    if exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED and BACKEND != "tensorflow":
        print(f"\nNo test selected on KERAS_BACKEND={BACKEND}: the backend-agnostic suite is empty.")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture
def python_sigint_handler():
    """SIGINT handled by Python's default handler for the test, as in a terminal.

    A shell starts a background job (`pytest &`, a CI step run detached) with
    SIGINT ignored, and Python keeps that: `record_interrupts` then rightly
    records nothing. Tests of what a Ctrl-C does put Python's handler back
    first, and the runner's own afterwards.
    """
    import signal

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
