"""The generator's output: official layouts read back by the foundation readers,
determinism, reuse / incomplete-output detection, and the oracle."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from abaw import vocab
from abaw.errors import AbawError
from abaw.formats import readers, submissions
from abaw.synth import generate, generate_lsd, read_manifest
from abaw.synth.generator import MANIFEST
from abaw.synth.layouts import (
    LSD_SYNTHETIC_SIZE,
    LSD_TEST_DIR,
    LSD_TEST_TRUTH,
    MTL_TEST_IMAGE_DIR,
    MTL_TEST_TRUTH,
    PER_VIDEO_SAMPLES_DIR,
    PER_VIDEO_TEST_SPLIT,
)
from abaw.synth.oracle import oracle_report, read_latent
from abaw.synth.sizes import SIZES


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "data"
    manifest = generate(out, size="tiny", seed=0, workers=1, progress=False)
    assert manifest["reused"] is False
    return out


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != MANIFEST}


def test_mtl_layout_reads_back(tiny):
    root = tiny / "mtl"
    train = readers.read_mtl_annotations(root / vocab.MTL_TRAIN_FILE)
    val = readers.read_mtl_annotations(root / vocab.MTL_VAL_FILE)
    test_list = readers.read_mtl_test_list(root / vocab.MTL_TEST_LIST)
    truth = readers.read_mtl_annotations(root / MTL_TEST_TRUTH)
    spec = SIZES["tiny"]
    assert spec.mtl_videos[0] * spec.mtl_frames[0] <= len(set(train.images))
    assert list(truth.images) == test_list
    assert truth.summary()["va"] == truth.summary()["expr"] == truth.summary()["au"] == len(truth)
    for ann, image_dir in ((train, vocab.MTL_IMAGE_DIR), (val, vocab.MTL_IMAGE_DIR),
                           (truth, MTL_TEST_IMAGE_DIR)):
        assert ann.summary()["unlabelled_rows"] == 0 and ann.summary()["mixed_rows"] == 0
        for name in ann.images:
            video, frame = name.split("/")
            assert len(frame) == len("00001.jpg") and frame[:5].isdigit()
            assert (root / image_dir / name).is_file(), name
    # the test images live in their own tree, not under the training cropped_aligned
    assert not (root / vocab.MTL_IMAGE_DIR / test_list[0]).exists()
    assert val.summary()["va"] == val.summary()["au"] == len(val)
    import cv2

    image = cv2.imread(str(root / vocab.MTL_IMAGE_DIR / train.images[0]))
    assert image.shape == (112, 112, 3)


def test_lsd_layout_reads_back(tiny):
    root = tiny / "lsd"
    train = readers.read_lsd_tree(root / vocab.LSD_TRAIN_DIR)
    val = readers.read_lsd_tree(root / vocab.LSD_VAL_DIR)
    names = readers.read_lsd_test_list(root / vocab.LSD_TEST_LIST)
    truth_names, truth = submissions.read_lsd_labels(root / LSD_TEST_TRUTH)
    spec = SIZES["tiny"]
    assert (len(train), len(val), len(names)) == spec.lsd_images
    assert truth_names == names == [f"{i}.jpg" for i in range(len(names))]
    assert all((root / LSD_TEST_DIR / n).is_file() for n in names)
    assert set(np.unique(train.labels)) == set(range(vocab.NUM_LSD_CLASSES))
    counts = np.bincount(train.labels, minlength=6)
    assert counts.argmax() == vocab.LSD_CLASSES.index("Sadness")
    assert sorted(p.name for p in (root / vocab.LSD_TRAIN_DIR).iterdir()) == sorted(
        vocab.LSD_FOLDERS)
    import cv2

    small = cv2.imread(str(root / vocab.LSD_TRAIN_DIR / train.paths[0]))
    assert small.shape == (LSD_SYNTHETIC_SIZE, LSD_SYNTHETIC_SIZE, 3)
    assert truth.min() >= 0 and truth.max() < vocab.NUM_LSD_CLASSES


def test_per_video_layout_reads_back(tiny):
    root = tiny / "per_video"
    seen_faceless = 0
    for task in vocab.PER_VIDEO_TASKS:
        folder = readers.find_task_folder(root, task)
        assert folder.name == vocab.PER_VIDEO_FOLDERS[task][0]
        for split in vocab.PER_VIDEO_SPLITS:
            videos = readers.read_per_video_split(root, task, split)
            assert videos, (task, split)
            for video, values in videos.items():
                frames = [root / vocab.MTL_IMAGE_DIR / readers.frame_image(video, k + 1)
                          for k in range(len(values))]
                missing = sum(not f.exists() for f in frames)
                seen_faceless += missing
                assert missing < len(frames)  # most frames have a crop
        names_file, sample_file = vocab.PER_VIDEO_EDITION_FILES[6][task][1:]
        names = readers.read_test_video_names(
            root / vocab.PER_VIDEO_TEST_NAMES_DIR / names_file)
        assert readers.find_test_video_names(root, task) == root / vocab.PER_VIDEO_TEST_NAMES_DIR / names_file
        sample = readers.read_sample_file(root / PER_VIDEO_SAMPLES_DIR / sample_file, task)
        assert readers.find_sample_file(root, task) == root / PER_VIDEO_SAMPLES_DIR / sample_file
        truth_frames = sum(len(readers.read_per_video_annotation(
            folder / PER_VIDEO_TEST_SPLIT / f"{n}.txt", task)) for n in names)
        assert len(sample) == truth_frames  # every frame, faceless ones included
        assert sample[0] == readers.frame_image(names[0], 1)


def test_latent_files_cover_every_image_and_record_hands(tiny):
    train = readers.read_mtl_annotations(tiny / "mtl" / vocab.MTL_TRAIN_FILE)
    latent = read_latent(tiny / "mtl" / "_latent" / "train.csv")
    assert set(train.images) == set(latent)
    hands = [row for row in latent.values() if row["hand"] == "1"]
    for row in hands:
        x0, y0, x1, y1 = (float(row[k]) for k in ("hand_x0", "hand_y0", "hand_x1", "hand_y1"))
        assert 0 <= x0 < x1 <= 112 and 0 <= y0 < y1 <= 112
    lsd_latent = read_latent(tiny / "lsd" / "_latent" / "train.csv")
    assert all(row["hand"] == "0" for row in lsd_latent.values())  # synthetic style: no hands
    manifest = read_manifest(tiny)
    assert manifest["hand_images"] > 0


def test_same_seed_same_bytes_any_workers_and_other_seed_differs(tiny, tmp_path):
    again = tmp_path / "again"
    generate(again, size="tiny", seed=0, workers=2, progress=False)
    assert _files(again) == _files(tiny)
    other = tmp_path / "other"
    generate(other, size="tiny", seed=1, workers=1, progress=False, layouts=("lsd",))
    mine, theirs = _files(tiny), _files(other)
    shared = [k for k in theirs if k in mine and k.endswith(".jpg")]
    assert shared and sum(mine[k] != theirs[k] for k in shared) > 0.9 * len(shared)


def test_complete_output_is_reused_and_incomplete_is_regenerated(tmp_path):
    out = tmp_path / "lsd_only"
    first = generate_lsd(out, size="tiny", seed=0, workers=1, progress=False)
    assert generate(out, size="tiny", seed=0, progress=False, layouts=("lsd",))["reused"]
    # an interrupted run: images partly written, the manifest still marked incomplete
    victim = next((out / "lsd" / LSD_TEST_DIR).iterdir())
    victim.unlink()
    pending = json.loads((out / MANIFEST).read_text())
    (out / MANIFEST).write_text(json.dumps({**pending, "complete": False}))
    assert read_manifest(out) is None
    second = generate(out, size="tiny", seed=0, workers=1, progress=False, layouts=("lsd",))
    assert second["reused"] is False and victim.is_file()
    assert second["counts"] == first["counts"]
    # a manifest for other parameters is not trusted either
    manifest = json.loads((out / MANIFEST).read_text())
    manifest["params_hash"] = "0" * 64
    (out / MANIFEST).write_text(json.dumps(manifest))
    assert generate(out, size="tiny", seed=0, workers=1, progress=False,
                    layouts=("lsd",))["reused"] is False


def test_interrupted_run_is_cleared_and_regenerated(tmp_path, monkeypatch):
    import abaw.synth.generator as gen

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(gen, "_render_all", crash)
    with pytest.raises(KeyboardInterrupt):
        generate_lsd(tmp_path, size="tiny", workers=1, progress=False)
    assert read_manifest(tmp_path) is None
    monkeypatch.undo()
    assert generate_lsd(tmp_path, size="tiny", workers=1, progress=False)["reused"] is False
    assert read_manifest(tmp_path)["counts"]["lsd_test_images"] == SIZES["tiny"].lsd_images[2]


def test_output_that_is_a_file_is_a_clear_error(tmp_path, capsys):
    from abaw.cli import main

    target = tmp_path / "file.txt"
    target.write_text("x")
    assert main(["synth", str(target), "--size", "tiny", "--quiet"]) == 2
    assert "must be a folder" in capsys.readouterr().err


def test_foreign_folder_is_never_deleted(tmp_path):
    (tmp_path / "lsd").mkdir()
    keep = tmp_path / "lsd" / "precious.txt"
    keep.write_text("mine")
    with pytest.raises(AbawError, match="not written by"):
        generate(tmp_path, size="tiny", seed=0, progress=False, layouts=("lsd",))
    assert keep.read_text() == "mine"


def test_oracle_beats_trivial_baselines(tiny):
    report = oracle_report(tiny)
    assert (tiny / "oracle.json").is_file()
    for split, scores in report["mtl"].items():
        oracle = scores["oracle"]["P_MTL"]
        assert oracle > scores["trivial_majority"]["P_MTL"] + 0.5, split
        assert oracle > scores["trivial_all_aus_on"]["P_MTL"] + 0.5, split
        assert oracle <= 3.0
    for split, scores in report["lsd"].items():
        assert scores["oracle"] > scores["trivial_majority"] + 0.4, split
    # tiny per-video sets are a video or two: only check every task is scored
    for split in ("validation", "test"):
        assert set(report["per_video"][split]) == set(vocab.PER_VIDEO_TASKS)


def test_cli_runs_tiny_with_oracle_and_preview(tiny, capsys):
    from abaw.cli import main

    assert main(["synth", str(tiny), "--size", "tiny", "--quiet", "--oracle", "--preview"]) == 0
    text = capsys.readouterr().out
    assert "reused" in text and "oracle P_MTL" in text
    assert (tiny / "preview.png").stat().st_size > 10_000
    with pytest.raises(SystemExit):  # argparse rejects an unknown size
        main(["synth", str(tiny), "--size", "huge"])
    with pytest.raises(SystemExit) as exit_:  # a usage error before anything is rendered
        main(["synth", str(tiny), "--size", "tiny", "--workers", "0"])
    assert exit_.value.code == 2


def test_a_track_generates_its_own_layout_and_oracle_part(tiny, tmp_path, monkeypatch):
    """``make mtl`` renders only the MTL layout; the oracle is computed per layout and added
    to oracle.json; adding the LSD layout later keeps the MTL files byte for byte and
    rebuilds the (derived) oracle part by part, with the same MTL numbers."""
    import argparse

    from abaw.runner import oracle
    from abaw.synth.oracle import mtl_oracle
    from abaw.tracks.lsd import LSD
    from abaw.tracks.mtl import MTL

    monkeypatch.chdir(tmp_path)
    args = argparse.Namespace(synth_size="tiny", seed=0)
    out = MTL.synthetic_data(args)
    assert read_manifest(out)["layouts"] == ["mtl"]
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["mtl"]
    mtl_part = oracle(out, "mtl")
    assert mtl_part == json.loads(json.dumps(mtl_oracle(out)))
    assert set(json.loads((out / "oracle.json").read_text())) == {"mtl"}
    mtl_files = {k: v for k, v in _files(out).items() if k.startswith("mtl/")}
    # the same bytes as when every layout is generated at once
    assert mtl_files == {k: v for k, v in _files(tiny).items() if k.startswith("mtl/")}

    assert LSD.synthetic_data(args) == out
    assert read_manifest(out)["layouts"] == ["mtl", "lsd"]
    assert {k: v for k, v in _files(out).items() if k.startswith("mtl/")} == mtl_files
    assert ({k: v for k, v in _files(out).items() if k.startswith("lsd/")}
            == {k: v for k, v in _files(tiny).items() if k.startswith("lsd/")})
    assert not (out / "oracle.json").exists()  # derived from the old data: removed
    lsd_part = oracle(out, "lsd")
    assert lsd_part["test"]["oracle"] > lsd_part["test"]["trivial_majority"]
    assert set(json.loads((out / "oracle.json").read_text())) == {"lsd"}
    assert oracle(out, "mtl") == mtl_part
    with pytest.raises(ValueError, match="unknown layout"):
        oracle(out, "ce")
    # asking for every layout (make pretrain, abaw synth) renders only the missing one
    stamps = {p: p.stat().st_mtime_ns for p in (out / "mtl").rglob("*.jpg")}
    manifest = generate(out, size="tiny", seed=0, workers=1, progress=False)
    assert manifest["layouts"] == ["mtl", "lsd", "per_video"]
    counts = read_manifest(tiny)["counts"]
    assert manifest["images"] == sum(counts[f"per_video_{split}_images"]
                                     for split in ("train", "validation", "test"))
    assert {p: p.stat().st_mtime_ns for p in (out / "mtl").rglob("*.jpg")} == stamps
    layouts = ("mtl/", "lsd/", "per_video/")
    assert ({k: v for k, v in _files(out).items() if k.startswith(layouts)}
            == {k: v for k, v in _files(tiny).items() if k.startswith(layouts)})
