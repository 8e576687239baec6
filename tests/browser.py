"""Headless Chromium for the report tests: found on the machine or installed from Debian.

:func:`find_or_install_chromium` returns the browser's path, or the reason there is none (the
test skips with it). It looks on ``PATH`` (``chromium``, ``chromium-browser``,
``google-chrome``, or ``$ABAW_CHROMIUM``); when none is there and the tests run as root on a
machine with ``apt-get``, it installs Debian's ``chromium`` package once
(``apt-get update`` then ``apt-get install -y --no-install-recommends chromium``), which is
the one way this project gets a browser (no test tool downloads a browser build of its own).

:func:`image_states` opens an HTML file with ``chromium --headless --dump-dom`` and returns,
for every ``<img>``, whether it loaded and how large it is on the page: a copy of the page
gets a small script that, on the ``load`` event, writes each image's ``naturalWidth``,
``naturalHeight`` and bounding box into a ``<pre id="abaw-image-states">`` element, which
``--dump-dom`` then prints with the rest of the DOM.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome")
#: the flags a closed-network, root-run headless Chromium needs (no sandbox as root; no
#: background connections, which this machine's network refuses)
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars", "--window-size=1280,2000")
INSTALL_TIMEOUT_S = 900

PROBE = """
<script>
window.addEventListener("load", function () {
  var states = Array.prototype.map.call(document.images, function (img) {
    var box = img.getBoundingClientRect();
    return {alt: img.alt, complete: img.complete, naturalWidth: img.naturalWidth,
            naturalHeight: img.naturalHeight, width: box.width, height: box.height};
  });
  var out = document.createElement("pre");
  out.id = "abaw-image-states";
  out.textContent = JSON.stringify(states);
  document.body.appendChild(out);
});
</script>
"""


def _found() -> str | None:
    named = os.environ.get("ABAW_CHROMIUM")
    if named:
        return named if Path(named).is_file() else None
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


def find_or_install_chromium() -> tuple[str | None, str]:
    """``(path, "")`` of a Chromium, or ``(None, why not)``; installs it where it can."""
    path = _found()
    if path:
        return path, ""
    if os.environ.get("ABAW_CHROMIUM"):
        return None, f"ABAW_CHROMIUM={os.environ['ABAW_CHROMIUM']} is not a file"
    if os.geteuid() != 0:
        return None, "no chromium on PATH and not root, so it cannot be installed (apt-get " \
                     "install chromium, or set ABAW_CHROMIUM)"
    if shutil.which("apt-get") is None:
        return None, "no chromium on PATH and no apt-get to install it (set ABAW_CHROMIUM)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update"],
                    ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]):
        try:
            done = subprocess.run(command, env=env, capture_output=True, text=True,
                                  timeout=INSTALL_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return None, f"`{' '.join(command)}` took longer than {INSTALL_TIMEOUT_S} s"
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["(no message)"])[-1]
            return None, f"`{' '.join(command)}` failed: {last}"
    path = _found()
    return (path, "") if path else (None, "apt-get installed chromium but it is not on PATH")


def image_states(chromium: str, page: Path, timeout_s: float = 120.0) -> list[dict]:
    """Every ``<img>`` of ``page`` as the browser laid it out (see the module docstring)."""
    text = page.read_text(encoding="utf-8")
    if "</body>" not in text:
        raise AssertionError(f"{page}: no </body>")
    with tempfile.TemporaryDirectory(prefix="abaw-browser-") as tmp:
        probed = Path(tmp) / page.name
        probed.write_text(text.replace("</body>", PROBE + "</body>"), encoding="utf-8")
        profile = Path(tmp) / "profile"
        done = subprocess.run(
            [chromium, *FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=10000",
             "--dump-dom", probed.as_uri()],
            capture_output=True, text=True, timeout=timeout_s)
    match = re.search(r'<pre id="abaw-image-states">(.*?)</pre>', done.stdout, re.S)
    if match is None:
        raise AssertionError(f"chromium printed no image states (exit {done.returncode}): "
                             f"{done.stderr.strip()[-2000:]}")
    return json.loads(html.unescape(match.group(1)))
