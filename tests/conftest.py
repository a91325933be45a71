"""Test configuration shared by the whole suite."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# One BLAS thread: the suite's matrices are small, and two OpenBLAS threads
# competing with TensorFlow's own pool on a 2-core machine are many times
# slower than one. Must be set before numpy is first imported.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
