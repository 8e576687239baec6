"""``abaw compare RUN...``: finished runs side by side, as one markdown table.

One column per run (headed by its name; ``track/run`` where two names clash), one row per
fact, in four blocks:

1. **settings** — ``track``, the stacked ``config`` files, then every other top-level
   setting of ``report.json`` (``data``, LSD's ``sr``/``hands``/``rule``/...), and from the
   resolved config (``logs/version_N/config.yaml``, flattened to ``model.backbone``) the
   :data:`KEY_SETTINGS` always and any other key whose value differs between the runs;
   paths that name the run itself (:data:`RUN_SPECIFIC`) are left out;
2. **scores** — every scalar term of every score entry (``validation_at_0.5 P_MTL``,
   ``test f1``, ...), then the fraction of the oracle ceiling;
3. **times** — ``report.json``'s seconds per step (the training step as ``train``), total
   last.

Scores have 4 decimals, seconds 1; a fact a run lacks is ``—``. Only ``report.json`` is
required; a run whose config is not found shows ``—`` for the config rows.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from abaw.errors import FormatError
from abaw.reports.files import RunFiles, load_run
from abaw.reports.html import score_entries

__all__ = ["KEY_SETTINGS", "compare_runs", "markdown_table", "rows"]

#: resolved-config keys shown even when equal in every run
KEY_SETTINGS = ("model.backbone", "data.img_size", "trainer.max_epochs")
#: report entries and config keys that differ between any two runs by construction
RUN_SPECIFIC = {"run", "challenge", "run_dir", "checkpoint", "submission", "train_images",
                "trainer.default_root_dir", "data.data_root", "ckpt_path",
                "submission.output_dir", "submission.postprocess"}
MISSING = "—"


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: value}


def resolved_config(run: RunFiles) -> dict[str, Any]:
    """The run's resolved config flattened to dotted keys (empty when there is none)."""
    import yaml

    if run.config_text is None:
        return {}
    try:
        parsed = yaml.safe_load(run.config_text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        raise FormatError(run.config_file, mark.line + 1 if mark else None,
                          f"not valid YAML: {getattr(err, 'problem', err)}") from None
    return _flatten(parsed) if isinstance(parsed, dict) else {}


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _text(value: Any, decimals: int | None = 4) -> str:
    """A cell: floats with ``decimals`` (``None``: as written), lists and objects as JSON."""
    if isinstance(value, float) and decimals is not None:
        return f"{value:.{decimals}f}"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return MISSING if value is None else str(value)


def _union(lists: Sequence[Sequence[str]]) -> list[str]:
    return list(dict.fromkeys(k for keys in lists for k in keys))


def rows(runs: Sequence[RunFiles]) -> list[list[str]]:
    """The table's rows (first cell the fact, then one cell per run); see the module
    docstring for which facts and in which order."""
    reports = [r.report for r in runs]
    out: list[list[str]] = [["track", *(r.track for r in runs)]]

    def add(label: str, values: Sequence[Any], decimals: int | None = 4) -> None:
        out.append([label, *(MISSING if v is MISSING else _text(v, decimals) for v in values)])

    settings = _union([[k for k, v in rep.items() if _scalar(v) and k not in RUN_SPECIFIC]
                       for rep in reports])
    for key in sorted(settings, key=lambda k: k != "config"):
        add(key, [rep.get(key, MISSING) for rep in reports])
    configs = [resolved_config(r) for r in runs]
    keys = _union([list(c) for c in configs])
    for key in [*(k for k in KEY_SETTINGS if k in keys),
                *(k for k in keys if k not in KEY_SETTINGS and k not in RUN_SPECIFIC)]:
        values = [c.get(key, MISSING) if c else MISSING for c in configs]
        if key in KEY_SETTINGS or len({_text(v) for v in values}) > 1:
            add(f"config {key}", values, None)
    entries = _union([score_entries(rep) for rep in reports])
    for entry in score_entries({e: next(r[e] for r in reports if e in r) for e in entries}):
        terms = _union([[t for t, v in (rep.get(entry) or {}).items()
                         if isinstance(v, (int, float)) and not isinstance(v, bool)]
                        for rep in reports])
        for term in terms:
            add(f"{entry} {term}", [(rep.get(entry) or {}).get(term, MISSING) for rep in reports])
    for split in _union([list(rep.get("fraction_of_oracle") or {}) for rep in reports]):
        add(f"fraction of oracle ({split})",
            [(rep.get("fraction_of_oracle") or {}).get(split, MISSING) for rep in reports])
    seconds = [{("train" if k.startswith("train ") else k): v
                for k, v in (rep.get("seconds") or {}).items()} for rep in reports]
    steps = _union([list(s) for s in seconds])
    for step in [*(s for s in steps if s != "total"), *(s for s in steps if s == "total")]:
        add(f"seconds: {step}", [float(s[step]) if step in s else MISSING for s in seconds], 1)
    return out


def _headers(runs: Sequence[RunFiles]) -> list[str]:
    names = [r.name for r in runs]
    if len(set(names)) == len(names):
        return names
    qualified = [f"{r.track}/{r.name}" for r in runs]
    return qualified if len(set(qualified)) == len(qualified) else [str(r.sub_dir) for r in runs]


def markdown_table(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    """A markdown table, columns padded to a common width (pipes in cells escaped)."""
    cells = [[c.replace("|", "\\|") for c in row] for row in [list(header), *body]]
    widths = [max(3, *(len(row[i]) for row in cells)) for i in range(len(header))]

    def line(row: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |"

    return "\n".join([line(cells[0]), line(["-" * w for w in widths]),
                      *(line(row) for row in cells[1:])]) + "\n"


def compare_runs(given: Sequence[str | Path]) -> str:
    """The markdown table comparing the finished runs ``given`` (submission folders or their
    ``report.json``)."""
    runs = [load_run(g, arrays=False) for g in given]
    return markdown_table(["run", *_headers(runs)], rows(runs))
