"""LowRankEmbedding, CALR and factorize_embeddings under MirroredStrategy (2 logical CPUs).

All checks run in one child process (`_mirrored_checks.py`), because the two
logical CPU devices must be configured before TensorFlow starts; each test
below reports one of them. The reference for the fine-tune is the same
conversion and SGD fine-tune on one device, on the same data and global batch.
"""

import json

import pytest

TIMEOUT_SECONDS = 240

CHECKS = (
    "layer_variables_are_mirrored",
    "from_embedding_in_scope_is_mirrored_and_exact",
    "factorize_embeddings_in_scope_gives_mirrored_model",
    "factorize_subclassed_model_in_scope",
    "distributed_fine_tune_matches_single_device",
)


@pytest.fixture(scope="module")
def mirrored_results(tmp_path_factory, child_processes, child_env):
    log = tmp_path_factory.mktemp("mirrored") / "checks.log"
    process = child_processes.start(["_mirrored_checks.py", *CHECKS], child_env(), log)
    if not child_processes.wait_all(TIMEOUT_SECONDS):
        child_processes.kill_all()
        pytest.fail(f"MirroredStrategy checks exceeded {TIMEOUT_SECONDS} s\n{child_processes.logs()}")
    if process.returncode != 0:
        pytest.fail(f"check process failed\n{child_processes.logs()}")
    # The results are the last line; TensorFlow may log before it.
    return json.loads(log.read_text(errors="replace").strip().splitlines()[-1])


@pytest.mark.parametrize("check", CHECKS)
def test_mirrored_strategy(mirrored_results, check):
    result = mirrored_results.get(check, "check did not run")
    assert result == "ok", f"{check}:\n{result}"
