"""MTL data: image loading, transforms, datasets, the datamodule (tiny fixture data)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from mtl_fixtures import make_mtl_data

from abaw.data.images import check_images, grey_image, load_rgb
from abaw.data.loaders import collate_skip_unreadable
from abaw.data.mtl import (
    DATA_ROOT_ENV,
    MtlDataModule,
    MtlLabels,
    resolve_data_root,
    task_balanced_weights,
)
from abaw.data.transforms import IMAGENET_MEAN, IMAGENET_STD, eval_transforms, train_transforms
from abaw.errors import AbawError, ConfigError
from abaw.formats.readers import read_mtl_annotations
from abaw.vocab import MTL_IMAGE_DIR, MTL_TRAIN_FILE, MTL_VAL_FILE

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return make_mtl_data(tmp_path_factory.mktemp("mtl"))


def _module(root: Path, **kwargs) -> MtlDataModule:
    kwargs = {"img_size": 32, "batch_size": 4, "num_workers": 0, "augment": "none", **kwargs}
    return MtlDataModule(data_root=str(root), **kwargs)


def test_data_root_from_argument_or_environment(data_root, monkeypatch, tmp_path) -> None:
    monkeypatch.delenv(DATA_ROOT_ENV, raising=False)
    with pytest.raises(ConfigError, match=DATA_ROOT_ENV):
        resolve_data_root(None)
    monkeypatch.setenv(DATA_ROOT_ENV, str(data_root))
    assert resolve_data_root(None) == data_root
    assert resolve_data_root(str(tmp_path)) == tmp_path  # the argument wins
    with pytest.raises(ConfigError, match="not a directory"):
        resolve_data_root(str(tmp_path / "nowhere"))
    # no side effect in __init__: a bad root is only noticed by setup
    module = MtlDataModule(data_root=str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError):
        module.setup("fit")


def test_eval_transform_normalises_exactly() -> None:
    image = np.full((40, 40, 3), 128, dtype=np.uint8)
    out = eval_transforms(32)(image=image)["image"]
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32
    for c in range(3):
        expected = (128 / 255 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]
        assert torch.allclose(out[c], torch.full((32, 32), expected), atol=1e-5)
    for strength in ("light", "medium", "strong"):
        assert train_transforms(32, strength)(image=image)["image"].shape == (3, 32, 32)
    with pytest.raises(ValueError):
        train_transforms(32, "extreme")


def test_load_rgb_channel_order_and_failures(tmp_path) -> None:
    import cv2

    bgr = np.zeros((8, 8, 3), np.uint8)
    bgr[..., 2] = 255  # red in OpenCV's BGR order
    cv2.imwrite(str(tmp_path / "red.png"), bgr)
    rgb = load_rgb(tmp_path / "red.png")
    assert rgb.shape == (8, 8, 3) and rgb.dtype == np.uint8
    assert rgb[0, 0].tolist() == [255, 0, 0]
    assert load_rgb(tmp_path / "missing.jpg") is None
    (tmp_path / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    assert load_rgb(tmp_path / "corrupt.jpg") is None
    assert grey_image(4).shape == (4, 4, 3)


def test_dataset_items_and_partial_labels(data_root) -> None:
    module = _module(data_root)
    module.setup("fit")
    train = module.datasets["train"]
    assert len(train) == 24 and len(module.datasets["val"]) == 12
    ann = read_mtl_annotations(data_root / MTL_TRAIN_FILE)
    # fixture rows cycle: all labels, VA only, expression only, AU only
    kinds = [train[i] for i in range(4)]
    for item in kinds:
        assert item["image"].shape == (3, 32, 32)
        assert item["va"].shape == (2,) and item["au"].shape == (12,)
        assert item["expr"].dtype == torch.int64 and item["au"].dtype == torch.int64
    assert kinds[0]["va_mask"] and kinds[0]["expr"] >= 0 and (kinds[0]["au"] >= 0).all()
    assert kinds[1]["va_mask"] and kinds[1]["expr"] == -1 and (kinds[1]["au"] == -1).all()
    assert not kinds[2]["va_mask"] and kinds[2]["expr"] == ann.expression[2]
    assert not kinds[3]["va_mask"] and kinds[3]["au"].tolist() == ann.aus[3].tolist()
    assert kinds[1]["va"].tolist() == pytest.approx(ann.va[1].tolist())
    assert [int(k["index"]) for k in kinds] == [0, 1, 2, 3]
    batch = next(iter(module.val_dataloader()))
    assert batch["image"].shape == (8, 3, 32, 32) and batch["va_mask"].dtype == torch.bool


def test_label_statistics(data_root) -> None:
    stats = _module(data_root).label_stats
    ann = read_mtl_annotations(data_root / MTL_TRAIN_FILE)
    labelled = ann.expression[ann.expression >= 0]
    assert stats.expression_counts.tolist() == np.bincount(labelled, minlength=8).tolist()
    au_rows = ann.aus[(ann.aus >= 0).all(axis=1)]
    assert np.allclose(stats.au_positive_rate, au_rows.mean(axis=0))
    assert stats.va_count == int(ann.va_mask.sum()) == 12
    assert stats.au_labelled_rows == 12


def test_single_task_drops_unlabelled_rows(data_root) -> None:
    module = _module(data_root, tasks=["expr"])
    module.setup("fit")
    labels = module.datasets["train"].labels
    assert len(labels) == 12  # rows of kind 0 and 2 carry an expression
    assert (labels.expression >= 0).all()
    assert (labels.va == -5).all() and (labels.aus == -1).all()
    with pytest.raises(ConfigError):
        MtlDataModule(data_root=str(data_root), tasks=["va", "pose"])


def test_task_balanced_weights_by_hand() -> None:
    # rows: VA only, VA only, VA only, expression only -> VA rows 1/3 each, expr row 1
    labels = MtlLabels(
        images=np.array(["a", "b", "c", "d"], dtype=object),
        va=np.array([[0.1, 0.2]] * 3 + [[-5, -5]], np.float32),
        expression=np.array([-1, -1, -1, 2]),
        aus=np.full((4, 12), -1),
        rows=np.arange(4),
    )
    assert task_balanced_weights(labels) == pytest.approx([1 / 3, 1 / 3, 1 / 3, 1.0])
    module = _module(Path("."), balance="task")
    assert module.balance == "task"


def test_missing_and_corrupt_images_reported_once_and_skipped(tmp_path, caplog) -> None:
    root = make_mtl_data(tmp_path / "data", n_train=8, n_val=8)
    ann = read_mtl_annotations(root / MTL_VAL_FILE)
    missing, corrupt = ann.images[1], ann.images[2]
    (root / MTL_IMAGE_DIR / missing).unlink()
    (root / MTL_IMAGE_DIR / corrupt).write_bytes(b"\xff\xd8\xff\xe0 truncated")
    report_dir = tmp_path / "run"
    module = _module(root, report_dir=str(report_dir), eval_batch_size=3)
    with caplog.at_level(logging.WARNING, logger="abaw"):
        module.setup("validate")
        seen = [int(i) for batch in module.val_dataloader() if batch is not None
                for i in batch["index"]]
        # a second epoch must not report the corrupt file again
        for _ in module.val_dataloader():
            pass
    assert module.problems["val"].missing == [missing]
    assert sorted(seen) == [0, 3, 4, 5, 6, 7]  # rows 1 (missing) and 2 (corrupt) skipped
    messages = [r.getMessage() for r in caplog.records]
    assert sum(missing in m for m in messages) == 1
    assert sum(corrupt in m for m in messages) == 1
    listed = (report_dir / "image_problems_val.txt").read_text().splitlines()
    assert listed == [f"missing\t{missing}", f"unreadable\t{corrupt}"]


def test_check_images_counts_repeats_once(tmp_path) -> None:
    problems = check_images(tmp_path, ["v/1.jpg", "v/1.jpg", "v/2.jpg"], "train")
    assert problems.missing == ["v/1.jpg", "v/2.jpg"]
    assert problems.summary().startswith("train: 2 missing (v/1.jpg, v/2.jpg)")


def test_collate_skips_none() -> None:
    item = {"x": torch.tensor(1)}
    assert collate_skip_unreadable([None, item])["x"].tolist() == [1]
    assert collate_skip_unreadable([None, None]) is None


def test_predict_test_list_and_missing_test_policy(tmp_path) -> None:
    root = make_mtl_data(tmp_path / "data", n_train=4, n_val=4, n_test=5)
    module = _module(root)
    module.setup("predict")
    assert module.resolved_test_image_root() == root / "test" / MTL_IMAGE_DIR
    assert len(module.predict_test_list) == 6  # the fixture repeats its first entry
    assert module.predict_images == list(dict.fromkeys(module.predict_test_list))
    item = module.datasets["predict"][0]
    assert item["image"].shape == (3, 32, 32) and int(item["index"]) == 0

    gone = module.predict_images[3]
    (root / "test" / MTL_IMAGE_DIR / gone).unlink()
    with pytest.raises(AbawError, match=gone.replace(".", r"\.")):
        _module(root).setup("predict")
    grey = _module(root, missing_test_images="grey")
    grey.setup("predict")
    assert len(grey.datasets["predict"]) == 5  # nothing dropped: a grey image stands in
    assert grey.datasets["predict"][3]["image"].shape == (3, 32, 32)
    # the validation images can be predicted too (threshold fitting, `abaw score` on val)
    val = _module(root, predict_split="val")
    val.setup("predict")
    assert val.predict_test_list is None and len(val.predict_images) == 4


def test_test_stage_needs_labelled_test_file(tmp_path) -> None:
    root = make_mtl_data(tmp_path / "data", n_train=4, n_val=4)
    module = _module(root)
    module.setup("test")
    assert len(module.datasets["test"]) == 6
    (root / "test_set_annotations.txt").unlink()
    with pytest.raises(ConfigError, match="abaw mtl predict"):
        _module(root).setup("test")


def test_cached_and_file_loaders_give_the_same_eval_batches(tmp_path) -> None:
    # at the native side (the fixture's images are 32 px) neither path resizes, so the
    # cached uint8 batch, normalised by the datamodule hook, equals the albumentations one
    root = make_mtl_data(tmp_path / "data", n_train=6, n_val=6)
    batches = []
    for cache in (True, False):
        module = _module(root, cache=cache, cache_dir=str(tmp_path / "cache"), eval_batch_size=6)
        module.setup("validate")
        batch = next(iter(module.val_dataloader()))
        assert batch["image"].dtype == (torch.uint8 if cache else torch.float32)
        batches.append(module.on_after_batch_transfer(batch, 0))
    cached, files = batches
    for key in ("va", "va_mask", "expr", "au", "index"):
        assert torch.equal(cached[key], files[key]), key
    torch.testing.assert_close(cached["image"], files["image"], atol=1e-6, rtol=0)


def test_batched_read_equals_item_reads(data_root, tmp_path) -> None:
    module = _module(data_root, cache_dir=str(tmp_path / "cache"))
    module.setup("fit")
    train = module.datasets["train"]
    rows = [5, 0, 3, 3]
    batch = train.__getitems__(rows)
    items = collate_skip_unreadable([train[i] for i in rows])
    assert set(batch) == set(items)
    for key in batch:
        assert torch.equal(batch[key], items[key]), key
    assert batch["index"].tolist() == rows


def test_bad_sizes_are_config_errors(data_root) -> None:
    for kwargs in ({"img_size": -3}, {"batch_size": 0}, {"eval_batch_size": 0}):
        with pytest.raises(ConfigError):
            _module(data_root, **kwargs)
