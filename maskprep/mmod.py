"""dlib's CNN face detector (mmod) run in torch: the same network, the same weights, the same boxes.

dlib's ``cnn_face_detection_model_v1`` is the second opinion that finds tight face crops HOG
misses, but the ``dlib-bin`` wheel has no BLAS, so one call on a 140 px copy costs ~150 CPU-ms.
This module reads ``mmod_human_face_detector.dat`` itself (dlib's serialization format) and runs
the forward pass with torch's CPU kernels: ~10x less CPU at 140 px, ~15x at 400 px. It reproduces dlib's
whole detector, not only the network: the tiled image pyramid of ``input_rgb_image_pyramid``
(levels shrunk by 5/6 with bilinear resampling, tiled into one image with a padding of the mean
colour), the mapping of output cells back to image rectangles, and the non-max suppression of
``loss_mmod``.

Nothing is loaded at import: :func:`detect` loads the weights on first use, once per process.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_MODEL_FILE = "mmod_human_face_detector.dat"
_NET: "_Net | None" = None   # per-process cache (stages fork workers; nothing loads at import)


class MmodFormatError(ValueError):
    """The .dat file is not the dlib mmod network this module knows how to read."""


# ------------------------------------------------------------------------------------------------
# dlib's serialization (dlib/serialize.h and the serialize() of each dnn object)

class _Reader:
    """Reads dlib's serialized primitives from a byte string, front to back."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def _take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise MmodFormatError(f"file ends early at byte {self.pos}")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def int(self) -> int:
        # one control byte: the low nibble says how many little-endian bytes follow, 0x80 = negative
        control = self._take(1)[0]
        size = control & 0x0F
        value = int.from_bytes(self._take(size), "little") if size else 0
        return -value if control & 0x80 else value

    def float(self) -> float:
        # float and double are both written as an integer mantissa and a power-of-two exponent
        mantissa, exponent = self.int(), self.int()
        special = {32000: math.inf, 32001: -math.inf, 32002: math.nan}
        return special[exponent] if exponent in special else math.ldexp(mantissa, exponent)

    def bool(self) -> bool:
        char = self._take(1)
        if char not in (b"0", b"1"):
            raise MmodFormatError(f"expected a bool at byte {self.pos - 1}")
        return char == b"1"

    def string(self) -> str:
        return self._take(self.int()).decode("latin-1")

    def peek_string(self) -> str | None:
        """The string at the current position if one plausibly starts there, without consuming it."""
        pos = self.pos
        try:
            text = self.string()
        except (MmodFormatError, UnicodeDecodeError):
            text = None
        self.pos = pos
        return text if text and text.isprintable() else None

    def tensor(self) -> np.ndarray:
        """A dlib ``resizable_tensor`` (version 2: raw little-endian float32) as an (n, k, nr, nc)
        array."""
        version = self.int()
        if version != 2:
            raise MmodFormatError(f"tensor version {version} (only version 2 is supported)")
        shape = tuple(self.int() for _ in range(4))
        count = int(np.prod(shape))
        return np.frombuffer(self._take(4 * count), dtype="<f4").reshape(shape).astype(np.float32)

    def alias_tensor(self) -> tuple[int, int, int, int]:
        version = self.int()
        if version != 1:
            raise MmodFormatError(f"alias_tensor version {version}")
        return tuple(self.int() for _ in range(4))


@dataclass
class _Conv:
    weight: np.ndarray   # (filters, channels, nr, nc): dlib's layout is torch's
    bias: np.ndarray
    stride: tuple[int, int]
    padding: tuple[int, int]


def _read_con(r: _Reader, version: str) -> _Conv:
    params = r.tensor().ravel()
    num_filters, nr, nc = r.int(), r.int(), r.int()
    stride = (r.int(), r.int())
    padding = (r.int(), r.int())
    filters, _biases = r.alias_tensor(), r.alias_tensor()
    for _ in range(4):   # learning-rate and weight-decay multipliers
        r.float()
    use_bias = r.bool() if version in ("con_5", "con_6") else True
    use_relu = r.bool() if version == "con_6" else False
    if use_relu:
        raise MmodFormatError("con_ with a fused relu is not supported")
    size = int(np.prod(filters))
    if filters[0] != num_filters or filters[2:] != (nr, nc):
        raise MmodFormatError("con_ filter shape does not match its header")
    weight = params[:size].reshape(filters)
    bias = params[size:size + num_filters] if use_bias else np.zeros(num_filters, np.float32)
    return _Conv(weight, bias.copy(), stride, padding)


def _read_affine(r: _Reader, version: str) -> tuple[np.ndarray, np.ndarray]:
    """gamma, beta of an affine layer; a batch-norm layer (what training saved) is folded into one,
    as dlib does when it loads it into ``affine_``: gamma / sqrt(var + eps), beta - mean * that."""
    params = r.tensor().ravel()
    gamma_shape, beta_shape = r.alias_tensor(), r.alias_tensor()
    k = int(np.prod(gamma_shape))
    gamma, beta = params[:k], params[k:k + int(np.prod(beta_shape))]
    if version.startswith("affine_"):
        r.int()   # mode
        if version == "affine_2" and r.bool():
            return np.ones(k, np.float32), np.zeros(k, np.float32)   # a disabled affine layer
        return gamma.copy(), beta.copy()
    _means, _invstds = r.tensor(), r.tensor()
    running_means, running_vars = r.tensor().ravel(), r.tensor().ravel()
    r.int(), r.int()                          # num_updates, running_stats_window_size
    for _ in range(4):
        r.float()                             # multipliers
    eps = r.float()
    scale = (gamma.astype(np.float64) / np.sqrt(running_vars.astype(np.float64) + eps))
    shift = beta.astype(np.float64) - scale * running_means
    return scale.astype(np.float32), shift.astype(np.float32)


@dataclass
class MmodWeights:
    """What the .dat file holds, in the order the layers run (input first)."""

    layers: list            # _Conv, ("affine", gamma, beta) or "relu"
    mean_rgb: tuple[float, float, float]
    pyramid_padding: int
    pyramid_outer_padding: int
    window: tuple[int, int]   # detector window (width, height) in pyramid pixels
    nms_iou: float            # boxes overlapping a stronger one by more than this IoU are dropped
    nms_covered: float        # ... or covering more than this fraction of either box


def _read_layer_details(r: _Reader, layers: list) -> None:
    name = r.string()
    if name in ("con_4", "con_5", "con_6"):
        layers.append(_read_con(r, name))
    elif name in ("bn_con2", "affine_", "affine_2"):
        layers.append(("affine",) + _read_affine(r, name))
    elif name == "relu_":
        layers.append("relu")
    else:
        raise MmodFormatError(f"unsupported layer {name!r}")


def _read_subnet(r: _Reader, layers: list, inputs: dict) -> None:
    """One ``add_layer``: its version, the network below it (recursively), then its own layer."""
    version = r.int()
    below = r.peek_string()
    if below is not None and below.startswith("input_"):
        if below not in ("input_rgb_image_pyramid", "input_rgb_image_pyramid2"):
            raise MmodFormatError(f"unsupported input layer {below!r}")
        r.string()
        inputs["mean"] = (r.float(), r.float(), r.float())
        if below.endswith("2"):
            inputs["padding"], inputs["outer"] = r.int(), r.int()
        _read_layer_details(r, layers)
        r.bool(), r.bool(), r.bool()
        r.tensor(), r.tensor(), r.tensor()    # x_grad, cached output, grad_final
        if version >= 3:
            r.int()                           # sample expansion factor
        return
    if version not in (1, 2):
        raise MmodFormatError(f"add_layer version {version}")
    _read_subnet(r, layers, inputs)
    _read_layer_details(r, layers)
    r.bool(), r.bool(), r.bool()
    r.tensor(), r.tensor()                    # x_grad, cached output
    if version == 2:
        r.tensor()                            # params_grad


def read_weights(path: str | Path) -> MmodWeights:
    """Parse dlib's ``mmod_human_face_detector.dat`` (``loss_mmod`` over conv/bn/relu layers over
    ``input_rgb_image_pyramid<pyramid_down<6>>``). Raises MmodFormatError on anything else."""
    r = _Reader(Path(path).read_bytes())
    if r.int() != 1 or r.string() != "loss_mmod_":
        raise MmodFormatError("not a dlib loss_mmod network")
    options_version = r.int()
    if options_version != 1:
        raise MmodFormatError(f"mmod_options version {options_version} (only 1 is supported)")
    window = (r.int(), r.int())
    r.float(), r.float(), r.float()           # loss per false alarm / missed target, truth IoU
    nms_iou, nms_covered = r.float(), r.float()
    r.float(), r.float()                      # overlaps_ignore
    layers: list = []
    inputs = {"padding": 10, "outer": 11}     # dlib's defaults for the version-1 input layer
    _read_subnet(r, layers, inputs)
    if r.pos != len(r.data):
        raise MmodFormatError(f"{len(r.data) - r.pos} bytes left after the network")
    return MmodWeights(layers, inputs["mean"], inputs["padding"], inputs["outer"], window,
                       nms_iou, nms_covered)


# ------------------------------------------------------------------------------------------------
# The image pyramid (dlib's input_rgb_image_pyramid<pyramid_down<6>> and its tiling)

#: pyramid_down<6>: each level is 5/6 of the one above, down to 5 rows.
_PYRAMID_RATE = 5 / 6
#: pyramid_down<6>::point_up multiplies by this double (6 / 5.0, not v * 6 / 5: boxes are rounded
#: to whole pixels afterwards, and a half pixel either way must fall as it does in dlib)
_UP_RATIO = 6 / 5.0
_PYRAMID_MIN_ROWS = 5


Rect = tuple[int, int, int, int]   # inclusive (left, top, right, bottom), as dlib's rectangle


def pyramid_rects(height: int, width: int, padding: int, outer: int) -> tuple[list[Rect], int, int]:
    """Where each pyramid level sits in the tiled image, as inclusive (left, top, right, bottom),
    and the tiled image's (rows, cols). Level 0 is the image; the first column of levels runs down
    the left, the rest come back up on the right, as dlib's create_tiled_pyramid lays them out."""
    sizes = [(width, height)]
    w, h = width, height
    while True:
        w, h = math.floor(_PYRAMID_RATE * w), math.floor(_PYRAMID_RATE * h)
        if w * h == 0 or h < _PYRAMID_MIN_ROWS:
            break
        sizes.append((w, h))
    total_height = sum(h + padding for _, h in sizes) - 2 * padding
    column, prev_width = 0, 0
    for w, h in sizes:   # the first column goes down until the next level fits beside the last one
        if w <= width - prev_width - padding and (column - height) * 2 >= total_height - height:
            break
        column += h + padding
        prev_width = w
    column -= padding
    rows, cols = column + 2 * outer, width + 2 * outer
    rects: list[Rect] = []
    y, i = outer, 0
    while y < column + outer and i < len(sizes):
        w, h = sizes[i]
        rects.append((outer, y, outer + w - 1, y + h - 1))
        y += h + padding
        i += 1
    y -= padding
    while i < len(sizes):   # the second column, right-aligned, from the bottom up
        w, h = sizes[i]
        right, bottom = outer + width - 1, y - 1
        rect = (right - (w - 1), bottom - (h - 1), right, bottom)
        first = rects[0]
        if not (rect[2] < first[0] or rect[0] > first[2] or rect[3] < first[1] or rect[1] > first[3]):
            break   # it would overlap the image itself: dlib drops this level and the rest
        rects.append(rect)
        y -= h + padding
        i += 1
    return rects, rows, cols


# ------------------------------------------------------------------------------------------------
# The network in torch

class _Net:
    """The mmod network as torch modules (batch norm folded into the convolutions), plus what the
    detector needs around it. Built once per process by :func:`_net`."""

    def __init__(self, weights: MmodWeights) -> None:
        import torch

        self.weights = weights
        modules: list = []
        for layer in weights.layers:
            if isinstance(layer, _Conv):
                conv = torch.nn.Conv2d(layer.weight.shape[1], layer.weight.shape[0],
                                       layer.weight.shape[2:], stride=layer.stride,
                                       padding=layer.padding)
                conv.weight.data = torch.from_numpy(layer.weight.copy())
                conv.bias.data = torch.from_numpy(layer.bias.copy())
                modules.append(conv)
            elif isinstance(layer, tuple):
                # affine after a convolution is a per-filter scale and shift: fold it into the
                # convolution's weights (one pass over the data less)
                _, gamma, beta = layer
                conv = modules[-1]
                g = torch.from_numpy(gamma)
                conv.weight.data = conv.weight.data * g[:, None, None, None]
                conv.bias.data = conv.bias.data * g + torch.from_numpy(beta)
            else:
                modules.append(torch.nn.ReLU(inplace=True))
        # channels-last ("NHWC") lets oneDNN pick its fast direct convolutions: 1.6x less CPU
        # than the default layout on this network (measured, one thread)
        self.module = torch.nn.Sequential(*modules).eval().to(memory_format=torch.channels_last)
        self.mean = torch.tensor(weights.mean_rgb, dtype=torch.float32)
        # output cell (c, r) -> centre in the tiled image: each layer maps p to
        # p * stride - padding + size // 2 (dlib's map_output_to_input), top layer first
        scale, offset = 1.0, 0.0
        for layer in reversed(weights.layers):
            if isinstance(layer, _Conv):
                k, s, p = layer.weight.shape[-1], layer.stride[0], layer.padding[0]
                scale, offset = scale * s, offset * s - p + k // 2
        self.cell_scale, self.cell_offset = scale, offset

    def fits(self, rows: int, cols: int) -> bool:
        """Whether a tiled image this size leaves every convolution an output (an image thinner
        than ~7 px does not: it holds no face the 80 px window could see anyway)."""
        for layer in self.weights.layers:
            if isinstance(layer, _Conv):
                k, s, p = layer.weight.shape[-1], layer.stride[0], layer.padding[0]
                rows, cols = (rows + 2 * p - k) // s + 1, (cols + 2 * p - k) // s + 1
                if rows < 1 or cols < 1:
                    return False
        return True

    def scores(self, image: np.ndarray) -> tuple[np.ndarray, list[Rect]]:
        """The network's output map for an HxWx3 uint8 RGB image, and the pyramid's level rects."""
        import torch
        import torch.nn.functional as F

        h, w = image.shape[:2]
        wt = self.weights
        rects, rows, cols = pyramid_rects(h, w, wt.pyramid_padding, wt.pyramid_outer_padding)
        if not self.fits(rows, cols):
            return np.zeros((0, 0), np.float32), rects
        with torch.inference_mode():
            # built channels-last (rows x cols x 3 in memory), the layout the network runs in
            tiled = torch.zeros((1, rows, cols, 3), dtype=torch.float32).permute(0, 3, 1, 2)
            pixels = torch.from_numpy(np.array(image, dtype=np.float32))   # a writable copy
            left, top, right, bottom = rects[0]
            level = ((pixels - self.mean) / 256.0).permute(2, 0, 1)
            tiled[0, :, top:bottom + 1, left:right + 1] = level
            for prev, rect in zip(rects, rects[1:]):
                # each level is the one above resampled (bilinear, corners aligned), as dlib does
                src = tiled[:, :, prev[1]:prev[3] + 1, prev[0]:prev[2] + 1]
                size = (rect[3] - rect[1] + 1, rect[2] - rect[0] + 1)
                tiled[:, :, rect[1]:rect[3] + 1, rect[0]:rect[2] + 1] = F.interpolate(
                    src, size=size, mode="bilinear", align_corners=True)
            out = self.module(tiled)[0, 0].numpy()
        return out, rects


@contextmanager
def _one_thread() -> Iterator[None]:
    """Run torch on one intra-op thread, whatever the process uses otherwise: on inputs this small
    a second thread costs more CPU than it saves (measured on a 140 px crop: 14 CPU-ms on one
    thread, 22 on two), and the stages already run one worker process per core."""
    import torch

    threads = torch.get_num_threads()
    if threads != 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if threads != 1:
            torch.set_num_threads(threads)


def _net() -> _Net:
    global _NET
    if _NET is None:
        from maskprep.resources import dlib_model_path
        _NET = _Net(read_weights(dlib_model_path(_MODEL_FILE)))
    return _NET


# ------------------------------------------------------------------------------------------------
# From the output map to boxes (loss_mmod's to_label)

def _round(v: float) -> int:
    """dlib's drectangle -> rectangle: halves away from zero (-4.5 -> -5), as std::round (a
    floor(v + 0.5) put boxes cut by the left or top border 1 px off dlib's)."""
    return int(math.copysign(math.floor(abs(v) + 0.5), v))


def _nearest_level(rects: list[Rect], x: float, y: float) -> int:
    best, best_d = 0, math.inf
    for i, (l, t, r, b) in enumerate(rects):
        if l <= x <= r and t <= y <= b:
            return i
        d = math.hypot(x - min(max(x, l), r), y - min(max(y, t), b))
        if d < best_d:
            best, best_d = i, d
    return best


def _overlaps(a: tuple[int, ...], b: tuple[int, ...], iou: float, covered: float) -> bool:
    """dlib's test_box_overlap on inclusive integer rectangles."""
    iw = min(a[2], b[2]) - max(a[0], b[0]) + 1
    ih = min(a[3], b[3]) - max(a[1], b[1]) + 1
    if iw <= 0 or ih <= 0:
        return False
    inner = iw * ih
    area_a = (a[2] - a[0] + 1) * (a[3] - a[1] + 1)
    area_b = (b[2] - b[0] + 1) * (b[3] - b[1] + 1)
    outer = (max(a[2], b[2]) - min(a[0], b[0]) + 1) * (max(a[3], b[3]) - min(a[1], b[1]) + 1)
    return inner / outer > iou or inner / area_a > covered or inner / area_b > covered


def _pyramid_up(image: np.ndarray) -> np.ndarray:
    """dlib's pyramid_up with pyramid_down<2>: the image resampled (bilinear, corners aligned) to
    (2h + 1) x (2w + 2), the size dlib's rect_up of the image rectangle gives."""
    import torch
    import torch.nn.functional as F

    h, w = image.shape[:2]
    src = torch.from_numpy(np.array(image, dtype=np.float32)).permute(2, 0, 1)[None]   # a copy
    with torch.inference_mode():
        up = F.interpolate(src, size=(2 * h + 1, 2 * w + 2), mode="bilinear", align_corners=True)
        return up[0].permute(1, 2, 0).round_().clamp_(0, 255).to(torch.uint8).numpy()


def detect(image: np.ndarray, upsample: int = 0,
           threshold: float = 0.0) -> list[tuple[tuple[float, float, float, float], float]]:
    """dlib's CNN face detector on an HxWx3 (or HxW gray) uint8 image: ``((left, top, right,
    bottom), confidence)`` per face, strongest first, right/bottom exclusive (as
    ``faces._run_detector`` reports every detector). Same boxes and confidences as
    ``dlib.cnn_face_detection_model_v1(...)(image, upsample)``: identical at upsample 0 in
    every case checked; with upsampling the doubled image can differ from dlib's by one grey
    level, so scores by a few thousandths. ``threshold``: raw network scores above it are
    candidates (dlib: 0)."""
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise ValueError(f"expected an HxWx3 or HxW uint8 image, got {image.dtype} {image.shape}")
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    with _one_thread():
        for _ in range(upsample):
            image = _pyramid_up(image)
        net = _net()
        scores, rects = net.scores(image)
    wt = net.weights
    rows, cols = np.nonzero(scores > threshold)
    half_w, half_h = (wt.window[0] - 1) / 2, (wt.window[1] - 1) / 2
    candidates = []
    for r, c in zip(rows.tolist(), cols.tolist()):
        x = c * net.cell_scale + net.cell_offset
        y = r * net.cell_scale + net.cell_offset
        level = _nearest_level(rects, x, y)
        box = [x - half_w - rects[level][0], y - half_h - rects[level][1],
               x + half_w - rects[level][0], y + half_h - rects[level][1]]
        for _ in range(level):   # pyramid_down<6>::point_up, once per level
            box = [v * _UP_RATIO + 0.3 for v in box]
        candidates.append((float(scores[r, c]), tuple(_round(v) for v in box)))
    candidates.sort(key=lambda d: -d[0])
    kept: list[tuple[float, tuple[int, ...]]] = []
    for score, box in candidates:
        if not any(_overlaps(k, box, wt.nms_iou, wt.nms_covered) for _, k in kept):
            kept.append((score, box))
    found = []
    for score, box in kept:
        if upsample:   # back to the caller's image: pyramid_down<2>::point_down per doubling
            fbox = [float(v) for v in box]
            for _ in range(upsample):
                fbox = [fbox[0] / 2 - 1.25, fbox[1] / 2 - 0.75, fbox[2] / 2 - 1.25, fbox[3] / 2 - 0.75]
            box = tuple(_round(v) for v in fbox)
        found.append(((float(box[0]), float(box[1]), float(box[2] + 1), float(box[3] + 1)), score))
    return found
