"""Plan the three official layouts: which images to render and which label files to write.

Planning is cheap (numpy only, no drawing): :func:`plan_all` returns the image jobs and the
text files (official-format annotations, test lists, truth files, latent files), so tests
can check labels and sentinel rates without rendering. :mod:`abaw.synth.generator` renders the
jobs and writes the files.

Paths under OUT (synthetic-only additions marked *):

``mtl/``
    ``cropped_aligned/<video>/<%05d>.jpg``, ``training_set_annotations.txt``,
    ``validation_set_annotations.txt``, ``MTL_Challenge_test_set_release.txt``,
    ``test/cropped_aligned/<video>/<%05d>.jpg`` (the separate test image tree),
    ``test_set_annotations.txt`` (*test truth, annotation format),
    ``_latent/{train,validation,test}.csv`` (*noiseless truth + hands, see LATENT_COLUMNS).
``lsd/``
    ``training_set_synthetic_images/<FOLDER>/<i>.jpg`` (56x56, synthetic style),
    ``validation_set_real_images/<FOLDER>/<i>.jpg``, ``test_set/<i>.jpg`` (flat),
    ``LSD_Challenge_test_set_release.txt``, ``test_set_labels.txt`` (*truth,
    ``image,expression``), ``_latent/{train,validation,test}.csv`` (*).
``per_video/``
    ``{VA_Estimation,EXPR_Recognition,AU_Detection}_Challenge/{Train_Set,Validation_Set}/<video>.txt``
    (``--edition 5``: ``EXPR_Classification_Challenge``),
    ``.../Test_Set/<video>.txt`` (*truth), ``cropped_aligned/<video>/<%05d>.jpg`` (frames
    without a face have an annotation line but no image),
    ``names_of_videos_in_each_test_set/{Valence_Arousal_Estimation,Expression_Recognition,
    Action_Unit_Detection}_Challenge_test_set_release.txt`` (5th: ``Expression_Classification``),
    ``test_set_examples/CVPR_6th_ABAW_{VA,Expr,AU}_test_set_example.txt`` (5th:
    ``CVPR_5th_ABAW_{VA,EXPR,AU}_...``; every test frame),
    ``_latent/{train,validation,test}.csv`` (*).

Seeds: every random draw comes from ``numpy.random.default_rng([seed, layout, split, item,
part])`` with fixed small integer codes, so nothing depends on iteration or worker order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from abaw import vocab
from abaw.formats import writers
from abaw.synth.dynamics import VideoLatent, WildSettings, simulate_video, single_frame
from abaw.synth.expressions import AU_THRESHOLD, RENDER_AUS
from abaw.synth.identity import Identity, sample_identity
from abaw.synth.noise import LSD_TO_EXPR, RaterNoise, rate_lsd, rate_video
from abaw.synth.sizes import SynthSize
from abaw.synth.state import FrameState

# --- paths ---------------------------------------------------------------------------------
MTL_DIR, LSD_DIR, PER_VIDEO_DIR = "mtl", "lsd", "per_video"
MTL_TEST_IMAGE_DIR = "test/" + vocab.MTL_IMAGE_DIR
MTL_TEST_TRUTH, LSD_TEST_DIR, LSD_TEST_TRUTH = vocab.MTL_TEST_TRUTH, vocab.LSD_TEST_DIR, vocab.LSD_TEST_TRUTH
PER_VIDEO_TEST_SPLIT = "Test_Set"
PER_VIDEO_SAMPLES_DIR = vocab.PER_VIDEO_SAMPLES_DIR
#: the edition whose folder and file names the per-video layout uses by default
DEFAULT_EDITION = 6
LATENT_DIR = "_latent"
SPLITS = ("train", "validation", "test")

# image sizes: real-like crops are 112 px; the LSD synthetic style is rendered at half that
REAL_SIZE = 112
LSD_SYNTHETIC_SIZE = 56

# real sentinel rates (4th ABAW, ABAW_FORMATS.md): share of training rows *without* a task
MTL_TRAIN_MISSING = {"va": 0.27, "expr": 0.36, "au": 0.27}
MTL_VAL_EXPR_MISSING = 0.43
MTL_REPEAT_RATE = 0.007   # annotation rows repeating an image
MTL_TEST_REPEAT_RATE = 0.014
PER_VIDEO_FACELESS_RATE = 0.03
#: LSD class shares (Anger, Disgust, Fear, Happiness, Sadness, Surprise).
LSD_TRAIN_SHARES = np.array([18286, 15150, 10923, 73285, 144631, 14976], float)
LSD_REAL_SHARES = np.array([0.12, 0.09, 0.08, 0.3, 0.26, 0.15])
LSD_HAND_RATE = 0.2

LAYOUT_CODE = {MTL_DIR: 1, LSD_DIR: 2, PER_VIDEO_DIR: 3}
SPLIT_CODE = {"train": 1, "validation": 2, "test": 3}

LATENT_COLUMNS: tuple[str, ...] = (
    "image", "valence", "arousal", "expression", *vocab.AUS,
    *(f"intensity_{name}" for name in RENDER_AUS),
    "face", "hand", "hand_place", "hand_x0", "hand_y0", "hand_x1", "hand_y1",
    "brightness", "blur", "noise", "jpeg_quality",
)


def rng_for(seed: int, layout: str, split: str, item: int, part: int) -> np.random.Generator:
    """The generator for one (layout, split, video-or-image, purpose) — order independent."""
    return np.random.default_rng([seed, LAYOUT_CODE[layout], SPLIT_CODE[split], item, part])


#: Last element of every image seed key: keeps image streams apart from the planning streams
#: of :func:`rng_for` (which end in a small purpose code).
_IMAGE_STREAM = 1000


def image_key(seed: int, layout: str, split: str, item: int, frame: int) -> tuple[int, ...]:
    """Seed key of one image's own randomness (clutter, strands, noise fields)."""
    return (seed, LAYOUT_CODE[layout], SPLIT_CODE[split], item, frame, _IMAGE_STREAM)


@dataclass(frozen=True)
class ImageJob:
    """One image to render: where (relative to OUT), who, what, and its seed key."""

    path: str
    identity: Identity
    state: FrameState
    style: str
    size: int
    key: tuple[int, ...]


@dataclass(frozen=True)
class FileSpec:
    """A text file to write: ``writer(OUT / path, *args)``. For latent files ``writer`` is
    None and ``args`` is ``(rows, job_paths)``: the hand boxes measured while rendering are
    filled in before writing."""

    path: str
    writer: Callable[..., object] | None
    args: tuple


@dataclass
class LayoutPlan:
    """Images and text files of one layout (files are written after the images)."""

    jobs: list[ImageJob] = field(default_factory=list)
    files: list[FileSpec] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    # label arrays kept for tests and the oracle, per split
    tables: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)


def _latent_rows(images: list[str], va: np.ndarray, expression: np.ndarray,
                 intensities: np.ndarray, face: np.ndarray, states: list[FrameState | None]
                 ) -> list[str]:
    rows = []
    labels = (intensities[:, : vocab.NUM_AUS] >= AU_THRESHOLD).astype(int)
    for i, image in enumerate(images):
        state = states[i]
        hand = state.hand if state is not None else None
        fields = [image, f"{va[i, 0]:.4f}", f"{va[i, 1]:.4f}", str(int(expression[i])),
                  *map(str, labels[i]), *(f"{x:.3f}" for x in intensities[i]),
                  str(int(face[i])), str(int(hand is not None)),
                  hand.place if hand is not None else "",
                  "", "", "", "",  # hand box: filled in by the renderer's pass
                  f"{state.brightness:.3f}" if state else "", f"{state.blur:.3f}" if state else "",
                  f"{state.noise:.2f}" if state else "", str(state.jpeg_quality) if state else ""]
        rows.append(fields)
    return rows


def _greedy_share(order: list[int], weights: np.ndarray, target: float) -> set[int]:
    """Pick items in ``order`` while adding one brings their weight share closer to target."""
    total = float(weights.sum())
    chosen: set[int] = set()
    acc = 0.0
    for i in order:
        if abs(acc + weights[i] - target * total) < abs(acc - target * total):
            chosen.add(i)
            acc += weights[i]
    return chosen


def _video_name(rng: np.random.Generator, index: int) -> str:
    kind = int(rng.integers(3))
    if kind == 0:
        return f"video{index}"
    fps = (25, 30)[int(rng.integers(2))]
    res = ("640x360", "1280x720", "1920x1080", "480x360")[int(rng.integers(4))]
    return f"{index}-{fps}-{res}"


def _missing_masks(rng: np.random.Generator, frames: list[int], split: str
                   ) -> list[dict[str, np.ndarray]]:
    """Per video, per task: which sampled frames are *not* annotated (the sentinels)."""
    counts = np.asarray(frames, float)
    n_videos = len(frames)
    masks = [{t: np.zeros(c, bool) for t in ("va", "expr", "au")} for c in frames]
    if split == "test":
        return masks
    order = [int(i) for i in rng.permutation(n_videos)]
    if split == "train":
        no_va = _greedy_share(order, counts, MTL_TRAIN_MISSING["va"])
        rest = [i for i in order if i not in no_va]
        # AU-less videos are chosen among those with VA, so every row keeps a task
        au_target = MTL_TRAIN_MISSING["au"] * counts.sum() / max(counts[rest].sum(), 1.0)
        no_au = {rest[j] for j in _greedy_share(list(range(len(rest))), counts[rest], au_target)}
        for i in no_va:
            masks[i]["va"][:] = True
        for i in no_au:
            masks[i]["au"][:] = True
        expr_target = MTL_TRAIN_MISSING["expr"]
    else:
        expr_target = MTL_VAL_EXPR_MISSING
    # expression: whole videos for most of the target, then tail segments of other videos
    expr_order = [int(i) for i in rng.permutation(n_videos)]
    whole = _greedy_share(expr_order, counts, 0.7 * expr_target)
    for i in whole:
        masks[i]["expr"][:] = True
    need = int(round(expr_target * counts.sum())) - int(counts[list(whole)].sum())
    for i in expr_order:
        if need <= 0:
            break
        if i in whole:
            continue
        take = min(need, frames[i] // 2)
        if take > 0:
            masks[i]["expr"][frames[i] - take:] = True
            need -= take
    return masks


def _with_repeats(rng: np.random.Generator, n: int, rate: float) -> np.ndarray:
    """Row order 0..n-1 with about ``rate * n`` rows repeated right after themselves."""
    k = int(round(rate * n)) if n >= 20 else 0
    repeated = set(rng.choice(n, size=k, replace=False).tolist()) if k else set()
    order = []
    for i in range(n):
        order.append(i)
        if i in repeated:
            order.append(i)
    return np.asarray(order, dtype=np.int64)


def plan_mtl(size: SynthSize, seed: int, noise: RaterNoise = RaterNoise()) -> LayoutPlan:
    """The 4th-ABAW MTL layout (s-Aff-Wild2 style)."""
    plan = LayoutPlan()
    video_index = 0
    for split, n_videos in zip(SPLITS, size.mtl_videos):
        names, frames_per_video, latents, labels, idents, sampled = [], [], [], [], [], []
        for v in range(n_videos):
            video_index += 1
            rng = rng_for(seed, MTL_DIR, split, v, 0)
            names.append(_video_name(rng, video_index))
            ident = sample_identity(rng)
            m = int(rng.integers(size.mtl_frames[0], size.mtl_frames[1] + 1))
            n = int(m * rng.uniform(3.0, 6.0))
            latent = simulate_video(rng_for(seed, MTL_DIR, split, v, 1), ident, n)
            picks = np.sort(rng.choice(n, size=m, replace=False))
            labels.append(rate_video(rng_for(seed, MTL_DIR, split, v, 2), latent, noise))
            idents.append(ident)
            latents.append(latent)
            sampled.append(picks)
            frames_per_video.append(m)
        masks = _missing_masks(rng_for(seed, MTL_DIR, split, 10_000, 3), frames_per_video, split)
        image_root = MTL_TEST_IMAGE_DIR if split == "test" else vocab.MTL_IMAGE_DIR
        images, va, expr, aus = [], [], [], []
        lat_va, lat_expr, lat_int, states, job_paths = [], [], [], [], []
        for v, name in enumerate(names):
            latent, lab, picks = latents[v], labels[v], sampled[v]
            for j, i in enumerate(picks):
                rel = f"{name}/{vocab.FRAME_NAME_FORMAT.format(int(i) + 1)}"
                images.append(rel)
                state = latent.state(int(i))
                states.append(state)
                job_paths.append(f"{MTL_DIR}/{image_root}/{rel}")
                plan.jobs.append(ImageJob(job_paths[-1], idents[v], state,
                                          "real", REAL_SIZE,
                                          image_key(seed, MTL_DIR, split, v, int(i))))
                mk = masks[v]
                va.append([vocab.VA_MISSING] * 2 if mk["va"][j] else lab.va[i].tolist())
                expr.append(vocab.EXPR_MISSING if mk["expr"][j] else int(lab.expression[i]))
                aus.append([vocab.AU_MISSING] * vocab.NUM_AUS if mk["au"][j]
                           else lab.aus[i].tolist())
                lat_va.append(latent.va[i])
                lat_expr.append(latent.expression[i])
                lat_int.append(latent.au[i])
        va_a, expr_a, aus_a = np.asarray(va, float), np.asarray(expr, int), np.asarray(aus, int)
        rate = MTL_TEST_REPEAT_RATE if split == "test" else MTL_REPEAT_RATE
        order = _with_repeats(rng_for(seed, MTL_DIR, split, 10_001, 4), len(images), rate)
        rows = [images[k] for k in order]
        root = MTL_DIR
        if split == "test":
            plan.files.append(FileSpec(f"{root}/{vocab.MTL_TEST_LIST}", writers.write_mtl_test_list,
                                           (rows,)))
            target = f"{root}/{MTL_TEST_TRUTH}"
        else:
            target = f"{root}/{vocab.MTL_TRAIN_FILE if split == 'train' else vocab.MTL_VAL_FILE}"
        plan.files.append(FileSpec(target, writers.write_mtl_annotations,
                                   (rows, va_a[order, 0], va_a[order, 1], expr_a[order],
                                    aus_a[order])))
        lat = _latent_rows(images, np.asarray(lat_va), np.asarray(lat_expr),
                           np.asarray(lat_int), np.ones(len(images), bool), states)
        plan.files.append(FileSpec(f"{root}/{LATENT_DIR}/{split}.csv", None, (lat, job_paths)))
        plan.tables[split] = {"images": np.asarray(rows, dtype=object), "va": va_a[order],
                              "expression": expr_a[order], "aus": aus_a[order],
                              "latent_va": np.asarray(lat_va)[order],
                              "latent_expression": np.asarray(lat_expr)[order],
                              "latent_aus": (np.asarray(lat_int)[order, : vocab.NUM_AUS]
                                             >= AU_THRESHOLD).astype(int)}
        plan.counts[f"mtl_{split}_images"] = len(images)
        plan.counts[f"mtl_{split}_rows"] = len(rows)
    return plan


def _class_counts(total: int, shares: np.ndarray, minimum: int) -> np.ndarray:
    """Largest-remainder split of ``total`` by ``shares`` with at least ``minimum`` each."""
    shares = shares / shares.sum()
    base = np.full(len(shares), minimum)
    rest = total - base.sum()
    raw = shares * rest
    counts = np.floor(raw).astype(int)
    counts[np.argsort(-(raw - counts))[: rest - counts.sum()]] += 1
    return base + counts


def plan_lsd(size: SynthSize, seed: int, noise: RaterNoise = RaterNoise()) -> LayoutPlan:
    """The 4th-ABAW LSD layout: synthetic-style training set, real-like validation/test."""
    plan = LayoutPlan()
    pool_rng = rng_for(seed, LSD_DIR, "train", 0, 0)
    pool = [sample_identity(pool_rng) for _ in range(size.lsd_identities)]
    synthetic_wild = WildSettings(pose=0.4, degradations=False, hand_video_rate=0.0)
    real_wild = WildSettings()
    for split, total in zip(SPLITS, size.lsd_images):
        shares = LSD_TRAIN_SHARES if split == "train" else LSD_REAL_SHARES
        counts = _class_counts(total, shares, 2)
        classes = np.repeat(np.arange(vocab.NUM_LSD_CLASSES), counts)
        classes = classes[rng_for(seed, LSD_DIR, split, 0, 1).permutation(total)]
        names, labels, states, job_paths = [], [], [], []
        lat_va, lat_int = [], []
        for i, cls in enumerate(classes):
            rng = rng_for(seed, LSD_DIR, split, i + 1, 0)
            # the training identities are the synthetic pool; real-like images are new people
            ident = pool[int(rng.integers(len(pool)))] if split == "train" else sample_identity(rng)
            state, au, va = single_frame(rng, ident, int(LSD_TO_EXPR[cls]),
                                         synthetic_wild if split == "train" else real_wild,
                                         0.0 if split == "train" else LSD_HAND_RATE)
            label = int(cls) if split == "train" else rate_lsd(rng, int(cls), noise)
            if split == "test":
                rel = f"{LSD_TEST_DIR}/{i}.jpg"
                names.append(f"{i}.jpg")
            else:
                folder = vocab.LSD_TRAIN_DIR if split == "train" else vocab.LSD_VAL_DIR
                rel = f"{folder}/{vocab.LSD_FOLDERS[label]}/{i}.jpg"
                names.append(rel)
            labels.append(label)
            states.append(state)
            lat_va.append(va)
            lat_int.append(au)
            style, px = ("synthetic", LSD_SYNTHETIC_SIZE) if split == "train" else ("real",
                                                                                    REAL_SIZE)
            job_paths.append(f"{LSD_DIR}/{rel}")
            plan.jobs.append(ImageJob(job_paths[-1], ident, state, style, px,
                                      image_key(seed, LSD_DIR, split, 0, i)))
        if split == "test":
            plan.files.append(FileSpec(f"{LSD_DIR}/{vocab.LSD_TEST_LIST}",
                                       writers.write_lsd_test_list, (names,)))
            plan.files.append(FileSpec(f"{LSD_DIR}/{LSD_TEST_TRUTH}", writers.write_lsd_labels,
                                       (names, np.asarray(labels))))
        lat_expr = LSD_TO_EXPR[classes]
        lat = _latent_rows(names, np.asarray(lat_va), lat_expr, np.asarray(lat_int),
                           np.ones(total, bool), states)
        for row, cls in zip(lat, classes):
            row[3] = str(int(cls))  # the LSD latent class is the 0..5 LSD index
        plan.files.append(FileSpec(f"{LSD_DIR}/{LATENT_DIR}/{split}.csv", None, (lat, job_paths)))
        plan.tables[split] = {"images": np.asarray(names, dtype=object),
                              "labels": np.asarray(labels), "latent": classes.copy()}
        plan.counts[f"lsd_{split}_images"] = total
    return plan


#: Which tasks the i-th train/validation video is annotated for (cycled), like Aff-Wild2
#: where many videos are annotated for only some tasks.
_TASK_PATTERNS: tuple[tuple[str, ...], ...] = (
    ("va", "expr", "au"), ("va", "expr"), ("va", "au"), ("expr", "au"), ("va", "expr", "au"),
    ("va",),
)


def plan_per_video(size: SynthSize, seed: int, noise: RaterNoise = RaterNoise(),
                   edition: int = DEFAULT_EDITION) -> LayoutPlan:
    """The per-video Aff-Wild2 layout (5th edition on), with the folder and file names of
    ``edition`` (:data:`abaw.vocab.PER_VIDEO_EDITION_FILES`); only the names differ."""
    if edition not in vocab.PER_VIDEO_EDITION_FILES:
        raise ValueError(f"unknown per-video edition {edition!r}; expected one of "
                         f"{', '.join(map(str, vocab.PER_VIDEO_EDITIONS))}")
    names_of = vocab.PER_VIDEO_EDITION_FILES[edition]
    plan = LayoutPlan()
    video_index = 0
    folders = {t: names_of[t][0] for t in vocab.PER_VIDEO_TASKS}
    for split, n_videos in zip(SPLITS, size.per_video_videos):
        split_dir = {"train": vocab.PER_VIDEO_SPLITS[0], "validation": vocab.PER_VIDEO_SPLITS[1],
                     "test": PER_VIDEO_TEST_SPLIT}[split]
        test_locations: list[str] = []
        names: list[str] = []
        lat_rows: list[list[str]] = []
        job_paths: list[str | None] = []
        for v in range(n_videos):
            video_index += 1
            rng = rng_for(seed, PER_VIDEO_DIR, split, v, 0)
            name = _video_name(rng, 1000 + video_index)
            names.append(name)
            ident = sample_identity(rng)
            n = int(rng.integers(size.per_video_frames[0], size.per_video_frames[1] + 1))
            latent: VideoLatent = simulate_video(rng_for(seed, PER_VIDEO_DIR, split, v, 1), ident,
                                                 n, faceless_rate=PER_VIDEO_FACELESS_RATE)
            lab = rate_video(rng_for(seed, PER_VIDEO_DIR, split, v, 2), latent, noise)
            tasks = ("va", "expr", "au") if split == "test" else \
                _TASK_PATTERNS[v % len(_TASK_PATTERNS)]
            gap = rng_for(seed, PER_VIDEO_DIR, split, v, 3)
            unlabelled = np.zeros(n, bool)
            if split != "test" and n > 40:  # a stretch the raters skipped
                start = int(gap.integers(0, n - 10))
                unlabelled[start:start + int(gap.integers(3, 10))] = True
            for task in tasks:
                if task == "va":
                    values = np.where(unlabelled[:, None], vocab.VA_MISSING, lab.va)
                elif task == "expr":
                    values = np.where(unlabelled, vocab.EXPR_MISSING, lab.expression)
                else:
                    values = np.where(unlabelled[:, None], vocab.AU_MISSING, lab.aus)
                plan.files.append(FileSpec(
                    f"{PER_VIDEO_DIR}/{folders[task]}/{split_dir}/{name}.txt",
                    writers.write_per_video_annotation, (task, values)))
            states: list[FrameState | None] = []
            images = []
            for i in range(n):
                rel = f"{name}/{vocab.FRAME_NAME_FORMAT.format(i + 1)}"
                images.append(rel)
                test_locations.append(rel)
                if latent.face[i]:
                    state = latent.state(i)
                    job_paths.append(f"{PER_VIDEO_DIR}/{vocab.MTL_IMAGE_DIR}/{rel}")
                    plan.jobs.append(ImageJob(
                        job_paths[-1], ident, state, "real",
                        REAL_SIZE, image_key(seed, PER_VIDEO_DIR, split, v, i)))
                    states.append(state)
                else:
                    states.append(None)
                    job_paths.append(None)
            lat_rows += _latent_rows(images, latent.va, latent.expression, latent.au,
                                     latent.face, states)
            plan.tables[f"{split}/{name}"] = {"va": lab.va, "expression": lab.expression,
                                             "aus": lab.aus, "latent_va": latent.va,
                                             "latent_expression": latent.expression,
                                             "latent_aus": (latent.au[:, :vocab.NUM_AUS]
                                                            >= AU_THRESHOLD).astype(int),
                                             "face": latent.face, "tasks": np.asarray(tasks)}
            plan.counts[f"per_video_{split}_frames"] = plan.counts.get(
                f"per_video_{split}_frames", 0) + n
            plan.counts[f"per_video_{split}_images"] = plan.counts.get(
                f"per_video_{split}_images", 0) + int(latent.face.sum())
        plan.files.append(FileSpec(f"{PER_VIDEO_DIR}/{LATENT_DIR}/{split}.csv", None,
                                   (lat_rows, job_paths)))
        if split == "test":
            for task in vocab.PER_VIDEO_TASKS:
                plan.files.append(FileSpec(
                    f"{PER_VIDEO_DIR}/{vocab.PER_VIDEO_TEST_NAMES_DIR}/{names_of[task][1]}",
                    writers.write_test_video_names, (names,)))
                plan.files.append(FileSpec(
                    f"{PER_VIDEO_DIR}/{PER_VIDEO_SAMPLES_DIR}/{names_of[task][2]}",
                    writers.write_sample_file, (task, test_locations)))
    return plan


PLANNERS: dict[str, Callable[[SynthSize, int, RaterNoise], LayoutPlan]] = {
    MTL_DIR: plan_mtl, LSD_DIR: plan_lsd, PER_VIDEO_DIR: plan_per_video,
}


def plan_all(size: SynthSize, seed: int, noise: RaterNoise = RaterNoise()
             ) -> dict[str, LayoutPlan]:
    """Plan every layout (no drawing)."""
    return {name: planner(size, seed, noise) for name, planner in PLANNERS.items()}
