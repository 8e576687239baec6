"""Test-wide settings: the decoded-image cache lives in a temporary folder, never in ~/.cache;
``one_thread`` runs a test with one torch thread (the end-to-end recipes)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="session")
def _decoded_cache(tmp_path_factory):
    patch = pytest.MonkeyPatch()
    patch.setenv("ABAW_DECODED_CACHE", str(tmp_path_factory.mktemp("decoded-cache")))
    yield
    patch.undo()


@pytest.fixture
def one_thread():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
