"""Generate the synthetic data set under OUT: plan, render in parallel, write, then manifest.

Determinism: each image's randomness comes from its own seed key (see
:func:`abaw.synth.layouts.rng_for`), and the jobs are cut into fixed-size chunks in plan
order, so the bytes do not depend on the number of workers or on scheduling. JPEGs are
encoded with ``cv2.imencode`` at a fixed quality.

Completeness: ``OUT/synth_manifest.json`` (counts, timings, a hash of the generator's
parameters and source) is written last and atomically. A run finding a manifest with the
same hash reuses the output; anything else (no manifest, another hash, a missing layout
folder) is treated as incomplete: the synthetic layout folders are removed and regenerated.
Folders that do not look like this generator's output are never deleted (an error instead).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np

from abaw.errors import AbawError
from abaw.fileio import atomic_write_text
from abaw.synth.layouts import (
    LATENT_COLUMNS,
    LATENT_DIR,
    PLANNERS,
    FileSpec,
    ImageJob,
    LayoutPlan,
)
from abaw.synth.noise import RaterNoise
from abaw.synth.render import render_face
from abaw.synth.sizes import get_size

MANIFEST = "synth_manifest.json"
#: Files other tools derive from the data (oracle scores, the preview): removed on regeneration.
DERIVED_FILES = ("oracle.json", "preview.png")
#: Bump when the output changes in a way the source hash would not show.
GENERATOR_VERSION = 1
JPEG_QUALITY = 92
CHUNK = 128  # jobs per worker task (fixed: chunking never changes bytes, only scheduling)
_HAND_BOX = LATENT_COLUMNS.index("hand_x0")
#: Modules that do not change the generated files (left out of the parameter hash).
_NOT_OUTPUT = {"oracle.py", "preview.py", "__init__.py"}


def _source_digest() -> str:
    """sha256 over the generator's source files (read at call time, not import time)."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        if path.name in _NOT_OUTPUT:
            continue
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def params_hash(size: str, seed: int, noise: RaterNoise = RaterNoise()) -> str:
    """Hash of everything that determines the output bytes."""
    params = {"version": GENERATOR_VERSION, "size": size, "size_spec": asdict(get_size(size)),
              "seed": seed, "noise": asdict(noise), "jpeg_quality": JPEG_QUALITY,
              "source": _source_digest()}
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()


def encode_jpeg(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise AbawError("JPEG encoding failed")
    return buf.tobytes()


def render_job(job: ImageJob) -> tuple[bytes, tuple[float, float, float, float] | None]:
    """Render one job to JPEG bytes (and its hand box)."""
    rendering = render_face(job.identity, job.state, np.random.default_rng(list(job.key)),
                            job.style, job.size)
    return encode_jpeg(rendering.image), rendering.hand_box


def _render_chunk(args: tuple[str, list[ImageJob]]) -> dict[str, tuple | None]:
    out, jobs = args
    cv2.setNumThreads(1)
    boxes: dict[str, tuple | None] = {}
    made: set[Path] = set()
    for job in jobs:
        data, box = render_job(job)
        path = Path(out) / job.path
        if path.parent not in made:
            path.parent.mkdir(parents=True, exist_ok=True)
            made.add(path.parent)
        path.write_bytes(data)
        if box is not None:
            boxes[job.path] = box
    return boxes


def _render_all(out: Path, jobs: list[ImageJob], workers: int, progress: bool
                ) -> dict[str, tuple | None]:
    from tqdm import tqdm

    chunks = [(str(out), jobs[i:i + CHUNK]) for i in range(0, len(jobs), CHUNK)]
    boxes: dict[str, tuple | None] = {}
    bar = tqdm(total=len(jobs), unit="img", desc="synth", disable=not progress, leave=False)
    try:
        if workers <= 1 or len(chunks) <= 1:
            for chunk in chunks:
                boxes.update(_render_chunk(chunk))
                bar.update(len(chunk[1]))
        else:
            # spawn, not fork: a caller may already hold OpenCV/torch thread pools, which do
            # not survive a fork reliably
            with multiprocessing.get_context("spawn").Pool(workers) as pool:
                for chunk_boxes, chunk in zip(pool.imap(_render_chunk, chunks), chunks):
                    boxes.update(chunk_boxes)
                    bar.update(len(chunk[1]))
    finally:
        bar.close()
    return boxes


def _write_latent(path: Path, rows: list[list[str]], job_paths: list[str | None],
                  boxes: dict[str, tuple | None]) -> None:
    lines = [",".join(LATENT_COLUMNS)]
    for row, job_path in zip(rows, job_paths):
        box = boxes.get(job_path) if job_path is not None else None
        if box is not None:
            row = list(row)
            row[_HAND_BOX:_HAND_BOX + 4] = [f"{v:.1f}" for v in box]
        lines.append(",".join(row))
    atomic_write_text(path, "\n".join(lines) + "\n")


def _write_files(out: Path, files: list[FileSpec], boxes: dict[str, tuple | None]) -> None:
    for spec in files:
        if spec.writer is None:
            _write_latent(out / spec.path, *spec.args, boxes)
        else:
            spec.writer(out / spec.path, *spec.args)


def read_manifest(out: str | Path) -> dict | None:
    """The manifest of a complete output, or None (missing or unreadable)."""
    try:
        return json.loads((Path(out) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _clear(out: Path, layouts: list[str]) -> None:
    """Remove this generator's layout folders before regenerating (never foreign data)."""
    for name in layouts:
        folder = out / name
        if not folder.exists():
            continue
        if not (folder / LATENT_DIR).is_dir():
            raise AbawError(f"{folder} exists but was not written by `abaw synth` (no "
                            f"{LATENT_DIR}/ inside); refusing to overwrite it — choose "
                            f"another output folder")
        shutil.rmtree(folder)


def generate(out: str | Path, size: str = "default", seed: int = 0, workers: int | None = None,
             progress: bool = True, layouts: tuple[str, ...] | None = None) -> dict:
    """Generate (or reuse) the synthetic data under ``out``; returns the manifest dict
    (counts, timings, images/s, ``reused``)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise AbawError(f"{out}: the output must be a folder, and this is a file")
    names = list(layouts or PLANNERS)
    for name in names:
        if name not in PLANNERS:
            raise AbawError(f"unknown layout {name!r}; expected one of {', '.join(PLANNERS)}")
    spec = get_size(size)
    digest = params_hash(size, seed)
    manifest = read_manifest(out)
    if (manifest is not None and manifest.get("params_hash") == digest
            and set(names) <= set(manifest.get("layouts", []))
            and all((out / name).is_dir() for name in names)):
        return {**manifest, "reused": True}
    (out / MANIFEST).unlink(missing_ok=True)  # from here on the output is incomplete
    _clear(out, names)
    for stale in DERIVED_FILES:  # computed from the old data: would be wrong for the new
        (out / stale).unlink(missing_ok=True)
    for name in names:  # the ownership mark first, so an interrupted run can be cleared later
        (out / name / LATENT_DIR).mkdir(parents=True, exist_ok=True)
    workers = (os.cpu_count() or 1) if workers is None else max(1, int(workers))
    start = time.perf_counter()
    plans: dict[str, LayoutPlan] = {name: PLANNERS[name](spec, seed) for name in names}
    planned = time.perf_counter()
    jobs = [job for plan in plans.values() for job in plan.jobs]
    boxes = _render_all(out, jobs, workers, progress)
    rendered = time.perf_counter()
    for plan in plans.values():
        _write_files(out, plan.files, boxes)
    done = time.perf_counter()
    counts: dict[str, int] = {}
    for plan in plans.values():
        counts.update(plan.counts)
    render_s = rendered - planned
    manifest = {
        "generator": "abaw.synth", "version": GENERATOR_VERSION, "size": size, "seed": seed,
        "layouts": names, "params_hash": digest, "images": len(jobs), "counts": counts,
        "hand_images": sum(1 for box in boxes.values() if box is not None),
        "seconds": {"plan": round(planned - start, 3), "render": round(render_s, 3),
                    "write": round(done - rendered, 3), "total": round(done - start, 3)},
        "images_per_second": round(len(jobs) / render_s, 1) if render_s > 0 else None,
        "workers": workers,
    }
    atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return {**manifest, "reused": False}


def generate_mtl(out: str | Path, size: str = "default", seed: int = 0,
                 workers: int | None = None, progress: bool = True) -> dict:
    """Only the MTL layout (``OUT/mtl``)."""
    return generate(out, size, seed, workers, progress, layouts=("mtl",))


def generate_lsd(out: str | Path, size: str = "default", seed: int = 0,
                 workers: int | None = None, progress: bool = True) -> dict:
    """Only the LSD layout (``OUT/lsd``)."""
    return generate(out, size, seed, workers, progress, layouts=("lsd",))


def generate_per_video(out: str | Path, size: str = "default", seed: int = 0,
                       workers: int | None = None, progress: bool = True) -> dict:
    """Only the per-video layout (``OUT/per_video``)."""
    return generate(out, size, seed, workers, progress, layouts=("per_video",))
