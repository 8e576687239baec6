"""Ensembles of saved predictions (abaw.ensemble, ``abaw ensemble``) on tiny hand-made runs:
averaging, weights, an ensemble of one run equal to that run, the written submission."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from abaw.cli import main
from abaw.ensemble import (
    Member,
    average,
    fit_weights,
    load_member,
    simplex_grid,
    write_ensemble,
)
from abaw.errors import AbawError, FormatError
from abaw.formats.predictions import SavedPredictions, load_predictions, save_predictions
from abaw.formats.submissions import validate_submission
from abaw.formats.writers import write_mtl_annotations, write_mtl_test_list
from abaw.postprocess import Labels, choose_steps, fit_postprocess
from abaw.tracks.mtl import MTL
from abaw.vocab import MTL_TEST_LIST, MTL_TEST_TRUTH, MTL_VAL_FILE, NUM_AUS

VAL = [f"v{v}/{f:05d}.jpg" for v in range(4) for f in range(1, 31, 3)]
TEST = [f"t{v}/{f:05d}.jpg" for v in range(2) for f in range(1, 21, 2)]


def _labels(names: list[str], rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    n = len(names)
    va = rng.uniform(-1, 1, (n, 2))
    expression = rng.integers(-1, 8, n)
    aus = rng.integers(-1, 2, (n, NUM_AUS))
    return va, expression, aus


def _data(root: Path) -> Path:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    for file, names in ((MTL_VAL_FILE, VAL), (MTL_TEST_TRUTH, TEST + TEST[:1])):
        va, expression, aus = _labels(names, rng)
        write_mtl_annotations(root / file, names, va[:, 0], va[:, 1], expression, aus)
    write_mtl_test_list(root / MTL_TEST_LIST, TEST + TEST[:1])  # a repeat, as the real list
    return root


def _arrays(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {"va": rng.uniform(-1, 1, (n, 2)), "expr_prob": rng.dirichlet(np.ones(8), n),
            "au_prob": rng.random((n, NUM_AUS))}


def _run(folder: Path, data: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    order = rng.permutation(len(VAL))  # saved in another row order than the truth
    save_predictions(folder / "validation_predictions.npz", [VAL[i] for i in order],
                     _arrays(len(VAL), rng))
    save_predictions(folder / "predictions.npz", TEST, _arrays(len(TEST), rng))
    (folder / "report.json").write_text(json.dumps({"data": str(data)}))
    return folder


def test_average_is_the_weighted_mean_in_the_first_inputs_order() -> None:
    a = SavedPredictions(["x", "y"], {"va": np.array([[0.0, 1.0], [1.0, 0.0]])})
    b = SavedPredictions(["y", "x"], {"va": np.array([[0.5, 0.5], [1.0, -1.0]])})
    assert average([a, b]).arrays["va"].tolist() == [[0.5, 0.0], [0.75, 0.25]]
    weighted = average([a, b], {"va": [3.0, 1.0]}).arrays["va"]
    assert weighted.tolist() == [[0.25, 0.5], [0.875, 0.125]]
    one = average([a])
    assert one.images == a.images and np.array_equal(one.arrays["va"], a.arrays["va"])
    with pytest.raises(FormatError, match="no prediction for 'y' \\(1 of 2"):
        average([a, SavedPredictions(["x", "z"], b.arrays)])
    with pytest.raises(AbawError, match="predicts 3 images"):
        average([a, SavedPredictions(["x", "y", "z"], {"va": np.zeros((3, 2))})])


def test_simplex_grid_is_most_equal_first() -> None:
    grid = simplex_grid(2)
    assert grid[0] == (0.5, 0.5) and len(grid) == 5 and set(grid[-2:]) == {(1.0, 0.0), (0.0, 1.0)}
    assert len(simplex_grid(3)) == 15 and all(sum(w) == pytest.approx(1) for w in simplex_grid(3))


def test_fitted_weights_prefer_the_member_that_knows_the_answer() -> None:
    rng = np.random.default_rng(1)
    truth_va = rng.uniform(-1, 1, (40, 2))
    images = [f"v/{f:05d}.jpg" for f in range(40)]
    good = SavedPredictions(images, {"va": truth_va * 0.9})
    noise = SavedPredictions(images, {"va": rng.uniform(-1, 1, (40, 2))})
    weights = fit_weights([noise, good], images, Labels(va=truth_va))
    assert weights == {"va": [0.0, 1.0]}


def test_an_ensemble_of_one_run_is_that_run(tmp_path: Path) -> None:
    data = _data(tmp_path / "data")
    run = _run(tmp_path / "run", data, seed=1)
    # what the runner writes for that run: its post-processing fitted on its validation rows
    images, truth = MTL.validation_truth(data)
    member = load_member(run)
    arrays = member.validation.reordered(images).arrays
    post = fit_postprocess(images, truth, arrays, choose_steps(images, truth, arrays)[0])
    expected = MTL.prediction_writer().finish(member.test.images, member.test.arrays, post,
                                              TEST + TEST[:1], tmp_path / "expected")
    report = write_ensemble(MTL, [member], tmp_path / "ens", data)  # --post auto
    written = tmp_path / "ens" / "submission.txt"
    assert written.read_bytes() == expected.written["submission"].read_bytes()
    saved = load_predictions(tmp_path / "ens" / "predictions.npz")
    assert saved.images == member.test.images
    assert all(np.array_equal(saved.arrays[k], member.test.arrays[k]) for k in arrays)
    assert report["validation_tuned"]["score"] >= report["validation_raw"]["score"]
    assert set(report["split_half"]) >= {"score", "f1_au", "f1_expression", "va"}
    # the hidden truth is scored after writing (the embedded data's layout has one)
    assert report["test"]["P_MTL"] == pytest.approx(
        MTL.score_file(written, data / MTL_TEST_TRUTH).values["P_MTL"])


def test_abaw_ensemble_writes_a_valid_submission(tmp_path: Path, capsys) -> None:
    data = _data(tmp_path / "data")
    runs = [_run(tmp_path / f"r{k}", data, seed=k) for k in range(3)]
    out = tmp_path / "ens"
    assert main(["ensemble", *map(str, runs[:2]), str(runs[2] / "predictions.npz"),
                 "--out", str(out), "--weights", "fit"]) == 0
    assert "would be accepted" in capsys.readouterr().out
    assert validate_submission("mtl", out / "submission.txt",
                               test_list=data / MTL_TEST_LIST) == []
    report = json.loads((out / "report.json").read_text())
    assert len(report["weights"]["va"]) == 3 and sum(report["weights"]["va"]) == pytest.approx(1)
    # the ensemble's arrays are the weighted means of the members'
    members = [load_member(r) for r in runs]
    mean = sum(w * m.test.arrays["au_prob"] for w, m in zip(report["weights"]["au_prob"],
                                                            members))
    assert np.allclose(load_predictions(out / "predictions.npz").arrays["au_prob"], mean)
    assert (out / "postprocess.json").is_file() and (out / "validation_predictions.npz").is_file()
    # bad input: one line, status 2
    assert main(["ensemble", str(runs[0] / "validation_predictions.npz"), "--out",
                 str(out)]) == 2
    assert main(["ensemble", str(runs[0]), "--out", str(out), "--weights", "1,x"]) == 2
    assert main(["ensemble", str(runs[0]), str(runs[1]), "--out", str(out),
                 "--weights", "1,2,3"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3 and all(line.startswith("abaw: error: ") for line in err)


def test_a_member_without_validation_predictions_is_refused(tmp_path: Path) -> None:
    run = _run(tmp_path / "run", tmp_path, seed=0)
    (run / "validation_predictions.npz").unlink()
    with pytest.raises(FormatError, match="predictions file not found"):
        load_member(run)
    assert isinstance(Member, type)
