"""The LSD result cache's ``materialise``: hard links placed atomically, no temporaries left."""

from __future__ import annotations

import os

from abaw.lsd.cache import materialise


def _files(folder):
    return sorted(p.name for p in folder.iterdir())


def test_placing_the_same_cached_file_twice_leaves_no_temporary(tmp_path):
    # rename(2) is a no-op when both names are hard links to one file: a second placement
    # into a folder that already holds the link used to leave ".<name>.<pid>-<hex>.tmp" behind
    cached = tmp_path / "cache" / "entry.bin"
    cached.parent.mkdir()
    cached.write_bytes(b"restored pixels")
    out = tmp_path / "out"
    materialise(cached, out / "a.jpg")
    materialise(cached, out / "a.jpg")
    assert _files(out) == ["a.jpg"]
    assert (out / "a.jpg").read_bytes() == b"restored pixels"
    assert os.path.samefile(cached, out / "a.jpg")


def test_a_different_file_at_the_destination_is_replaced(tmp_path):
    cached = tmp_path / "entry.bin"
    cached.write_bytes(b"new")
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.jpg").write_bytes(b"old, from an earlier cache entry")
    materialise(cached, out / "a.jpg")
    assert _files(out) == ["a.jpg"]
    assert (out / "a.jpg").read_bytes() == b"new"


def test_a_destination_linked_to_the_cache_beforehand_leaves_no_temporary(tmp_path):
    # the destination is already a link of the cached file (an earlier run, or a concurrent
    # writer): the rename does nothing, and the temporary must still go
    cached = tmp_path / "entry.bin"
    cached.write_bytes(b"x")
    out = tmp_path / "out"
    out.mkdir()
    os.link(cached, out / "a.jpg")
    materialise(cached, out / "a.jpg")
    assert _files(out) == ["a.jpg"]
    assert os.path.samefile(cached, out / "a.jpg")
