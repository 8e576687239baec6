"""The validator and the readers against a corpus of malformed files, a fuzz test, and the CLI."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from abaw import cli, vocab
from abaw.errors import FormatError
from abaw.formats import readers, submissions, writers
from abaw.formats.submissions import Problem, validate_submission

CORPUS = Path(__file__).parent / "data" / "malformed"
REFERENCE = {
    "mtl": {"test_list": CORPUS / "ref_mtl_test_list.txt"},
    "lsd": {"test_list": CORPUS / "ref_lsd_test_list.txt"},
    "va": {"sample": CORPUS / "ref_va_sample.txt"},
    "expr": {"sample": CORPUS / "ref_expr_sample.txt"},
    "au": {"sample": CORPUS / "ref_au_sample.txt"},
    "ce": {"sample": CORPUS / "ref_ce_sample.txt"},
}

# (file, kind, line of the first problem, fragment of its message, total problems)
SUBMISSIONS = [
    ("mtl_crlf.txt", "mtl", 1, "5 line(s) end with CRLF", 1),
    ("mtl_no_final_newline.txt", "mtl", 5, "missing final newline", 1),
    ("mtl_wrong_header.txt", "mtl", 1, "expected 'image,valence,arousal,expression,aus'", 1),
    ("mtl_no_header.txt", "mtl", 1, "missing header line", 1),
    ("mtl_15_fields.txt", "mtl", 3, "15 fields; expected 16", 1),
    ("mtl_nan.txt", "mtl", 4, "arousal is 'NaN': NaN and infinity are not allowed", 1),
    ("mtl_inf.txt", "mtl", 2, "valence is '-inf'", 1),
    ("mtl_overflow.txt", "mtl", 3, "valence '1e999' is not finite", 1),
    ("mtl_va_out_of_range.txt", "mtl", 5, "arousal '1.0001' is outside [-1, 1]", 1),
    ("mtl_expr_float.txt", "mtl", 3, "expression '1.0' is not an integer", 1),
    ("mtl_expr_8.txt", "mtl", 4, "expression '8' is not in 0..7", 1),
    ("mtl_expr_negative.txt", "mtl", 2, "expression '-1' is not in 0..7", 1),
    ("mtl_au_2.txt", "mtl", 3, "AU26 '2' is not 0 or 1", 1),
    ("mtl_au_probability.txt", "mtl", 4, "AU1 '0.7' is not an integer", 1),
    ("mtl_empty_field.txt", "mtl", 3, "valence is empty", 1),
    ("mtl_space_in_value.txt", "mtl", 4, "valence ' 0.5' is not a number", 1),
    ("mtl_unknown_image.txt", "mtl", 4, "unknown image 'v9/00001.jpg'", 2),
    ("mtl_missing_image.txt", "mtl", 3, "missing image 'v1/00008.jpg' (test list entry 2)", 1),
    ("mtl_out_of_order.txt", "mtl", 3, "out of order: found 'v2/00001.jpg'", 1),
    ("mtl_dropped_repeat.txt", "mtl", 5, "dropped repeat: 'v1/00001.jpg' appears 1 time(s)", 1),
    ("mtl_extra_row.txt", "mtl", 6, "extra row: 'v1/00008.jpg' appears 2 times", 1),
    ("mtl_blank_line.txt", "mtl", 4, "blank line", 1),
    ("mtl_bom.txt", "mtl", 1, "byte-order mark", 1),
    ("mtl_binary.txt", "mtl", 1, "not UTF-8 text (byte 0x89)", None),
    ("mtl_empty.txt", "mtl", None, "file is empty", 1),
    ("mtl_header_only.txt", "mtl", 2, "missing image 'v1/00001.jpg'", 3),
    ("lsd_class_6.txt", "lsd", 3, "expression '6' is not in 0..5", 1),
    ("lsd_wrong_header.txt", "lsd", 1, "expected 'image,expression'", 1),
    ("lsd_probabilities.txt", "lsd", 4, "4 fields; expected 2", 1),
    ("va_out_of_range.txt", "va", 3, "valence '-1.5' is outside [-1, 1]", 1),
    ("va_missing_value.txt", "va", 2, "2 fields; expected 3", 1),
    ("expr_one_hot.txt", "expr", 2, "9 fields; expected 2: image location and one class index", 1),
    ("au_float.txt", "au", 3, "AU10 '1.0' is not an integer", 1),
    ("ce_class_7.txt", "ce", 2, "compound expression '7' is not in 0..6", 1),
]


@pytest.mark.parametrize(("name", "kind", "line", "fragment", "count"), SUBMISSIONS)
def test_malformed_submission_is_rejected_at_its_line(
    name: str, kind: str, line: int | None, fragment: str, count: int | None
) -> None:
    problems = validate_submission(kind, CORPUS / name, **REFERENCE[kind])
    assert problems, f"{name} was accepted"
    assert problems[0].line == line
    assert fragment in problems[0].message
    if count is not None:
        assert len(problems) == count, problems


def _read(reader: str, path: Path) -> object:
    if reader == "ann":
        return readers.read_mtl_annotations(path)
    if reader == "mtl_list":
        return readers.read_mtl_test_list(path)
    if reader == "lsd_list":
        return readers.read_lsd_test_list(path)
    if reader == "va_sample":
        return readers.read_sample_file(path, "va")
    if reader.startswith("pv_"):
        return readers.read_per_video_annotation(path, reader[3:])
    if reader.startswith("sub_"):
        if reader == "sub_mtl":
            return submissions.read_mtl_submission(path)
        if reader == "sub_lsd":
            return submissions.read_lsd_labels(path)
        return submissions.read_per_video_submission(path, reader[4:])
    raise AssertionError(reader)


# (file, reader, line of the error, fragment of its message)
READ_ERRORS = [
    ("ann_15_fields.txt", "ann", 3, "15 fields; expected 16"),
    ("ann_valence_out_of_range.txt", "ann", 3, "valence 1.5 is not in [-1, 1] or -5"),
    ("ann_expression_8.txt", "ann", 4, "expression 8 is not an integer in -1..7"),
    ("ann_expression_float.txt", "ann", 2, "expression 1.5 is not an integer"),
    ("ann_au_2.txt", "ann", 3, "AU26 2 is not -1, 0 or 1"),
    ("ann_not_a_number.txt", "ann", 3, "arousal 'abc' is not a number"),
    ("ann_nan.txt", "ann", 2, "valence 'nan' is not a number"),
    ("ann_inf.txt", "ann", 3, "arousal 'inf' is not a number"),
    ("ann_blank_line.txt", "ann", 3, "blank line"),
    ("ann_empty.txt", "ann", None, "file is empty"),
    ("ann_latin1.txt", "ann", 3, "not UTF-8 text"),
    ("ann_empty_image.txt", "ann", 3, "empty image path"),
    ("tl_bad_header.txt", "mtl_list", 1, "expected 'image,valence,arousal,expression,aus'"),
    ("tl_two_fields.txt", "mtl_list", 3, "expected one image name"),
    ("tl_blank_line.txt", "mtl_list", 2, "blank line"),
    ("tl_lsd_bad_header.txt", "lsd_list", 1, "expected 'image,expression'"),
    ("pv_va_three_fields.txt", "pv_va", 3, "3 fields; expected 2"),
    ("pv_va_out_of_range.txt", "pv_va", 4, "arousal -1.2 is not in [-1, 1] or -5"),
    ("pv_expr7_class_7.txt", "pv_expr", 4, "expression 7 is not an integer in -1..6"),
    ("pv_au_bad_header.txt", "pv_au", 1, "AU annotation header is 'AU1,AU2,AU4'"),
    ("pv_sample_bad_header.txt", "va_sample", 1, "expected 'image_location,valence,arousal'"),
    ("mtl_nan.txt", "sub_mtl", 4, "NaN and infinity are not allowed"),
    ("mtl_expr_float.txt", "sub_mtl", 3, "is not an integer"),
    ("mtl_empty.txt", "sub_mtl", None, "file is empty"),
    ("lsd_class_6.txt", "sub_lsd", 3, "expression '6' is not in 0..5"),
    ("va_out_of_range.txt", "sub_va", 3, "outside [-1, 1]"),
    ("expr_one_hot.txt", "sub_expr", 2, "9 fields"),
]


@pytest.mark.parametrize(("name", "reader", "line", "fragment"), READ_ERRORS)
def test_malformed_file_raises_format_error_at_its_line(
    name: str, reader: str, line: int | None, fragment: str
) -> None:
    with pytest.raises(FormatError) as info:
        _read(reader, CORPUS / name)
    assert info.value.line == line
    assert fragment in info.value.message
    assert info.value.path == str(CORPUS / name)


def test_strict_submission_readers_tolerate_crlf_and_missing_final_newline() -> None:
    for name in ("mtl_crlf.txt", "mtl_no_final_newline.txt"):
        predictions = submissions.read_mtl_submission(CORPUS / name)
        assert predictions.images == [
            "v1/00001.jpg", "v1/00008.jpg", "v2/00001.jpg", "v1/00001.jpg"
        ]
        np.testing.assert_array_equal(predictions.valence, [0.5] * 4)
        np.testing.assert_array_equal(predictions.expression, [3] * 4)


def test_reference_files_are_valid() -> None:
    assert readers.read_mtl_test_list(REFERENCE["mtl"]["test_list"])[3] == "v1/00001.jpg"
    assert readers.read_lsd_test_list(REFERENCE["lsd"]["test_list"]) == ["0.jpg", "1.jpg", "2.jpg"]
    for kind in ("va", "expr", "au", "ce"):
        assert readers.read_sample_file(REFERENCE[kind]["sample"], kind)[0] == "vid/00001.jpg"


# --- fuzz: the validator never raises ----------------------------------------------------------


def _valid_mtl_bytes() -> bytes:
    return (CORPUS / "mtl_crlf.txt").read_bytes().replace(b"\r\n", b"\n")


def _mutations(rng: random.Random, seed_bytes: bytes) -> bytes:
    choice = rng.randrange(6)
    data = bytearray(seed_bytes)
    if choice == 0:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(200)))
    if choice == 1 and data:
        for _ in range(rng.randrange(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data)
    if choice == 2 and data:
        cut = rng.randrange(len(data))
        return bytes(data[:cut])
    if choice == 3:
        alphabet = b",\n\r0123456789.-e+nainf \x00/jpg"
        return bytes(rng.choice(alphabet) for _ in range(rng.randrange(300)))
    if choice == 4 and data:
        position = rng.randrange(len(data))
        return bytes(data[:position]) + b"," * rng.randrange(1, 5000) + bytes(data[position:])
    return bytes(data) * rng.randrange(1, 4)


@pytest.mark.parametrize("kind", ["mtl", "lsd", "va", "expr", "au", "ce"])
def test_validator_never_raises_on_random_bytes(kind: str, tmp_path: Path) -> None:
    rng = random.Random(f"fuzz-{kind}")
    seed = _valid_mtl_bytes()
    target = tmp_path / "submission.txt"
    names = ["v1/00001.jpg", "v1/00008.jpg", "0.jpg", "vid/00001.jpg"]
    for _ in range(150):
        data = _mutations(rng, seed)
        target.write_bytes(data)
        reference = {"test_list": names} if kind in ("mtl", "lsd") else {"sample": names}
        problems = validate_submission(kind, target, **reference)
        assert all(isinstance(p, Problem) for p in problems)
        assert not any("internal validator error" in p.message for p in problems), (data, problems)
        if data == b"":
            assert problems == [Problem(None, "file is empty")]


@pytest.mark.parametrize(
    "reader", ["ann", "mtl_list", "lsd_list", "va_sample", "pv_va", "pv_expr", "pv_au", "sub_mtl"]
)
def test_readers_raise_only_format_errors_on_random_bytes(reader: str, tmp_path: Path) -> None:
    rng = random.Random(f"fuzz-{reader}")
    seeds = [_valid_mtl_bytes(), (CORPUS / "ann_au_2.txt").read_bytes(), b"valence,arousal\n0,1\n"]
    target = tmp_path / "file.txt"
    for _ in range(100):
        target.write_bytes(_mutations(rng, rng.choice(seeds)))
        try:
            _read(reader, target)
        except FormatError:
            pass


def test_validator_handles_huge_field_counts_and_a_folder(tmp_path: Path) -> None:
    target = tmp_path / "wide.txt"
    target.write_text(vocab.MTL_SUBMISSION_HEADER + "\n" + "x," * 200_000 + "1\n")
    problems = validate_submission("mtl", target)
    assert [(p.line, p.message) for p in problems] == [
        (2, "200001 fields; expected 16: image, valence, arousal, expression and the 12 AUs")
    ]
    assert validate_submission("mtl", tmp_path)[0].message.startswith("cannot read")
    assert validate_submission("mtl", tmp_path / "absent.txt") == [Problem(None, "file not found")]
    assert "unknown submission kind" in validate_submission("xyz", target)[0].message


# --- round trip: writer -> validator -> reader --------------------------------------------------


def test_mtl_writer_validator_reader_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = ["a/00001.jpg", "a/00009.jpg", "b/00001.jpg", "a/00001.jpg", "c/00002.jpg"]
    valence = rng.uniform(-1.2, 1.2, len(images))
    arousal = rng.uniform(-1, 1, len(images))
    expression = rng.integers(0, 8, len(images))
    aus = rng.integers(0, 2, (len(images), 12))
    test_list = tmp_path / vocab.MTL_TEST_LIST
    writers.write_mtl_test_list(test_list, images, trailing_comma=True)
    submission = writers.write_mtl_submission(
        tmp_path / "sub.txt", images, valence, arousal, expression, aus,
        test_list=readers.read_mtl_test_list(test_list),
    )
    assert validate_submission("mtl", submission, test_list=test_list) == []
    read = submissions.read_mtl_submission(submission)
    assert read.images == images
    np.testing.assert_allclose(read.valence, np.clip(valence, -1, 1), atol=5e-7)
    np.testing.assert_allclose(read.arousal, arousal, atol=5e-7)
    np.testing.assert_array_equal(read.expression, expression)
    np.testing.assert_array_equal(read.aus, aus)


@pytest.mark.parametrize("task", ["va", "expr", "au", "ce"])
def test_per_video_writer_validator_reader_round_trip(task: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    locations = [readers.frame_image("2-30-640x360", k) for k in range(1, 7)]
    values = {
        "va": rng.uniform(-1, 1, (6, 2)),
        "expr": rng.integers(0, 8, 6),
        "au": rng.integers(0, 2, (6, 12)),
        "ce": rng.integers(0, 7, 6),
    }[task]
    sample = writers.write_sample_file(tmp_path / "sample.txt", task, locations)
    path = writers.write_per_video_submission(
        tmp_path / "sub.txt", task, locations, values, sample=sample
    )
    assert validate_submission(task, path, sample=sample) == []
    names, read = submissions.read_per_video_submission(path, task)
    assert names == locations
    if task == "va":
        np.testing.assert_allclose(read, values, atol=5e-7)
    else:
        np.testing.assert_array_equal(read, values)


def test_lsd_writer_validator_reader_round_trip(tmp_path: Path) -> None:
    names = [f"{i}.jpg" for i in range(7)]
    labels = np.array([0, 5, 4, 4, 3, 1, 2])
    test_list = writers.write_lsd_test_list(tmp_path / vocab.LSD_TEST_LIST, names)
    path = writers.write_lsd_submission(tmp_path / "sub.txt", names, labels, test_list=test_list)
    assert validate_submission("lsd", path, test_list=test_list) == []
    read_names, read_labels = submissions.read_lsd_labels(path)
    assert read_names == names
    np.testing.assert_array_equal(read_labels, labels)


# --- the command line ------------------------------------------------------------------------


def test_cli_accepts_a_valid_submission(capsys: pytest.CaptureFixture[str]) -> None:
    good = CORPUS / "lsd_valid.txt"
    good_bytes = b"image,expression\n0.jpg,1\n1.jpg,5\n2.jpg,0\n"
    assert good.read_bytes() == good_bytes
    reference = str(CORPUS / "ref_lsd_test_list.txt")
    status = cli.main(["validate", "lsd", str(good), "--test-list", reference])
    assert status == 0
    assert capsys.readouterr().out == f"OK: {good} (3 rows) would be accepted\n"


def test_cli_lists_problems_with_path_and_line(capsys: pytest.CaptureFixture[str]) -> None:
    bad = CORPUS / "mtl_missing_image.txt"
    reference = str(CORPUS / "ref_mtl_test_list.txt")
    status = cli.main(["validate", "mtl", str(bad), "--test-list", reference])
    out = capsys.readouterr().out.splitlines()
    assert status == 1
    assert out == [
        f"{bad}:3: missing image 'v1/00008.jpg' (test list entry 2)",
        f"1 problem(s): {bad} would be rejected",
    ]


def test_cli_caps_the_listing_at_50(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    names = [f"{i}.jpg" for i in range(60)]
    test_list = writers.write_lsd_test_list(tmp_path / "list.txt", names)
    submission = tmp_path / "sub.txt"
    submission.write_text("image,expression\n" + "".join(f"{n},9\n" for n in names))
    assert cli.main(["validate", "lsd", str(submission), "--test-list", str(test_list)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 52
    assert out[0] == f"{submission}:2: expression '9' is not in 0..5"
    assert out[50] == "... and 10 more problems"
    assert out[51] == f"60 problem(s): {submission} would be rejected"


@pytest.mark.parametrize(
    "argv",
    [
        ["validate", "mtl", "x.txt", "--sample", "s.txt"],
        ["validate", "va", "x.txt", "--test-list", "l.txt"],
        ["validate", "lsd", "x.txt"],
    ],
)
def test_cli_rejects_a_wrong_reference_combination(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(argv) == 2
    assert "needs --" in capsys.readouterr().err


def test_cli_reports_an_unreadable_test_list_as_an_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status = cli.main([
        "validate", "mtl", str(CORPUS / "mtl_crlf.txt"),
        "--test-list", str(CORPUS / "tl_bad_header.txt"),
    ])
    assert status == 2
    assert "tl_bad_header.txt:1: MTL test list header" in capsys.readouterr().err
