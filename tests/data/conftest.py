"""Fixtures for the data tests: the bundled datasets prepared once, offline."""

import socket

import pytest


def _refuse(*args, **kwargs):
    raise OSError("network access is blocked in this test")


@pytest.fixture
def no_network(monkeypatch):
    """Makes every socket connection fail, as on an offline machine."""
    monkeypatch.setattr(socket.socket, "connect", _refuse)
    monkeypatch.setattr(socket, "create_connection", _refuse)
    monkeypatch.setattr(socket, "getaddrinfo", _refuse)


@pytest.fixture(scope="session")
def bundled(tmp_path_factory):
    """All bundled datasets, prepared with the network blocked."""
    from keras_lowrank.data.datasets import list_datasets
    from keras_lowrank.data.datasets import load_dataset

    data_dir = tmp_path_factory.mktemp("tfds")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", _refuse)
        patch.setattr(socket, "create_connection", _refuse)
        patch.setattr(socket, "getaddrinfo", _refuse)
        loaded = {name: load_dataset(name, data_dir=data_dir) for name in list_datasets()}
    return data_dir, loaded
