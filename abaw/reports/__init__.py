"""Reports of finished runs: ``report.html`` beside ``report.json``, and ``abaw compare``.

- :mod:`abaw.reports.files` reads back what a run left on disk (``report.json``, the
  training logs, the resolved config, the validation predictions) and saves the validation
  predictions with their truth beside the test predictions;
- :mod:`abaw.reports.html` renders the self-contained ``report.html`` from those files
  (``abaw report RUN_DIR``; the runner writes it at the end of every run);
- :mod:`abaw.reports.compare` puts several runs side by side (``abaw compare RUN...``).

Nothing here imports torch; matplotlib is imported only when a figure is drawn.
"""
