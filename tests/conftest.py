"""Test-wide settings: the decoded-image cache lives in a temporary folder, never in ~/.cache."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="session")
def _decoded_cache(tmp_path_factory):
    patch = pytest.MonkeyPatch()
    patch.setenv("ABAW_DECODED_CACHE", str(tmp_path_factory.mktemp("decoded-cache")))
    yield
    patch.undo()
