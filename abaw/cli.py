"""The ``abaw`` command line.

Each subcommand lives in its own module under :mod:`abaw.commands` exposing two functions,
``configure(parser)`` (adds its arguments to an :class:`argparse.ArgumentParser`) and
``run(args) -> int`` (the exit status). Only the chosen subcommand's module is imported, so
``abaw score`` or ``abaw validate`` start in well under a second without importing torch.

``abaw <challenge> fit|validate|test|predict`` (``abaw mtl fit --config ...``,
``abaw lsd predict ...``) goes to that challenge's LightningCLI in :mod:`abaw.training.cli`:
the command names the challenge, nothing is guessed from a config file. ``abaw run
<challenge>`` runs a whole recipe (:mod:`abaw.runner`); ``abaw pretrain mae --config ...``
pre-trains a ViT encoder (:func:`abaw.training.cli.run_pretrain`).

Exit status: 0 success; 1 a check found problems (``abaw validate``) or nothing could be
done (``abaw lsd superres`` where every image failed); 2 bad input: errors the toolkit knows
about (:class:`abaw.errors.AbawError`) and file-system errors naming a file, each printed as
one line ``abaw: error: ...``; 3 an internal error (a bug), one line, its traceback shown
only with ``ABAW_DEBUG=1``; 130 interrupted (Ctrl-C), whatever the command; 143 stopped by
SIGTERM during training.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from abaw.errors import INTERRUPTED, TERMINATED, AbawError, terminated

#: subcommand -> (module under abaw.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "score": ("score", "score a submission file against ground truth with the official metric"),
    "validate": ("validate", "check a submission file before uploading it"),
    "synth": ("synth", "generate the embedded synthetic data in the official on-disk layouts"),
    "assets": ("assets", "list / fetch the offline pretrained-weight assets (checksummed cache)"),
    "lsd": ("lsd", "LSD steps: super-resolution (superres) and hand-occlusion detection (hands)"),
    "run": ("run", "a challenge end to end: train, score, tune, write and validate the submission"),
    "pretrain": ("pretrain", "self-supervised pre-training of a ViT encoder on face crops (mae)"),
    "report": ("report", "(re)build report.html of finished runs from their saved files"),
    "compare": ("compare", "finished runs side by side: settings, scores, times (markdown)"),
    "ensemble": ("ensemble", "average several runs' saved predictions into one validated submission"),
}
LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")
#: challenges with a LightningCLI: ``abaw <challenge> fit|validate|test|predict``
CHALLENGES = ("mtl", "lsd", "va", "expr", "au")


def _usage() -> str:
    lines = ["usage: abaw <command> [options]", "", "commands:"]
    for name, (_, text) in COMMANDS.items():
        lines.append(f"  {name:<10} {text}")
    lines.append(f"  {'mtl fit':<10} train a model from a YAML config (LightningCLI: "
                 "abaw mtl|lsd|va|expr|au fit|validate|test|predict)")
    lines.append("")
    lines.append("`abaw <command> --help` shows a command's options.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if not argv or argv[0] in ("-h", "--help", "help"):
            print(_usage())
            return 0 if argv else 2
        if argv[0] in ("--version", "-V"):
            from abaw import __version__

            print(f"abaw {__version__}")
            return 0
        if argv[0] in CHALLENGES and len(argv) > 1 and argv[1] in LIGHTNING_COMMANDS:
            from abaw.training.cli import run_lightning_cli

            return run_lightning_cli(argv[0], argv[1:])
        if argv[0] in ("fit", "test", "predict"):
            print(f"abaw: `abaw {argv[0]}` needs the challenge first: abaw mtl {argv[0]} ... "
                  f"or abaw lsd {argv[0]} ...", file=sys.stderr)
            return 2
        name = argv[0]
        if name not in COMMANDS:
            print(f"abaw: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
            return 2
        module = importlib.import_module(f"abaw.commands.{COMMANDS[name][0]}")
        parser = argparse.ArgumentParser(prog=f"abaw {name}", description=COMMANDS[name][1])
        module.configure(parser)
        args = parser.parse_args(argv[1:])
        return int(module.run(args) or 0)
    except AbawError as err:
        print(f"abaw: error: {_one_line(str(err))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("abaw: interrupted", file=sys.stderr)
        return INTERRUPTED
    except SystemExit as err:  # SIGTERM inside Lightning would exit 0, as if finished
        if not terminated(err):
            raise
        print("abaw: terminated (SIGTERM)", file=sys.stderr)
        return TERMINATED
    except OSError as err:  # a file problem (permissions, a loop of links, disk full)
        if os.environ.get("ABAW_DEBUG"):
            raise
        if err.filename is None:
            return _internal_error(err)
        from abaw.fileio import describe_os_error

        print(f"abaw: error: {_one_line(describe_os_error(err))}", file=sys.stderr)
        return 2
    except Exception as err:  # never show a user a bare traceback
        if os.environ.get("ABAW_DEBUG"):
            raise
        return _internal_error(err)


def _one_line(text: str, limit: int = 500) -> str:
    """``text`` on one line (a message must never spill over a terminal page)."""
    text = " ".join(part.strip() for part in text.splitlines() if part.strip())
    return text if len(text) <= limit else text[:limit] + " ..."


def _internal_error(err: BaseException) -> int:
    print(f"abaw: internal error: {_one_line(f'{type(err).__name__}: {err}')} (a bug: please "
          "report it; ABAW_DEBUG=1 shows the traceback)", file=sys.stderr)
    return 3


if __name__ == "__main__":
    sys.exit(main())
