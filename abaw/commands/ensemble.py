"""``abaw ensemble RUN_OR_NPZ... --out DIR``: several runs' saved predictions averaged, the
post-processing fitted on the averaged validation predictions, the submission written and
validated (:mod:`abaw.ensemble`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from abaw.tracks import TRACKS, get


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="RUN_OR_NPZ",
                        help="a run's submission folder (submissions/<track>/<run>) or its "
                             "predictions.npz (validation_predictions.npz beside it)")
    parser.add_argument("--out", required=True, type=Path, help="folder for the ensemble's "
                        "submission.txt, predictions, post-processing and report.json")
    parser.add_argument("--track", default="mtl", choices=sorted(TRACKS),
                        help="the challenge of the runs (default: mtl)")
    parser.add_argument("--data", help="the data root (default: the one the first run's "
                                       "report.json names)")
    parser.add_argument("--weights", default="equal",
                        help="equal (default), fit (per task, on validation), or one number "
                             "per input, e.g. 2,1,1")
    parser.add_argument("--post", default="auto",
                        help="post-processing steps fitted on the ensemble's validation "
                             "predictions: auto (per task, the steps that win on split-half; "
                             "the default), a comma list, or none")


def run(args: argparse.Namespace) -> int:
    from abaw.ensemble import data_root_of, load_member, parse_weights, write_ensemble
    from abaw.postprocess import parse_steps
    from abaw.runner import table

    members = [load_member(source) for source in args.inputs]
    weights = parse_weights(args.weights)
    report = write_ensemble(get(args.track), members, args.out,
                            data_root_of(members, args.data), weights, "auto" if args.post == "auto" else parse_steps(args.post))
    rows = [["validation (raw)", report["validation_raw"]["score"]],
            ["validation (post-processed)", report["validation_tuned"]["score"]]]
    if "split_half" in report:
        rows.append(["split-half (post-processed)", report["split_half"]["score"]])
    if "test" in report:
        test = report["test"]
        rows.append(["test (hidden truth)", next((test[k] for k in ("P_MTL", "score", "f1")
                                                  if k in test), float("nan"))])
    print(table(rows, (f"ensemble of {len(members)}", "score")))
    print(f"weights: {report['weights']}\nOK: {report['submission']} would be accepted\n"
          f"report: {args.out / 'report.json'}")
    return 0
