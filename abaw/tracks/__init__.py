"""The challenge specs the runner (:mod:`abaw.runner`) runs: one module per track.

Each module defines a :class:`abaw.runner.Challenge` subclass and one instance of it;
:data:`TRACKS` names them for ``abaw run <name>`` (a module is imported only when run).
"""

from __future__ import annotations

import importlib

from abaw.runner import Challenge

#: track name -> (module, spec instance name)
TRACKS: dict[str, tuple[str, str]] = {
    "mtl": ("abaw.tracks.mtl", "MTL"),
    "lsd": ("abaw.tracks.lsd", "LSD"),
    "va": ("abaw.tracks.per_video", "VA"),
    "expr": ("abaw.tracks.per_video", "EXPR"),
    "au": ("abaw.tracks.per_video", "AU"),
}


def get(name: str) -> Challenge:
    """The spec of track ``name``."""
    module, attribute = TRACKS[name]
    return getattr(importlib.import_module(module), attribute)
