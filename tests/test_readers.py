"""Readers: hand-written files in every official spelling, masks, order and repeats."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from abaw import vocab
from abaw.errors import ConfigError, FormatError
from abaw.formats import readers, submissions, writers

AU0 = ",0,0,0,0,0,0,0,0,0,0,0,0"
AU_MISSING = ",-1" * 12

# line 2: all tasks; 3: VA only; 4: EXPR only (repeats line 2's image); 5: mixed V only and
# some AUs; 6: nothing labelled; 7: AU only, written with the -5 sentinel as "-5"
MTL_ANNOTATIONS = (
    "image,valence,arousal,expression,AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26\r\n"
    "video1/00001.jpg,0.5,-0.25,3,1,0,0,0,0,0,0,0,0,0,1,0\r\n"
    "video1/00008.jpg,-1.0,1.0,-1" + AU_MISSING + "\r\n"
    "video1/00001.jpg,-5.0,-5.0,7" + AU_MISSING + "\r\n"
    "video2/00017.jpg,0.1,-5,-1,0,1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1\r\n"
    "video2/00018.jpg,-5,-5,-1" + AU_MISSING + "\r\n"
    "video3/00002.jpg,-5,-5,-1" + AU0 + "\r\n"
    "\r\n"
)


@pytest.fixture
def mtl_file(tmp_path: Path) -> Path:
    path = tmp_path / vocab.MTL_TRAIN_FILE
    path.write_bytes(MTL_ANNOTATIONS.encode())
    return path


def test_mtl_annotations_rows_masks_and_mixed_rows(mtl_file: Path) -> None:
    ann = readers.read_mtl_annotations(mtl_file)
    assert len(ann) == 6
    assert ann.images.tolist() == [
        "video1/00001.jpg", "video1/00008.jpg", "video1/00001.jpg",
        "video2/00017.jpg", "video2/00018.jpg", "video3/00002.jpg",
    ]
    assert ann.line_numbers.tolist() == [2, 3, 4, 5, 6, 7]
    assert ann.valence.dtype == np.float32 and ann.aus.dtype == np.int64
    np.testing.assert_array_equal(ann.va[:2], [[0.5, -0.25], [-1.0, 1.0]])
    assert ann.va_mask.tolist() == [True, True, False, False, False, False]
    assert ann.expr_mask.tolist() == [True, False, True, False, False, False]
    assert ann.expression.tolist() == [3, -1, 7, -1, -1, -1]
    assert ann.au_row_mask.tolist() == [True, False, False, False, False, True]
    assert ann.au_mask[3].tolist() == [True, True] + [False] * 10
    assert ann.aus[0].tolist() == [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]
    assert ann.mixed_rows.tolist() == [5]
    assert ann.unlabelled_rows.tolist() == [6]
    assert ann.summary() == {
        "rows": 6, "distinct_images": 5, "va": 2, "expr": 2, "au": 2,
        "mixed_rows": 1, "unlabelled_rows": 1,
    }


def test_mtl_annotations_with_lf_endings_and_no_final_newline(tmp_path: Path) -> None:
    path = tmp_path / "ann.txt"
    path.write_text(MTL_ANNOTATIONS.replace("\r\n", "\n").rstrip("\n"))
    ann = readers.read_mtl_annotations(path)
    assert len(ann) == 6 and ann.images[-1] == "video3/00002.jpg"


def test_mtl_annotations_round_trip_through_the_writer(mtl_file: Path, tmp_path: Path) -> None:
    ann = readers.read_mtl_annotations(mtl_file)
    copy = writers.write_mtl_annotations(
        tmp_path / "copy.txt", ann.images, ann.valence, ann.arousal, ann.expression, ann.aus
    )
    again = readers.read_mtl_annotations(copy)
    for name in ("images", "valence", "arousal", "expression", "aus", "line_numbers"):
        np.testing.assert_array_equal(getattr(again, name), getattr(ann, name))


def test_mtl_annotations_without_header_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "ann.txt"
    path.write_text(MTL_ANNOTATIONS.split("\r\n", 1)[1])
    with pytest.raises(FormatError, match="line 1 is a data row") as info:
        readers.read_mtl_annotations(path)
    assert info.value.line == 1


def test_mtl_annotations_header_only_gives_zero_rows(tmp_path: Path) -> None:
    path = tmp_path / "ann.txt"
    path.write_text(vocab.MTL_ANNOTATION_HEADER + "\n")
    ann = readers.read_mtl_annotations(path)
    assert len(ann) == 0 and ann.aus.shape == (0, 12)
    with pytest.raises(FormatError, match="file not found"):
        readers.read_mtl_annotations(tmp_path / "absent.txt")


@pytest.mark.parametrize(
    "body",
    ["v/00001.jpg\nv/00008.jpg\nv/00001.jpg\n", "v/00001.jpg,\r\nv/00008.jpg,\r\nv/00001.jpg,\r\n"],
)
def test_mtl_test_list_both_spellings(tmp_path: Path, body: str) -> None:
    path = tmp_path / vocab.MTL_TEST_LIST
    path.write_bytes((vocab.MTL_TEST_LIST_HEADER + "\n" + body).encode())
    assert readers.read_mtl_test_list(path) == ["v/00001.jpg", "v/00008.jpg", "v/00001.jpg"]


def test_lsd_tree_reads_every_folder_spelling(tmp_path: Path) -> None:
    root = tmp_path / vocab.LSD_TRAIN_DIR
    for folder, files in {
        "ANGRER": ["0002.jpg", "0001.jpg"],
        "SADNESS": ["0001.jpg", "x.PNG", "notes.txt", ".hidden.jpg"],
        "fear": ["a.jpeg"],
    }.items():
        (root / folder).mkdir(parents=True)
        for name in files:
            (root / folder / name).write_bytes(b"")
    (root / "README").write_text("a file at the top level is ignored")
    samples = readers.read_lsd_tree(root)
    assert samples.paths == [
        "ANGRER/0001.jpg", "ANGRER/0002.jpg", "SADNESS/0001.jpg", "SADNESS/x.PNG", "fear/a.jpeg",
    ]
    assert samples.labels.tolist() == [0, 0, 4, 4, 2]
    (root / "ANGER").mkdir()
    (root / "ANGER" / "b.jpg").write_bytes(b"")
    assert readers.read_lsd_tree(root).labels.tolist() == [0, 0, 0, 4, 4, 2]
    (root / "CONTEMPT").mkdir()
    with pytest.raises(FormatError, match="unknown LSD class folder") as info:
        readers.read_lsd_tree(root)
    assert info.value.path.endswith("CONTEMPT")


def test_lsd_test_list_and_labels(tmp_path: Path) -> None:
    path = tmp_path / vocab.LSD_TEST_LIST
    path.write_bytes(b"image,expression\r\n0.jpg\r\n1.jpg,\r\n")
    assert readers.read_lsd_test_list(path) == ["0.jpg", "1.jpg"]
    labels = tmp_path / "labels.txt"
    labels.write_bytes(b"image,expression\n0.jpg,5\n1.jpg,0\n0.jpg,3\n")
    names, values = submissions.read_lsd_labels(labels)
    assert names == ["0.jpg", "1.jpg", "0.jpg"]
    assert values.dtype == np.int64 and values.tolist() == [5, 0, 3]


def test_frame_image() -> None:
    assert readers.frame_image("2-30-640x360", 1) == "2-30-640x360/00001.jpg"
    assert readers.frame_image("video5_left", 12345) == "video5_left/12345.jpg"
    with pytest.raises(ValueError):
        readers.frame_image("v", 0)


EXPR_7 = "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise"


@pytest.mark.parametrize(
    ("edition_folders", "expr_header"),
    [
        ({"va": "VA_Set", "expr": "EXPR_Set", "au": "AU_Set"}, EXPR_7),  # 1st/2nd editions
        (
            {"va": "VA_Estimation_Challenge", "expr": "EXPR_Classification_Challenge",
             "au": "AU_Detection_Challenge"},
            EXPR_7 + ",Other",
        ),  # 3rd-5th editions
        (
            {"va": "VA_Estimation_Challenge", "expr": "EXPR_Recognition_Challenge",
             "au": "AU_Detection_Challenge"},
            EXPR_7 + ",Other",
        ),  # 6th edition on
    ],
)
def test_per_video_folders_of_every_edition(
    tmp_path: Path, edition_folders: dict[str, str], expr_header: str
) -> None:
    files = {
        "va": "valence,arousal\r\n0.184,0.342\r\n-5,-5\r\n-1,1\r\n",
        "expr": expr_header + "\n0\n-1\n6\n",
        "au": vocab.PER_VIDEO_HEADERS["au"] + "\n0,1,0,0,0,0,0,0,0,0,1,0\n" + "-1," * 11 + "-1\n",
    }
    for task, folder in edition_folders.items():
        for split in vocab.PER_VIDEO_SPLITS:
            (tmp_path / folder / split).mkdir(parents=True)
            (tmp_path / folder / split / "video2_left.txt").write_text(files[task])
            (tmp_path / folder / split / "1-30-1280x720.txt").write_text(files[task])
    assert readers.find_task_folder(tmp_path, "expr") == tmp_path / edition_folders["expr"]
    va = readers.read_per_video_split(tmp_path, "va", "Train_Set")
    assert list(va) == ["1-30-1280x720", "video2_left"]
    assert va["video2_left"].dtype == np.float32
    expected_va = np.array([[0.184, 0.342], [-5, -5], [-1, 1]], dtype=np.float32)
    np.testing.assert_array_equal(va["video2_left"], expected_va)
    expr = readers.read_per_video_split(tmp_path, "expr", "Validation_Set")
    assert expr["video2_left"].tolist() == [0, -1, 6]
    au = readers.read_per_video_split(tmp_path / edition_folders["au"], "au", "Train_Set")
    assert au["1-30-1280x720"].shape == (2, 12)
    assert au["1-30-1280x720"][0].tolist() == [0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]
    with pytest.raises(ConfigError):
        readers.read_per_video_split(tmp_path, "va", "Test_Set")


def test_per_video_errors(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="no VA annotation folder"):
        readers.find_task_folder(tmp_path, "va")
    path = tmp_path / "v.txt"
    path.write_text("valence,arousal\n0.1,0.2\n\n0.1,0.2\n")
    with pytest.raises(FormatError, match="blank line") as info:
        readers.read_per_video_annotation(path, "va")
    assert info.value.line == 3
    path.write_text("Neutral,Anger\n0\n")
    with pytest.raises(FormatError, match="EXPR annotation header"):
        readers.read_per_video_annotation(path, "expr")


def test_test_video_names_and_sample_files(tmp_path: Path) -> None:
    names = tmp_path / "Expression_Recognition_Challenge_test_set_release.txt"
    names.write_bytes(b"2-30-640x360\r\nvideo10_1_left\r\n")
    assert readers.read_test_video_names(names) == ["2-30-640x360", "video10_1_left"]
    sample = tmp_path / "va_sample.txt"
    sample.write_text(
        "image_location,valence,arousal\n2-30-640x360/00001.jpg,\n2-30-640x360/00002.jpg,0,0\n"
    )
    assert readers.read_sample_file(sample, "va") == [
        "2-30-640x360/00001.jpg", "2-30-640x360/00002.jpg"
    ]
    with pytest.raises(FormatError, match="EXPR sample file header"):
        readers.read_sample_file(sample, "expr")


@pytest.mark.slow
def test_reading_a_million_annotation_rows_is_fast(tmp_path: Path) -> None:
    import time

    n = 1_000_000
    rng = np.random.default_rng(0)
    images = [f"video{k // 1000}/{k % 1000 + 1:05d}.jpg" for k in range(n)]
    va = np.where(rng.random(n) < 0.3, -5.0, rng.uniform(-1, 1, n))
    path = writers.write_mtl_annotations(
        tmp_path / "big.txt", images, va, va, rng.integers(-1, 8, n),
        rng.integers(0, 2, (n, 12)),
    )
    start = time.perf_counter()
    ann = readers.read_mtl_annotations(path)
    assert len(ann) == n and time.perf_counter() - start < 10
