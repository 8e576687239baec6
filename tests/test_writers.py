"""Writers: exact bytes of hand-written expected files, refusals that leave no file behind."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from abaw import vocab
from abaw.errors import AbawError
from abaw.formats import writers
from abaw.formats.writers import format_float, format_floats, format_int_rows, format_ints

AUS_A = [0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 1, 0]
AUS_B = [1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1]


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.5, "0.5"),
        (-1, "-1.0"),
        (0.7118, "0.7118"),
        (0.0, "0.0"),
        (-0.0, "0.0"),
        (-1e-9, "0.0"),
        (1e-7, "0.0"),
        (5e-6, "0.000005"),
        (0.1234567, "0.123457"),  # rounded to 6 decimals
        (0.1234565, "0.123456"),  # the binary value lies just below the tie
        (1 / 3, "0.333333"),
        (2.0, "2.0"),
        (-5.0, "-5.0"),
        (1e20, "100000000000000000000.0"),  # never exponent notation
        (np.float32(0.25), "0.25"),
    ],
)
def test_format_float(value: float, text: str) -> None:
    assert format_float(value) == text
    assert format_floats([value]) == [text]


def test_format_floats_matches_the_scalar_and_has_no_exponents() -> None:
    rng = np.random.default_rng(0)
    values = np.concatenate([
        rng.uniform(-1, 1, 2000), rng.normal(0, 1e-6, 200), 10.0 ** rng.uniform(-9, 9, 200)
    ])
    texts = format_floats(values)
    assert texts == [format_float(v) for v in values]
    assert not any("e" in t or "E" in t for t in texts)
    assert all("." in t and not t.endswith(".") for t in texts)
    np.testing.assert_allclose([float(t) for t in texts], values, atol=5e-7, rtol=1e-15)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_format_float_refuses_non_finite(bad: float) -> None:
    with pytest.raises(ValueError):
        format_float(bad)
    with pytest.raises(ValueError, match="index 1"):
        format_floats([0.0, bad])


def test_format_ints_and_rows() -> None:
    assert format_ints(np.array([3, -1, 7])) == ["3", "-1", "7"]
    assert format_ints(np.array([0, 100_000])) == ["0", "100000"]  # the wide-range path
    assert format_int_rows(np.array([[0, 1, -1], [1, 1, 1], [0, 1, -1]])) == [
        "0,1,-1", "1,1,1", "0,1,-1"
    ]


def _csv(*fields: object) -> str:
    return ",".join(str(f) for f in fields)


def test_mtl_submission_exact_bytes(tmp_path: Path) -> None:
    images = ["video45_1/00001.jpg", "video45_1/00008.jpg", "video45_1/00001.jpg"]
    path = writers.write_mtl_submission(
        tmp_path / "sub.txt",
        images,
        valence=np.array([0.7118, 1.3, -0.25], dtype=np.float32),
        arousal=[0.3147, -1.0000001, 0.0],
        expression=np.array([7, 0, 3]),
        aus=np.array([AUS_A, AUS_B, AUS_A]),
        test_list=images,
    )
    expected = (
        b"image,valence,arousal,expression,aus\n"
        b"video45_1/00001.jpg,0.7118,0.3147,7,0,0,0,1,1,1,1,0,0,0,1,0\n"
        b"video45_1/00008.jpg,1.0,-1.0,0,1,0,1,0,0,0,0,0,0,0,0,1\n"
        b"video45_1/00001.jpg,-0.25,0.0,3,0,0,0,1,1,1,1,0,0,0,1,0\n"
    )
    assert path.read_bytes() == expected


def test_lsd_files_exact_bytes(tmp_path: Path) -> None:
    sub = writers.write_lsd_submission(tmp_path / "sub.txt", ["0.jpg", "1.jpg"], [4, 0])
    assert sub.read_bytes() == b"image,expression\n0.jpg,4\n1.jpg,0\n"
    truth = writers.write_lsd_labels(tmp_path / "truth.txt", ["7.jpg"], np.array([5.0]))
    assert truth.read_bytes() == b"image,expression\n7.jpg,5\n"
    test_list = writers.write_lsd_test_list(tmp_path / "list.txt", ["0.jpg", "1.jpg"])
    assert test_list.read_bytes() == b"image,expression\n0.jpg\n1.jpg\n"


def test_mtl_data_files_exact_bytes(tmp_path: Path) -> None:
    ann = writers.write_mtl_annotations(
        tmp_path / "ann.txt",
        ["v1/00001.jpg", "v1/00008.jpg"],
        valence=[0.5, -5],
        arousal=[-0.125, -5],
        expression=[-1, 6],
        aus=np.array([AUS_A, [-1] * 12]),
    )
    assert ann.read_text() == (
        vocab.MTL_ANNOTATION_HEADER + "\n"
        + _csv("v1/00001.jpg", "0.5", "-0.125", -1, *AUS_A) + "\n"
        + _csv("v1/00008.jpg", "-5.0", "-5.0", 6, *[-1] * 12) + "\n"
    )
    plain = writers.write_mtl_test_list(tmp_path / "t1.txt", ["a/00001.jpg", "a/00001.jpg"])
    assert plain.read_bytes() == b"image,valence,arousal,expression,aus\na/00001.jpg\na/00001.jpg\n"
    comma = writers.write_mtl_test_list(tmp_path / "t2.txt", ["a/00001.jpg"], trailing_comma=True)
    assert comma.read_bytes() == b"image,valence,arousal,expression,aus\na/00001.jpg,\n"


def test_per_video_submissions_exact_bytes(tmp_path: Path) -> None:
    locs = ["2-30-640x360/00001.jpg", "2-30-640x360/00002.jpg"]
    va = writers.write_per_video_submission(tmp_path / "va.txt", "va", locs, [[0.1, -2], [0, 1]])
    assert va.read_bytes() == (
        b"image_location,valence,arousal\n"
        b"2-30-640x360/00001.jpg,0.1,-1.0\n2-30-640x360/00002.jpg,0.0,1.0\n"
    )
    expr = writers.write_per_video_submission(tmp_path / "e.txt", "expr", locs, [7, 0], sample=locs)
    assert expr.read_bytes() == (
        b"image_location,Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other\n"
        b"2-30-640x360/00001.jpg,7\n2-30-640x360/00002.jpg,0\n"
    )
    au = writers.write_per_video_submission(tmp_path / "au.txt", "au", locs, [AUS_A, AUS_B])
    assert au.read_text() == (
        vocab.PER_VIDEO_SUBMISSION_HEADERS["au"] + "\n"
        + _csv(locs[0], *AUS_A) + "\n" + _csv(locs[1], *AUS_B) + "\n"
    )
    ce = writers.write_per_video_submission(tmp_path / "ce.txt", "ce", locs, [6, 2])
    assert ce.read_text() == (
        vocab.PER_VIDEO_SUBMISSION_HEADERS["ce"] + "\n" + f"{locs[0]},6\n{locs[1]},2\n"
    )
    with pytest.raises(AbawError, match="compound expression|ce 7 is not in 0..6"):
        writers.write_per_video_submission(tmp_path / "ce2.txt", "ce", locs, [7, 2])
    assert not (tmp_path / "ce2.txt").exists()


def test_per_video_3rd_edition_and_annotation_files(tmp_path: Path) -> None:
    paths = writers.write_per_video_3rd_edition(
        tmp_path / "out", "va", {"video1": np.array([[0.5, 0.25]]), "video2_left": np.zeros((2, 2))}
    )
    assert [p.name for p in paths] == ["video1.txt", "video2_left.txt"]
    assert paths[0].read_bytes() == b"valence,arousal\n0.5,0.25\n"
    assert paths[1].read_bytes() == b"valence,arousal\n0.0,0.0\n0.0,0.0\n"
    va = writers.write_per_video_annotation(tmp_path / "va.txt", "va", [[0.184, -0.3], [-5, -5]])
    assert va.read_bytes() == b"valence,arousal\n0.184,-0.3\n-5,-5\n"
    expr = writers.write_per_video_annotation(tmp_path / "e.txt", "expr", [7, -1])
    assert expr.read_bytes() == (vocab.PER_VIDEO_HEADERS["expr"] + "\n7\n-1\n").encode()
    expr7 = writers.write_per_video_annotation(tmp_path / "e7.txt", "expr", [6], seven_classes=True)
    assert expr7.read_bytes() == (vocab.PER_VIDEO_HEADERS_EXPR_7 + "\n6\n").encode()
    with pytest.raises(AbawError, match="expression 7 is not in -1..6"):
        writers.write_per_video_annotation(tmp_path / "e7b.txt", "expr", [7], seven_classes=True)
    au = writers.write_per_video_annotation(tmp_path / "au.txt", "au", [[-1] * 12, AUS_A])
    assert au.read_text() == vocab.PER_VIDEO_HEADERS["au"] + "\n" + _csv(*[-1] * 12) + "\n" + \
        _csv(*AUS_A) + "\n"
    with pytest.raises(AbawError, match="-5 together"):
        writers.write_per_video_annotation(tmp_path / "bad.txt", "va", [[-5, 0.1]])
    names = writers.write_test_video_names(tmp_path / "names.txt", ["1-30-1280x720", "video9"])
    assert names.read_bytes() == b"1-30-1280x720\nvideo9\n"
    sample = writers.write_sample_file(tmp_path / "s.txt", "va", ["v/00001.jpg", "v/00002.jpg"])
    assert sample.read_bytes() == b"image_location,valence,arousal\nv/00001.jpg,\nv/00002.jpg,\n"


def test_3rd_edition_checks_every_video_before_writing(tmp_path: Path) -> None:
    with pytest.raises(AbawError, match="video bad: row 1"):
        writers.write_per_video_3rd_edition(
            tmp_path, "expr", {"good": np.array([1, 2]), "bad": np.array([1, 9])}
        )
    assert list(tmp_path.iterdir()) == []


def _mtl_args(n: int = 3) -> dict:
    return {
        "images": [f"v/{k:05d}.jpg" for k in range(1, n + 1)],
        "valence": np.zeros(n),
        "arousal": np.zeros(n),
        "expression": np.zeros(n, dtype=int),
        "aus": np.zeros((n, 12), dtype=int),
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"valence": np.array([0.0, np.nan, 0.0])}, r"row 1 \(v/00002.jpg\): valence is nan"),
        ({"arousal": np.array([0.0, 0.0, np.inf])}, r"row 2 \(v/00003.jpg\): arousal is inf"),
        ({"valence": np.zeros(2)}, "valence has 2 rows but there are 3 images"),
        ({"aus": np.zeros((3, 11), dtype=int)}, r"aus must have shape \(N, 12\)"),
        ({"expression": np.array([0, 8, 0])}, r"row 1 \(v/00002.jpg\): expression 8 is not"),
        ({"expression": np.array([0, 0, 0.6])}, "row 2 .*non-integer 0.6"),
        ({"aus": np.full((3, 12), -1)}, r"row 0 \(v/00001.jpg\): aus -1 is not 0 or 1"),
        ({"images": ["v/00001.jpg", "v,2.jpg", "v/00003.jpg"]}, "row 1: image 'v,2.jpg'"),
        ({"test_list": [f"v/0000{k}.jpg" for k in (1, 3, 2)]}, "row 1: image 'v/00002.jpg' diff"),
        ({"test_list": [f"v/0000{k}.jpg" for k in (1, 2, 3, 1)]}, "3 rows but the test list has 4"),
    ],
)
def test_mtl_writer_refuses_bad_input_and_leaves_no_file(
    tmp_path: Path, change: dict, message: str
) -> None:
    target = tmp_path / "sub.txt"
    with pytest.raises(AbawError, match=message):
        writers.write_mtl_submission(target, **{**_mtl_args(), **change})
    assert list(tmp_path.iterdir()) == []  # neither the file nor a temporary


def test_failed_write_leaves_an_existing_file_untouched(tmp_path: Path) -> None:
    target = writers.write_mtl_submission(tmp_path / "sub.txt", **_mtl_args())
    before = target.read_bytes()
    bad = {**_mtl_args(), "valence": np.array([0.0, np.nan, 0.0])}
    with pytest.raises(AbawError):
        writers.write_mtl_submission(target, **bad)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["sub.txt"]


def test_lsd_writer_refuses_classes_and_mismatched_list(tmp_path: Path) -> None:
    with pytest.raises(AbawError, match="expression 6 is not in 0..5"):
        writers.write_lsd_submission(tmp_path / "s.txt", ["0.jpg"], [6])
    with pytest.raises(AbawError, match="differs from test list entry"):
        writers.write_lsd_submission(tmp_path / "s.txt", ["0.jpg"], [1], test_list=["1.jpg"])
    with pytest.raises(AbawError, match="unknown task"):
        writers.write_sample_file(tmp_path / "s.txt", "mtl", ["a"])
    assert list(tmp_path.iterdir()) == []
