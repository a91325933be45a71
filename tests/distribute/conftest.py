"""Runs distributed checks in child processes, bounded in time, leaving no orphans.

`tf.distribute` set-ups need a fresh TensorFlow: logical CPU devices can only
be configured before TensorFlow initializes its devices, and a multi-worker
cluster is one process per worker. The helpers here start such processes in
their own session (process group), wait for them with a deadline, and kill
the whole group of any process still running at the deadline or when the test
fails, so that a hung collective never outlives the test.
"""

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


def child_env(**extra):
    """The environment of a child: quiet TensorFlow, CPU only, repo importable."""
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(HERE))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["KERAS_BACKEND"] = "tensorflow"
    env["CUDA_VISIBLE_DEVICES"] = ""
    env.update(extra)
    return env


def free_loopback_ports(count):
    """`count` distinct TCP ports that were free on 127.0.0.1 a moment ago."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class ChildProcesses:
    """Starts scripts as children and guarantees they are gone afterwards."""

    def __init__(self):
        self._children = []

    def start(self, args, env, log_path):
        log = open(log_path, "wb")
        process = subprocess.Popen(
            [sys.executable, *args],
            cwd=HERE,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, killed as a whole
        )
        self._children.append((process, log, log_path))
        return process

    def wait_all(self, timeout):
        """Waits for every child; returns False if the deadline passed first."""
        deadline = time.monotonic() + timeout
        for process, _, _ in self._children:
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                return False
        return True

    def logs(self):
        texts = []
        for process, _, path in self._children:
            with open(path, "rb") as f:
                tail = f.read()[-6000:].decode("utf-8", "replace")
            texts.append(f"--- {os.path.basename(path)} (exit {process.returncode}) ---\n{tail}")
        return "\n".join(texts)

    def kill_all(self):
        for process, log, _ in self._children:
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                process.wait()
            log.close()


@pytest.fixture(scope="module")
def child_processes():
    """A `ChildProcesses` whose children are all killed when the module ends."""
    children = ChildProcesses()
    try:
        yield children
    finally:
        children.kill_all()


@pytest.fixture(scope="module", name="child_env")
def child_env_fixture():
    """`child_env(**extra)`: the environment for a child process."""
    return child_env


@pytest.fixture(scope="module", name="free_loopback_ports")
def free_loopback_ports_fixture():
    """`free_loopback_ports(count)`: free TCP ports on 127.0.0.1."""
    return free_loopback_ports
