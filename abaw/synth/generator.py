"""Generate the synthetic data set under OUT: plan, render in parallel, write, then manifest.

Determinism: each image's randomness comes from its own seed key (see
:func:`abaw.synth.layouts.rng_for`), and the jobs are cut into fixed-size chunks in plan
order, so the bytes do not depend on the number of workers or on scheduling. JPEGs are
encoded with ``cv2.imencode`` at a fixed quality.

Completeness and ownership: ``OUT/synth_manifest.json`` (counts, timings, a hash of the
generator's parameters and source, and ``files``: every path under OUT a run wrote or was about
to write) is written atomically twice: first marked ``"complete": false`` with the planned
files, before anything is deleted or rendered, then complete at the end. A run finding a
complete manifest with the same hash reuses the output. Otherwise it regenerates, and the only
things it deletes are files a manifest lists (and the derived ``oracle.json`` /
``preview.png`` when the manifest records them); a layout folder holding any other file is
refused with an error, so a user's file is never removed or overwritten.

Concurrency: the whole run holds an exclusive lock on ``OUT/.synth.lock`` (``fcntl.flock``),
so a second ``abaw synth`` into the same folder (``make -j``) waits, then reuses the output.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import multiprocessing
import os
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np

from abaw import vocab
from abaw.errors import AbawError, ConfigError
from abaw.fileio import atomic_write_text, ensure_folder
from abaw.synth.layouts import (
    DEFAULT_EDITION,
    LATENT_COLUMNS,
    PER_VIDEO_DIR,
    PLANNERS,
    FileSpec,
    ImageJob,
    LayoutPlan,
    plan_per_video,
)
from abaw.synth.noise import RaterNoise
from abaw.synth.render import render_face
from abaw.synth.sizes import SynthSize, get_size

MANIFEST = "synth_manifest.json"
LOCK_FILE = ".synth.lock"
#: Files other tools derive from the data (oracle scores, the preview): removed on regeneration
#: when the manifest records them (:func:`record_derived`).
DERIVED_FILES = ("oracle.json", "preview.png")
#: a temporary of :mod:`abaw.fileio` (``.<name>.<pid>-<hex>.tmp``): group 1 is the target name
_TEMPORARY = re.compile(r"\.(.+)\.[0-9]+-[0-9a-f]{16}\.tmp")
#: foreign files named in the refusal message before "and N more"
_SHOWN = 3
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


def params_hash(size: str, seed: int, noise: RaterNoise = RaterNoise(),
                edition: int = DEFAULT_EDITION) -> str:
    """Hash of everything that determines the output bytes."""
    params = {"version": GENERATOR_VERSION, "size": size, "size_spec": asdict(get_size(size)),
              "seed": seed, "noise": asdict(noise), "jpeg_quality": JPEG_QUALITY,
              "source": _source_digest(), "edition": edition,
              "edition_files": vocab.PER_VIDEO_EDITION_FILES.get(edition)}
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


def _read_json(path: Path) -> dict | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def read_manifest(out: str | Path) -> dict | None:
    """The manifest of a complete output, or None (missing, unreadable or incomplete)."""
    manifest = _read_json(Path(out) / MANIFEST)
    if manifest is None or manifest.get("complete") is False:
        return None
    return manifest


# --- the lock ---------------------------------------------------------------------------------

_HELD: dict[str, int] = {}  # resolved OUT -> nesting depth of synth_lock in this process


@contextmanager
def synth_lock(out: str | Path) -> Iterator[Path]:
    """Hold the exclusive lock of output folder ``out`` (created if needed); re-entrant
    within a process. A second process waits (saying so once on stderr)."""
    out = ensure_folder(out)
    key = str(out.resolve())
    if key in _HELD:
        _HELD[key] += 1
        try:
            yield out
        finally:
            _HELD[key] -= 1
        return
    try:
        fd = os.open(out / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as err:
        raise AbawError(f"cannot write into {out}: {err.strerror or err}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"abaw: {out} is being written by another `abaw synth`; waiting for it",
                  file=sys.stderr)
            fcntl.flock(fd, fcntl.LOCK_EX)
        _HELD[key] = 1
        try:
            yield out
        finally:
            del _HELD[key]
    finally:
        os.close(fd)  # releases the lock


# --- ownership --------------------------------------------------------------------------------


def _plan_paths(plans: Iterator[LayoutPlan] | list[LayoutPlan]) -> set[str]:
    paths: set[str] = set()
    for plan in plans:
        paths.update(job.path for job in plan.jobs)
        paths.update(spec.path for spec in plan.files)
    return paths


def _owned_files(manifest: dict | None) -> set[str]:
    """Paths (relative to OUT) an earlier run of this generator wrote or planned to write."""
    if manifest is None:
        return set()
    files = manifest.get("files")
    if isinstance(files, list):
        return {f for f in files if isinstance(f, str)}
    try:  # a manifest of an earlier version (no file list): its plan says what it wrote
        spec = get_size(str(manifest["size"]))
        seed = int(manifest["seed"])
        edition = int(manifest.get("edition", DEFAULT_EDITION))
        return _plan_paths(plan_layout(name, spec, seed, edition) for name in manifest["layouts"])
    except (KeyError, TypeError, ValueError, AbawError):
        return set()


def _scan_layout(out: Path, name: str, owned: set[str]) -> tuple[list[Path], list[str]]:
    """Files under ``out/name``: (our stale temporaries, foreign files as relative paths)."""
    folder = out / name
    temporaries: list[Path] = []
    foreign: list[str] = []
    if not folder.exists() and not folder.is_symlink():
        return temporaries, foreign
    if folder.is_symlink() or not folder.is_dir():
        return temporaries, [name]
    for root, dirs, files in os.walk(folder):
        for entry in files + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            relative = Path(root, entry).relative_to(out).as_posix()
            if relative in owned:
                continue
            match = _TEMPORARY.fullmatch(entry)
            if match is not None and Path(relative).with_name(match.group(1)).as_posix() in owned:
                temporaries.append(out / relative)
            else:
                foreign.append(relative)
    return temporaries, sorted(foreign)


def _remove(out: Path, relative: str) -> None:
    """Remove one owned file, then its folders up to OUT that it leaves empty."""
    path = out / relative
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    parent = path.parent
    while parent != out and out in parent.parents:
        try:
            parent.rmdir()  # only when empty: never a folder holding anything else
        except OSError:
            break
        parent = parent.parent


def _prepare(out: Path, names: list[str], manifest: dict | None, new_paths: set[str]) -> set[str]:
    """Delete what the previous run owned in the layouts about to be written (nothing else);
    returns the paths still owned afterwards (other layouts' files)."""
    owned = _owned_files(manifest)
    refused: list[str] = []
    temporaries: list[Path] = []
    for name in names:
        stale, foreign = _scan_layout(out, name, owned)
        temporaries += stale
        refused += foreign
    if refused:
        more = f" and {len(refused) - _SHOWN} more" if len(refused) > _SHOWN else ""
        shown = ", ".join(refused[:_SHOWN])
        raise AbawError(f"{out}: {len(refused)} file(s) in the synthetic layout folders were not "
                        f"written by `abaw synth` ({shown}{more}); refusing to delete or "
                        "overwrite them: move them out or choose another output folder")
    derived = [d for d in (manifest or {}).get("derived", []) if d in DERIVED_FILES]
    layouts = set(names)
    keep = {p for p in owned if p.split("/", 1)[0] not in layouts}
    pending = {"generator": "abaw.synth", "complete": False,
               "files": sorted(owned | new_paths), "derived": derived}
    atomic_write_text(out / MANIFEST, json.dumps(pending, sort_keys=True) + "\n")
    for path in temporaries:
        path.unlink(missing_ok=True)
    for relative in sorted(owned - keep - new_paths):
        _remove(out, relative)
    for stale in derived:  # computed from the old data: would be wrong for the new
        (out / stale).unlink(missing_ok=True)
    return keep


def record_derived(out: str | Path, name: str) -> None:
    """Note in the manifest that ``OUT/name`` (one of :data:`DERIVED_FILES`) was written from
    this data, so a regeneration removes it (and only then)."""
    if name not in DERIVED_FILES:
        raise ValueError(f"{name!r} is not a derived file of the synthetic data")
    with synth_lock(out):
        manifest = read_manifest(out)
        if manifest is None or name in manifest.get("derived", []):
            return
        manifest["derived"] = sorted({*manifest.get("derived", []), name})
        atomic_write_text(Path(out) / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True)
                          + "\n")


def _check_output(out: str | Path, seed: int) -> Path:
    if str(out) == "":
        raise ConfigError("the output folder is an empty path; give a folder name "
                          "(e.g. data/synth)")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"--seed must be a non-negative integer, got {seed!r}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise AbawError(f"{out}: the output must be a folder, and this is a file")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise AbawError(f"{out}: cannot create it, {parent} is a file, not a folder")
            break
    return out


def plan_layout(name: str, spec: SynthSize, seed: int, edition: int = DEFAULT_EDITION
                ) -> LayoutPlan:
    """The plan of layout ``name`` (the per-video one with ``edition``'s names)."""
    if name == PER_VIDEO_DIR:
        return plan_per_video(spec, seed, edition=edition)
    return PLANNERS[name](spec, seed)


def generate(out: str | Path, size: str = "default", seed: int = 0, workers: int | None = None,
             progress: bool = True, layouts: tuple[str, ...] | None = None,
             edition: int = DEFAULT_EDITION) -> dict:
    """Generate (or reuse) the synthetic data under ``out``; returns the manifest dict
    (counts, timings, images/s, ``reused``). ``edition`` (5 or 6) chooses the per-video
    layout's folder and file names (:data:`abaw.vocab.PER_VIDEO_EDITION_FILES`)."""
    if edition not in vocab.PER_VIDEO_EDITION_FILES:
        raise ConfigError(f"unknown per-video edition {edition!r}; expected one of "
                          f"{', '.join(map(str, vocab.PER_VIDEO_EDITIONS))}")
    out = _check_output(out, seed)
    names = list(layouts or PLANNERS)
    for name in names:
        if name not in PLANNERS:
            raise AbawError(f"unknown layout {name!r}; expected one of {', '.join(PLANNERS)}")
    spec = get_size(size)
    try:
        with synth_lock(out):
            return _generate_locked(out, size, spec, seed, workers, progress, names, edition)
    except OSError as err:
        raise AbawError(f"cannot write {err.filename or out}: {err.strerror or err}") from None


def _generate_locked(out: Path, size: str, spec, seed: int, workers: int | None,
                     progress: bool, names: list[str], edition: int = DEFAULT_EDITION) -> dict:
    digest = params_hash(size, seed, edition=edition)
    manifest = read_manifest(out)
    if manifest is not None and manifest.get("params_hash") == digest:
        # a layout already complete with these parameters is kept, not rendered again
        done = set(manifest.get("layouts", []))
        names = [name for name in names if name not in done or not (out / name).is_dir()]
        if not names:
            return {**manifest, "reused": True}
    # complete layouts of the same parameters that this run leaves alone stay complete
    kept_layouts = [name for name in (manifest or {}).get("layouts", [])
                    if manifest.get("params_hash") == digest and name not in names]
    workers = (os.cpu_count() or 1) if workers is None else max(1, int(workers))
    start = time.perf_counter()
    plans: dict[str, LayoutPlan] = {name: plan_layout(name, spec, seed, edition)
                                    for name in names}
    planned = time.perf_counter()
    new_paths = _plan_paths(list(plans.values()))
    keep = _prepare(out, names, _read_json(out / MANIFEST), new_paths)
    jobs = [job for plan in plans.values() for job in plan.jobs]
    boxes = _render_all(out, jobs, workers, progress)
    rendered = time.perf_counter()
    for plan in plans.values():
        _write_files(out, plan.files, boxes)
    done = time.perf_counter()
    counts: dict[str, int] = dict(manifest.get("counts", {})) if kept_layouts else {}
    for plan in plans.values():
        counts.update(plan.counts)
    render_s = rendered - planned
    manifest = {
        "generator": "abaw.synth", "version": GENERATOR_VERSION, "size": size, "seed": seed,
        "edition": edition,
        "layouts": [name for name in PLANNERS if name in names or name in kept_layouts],
        "params_hash": digest, "images": len(jobs), "counts": counts,
        "hand_images": sum(1 for box in boxes.values() if box is not None),
        "seconds": {"plan": round(planned - start, 3), "render": round(render_s, 3),
                    "write": round(done - rendered, 3), "total": round(done - start, 3)},
        "images_per_second": round(len(jobs) / render_s, 1) if render_s > 0 else None,
        "workers": workers, "complete": True, "files": sorted(keep | new_paths), "derived": [],
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
                       workers: int | None = None, progress: bool = True,
                       edition: int = DEFAULT_EDITION) -> dict:
    """Only the per-video layout (``OUT/per_video``)."""
    return generate(out, size, seed, workers, progress, layouts=("per_video",), edition=edition)
