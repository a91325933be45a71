"""factorize_embeddings and a CALR fine-tune under MultiWorkerMirroredStrategy.

The test starts a 2-worker cluster on localhost itself: two processes running
`_multi_worker.py`, with `TF_CONFIG` naming 127.0.0.1 and two ports that were
free a moment before. It waits for them with a deadline and kills both process
groups if the deadline passes or anything fails, so no worker outlives it.
Both workers must end with the same weights (synchronous training), and these
must match the same fine-tune run on one device.
"""

import json

import numpy as np
import pytest

TIMEOUT_SECONDS = 180


@pytest.mark.slow
def test_two_workers_match_single_device(tmp_path, child_processes, child_env, free_loopback_ports):
    ports = free_loopback_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    outputs = [tmp_path / f"worker_{i}.npz" for i in range(2)]
    for index, output in enumerate(outputs):
        tf_config = {"cluster": cluster, "task": {"type": "worker", "index": index}}
        child_processes.start(
            ["_multi_worker.py", str(output)],
            child_env(TF_CONFIG=json.dumps(tf_config)),
            tmp_path / f"worker_{index}.log",
        )
    finished = child_processes.wait_all(TIMEOUT_SECONDS)
    if not finished:
        child_processes.kill_all()
        pytest.fail(f"workers exceeded {TIMEOUT_SECONDS} s\n{child_processes.logs()}")
    if not all(output.exists() for output in outputs):
        pytest.fail(f"a worker failed\n{child_processes.logs()}")

    results = [np.load(output) for output in outputs]
    summaries = [json.loads(str(r["summary"])) for r in results]
    for summary in summaries:
        assert summary["num_replicas_in_sync"] == 2
        assert summary["all_weights_distributed"]
        assert summary["embedding_replaced"]
        assert summary["iterations"] == summary["expected_iterations"]
    count = summaries[0]["num_weights"]
    first, second = results
    moved = max(np.max(np.abs(first[f"single_{i}"] - first[f"start_{i}"])) for i in range(count))
    assert moved > 1e-2, "the fine-tune barely moved the weights; the comparison would be vacuous"
    for i in range(count):
        # Synchronous training: both workers hold the same variables.
        np.testing.assert_allclose(first[f"distributed_{i}"], second[f"distributed_{i}"], rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(first[f"distributed_{i}"], first[f"single_{i}"], rtol=1e-4, atol=1e-5)
