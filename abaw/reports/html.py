"""``report.html``: one self-contained page per finished run (opens from disk, no server).

Built only from the run's saved files (:func:`abaw.reports.files.load_run`), so
``abaw report RUN_DIR`` rebuilds it for any finished run. Every figure is a PNG drawn by
matplotlib's Agg renderer and embedded as a base64 ``data:`` URI; the page has no script, no
external style sheet, no link out.

The page is a list of sections, each with a fixed title (:data:`SECTIONS` per track; a track
without its own list gets :data:`GENERIC`). A section whose inputs are missing (no training
logs, no validation predictions, a report entry the run did not write) shows a visible
"skipped" note with the reason instead of its content; so does a section whose drawing
failed, with the error — the page is always written.
"""

from __future__ import annotations

import base64
import html
import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from abaw import vocab
from abaw.fileio import atomic_write_text
from abaw.reports import figures
from abaw.reports.files import HTML_FILE, RunFiles, load_run

__all__ = ["GENERIC", "SECTIONS", "render", "score_entries", "write_html"]


class Skip(Exception):
    """A section's inputs are missing; the message says which."""


# --- small HTML pieces --------------------------------------------------------------------------


def _cell(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return html.escape(str(value))
    if isinstance(value, float):
        return f"{value:.4f}"
    return html.escape(str(value))


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _image(figure: Any, alt: str) -> str:
    from abaw.training.plots import png_bytes

    data = base64.b64encode(png_bytes(figure)).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'
            f"<figcaption>{html.escape(alt)}</figcaption></figure>")


def _pre(text: str) -> str:
    return f"<pre>{html.escape(text)}</pre>"


def _p(text: str) -> str:
    return f"<p>{html.escape(text)}</p>"


# --- what the report holds ----------------------------------------------------------------------


def _numeric(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def score_entries(report: dict) -> list[str]:
    """The report's score entries (``validation*`` / ``test*`` objects holding a number):
    ``validation`` or ``validation_at_0.5`` first, the other validation entries, test last."""
    keys = [k for k, v in report.items() if re.match(r"(validation|test)", k)
            and isinstance(v, dict) and any(_numeric(x) for x in v.values())]
    return sorted(keys, key=lambda k: (k.startswith("test"), k != _baseline(keys), k))


def _baseline(keys: Sequence[str]) -> str | None:
    """The entry the post-processing is measured against (raw decisions on validation)."""
    return next((k for k in ("validation_at_0.5", "validation") if k in keys), None)


def _terms(report: dict, entries: Sequence[str]) -> list[str]:
    """The scalar terms of ``entries``, in order of first appearance."""
    terms: list[str] = []
    for entry in entries:
        terms += [k for k, v in report[entry].items() if _numeric(v) and k not in terms]
    return terms


#: report entries a section shows (the rest appear under "Other report entries")
SHOWN = {"run", "challenge", "run_dir", "config", "data", "checkpoint", "submission", "seconds",
         "oracle", "fraction_of_oracle", "au_thresholds", "rule", "sr", "hands", "init",
         "occlusion_source", "detector", "superres", "train_images"}


# --- the sections -------------------------------------------------------------------------------


def summary(run: RunFiles) -> str:
    report = run.report
    rows = [["run", run.name], ["track", run.track]]
    rows += [[k, report[k]] for k in ("data", "config", "checkpoint", "submission", "init")
             if k in report]
    rows += [["training folder", run.run_dir or "not found"],
             ["validation predictions", run.validation_file or "not found"]]
    for key in ("oracle", "fraction_of_oracle"):
        for split, value in (report.get(key) or {}).items():
            rows.append([f"{key.replace('_', ' ')} ({split})", value])
    return _table(["", ""], rows)


def scores(run: RunFiles) -> str:
    entries = score_entries(run.report)
    if not entries:
        raise Skip("report.json holds no validation or test scores")
    terms = _terms(run.report, entries)
    rows = [[e, *(run.report[e].get(t, "—") for t in terms)] for e in entries]
    return _table(["entry", *terms], rows)


def _metrics(run: RunFiles) -> Any:
    if run.metrics is None:
        raise Skip(run.missing.get("metrics", "no training logs"))
    if "step" not in run.metrics.columns:
        raise Skip(f"{run.metrics_files[-1]} has no 'step' column")
    return run.metrics


def _per_class_column(column: str) -> bool:
    names = {*vocab.EXPRESSIONS, *vocab.LSD_CLASSES, *vocab.AUS}
    return column.rsplit("_", 1)[-1] in names


def training_curves(run: RunFiles) -> str:
    metrics = _metrics(run)
    columns = [c for c in metrics.columns if metrics[c].notna().any()]
    losses = [c for c in columns if re.match(r"(train|val)/loss", c)]
    values = [c for c in columns if c.startswith("val/") and c not in losses
              and not _per_class_column(c)]
    if not losses and not values:
        raise Skip(f"no train/loss* or val/* columns in {', '.join(map(str, run.metrics_files))}")
    return (_image(figures.curves(metrics, losses, values), "training curves")
            + _p("from " + ", ".join(map(str, run.metrics_files))))


def task_weights(run: RunFiles) -> str:
    metrics = _metrics(run)
    columns = [c for c in metrics.columns if c.startswith("train/weight_")
               and metrics[c].notna().any()]
    if not columns:
        raise Skip("the training logs hold no train/weight_* values (fixed task weights, or "
                   "fewer training steps than trainer.log_every_n_steps)")
    return _image(figures.task_weights(metrics, columns), "learned task weights")


def _per_class(run: RunFiles, key: str, names: Sequence[str], alt: str) -> str:
    series = {e: run.report[e][key] for e in score_entries(run.report)
              if isinstance(run.report[e].get(key), list) and len(run.report[e][key]) == len(names)}
    if not series:
        raise Skip(f"no score entry of report.json holds {key}")
    rows = [[name, *(values[i] for values in series.values())] for i, name in enumerate(names)]
    return _image(figures.grouped_bars(names, series), alt) + _table(["class", *series], rows)


def expression_f1(run: RunFiles) -> str:
    return _per_class(run, "f1_expression_per_class", vocab.EXPRESSIONS, "expression F1 per class")


def au_f1(run: RunFiles) -> str:
    body = _per_class(run, "f1_au_per_au", vocab.AUS, "F1 per AU")
    thresholds = run.report.get("au_thresholds")
    if isinstance(thresholds, list) and len(thresholds) == vocab.NUM_AUS:
        body += _p("tuned thresholds: " + ", ".join(
            f"{au} {t:.2f}" for au, t in zip(vocab.AUS, thresholds)))
    return body


def lsd_f1(run: RunFiles) -> str:
    return _per_class(run, "f1_per_class", vocab.LSD_CLASSES, "F1 per class")


def _validation(run: RunFiles, *keys: str) -> dict[str, np.ndarray]:
    if run.validation is None:
        raise Skip(run.missing.get("validation", "no validation predictions"))
    absent = [k for k in keys if k not in run.validation]
    if absent:
        why = run.missing.get("truth", "") if any(k.startswith("truth_") for k in absent) else ""
        raise Skip(f"{run.validation_file} holds no {', '.join(absent)}" + (f" ({why})" if why
                                                                            else ""))
    return run.validation


def _confusion(run: RunFiles, names: Sequence[str], what: str,
               probs: np.ndarray | None = None) -> str:
    from abaw.training.plots import confusion_matrix_figure

    arrays = _validation(run, "expr_prob", "truth_expression")
    truth = arrays["truth_expression"].astype(np.int64)
    labelled = truth >= 0
    if not labelled.any():
        raise Skip("no validation row has an expression label")
    predicted = (arrays["expr_prob"] if probs is None else probs)[labelled].argmax(1)
    figure = confusion_matrix_figure(truth[labelled], predicted, names,
                                     title=f"{what}, {int(labelled.sum())} rows")
    return _image(figure, f"confusion matrix, {what}")


def expression_confusion(run: RunFiles) -> str:
    return _confusion(run, vocab.EXPRESSIONS, "expression argmax")


def lsd_confusion(run: RunFiles) -> str:
    body = _confusion(run, vocab.LSD_CLASSES, "main head")
    rule = _occlusion_rule(run)
    if rule is None:
        return body + _p("the main expression head (the occlusion rule is drawn when its "
                         "file is beside the checkpoint and reads the occlusion head)")
    probs = rule.apply(run.validation["expr_prob"], run.validation.get("occlusion_prob"),
                       run.validation.get("expr_prob_occluded"))
    return body + _confusion(run, vocab.LSD_CLASSES, f"after the {rule.rule} rule", probs)


def _occlusion_rule(run: RunFiles) -> Any:
    """The fitted occlusion rule, when it is on disk and reads the occlusion head (the
    detector's flags are not part of the validation predictions)."""
    from abaw.lsd.occlusion import OcclusionRule

    paths = [p for p in run.postprocess_files if p.name.endswith(".occlusion_rule.json")]
    if not paths or run.report.get("occlusion_source", "head") != "head":
        return None
    rule = OcclusionRule.load(paths[0])
    return None if rule.rule == "none" else rule


def va_density(run: RunFiles) -> str:
    from abaw.metrics import ccc

    arrays = _validation(run, "va", "truth_va")
    truth = np.where(arrays["truth_va"] > vocab.VA_MISSING, arrays["truth_va"], np.nan)
    if not np.isfinite(truth).any():
        raise Skip("no validation row has a valence/arousal label")
    titles = []
    for column, name in enumerate(("valence", "arousal")):
        keep = np.isfinite(truth[:, column])
        titles.append(f"{name}: CCC {ccc(truth[keep, column], arrays['va'][keep, column]):.3f}, "
                      f"{int(keep.sum())} frames")
    return (_image(figures.va_density(truth, arrays["va"], titles),
                   "valence and arousal: predicted vs true") + _p("; ".join(titles)))


def superres_occlusion(run: RunFiles) -> str:
    report = run.report
    rows = [[k, report[k]] for k in ("sr", "hands", "rule", "occlusion_source", "init",
                                     "train_images") if k in report]
    rows += [[f"super-resolution: {k.replace('_', ' ')}", v]
             for k, v in (report.get("superres") or {}).items()]
    if not rows and not report.get("detector"):
        raise Skip("report.json holds no super-resolution or occlusion settings")
    body = _table(["setting", "value"], rows)
    detector = {s: v for s, v in (report.get("detector") or {}).items() if isinstance(v, dict)}
    if detector:
        columns = [c for c in dict.fromkeys(k for v in detector.values() for k in v) if c != "csv"]
        body += "<h3>Hand detector (MediaPipe)</h3>" + _table(
            ["split", *columns], [[s, *(v.get(c, "—") for c in columns)]
                                  for s, v in detector.items()])
    else:
        body += _p("hand detector: not run")
    occlusion = {}
    if run.validation is not None and "occlusion_prob" in run.validation:
        occlusion["validation"] = run.validation["occlusion_prob"]
    if occlusion:
        body += _image(figures.histogram(occlusion, "occlusion probability (occlusion head)"),
                       "occlusion probabilities")
    else:
        body += _p("no occlusion probabilities in the validation predictions (no occlusion "
                   "head)")
    return body


def postprocess(run: RunFiles) -> str:
    report = run.report
    entries = [e for e in score_entries(report) if e.startswith("validation")]
    base = _baseline(entries)
    after = [e for e in entries if e != base]
    if base is None or not after:
        raise Skip("report.json holds no validation score before and after post-processing")
    terms = [t for t in _terms(report, [base]) if any(_numeric(report[e].get(t)) for e in after)]
    header = ["term", f"{base} (before)"]
    for entry in after:
        header += [entry, "change"]
    rows = []
    for term in terms:
        row: list[Any] = [term, report[base][term]]
        for entry in after:
            value = report[entry].get(term)
            change = round(value - report[base][term], 4) + 0.0 if _numeric(value) else 0
            row += ([value, f"{change:+.4f}"] if _numeric(value)
                    else ["—", "—"])
        rows.append(row)
    body = _table(header, rows)
    settings = [[k, json.dumps(report[k])] for k in ("au_thresholds", "rule") if k in report]
    if settings:
        body += "<h3>Fitted on validation</h3>" + _table(["setting", "value"], settings)
    for path in run.postprocess_files:
        body += f"<h3>{html.escape(path.name)}</h3>" + _pre(path.read_text(encoding="utf-8"))
    return body


def timings(run: RunFiles) -> str:
    seconds = run.report.get("seconds")
    if not isinstance(seconds, dict) or not seconds:
        raise Skip("report.json holds no timings")
    steps = [(k, v) for k, v in seconds.items() if k != "total" and _numeric(v)]
    total = seconds.get("total")
    rows = [[k, f"{v:.1f}", f"{v / total:.1%}" if _numeric(total) and total else "—"]
            for k, v in steps]
    if _numeric(total):
        rows.append(["total", f"{total:.1f}", "100.0%"])
    body = _table(["step", "seconds", "share"], rows)
    if steps:
        body = _image(figures.horizontal_bars([k for k, _ in steps], [v for _, v in steps],
                                              "seconds"), "seconds per step") + body
    return body


def config(run: RunFiles) -> str:
    body = _p(f"configs: {run.report.get('config', 'not recorded')}")
    if run.config_text is None:
        raise Skip(run.missing.get("config", "no resolved config"))
    return body + _p(f"resolved: {run.config_file}") + _pre(run.config_text)


def others(run: RunFiles) -> str:
    rest = {k: v for k, v in run.report.items()
            if k not in SHOWN and k not in score_entries(run.report)}
    if not rest:
        return _p("none")
    return _pre(json.dumps(rest, indent=2, sort_keys=True))


Section = tuple[str, Callable[[RunFiles], str]]

_HEAD: list[Section] = [("Summary", summary), ("Scores", scores),
                        ("Training curves", training_curves)]
_TAIL: list[Section] = [("Post-processing before and after", postprocess), ("Timings", timings),
                        ("Resolved config", config), ("Other report entries", others)]
#: the sections of each track's report, in page order
SECTIONS: dict[str, list[Section]] = {
    "mtl": [*_HEAD, ("Learned task weights", task_weights),
            ("Per-class expression F1", expression_f1),
            ("Per-AU F1 (0.5 vs tuned thresholds)", au_f1),
            ("Expression confusion matrix (validation)", expression_confusion),
            ("Valence and arousal: predicted vs true (validation)", va_density), *_TAIL],
    "lsd": [*_HEAD, ("Per-class F1", lsd_f1), ("Confusion matrix (validation)", lsd_confusion),
            ("Super-resolution and occlusion", superres_occlusion), *_TAIL],
}
GENERIC: list[Section] = [*_HEAD, *_TAIL]

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1300px; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }
td, th { border: 1px solid #ddd; padding: 0.2em 0.6em; text-align: left; }
th { background: #f3f3f3; } tbody tr:nth-child(even) { background: #fafafa; }
figure { margin: 0.5em 0; } img { max-width: 100%; height: auto; }
figcaption { font-size: 0.8em; color: #666; }
pre { background: #f6f6f6; padding: 0.6em; overflow-x: auto; font-size: 0.8em; }
.note { background: #fff4d6; border-left: 4px solid #e0a800; padding: 0.4em 0.8em; }
nav a { margin-right: 1em; }
"""


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def render(run: RunFiles, skipped: list[tuple[str, str]] | None = None) -> str:
    """The page of ``run`` (a string of HTML); each section shown as a note instead of its
    content is appended to ``skipped`` as ``(title, why)``."""
    sections = SECTIONS.get(run.track, GENERIC)
    parts = []
    for title, build in sections:
        try:
            body = build(run)
        except Exception as err:  # Skip, or a broken section: a page with a note beats none
            why = str(err) if isinstance(err, Skip) else f"could not be drawn: {type(err).__name__}: {err}"
            body = f'<p class="note">Skipped: {html.escape(why)}</p>'
            if skipped is not None:
                skipped.append((title, why))
        parts.append(f'<section id="{_slug(title)}"><h2>{html.escape(title)}</h2>{body}'
                     "</section>")
    nav = "".join(f'<a href="#{_slug(t)}">{html.escape(t)}</a>' for t, _ in sections)
    title = f"abaw {run.track} run {run.name}"
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>\n<body>"
            f"<h1>{html.escape(title)}</h1><p>{html.escape(str(run.sub_dir))}</p>"
            f"<nav>{nav}</nav>\n" + "\n".join(parts) + "\n</body></html>\n")


def write_html(given: str | Path | RunFiles, out: str | Path | None = None,
               skipped: list[tuple[str, str]] | None = None) -> Path:
    """Render the report of a finished run (its submission folder, ``report.json`` or
    :class:`RunFiles`) and write it to ``out`` (default ``report.html`` beside the JSON)."""
    run = given if isinstance(given, RunFiles) else load_run(given)
    return atomic_write_text(Path(out) if out else run.sub_dir / HTML_FILE,
                             render(run, skipped))
