"""The plain-script yardsticks (``benchmarks.plain_mtl``, ``benchmarks.plain_lsd``) run end to
end on the tiny embedded data: each writes a submission the validator accepts, and the test
score it prints is the official scorer's score of that file against the hidden truth."""

from __future__ import annotations

import json
import sys

import pytest
import torch

from abaw.formats.submissions import validate_submission
from abaw.scoring import score_lsd, score_mtl
from abaw.synth import generate
from benchmarks import plain_lsd, plain_mtl


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    generate(out, size="tiny", seed=0, progress=False, layouts=("mtl", "lsd"))
    return out


def run(module, monkeypatch, capsys, data, out) -> dict:
    torch.set_num_threads(1)
    monkeypatch.setattr(sys, "argv", ["plain", "--data", str(data), "--minutes", "0.002",
                                      "--seed", "3", "--out", str(out)])
    module.main()
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_plain_lsd_writes_a_valid_submission_scored_as_the_official_scorer_does(
        tiny, tmp_path, monkeypatch, capsys):
    root = tiny / "lsd"
    result = run(plain_lsd, monkeypatch, capsys, root, tmp_path / "run")
    submission = tmp_path / "run" / "submission.txt"
    assert result["submission"] == str(submission) and result["epochs"] >= 1
    assert validate_submission(
        "lsd", submission, test_list=root / "LSD_Challenge_test_set_release.txt") == []
    official = score_lsd(submission, root / "test_set_labels.txt").values
    assert result["test"]["f1"] == pytest.approx(official["f1"], abs=1e-12)
    assert [result["test"][f"f1_{c}"] for c in plain_lsd.LSD_CLASSES] == pytest.approx(
        official["f1_per_class"], abs=1e-12)


def test_plain_mtl_writes_a_valid_submission_scored_as_the_official_scorer_does(
        tiny, tmp_path, monkeypatch, capsys):
    root = tiny / "mtl"
    result = run(plain_mtl, monkeypatch, capsys, root, tmp_path / "run")
    submission = tmp_path / "run" / "submission.txt"
    assert validate_submission(
        "mtl", submission, test_list=root / "MTL_Challenge_test_set_release.txt") == []
    official = score_mtl(submission, root / "test_set_annotations.txt").values
    # the file rounds valence/arousal to its printed precision: CCC moves by ~1e-6 at most
    assert result["test"]["P_MTL"] == pytest.approx(official["P_MTL"], abs=1e-4)
