"""``abaw lsd superres SRC DST`` and ``abaw lsd hands SRC``: the cached LSD image steps."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from abaw.argtypes import non_negative_int, positive_int
from abaw.errors import AbawError
from abaw.fileio import check_writable_folder


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="step", required=True)
    sr = sub.add_parser("superres", help="Real-ESRGAN an image tree into DST (same relative paths and names)")
    sr.add_argument("src", type=Path, help="folder of images (searched recursively)")
    sr.add_argument("dst", type=Path, help="output folder (mirrors SRC)")
    sr.add_argument("--model", choices=("compact", "x4plus"), default="compact",
                    help="compact: SRVGGNetCompact, about 45-90x faster (make bench); x4plus: RRDBNet, the quality model")
    sr.add_argument("--size", type=positive_int, default=112, help="output side in pixels (the training resolution)")
    sr.add_argument("--batch", type=positive_int, default=16, help="images per forward pass")
    sr.add_argument("--tile", type=non_negative_int, default=0, help="tile side for large inputs (0 = no tiling)")
    sr.add_argument("--workers", type=positive_int, default=1, help="processes (1 = one process using all torch threads)")
    sr.add_argument("--device", default="cpu", help="cpu or cuda")
    sr.add_argument("--cache-dir", type=Path, default=None, help="result cache (default $ABAW_CACHE_DIR/lsd)")
    sr.add_argument("--quiet", action="store_true", help="no progress bar")
    hands = sub.add_parser("hands", help="detect hands over faces; write a CSV")
    hands.add_argument("src", type=Path, help="folder of images (searched recursively)")
    hands.add_argument("--out", type=Path, default=Path("hands.csv"), help="CSV to write")
    hands.add_argument("--min-confidence", type=float, default=0.3, help="palm detection / presence threshold")
    hands.add_argument("--upscale", type=int, default=256, help="upscale small crops to this side first")
    hands.add_argument("--pad", type=float, default=0.25, help="grey border, as a fraction of the side")
    hands.add_argument("--cache-dir", type=Path, default=None, help="result cache (default $ABAW_CACHE_DIR/lsd)")
    hands.add_argument("--quiet", action="store_true", help="no progress bar")


def _report_failures(failed: list[tuple[Path, str]]) -> None:
    for path, reason in failed:
        print(f"abaw: skipped {path}: {reason}", file=sys.stderr)


def _outcome(step: str, src: Path, total: int, done: int, failed: int) -> int:
    """Exit status: an empty input is an error (2); nothing done because every image failed
    is 1 (said on stderr); otherwise 0."""
    if total == 0:
        from abaw.lsd.superres import IMAGE_SUFFIXES

        raise AbawError(f"{src}: no images found (searched recursively for "
                        f"{', '.join(IMAGE_SUFFIXES)})")
    if done == 0 and failed:
        print(f"abaw: {step}: all {failed} image(s) under {src} failed: nothing was computed",
              file=sys.stderr)
        return 1
    return 0


def run(args: argparse.Namespace) -> int:
    if args.step == "superres":
        from abaw.lsd.superres import run_superres

        report = run_superres(args.src, args.dst, args.model, args.size, args.batch, args.tile,
                              args.workers, args.device, args.cache_dir, not args.quiet)
        _report_failures(report.failed)
        print(f"superres {args.model}: {report.total} images, {report.computed} computed, "
              f"{report.cached} from cache, {len(report.failed)} skipped, {report.seconds:.1f} s "
              f"({report.rate_text})")
        return _outcome("superres", args.src, report.total, report.computed + report.cached,
                        len(report.failed))
    from abaw.lsd.hands import DetectorSettings, detect_folder, write_csv

    if args.out.is_dir():
        raise AbawError(f"--out {args.out} is a folder; give the CSV file to write")
    check_writable_folder(args.out.parent)
    settings = DetectorSettings(args.min_confidence, args.upscale, args.pad)
    report = detect_folder(args.src, settings, args.cache_dir, not args.quiet)
    _report_failures(report.failed)
    status = _outcome("hands", args.src, len(report.rows) + len(report.failed),
                      len(report.rows), len(report.failed))
    if status:
        return status
    write_csv(args.out, report.rows)
    with_hand = sum(result.hand for _, result in report.rows)
    print(f"hands: {len(report.rows)} images, {with_hand} with a hand, {report.cached} from cache, "
          f"{len(report.failed)} skipped -> {args.out}")
    return 0
