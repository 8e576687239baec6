"""Training: Lightning modules, the torchmetrics adapter of the official score, the LightningCLI.

- :mod:`abaw.training.mtl_module` — :class:`~abaw.training.mtl_module.MtlModule`;
- :mod:`abaw.training.metric` — :class:`~abaw.training.metric.MtlMetric` (official P_MTL);
- :mod:`abaw.training.callbacks` — the submission writer used by ``abaw predict``;
- :mod:`abaw.training.cli` — ``abaw fit|validate|test|predict`` (LightningCLI).

Submodules are imported on demand (this package imports nothing heavy).
"""
