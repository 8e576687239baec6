"""``abaw synth OUT``: generate the embedded synthetic data in the official layouts.

Options: ``--size tiny|small|default``, ``--seed N``, ``--edition 5|6`` (the per-video
layout's folder and sample-file names), ``--workers K`` (default: all CPUs),
``--preview`` (also write ``OUT/preview.png``), ``--oracle`` (score the noiseless latent
labels against the noisy official labels: the ceiling; saved as ``OUT/oracle.json``),
``--quiet`` (no progress bar). An existing complete output with the same parameters is
reused.
"""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    from abaw.argtypes import non_negative_int, positive_int
    from abaw.synth.sizes import SIZES

    parser.add_argument("out", help="output folder (mtl/, lsd/, per_video/ are created in it)")
    parser.add_argument("--size", choices=tuple(SIZES), default="default",
                        help="how much data: tiny (tests, seconds), small (learning tests, ~10 s) "
                             "or default (~30k images)")
    parser.add_argument("--seed", type=non_negative_int, default=0,
                        help="random seed, 0 or more (same seed, same bytes)")
    parser.add_argument("--edition", type=int, choices=(5, 6), default=6,
                        help="ABAW edition whose names the per-video layout uses: 5 "
                             "(EXPR_Classification_Challenge, CVPR_5th_ABAW_* sample files) or "
                             "6 (EXPR_Recognition_Challenge, CVPR_6th_ABAW_*; the default)")
    parser.add_argument("--workers", type=positive_int, default=None,
                        help="render processes (default: CPU count; output does not depend on it)")
    parser.add_argument("--preview", action="store_true",
                        help="also write OUT/preview.png, a contact sheet of the faces")
    parser.add_argument("--oracle", action="store_true",
                        help="print and save (OUT/oracle.json) the oracle ceiling and trivial "
                             "baselines")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from abaw.errors import ConfigError
    from abaw.synth import generate
    from abaw.synth.generator import record_derived, synth_lock
    from abaw.synth.oracle import oracle_report, summary_lines
    from abaw.synth.preview import write_preview

    if not args.out.strip():
        raise ConfigError("OUT is an empty path; give an output folder (e.g. data/synth)")
    out = Path(args.out)
    manifest = generate(out, size=args.size, seed=args.seed, workers=args.workers,
                        progress=not args.quiet, edition=args.edition)
    if manifest["reused"]:
        print(f"{out}: complete synthetic data (size {args.size}, seed {args.seed}) "
              f"already there: reused ({manifest['images']} images)")
    else:
        sec = manifest["seconds"]
        print(f"{out}: wrote {manifest['images']} images in {sec['total']:.1f} s "
              f"({manifest['images_per_second']} images/s rendering, "
              f"{manifest['workers']} workers)")
    if args.preview:
        with synth_lock(out):
            print(f"preview: {write_preview(out / 'preview.png', seed=args.seed)}")
            record_derived(out, "preview.png")
    if args.oracle:
        for line in summary_lines(oracle_report(out)):
            print(line)
        print(f"saved {out / 'oracle.json'}")
    return 0
