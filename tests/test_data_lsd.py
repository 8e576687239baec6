"""LSD data: datasets over the class trees and the test list, occlusion CSVs, class balance,
the synthetic-to-real augmentation, and the DataModule's paths and loaders."""

from __future__ import annotations

import logging
import shutil
import warnings
from collections import Counter
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import pytest
import torch

from abaw.data.lsd import (
    LsdDataModule,
    LsdDataset,
    class_balanced_sample_weights,
    collate_skip_unreadable,
    paste_hand,
)
from abaw.data.transforms import domain_bridge_transforms, lsd_train_transforms
from abaw.errors import AbawError, ConfigError, FormatError
from abaw.formats.readers import read_occlusion_csv
from abaw.vocab import LSD_TRAIN_DIR, LSD_VAL_DIR
from tests.lsd_fixtures import (
    TEST_DIR,
    TEST_SIZE,
    TRAIN_COUNTS,
    VAL_COUNTS,
    make_lsd_data,
    write_occlusion_csv,
)

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def lsd_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_lsd_data(tmp_path_factory.mktemp("lsd"))


# --- datasets --------------------------------------------------------------------------------


def test_tree_dataset_reads_labels_from_both_anger_spellings(lsd_root: Path) -> None:
    train, problems = LsdDataset.from_tree(lsd_root / LSD_TRAIN_DIR, img_size=32)
    assert problems.count == 0
    assert len(train) == sum(TRAIN_COUNTS)
    assert train.class_counts().tolist() == list(TRAIN_COUNTS)
    assert train.images[0] == "ANGRER/img00.jpg" and train.labels[0] == 0
    val, _ = LsdDataset.from_tree(lsd_root / LSD_VAL_DIR, img_size=32)
    assert val.class_counts().tolist() == list(VAL_COUNTS)
    assert val.images[0] == "ANGER/img00.jpg" and val.labels[0] == 0
    sample = train[5]
    assert sample is not None
    assert sample["image"].shape == (3, 32, 32) and sample["image"].dtype == torch.float32
    assert sample["label"] == int(train.labels[5])
    assert sample["occluded"] == -1 and sample["index"] == 5


def test_images_come_from_the_image_root_and_missing_ones_are_dropped(
    lsd_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tree = lsd_root / LSD_TRAIN_DIR
    copy = tmp_path / "sr"
    shutil.copytree(tree, copy)
    # the "super-resolved" copy: 4x larger, same names; one image never got processed
    for path in copy.rglob("*.jpg"):
        image = cv2.imread(str(path))
        cv2.imwrite(str(path), cv2.resize(image, None, fx=4, fy=4))
    (copy / "FEAR" / "img00.jpg").unlink()
    dataset, problems = LsdDataset.from_tree(tree, image_root=copy, img_size=32)
    assert problems.missing == ["FEAR/img00.jpg"]
    assert len(dataset) == sum(TRAIN_COUNTS) - 1 and "FEAR/img00.jpg" not in dataset.images
    assert dataset.class_counts()[2] == 0
    assert dataset.image_root == copy
    with caplog.at_level(logging.WARNING):
        problems.report()
    assert "1 missing (FEAR/img00.jpg)" in caplog.text


def test_unreadable_image_is_skipped_by_the_collate(tmp_path: Path) -> None:
    root = make_lsd_data(tmp_path)
    bad = root / LSD_TRAIN_DIR / "SADNESS" / "img00.jpg"
    bad.write_bytes(b"not a jpeg")
    dataset, problems = LsdDataset.from_tree(root / LSD_TRAIN_DIR, img_size=32)
    assert problems.count == 0  # present on disk: only decoding can tell
    position = dataset.images.index("SADNESS/img00.jpg")
    assert dataset[position] is None
    batch = collate_skip_unreadable([dataset[position], dataset[0], dataset[1]])
    assert batch["image"].shape == (2, 3, 32, 32)
    assert batch["index"].tolist() == [0, 1]
    assert collate_skip_unreadable([None]) is None


def test_test_list_dataset_keeps_list_order_and_refuses_missing(tmp_path: Path) -> None:
    root = make_lsd_data(tmp_path)
    dataset, _ = LsdDataset.from_test_list(root / TEST_DIR, root / "LSD_Challenge_test_set_release.txt",
                                           img_size=32)
    assert dataset.images == [f"{i}.jpg" for i in range(TEST_SIZE)]  # the repeat predicted once
    assert (dataset.labels == -1).all()
    (root / TEST_DIR / "3.jpg").unlink()
    with pytest.raises(AbawError, match="3.jpg"):
        LsdDataset.from_test_list(root / TEST_DIR, root / "LSD_Challenge_test_set_release.txt")
    grey, problems = LsdDataset.from_test_list(
        root / TEST_DIR, root / "LSD_Challenge_test_set_release.txt", missing="grey", img_size=32)
    assert problems.missing == ["3.jpg"]
    sample = grey[3]
    assert sample is not None and sample["image"].shape == (3, 32, 32)
    # a grey image normalises to one value per channel: no spatial variation at all
    assert float(sample["image"].std(dim=(1, 2)).max()) == 0.0
    # present but undecodable: an error naming the file, or grey under the grey policy
    (root / TEST_DIR / "2.jpg").write_bytes(b"truncated")
    strict = LsdDataset(root / TEST_DIR, ["2.jpg"], img_size=32, unreadable="error")
    with pytest.raises(AbawError, match="2.jpg: test image cannot be decoded"):
        _ = strict[0]
    again, _ = LsdDataset.from_test_list(
        root / TEST_DIR, root / "LSD_Challenge_test_set_release.txt", missing="grey", img_size=32)
    assert again.unreadable == "grey"
    assert float(again[2]["image"].std(dim=(1, 2)).max()) == 0.0


# --- occlusion CSV ---------------------------------------------------------------------------


def test_occlusion_csv_labels_the_named_images(lsd_root: Path, tmp_path: Path) -> None:
    csv_path = write_occlusion_csv(tmp_path / "hands.csv", {
        "SADNESS/img00.jpg": 1, "SADNESS/img01.jpg": 0, "HAPPINESS/img02.jpg": 1,
        "NOT_A_CLASS/x.jpg": 1,  # names no image of the tree: ignored
    })
    assert read_occlusion_csv(csv_path)["HAPPINESS/img02.jpg"] == 1
    dataset, _ = LsdDataset.from_tree(lsd_root / LSD_TRAIN_DIR, occlusion_csv=csv_path)
    flags = dict(zip(dataset.images, dataset.occluded.tolist()))
    assert flags["SADNESS/img00.jpg"] == 1 and flags["SADNESS/img01.jpg"] == 0
    assert flags["HAPPINESS/img02.jpg"] == 1 and flags["ANGRER/img00.jpg"] == -1
    # the generator's latent files name images with the tree folder in front: accepted
    latent = write_occlusion_csv(tmp_path / "latent.csv", {
        f"{LSD_TRAIN_DIR}/SADNESS/img00.jpg": 1, f"{LSD_TRAIN_DIR}/FEAR/img00.jpg": 0})
    prefixed, _ = LsdDataset.from_tree(lsd_root / LSD_TRAIN_DIR, occlusion_csv=latent)
    flags = dict(zip(prefixed.images, prefixed.occluded.tolist()))
    assert flags["SADNESS/img00.jpg"] == 1 and flags["FEAR/img00.jpg"] == 0
    assert sorted(dataset.occluded.tolist()).count(-1) == len(dataset) - 3
    assert dataset[dataset.images.index("SADNESS/img00.jpg")]["occluded"] == 1


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("image,score\na.jpg,0.3\n", 1, "expected columns"),
        ("image,hand\na.jpg,1\nb.jpg,yes\n", 3, "hand must be 0 or 1"),
        ("image,hand\na.jpg,1\nb.jpg,0\na.jpg,0\n", 4, "flagged 0 here but 1 on line 2"),
        ("image,hand\n,1\n", 2, "empty image name"),
    ],
)
def test_bad_occlusion_csv_names_file_and_line(tmp_path: Path, text: str, line: int,
                                               message: str) -> None:
    path = tmp_path / "hands.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(FormatError, match=message) as info:
        read_occlusion_csv(path)
    assert info.value.line == line and info.value.path == str(path)


def test_missing_occlusion_csv_disables_with_one_log_line(
    lsd_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="abaw.data.lsd"):
        dataset, _ = LsdDataset.from_tree(lsd_root / LSD_TRAIN_DIR,
                                          occlusion_csv=tmp_path / "absent.csv")
    assert (dataset.occluded == -1).all()
    lines = [r.getMessage() for r in caplog.records if "absent.csv" in r.getMessage()]
    assert len(lines) == 1 and "occlusion head disabled" in lines[0]


def test_hand_paste_draws_a_hand_and_flags_the_face(lsd_root: Path) -> None:
    tree = lsd_root / LSD_TRAIN_DIR
    clean, _ = LsdDataset.from_tree(tree, img_size=32)
    pasted, _ = LsdDataset.from_tree(tree, img_size=32, hand_paste=1.0)
    torch.manual_seed(0)
    changed = 0
    for i in range(len(clean)):
        sample = pasted[i]
        assert sample["occluded"] == 1 and clean[i]["occluded"] == -1
        changed += int(not torch.equal(sample["image"], clean[i]["image"]))
    assert changed >= len(clean) - 1  # a hand drawn mostly outside the crop may miss it
    torch.manual_seed(0)
    half, _ = LsdDataset.from_tree(tree, img_size=32, hand_paste=0.5)
    flags = [half[i]["occluded"] for i in range(len(half))]
    assert set(flags) == {0, 1}  # unpasted faces of a hand-free tree are known negatives
    with pytest.raises(ConfigError, match="hand_paste"):
        LsdDataset.from_tree(tree, hand_paste=1.5)


def test_paste_hand_uses_the_face_skin_tone() -> None:
    face = np.full((64, 64, 3), (200, 150, 120), np.uint8)
    out = paste_hand(face, np.random.default_rng(3))
    changed = (out != face).any(axis=2)
    assert 0.01 < changed.mean() < 0.6 and out.shape == face.shape and out.dtype == np.uint8
    assert (face == (200, 150, 120)).all()  # the input is not modified
    # the hand is painted in (shades of) the face's own colour: red > green > blue kept
    hand = out[changed].astype(int)
    assert (hand[:, 0] >= hand[:, 1]).mean() > 0.9 and (hand[:, 1] >= hand[:, 2]).mean() > 0.9


# --- class balance ---------------------------------------------------------------------------


def test_sample_weights_hand_computed() -> None:
    # Sadness x3, Anger x1: each Sadness image 1/3 of Anger's weight -> the classes tie
    weights = class_balanced_sample_weights([4, 4, 4, 0])
    np.testing.assert_allclose(weights, [1 / 6, 1 / 6, 1 / 6, 1 / 2])
    # square-root balancing: 3^-0.5 vs 1, normalised
    root = class_balanced_sample_weights([4, 4, 4, 0], power=0.5)
    total = 3 / np.sqrt(3) + 1
    np.testing.assert_allclose(root, [1 / np.sqrt(3) / total] * 3 + [1 / total])
    np.testing.assert_allclose(class_balanced_sample_weights([4, 4, 0], power=0.0), [1 / 3] * 3)
    np.testing.assert_allclose(class_balanced_sample_weights([4, -1, 0]), [0.5, 0.0, 0.5])
    with pytest.raises(ConfigError):
        class_balanced_sample_weights([-1, -1])


def test_balanced_sampler_draws_minority_classes_as_often_as_sadness(lsd_root: Path) -> None:
    data = LsdDataModule(data_root=str(lsd_root), img_size=32, batch_size=4, num_workers=0,
                         balance="sampler")
    data.setup("fit")
    sampler = data.train_dataloader().sampler
    labels = data.train_set.labels
    drawn = Counter()
    for _ in range(300):
        drawn.update(labels[list(iter(sampler))].tolist())
    total = sum(drawn.values())
    shares = np.array([drawn[c] / total for c in range(6)])
    # uniform shuffling would give Sadness 8/18 = 0.44 and Fear 1/18 = 0.06
    np.testing.assert_allclose(shares, 1 / 6, atol=0.02)
    # no balancing: a plain shuffled loader
    plain = LsdDataModule(data_root=str(lsd_root), img_size=32, batch_size=4, num_workers=0,
                          balance="none")
    plain.setup("fit")
    assert isinstance(plain.train_dataloader().sampler, torch.utils.data.RandomSampler)
    assert plain.loss_class_weights() is None


def test_loss_balance_gives_inverse_frequency_weights(lsd_root: Path) -> None:
    data = LsdDataModule(data_root=str(lsd_root), img_size=32, num_workers=0, balance="loss")
    data.setup("fit")
    weights = data.loss_class_weights().numpy()
    inverse = 1.0 / np.array(TRAIN_COUNTS, dtype=np.float64)
    np.testing.assert_allclose(weights, inverse / inverse.mean(), rtol=1e-6)
    assert weights[2] > weights[0] > weights[4]  # Fear (1 image) > Anger (2) > Sadness (8)
    assert isinstance(data.train_dataloader().sampler, torch.utils.data.RandomSampler)


# --- augmentation ----------------------------------------------------------------------------


def _face_like(size: int = 64) -> np.ndarray:
    """A structured test image (gradients and a bright disc): every filter has edges to act on."""
    y, x = np.mgrid[0:size, 0:size]
    image = np.stack([x * 255 // size, y * 255 // size, (x + y) * 127 // size], axis=-1)
    image[(x - size // 2) ** 2 + (y - size // 2) ** 2 < (size // 4) ** 2] = (230, 190, 160)
    return image.astype(np.uint8)


def _leaf_steps(compose: A.Compose) -> list[A.BasicTransform]:
    steps = []
    for transform in compose.transforms:
        if isinstance(transform, A.Compose):
            continue  # the shared normalisation tail (eval_transforms)
        if isinstance(transform, A.OneOf):
            steps.extend(transform.transforms)
        else:
            steps.append(transform)
    return steps


def test_domain_bridge_is_built_without_any_ignored_argument() -> None:
    # albumentations 2.x only WARNS about a 1.x argument name and then uses its default
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compose = domain_bridge_transforms(64)
    steps = {type(t).__name__: t for t in _leaf_steps(compose)}
    assert steps["ImageCompression"].quality_range == (25, 90)
    assert steps["GaussNoise"].std_range == (0.02, 0.08)
    assert steps["CoarseDropout"].num_holes_range == (1, 2)
    assert steps["CoarseDropout"].hole_height_range == (0.15, 0.35)
    assert steps["Downscale"].scale_range == (0.3, 0.7)
    assert steps["RandomResizedCrop"].size == (64, 64)


def test_every_domain_bridge_step_changes_the_image() -> None:
    image = _face_like(64)
    steps = _leaf_steps(domain_bridge_transforms(64))
    assert len(steps) >= 12
    for step in steps:
        step.p = 1.0
        if isinstance(step, A.RandomResizedCrop | A.Affine):
            changed = any(not np.array_equal(step(image=image)["image"], image) for _ in range(5))
        elif isinstance(step, A.HorizontalFlip):
            changed = np.array_equal(step(image=image)["image"], image[:, ::-1])
        else:
            changed = not np.array_equal(step(image=image)["image"], image)
        assert changed, f"{type(step).__name__} left the image unchanged"


def test_bridge_pipeline_output_and_named_strengths() -> None:
    image = _face_like(48)
    out = domain_bridge_transforms(32)(image=image)["image"]
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32
    assert lsd_train_transforms(32, "light")(image=image)["image"].shape == (3, 32, 32)
    with pytest.raises(ConfigError, match="augment"):
        lsd_train_transforms(32, "extreme")


# --- the DataModule --------------------------------------------------------------------------


def test_datamodule_default_paths_and_env(lsd_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ABAW_DATA_ROOT", raising=False)
    with pytest.raises(ConfigError, match="data_root"):
        _ = LsdDataModule().train_dir
    monkeypatch.setenv("ABAW_DATA_ROOT", str(lsd_root))
    data = LsdDataModule(train_dir="/elsewhere/sr")
    assert data.train_dir == Path("/elsewhere/sr")
    assert data.val_dir == lsd_root / LSD_VAL_DIR
    assert data.test_list == lsd_root / "LSD_Challenge_test_set_release.txt"
    for bad in ({"balance": "oversample"}, {"augment": "heavy"}, {"predict_split": "train"}):
        with pytest.raises(ConfigError):
            LsdDataModule(**bad)


def test_datamodule_loaders_and_predict_split(lsd_root: Path, tmp_path: Path) -> None:
    hands = write_occlusion_csv(tmp_path / "hands.csv", {"SADNESS/img00.jpg": 1})
    data = LsdDataModule(data_root=str(lsd_root), img_size=32, batch_size=4, num_workers=0,
                         test_dir=str(lsd_root / TEST_DIR), occlusion_csv=str(hands))
    data.setup("fit")
    assert data.has_occlusion_labels
    batch = next(iter(data.train_dataloader()))
    assert batch["image"].shape == (4, 3, 32, 32)
    assert set(batch) == {"image", "label", "occluded", "index"}
    val = next(iter(data.val_dataloader()))
    assert val["image"].shape[0] == sum(VAL_COUNTS)  # eval batch = 2 x 4 >= 7
    data.setup("predict")
    assert data.predict_images == [f"{i}.jpg" for i in range(TEST_SIZE)]
    assert data.predict_test_list == [*data.predict_images, "1.jpg"]
    data.setup("test")
    test = next(iter(data.test_dataloader()))
    assert test["label"].tolist() == [i % 6 for i in range(TEST_SIZE)]
    no_hands = LsdDataModule(data_root=str(lsd_root), img_size=32, num_workers=0)
    no_hands.setup("fit")
    assert not no_hands.has_occlusion_labels
    pasting = LsdDataModule(data_root=str(lsd_root), img_size=32, num_workers=0, hand_paste=0.3)
    pasting.setup("fit")
    assert pasting.has_occlusion_labels and pasting.train_set.hand_paste == 0.3
