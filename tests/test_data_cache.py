"""The decoded-image cache and the batch augmentation (abaw.data.cache, abaw.data.batch_augment)."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from abaw.data.batch_augment import BatchAugment, normalise
from abaw.data.cache import cache_key, decode_split
from abaw.data.transforms import IMAGENET_MEAN, IMAGENET_STD


def _write(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.ascontiguousarray(rgb[:, :, ::-1]))


@pytest.fixture
def images(tmp_path: Path) -> tuple[Path, list[str]]:
    root = tmp_path / "imgs"
    rng = np.random.default_rng(0)
    names = []
    for i in range(5):
        name = f"v{i % 2}/{i:05d}.png"  # PNG: lossless, so the decoded bytes are known
        _write(root / name, rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
        names.append(name)
    return root, names


def test_decode_split_stores_exact_pixels_and_reuses_the_entry(images, tmp_path):
    root, names = images
    cache = tmp_path / "cache"
    first = decode_split(root, names, 16, cache)
    for i, name in enumerate(names):
        expected = cv2.imread(str(root / name))[:, :, ::-1]
        np.testing.assert_array_equal(first.pixels[i], expected)
    assert first.ok.all()
    entries = sorted(p.name for p in cache.iterdir())
    assert len(entries) == 2 and not any(name.endswith(".tmp") for name in entries)
    mtime = first.path.stat().st_mtime_ns
    again = decode_split(root, names, 16, cache)
    assert again.path == first.path and again.path.stat().st_mtime_ns == mtime  # not rebuilt


def test_resize_is_inter_area_to_the_side(images, tmp_path):
    root, names = images
    decoded = decode_split(root, names, 8, tmp_path / "c")
    source = cv2.imread(str(root / names[0]))[:, :, ::-1]
    np.testing.assert_array_equal(decoded.pixels[0],
                                  cv2.resize(source, (8, 8), interpolation=cv2.INTER_AREA))


def test_key_changes_with_file_stamp_list_and_size(images):
    root, names = images
    key = cache_key(root, names, 16)
    assert cache_key(root, names, 32) != key
    assert cache_key(root, names[:-1], 16) != key
    stat = (root / names[0]).stat()
    os.utime(root / names[0], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert cache_key(root, names, 16) != key


def test_unreadable_and_missing_images_are_flagged(images, tmp_path):
    root, names = images
    (root / names[1]).write_bytes(b"not an image")
    decoded = decode_split(root, [*names, "v9/missing.png"], 16, tmp_path / "c")
    assert decoded.ok.tolist() == [True, False, True, True, True, False]
    assert decoded.unreadable.tolist() == [1, 5]


def test_cache_files_respect_the_umask(images, tmp_path):
    root, names = images
    old = os.umask(0o027)
    try:
        decoded = decode_split(root, names, 16, tmp_path / "c")
    finally:
        os.umask(old)
    assert decoded.path.stat().st_mode & 0o777 == 0o640


def test_eval_batches_are_only_normalised():
    images = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    out = BatchAugment("strong")(images, train=False)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(out, (images.float() / 255 - mean) / std)
    torch.testing.assert_close(normalise(images.float() / 255), out)


def test_light_augmentation_keeps_a_constant_image_constant_and_flips_half():
    # geometry only: a flat image stays flat; a left/right ramp is mirrored for ~half the batch
    flat = torch.full((64, 3, 16, 16), 77, dtype=torch.uint8)
    out = BatchAugment("light")(flat, train=True)
    torch.testing.assert_close(out, BatchAugment("none")(flat, train=True))
    torch.manual_seed(0)
    ramp = torch.arange(16, dtype=torch.uint8).mul(15).view(1, 1, 1, 16).expand(256, 3, 16, 16)
    out = BatchAugment("light")(ramp.contiguous(), train=True)
    slope = (out[:, 0, :, -4:].mean((1, 2)) - out[:, 0, :, :4].mean((1, 2)))
    flipped = (slope < 0).float().mean().item()
    assert 0.4 < flipped < 0.6
    assert bool((slope.abs() > 1.0).all())  # the crop never loses the ramp


def test_training_augmentation_differs_per_image_and_from_eval():
    torch.manual_seed(1)
    images = torch.randint(0, 256, (1, 3, 16, 16), dtype=torch.uint8).expand(8, 3, 16, 16)
    out = BatchAugment("medium")(images.contiguous(), train=True)
    assert out.shape == (8, 3, 16, 16) and out.dtype == torch.float32
    assert not torch.allclose(out[0], out[1])
    assert not torch.allclose(out, BatchAugment("medium")(images.contiguous(), train=False))


def test_bad_strength_and_dtype_are_refused():
    with pytest.raises(ValueError, match="augment strength"):
        BatchAugment("extreme")
    with pytest.raises(ValueError, match="uint8"):
        BatchAugment("light")(torch.zeros(1, 3, 4, 4), train=True)


def test_colour_jitter_is_brightness_then_contrast_then_saturation():
    from abaw.data import batch_augment

    torch.manual_seed(3)
    x = torch.rand(6, 3, 5, 5)
    torch.manual_seed(6)
    out = batch_augment._colour(x.clone(), 0.3)
    # redo the draws of _colour, then the three steps one after another
    torch.manual_seed(6)
    keep = torch.rand(6) >= batch_augment._COLOUR_P
    b, c, s = (torch.rand(18) * 0.6 + 0.7).view(3, 6)
    expected = []
    for i in range(6):
        if keep[i]:
            expected.append(x[i])
            continue
        y = x[i] * b[i]
        y = (y - y.mean()) * c[i] + y.mean()
        grey = (y * torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)).sum(0, keepdim=True)
        expected.append(((y - grey) * s[i] + grey).clamp(0, 1))
    torch.testing.assert_close(out, torch.stack(expected))
    assert 0 < int(keep.sum()) < 6  # both branches exercised
