"""Training and test transforms: Sample -> TrainExample, with labels, depth and intrinsics kept consistent.

Geometry uses torchvision.transforms.v2 kernels on tv_tensors (``Image`` bilinear, ``Mask`` nearest): labels and
depth are resized with nearest neighbour, so no new label values or blended depths appear. Rules that the generic
transforms do not know, and that this module adds:

- depth targets are expressed for the model's canonical camera (MODEL.CANONICAL_FOCAL, fx in pixels at the
  network input): ``target = depth * fx_canonical / fx``, with fx the frame's focal length after every resize of
  the chain (an image enlarged by s looks like a scene s times closer, and a camera with half the canonical focal
  length sees things as the canonical camera would at twice the distance). So frames from any camera, at any
  resize, teach the same depth. For a frame whose stored camera is the canonical one this is exactly the released
  rule (depth divided by the resize factor). Frames without intrinsics, and models without a canonical focal,
  get the released rule: the stored camera is assumed to be the canonical one (logged once per data set);
- with INPUT.DEPTH_BOUND the target is clipped to the frame's largest valid depth, converted to the canonical
  camera (the released mapper clips to the frame's [min, max] after a resize, min being 0 on frames with invalid
  pixels, i.e. nearly all); without a resize the clip changes nothing;
- padding uses void (255) for semantic, 0 for instance and depth, 128 for the image (the released DPS mapper's
  value, close to the pixel mean);
- intrinsics follow every resize, crop, pad and flip (pixel centres at integer coordinates, OpenCV style).

Randomness comes only from torch's global generator, so the loader can make every sample reproducible by seeding
it per sample (see build.py).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as F

from ..modeling.types import InstanceTarget
from .classes import VOID_CLASS
from .example import TrainExample
from .sample import Sample

IMAGE_PAD_VALUE = 128
logger = logging.getLogger(__name__)
#: (transform, data set) pairs already told that frames without intrinsics fall back to the released depth rule.
_WARNED_NO_INTRINSICS: set[tuple[str, str]] = set()


@dataclass
class _Frame:
    """The working state of one frame inside the transform chain."""

    image: tv_tensors.Image  # (3, H, W) uint8
    semantic: tv_tensors.Mask  # (H, W) int64
    instance: tv_tensors.Mask  # (H, W) int64
    depth: tv_tensors.Mask | None  # (H, W) float32 metres as stored (resizes move pixels, not values), 0 invalid
    intrinsics: Tensor | None  # (3, 3) float64
    inverse_zoom: float = 1.0  # product over the resizes of the mean of w / new_w and h / new_h (released rule)
    depth_max: float = math.inf  # largest valid depth of the stored frame, metres (the DEPTH_BOUND clip)
    stored_focal: float | None = None  # fx of the stored frame (pixels), None when unknown or unusable

    @property
    def size(self) -> tuple[int, int]:
        return int(self.image.shape[-2]), int(self.image.shape[-1])


def usable_focal(value) -> float | None:
    """``value`` as a focal length in pixels, or None when it is not one (0, negative, NaN, Inf)."""
    try:
        fx = float(value)
    except (TypeError, ValueError):
        return None
    return fx if math.isfinite(fx) and fx > 0 else None


def _to_frame(sample: Sample) -> _Frame:
    image = torch.from_numpy(np.ascontiguousarray(sample.image)).permute(2, 0, 1).contiguous()  # (3, H, W)
    depth = None if sample.depth is None else tv_tensors.Mask(torch.from_numpy(sample.depth.astype(np.float32)))
    depth_max = math.inf
    if depth is not None:
        valid = depth > 0
        if bool(valid.any()):
            depth_max = float(depth[valid].max())
    k = None if sample.intrinsics is None else torch.as_tensor(sample.intrinsics, dtype=torch.float64)
    return _Frame(
        image=tv_tensors.Image(image),
        semantic=tv_tensors.Mask(torch.from_numpy(sample.semantic.astype(np.int64))),
        instance=tv_tensors.Mask(torch.from_numpy(sample.instance.astype(np.int64))),
        depth=depth,
        intrinsics=k,
        depth_max=depth_max,
        stored_focal=None if k is None else usable_focal(k[0, 0]),
    )


def depth_target(frame: _Frame, focal_canonical: float, depth_bound: bool = True) -> tuple[Tensor | None, bool]:
    """(the frame's depth target for the canonical camera, whether the frame's own camera was used).

    ``target = depth * focal_canonical / fx`` with fx = K[0, 0] after the chain's resizes; without a usable fx or
    without a canonical focal (``focal_canonical <= 0``), the released rule ``depth * inverse_zoom`` (the stored
    camera taken as the canonical one). With ``depth_bound`` clipped to the stored frame's largest depth, converted
    the same way (so the clip only acts on frames the chain shrank, as the released clip does).
    """
    if frame.depth is None:
        return None, False
    depth = frame.depth.as_subclass(Tensor)
    fx = None if frame.intrinsics is None else usable_focal(frame.intrinsics[0, 0])
    own_camera = focal_canonical > 0 and fx is not None and frame.stored_focal is not None
    if own_camera:
        factor, bound = focal_canonical / fx, frame.depth_max * focal_canonical / frame.stored_focal
    else:
        factor, bound = frame.inverse_zoom, frame.depth_max
    target = depth * factor if factor != 1.0 else depth.clone()
    if depth_bound and math.isfinite(bound):
        target = target.clamp(max=bound)
    return target, own_camera


# ------------------------------------------------------------------------------------------ geometric steps
def resize_frame(frame: _Frame, new_h: int, new_w: int) -> _Frame:
    """Resize everything to (new_h, new_w): image bilinear, labels and depth nearest, K scaled.

    Depth values stay metres of the stored camera here; ``depth_target`` converts them once at the end of the
    chain, from the final K (and ``inverse_zoom`` for the released rule).
    """
    h, w = frame.size
    if (new_h, new_w) == (h, w):
        return frame
    depth = None if frame.depth is None else F.resize(frame.depth, [new_h, new_w])
    k = frame.intrinsics
    if k is not None:
        sx, sy = new_w / w, new_h / h
        k = k.clone()
        k[0, 0] *= sx
        k[1, 1] *= sy
        k[0, 1] *= sx
        k[0, 2] = (k[0, 2] + 0.5) * sx - 0.5
        k[1, 2] = (k[1, 2] + 0.5) * sy - 0.5
    return replace(
        frame,
        image=F.resize(frame.image, [new_h, new_w], antialias=True),
        semantic=F.resize(frame.semantic, [new_h, new_w]),
        instance=F.resize(frame.instance, [new_h, new_w]),
        depth=depth,
        intrinsics=k,
        inverse_zoom=frame.inverse_zoom * 0.5 * (w / new_w + h / new_h),
    )


def crop_frame(frame: _Frame, top: int, left: int, height: int, width: int) -> _Frame:
    """Crop inside the frame (callers keep the box inside; padding is ``pad_frame``'s job)."""
    k = frame.intrinsics
    if k is not None:
        k = k.clone()
        k[0, 2] -= left
        k[1, 2] -= top
    return replace(
        frame,
        image=F.crop(frame.image, top, left, height, width),
        semantic=F.crop(frame.semantic, top, left, height, width),
        instance=F.crop(frame.instance, top, left, height, width),
        depth=None if frame.depth is None else F.crop(frame.depth, top, left, height, width),
        intrinsics=k,
    )


def pad_frame(frame: _Frame, left: int, top: int, right: int, bottom: int) -> _Frame:
    """Pad with void labels, zero depth and a grey image."""
    if left == top == right == bottom == 0:
        return frame
    padding = [left, top, right, bottom]
    k = frame.intrinsics
    if k is not None:
        k = k.clone()
        k[0, 2] += left
        k[1, 2] += top
    return replace(
        frame,
        image=F.pad(frame.image, padding, fill=IMAGE_PAD_VALUE),
        semantic=F.pad(frame.semantic, padding, fill=VOID_CLASS),
        instance=F.pad(frame.instance, padding, fill=0),
        depth=None if frame.depth is None else F.pad(frame.depth, padding, fill=0.0),
        intrinsics=k,
    )


def hflip_frame(frame: _Frame) -> _Frame:
    """Mirror left-right; the principal point mirrors too (cx -> W - 1 - cx)."""
    k = frame.intrinsics
    if k is not None:
        k = k.clone()
        k[0, 2] = frame.size[1] - 1 - k[0, 2]
    return replace(
        frame,
        image=F.horizontal_flip(frame.image),
        semantic=F.horizontal_flip(frame.semantic),
        instance=F.horizontal_flip(frame.instance),
        depth=None if frame.depth is None else F.horizontal_flip(frame.depth),
        intrinsics=k,
    )


# ------------------------------------------------------------------------------------------ random steps
def _randint(low: int, high: int) -> int:
    """Uniform integer in [low, high] (inclusive), from torch's global generator."""
    return low + int(torch.randint(0, high - low + 1, (1,)).item()) if high > low else low


def _uniform(low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand(()).item())


def shortest_edge_size(h: int, w: int, short: int, max_size: int) -> tuple[int, int]:
    """Detectron2's ResizeShortestEdge output size: short side -> ``short``, long side capped at ``max_size``."""
    scale = short / min(h, w)
    new_h, new_w = h * scale, w * scale
    if max_size > 0 and max(new_h, new_w) > max_size:
        scale = max_size / max(new_h, new_w)
        new_h, new_w = new_h * scale, new_w * scale
    return int(new_h + 0.5), int(new_w + 0.5)


class ResizeShortestEdge:
    """Resize so the short side is a size drawn from ``short_edges`` ("choice") or their span ("range")."""

    def __init__(self, short_edges: Sequence[int], max_size: int, sampling: str = "choice") -> None:
        if sampling not in ("choice", "range"):
            raise ValueError(f"INPUT.MIN_SIZE_TRAIN_SAMPLING must be 'choice' or 'range', got {sampling!r}")
        if sampling == "range" and len(short_edges) != 2:
            raise ValueError(f"INPUT.MIN_SIZE_TRAIN with sampling 'range' needs two values, got {list(short_edges)}")
        self.short_edges = [int(s) for s in short_edges]
        self.max_size = int(max_size)
        self.sampling = sampling

    def __call__(self, frame: _Frame) -> _Frame:
        if self.sampling == "range":
            short = _randint(min(self.short_edges), max(self.short_edges))
        else:
            short = self.short_edges[_randint(0, len(self.short_edges) - 1)]
        if short <= 0:
            return frame
        return resize_frame(frame, *shortest_edge_size(*frame.size, short, self.max_size))


class ResizeScale:
    """Fit the frame into ``target`` (h, w) times a random factor in [min_scale, max_scale] (Detectron2's ResizeScale).

    The DPS stage's INPUT.CROP.RESCALE (0.8, 1.2): with a 1024x2048 target and crop, frames are zoomed in or out by
    up to 20 % before the fixed-size crop/pad.
    """

    def __init__(self, min_scale: float, max_scale: float, target: tuple[int, int]) -> None:
        if not 0 < min_scale <= max_scale:
            raise ValueError(f"INPUT.CROP.RESCALE must be 0 < min <= max, got ({min_scale}, {max_scale})")
        self.min_scale, self.max_scale = float(min_scale), float(max_scale)
        self.target = (int(target[0]), int(target[1]))

    def __call__(self, frame: _Frame) -> _Frame:
        h, w = frame.size
        scale = _uniform(self.min_scale, self.max_scale)
        factor = min(self.target[0] * scale / h, self.target[1] * scale / w)
        return resize_frame(frame, max(1, round(h * factor)), max(1, round(w * factor)))


def _axis_offset(length: int, crop: int, lo: int, hi: int) -> int:
    """Random crop start along one axis, keeping [lo, hi] inside the crop if it fits, else its centre."""
    if crop >= length:
        return 0
    if hi - lo + 1 <= crop:
        first, last = max(0, hi - crop + 1), min(lo, length - crop)
    else:
        centre = (lo + hi) // 2
        first, last = max(0, centre - crop + 1), min(centre, length - crop)
    return _randint(first, last) if last >= first else _randint(0, length - crop)


class RandomCrop:
    """Detectron2's RandomCrop types; with ``instance_aware`` the crop holds a random instance.

    Instance-aware (PanopticFCN's maintainers' ``RandomCropWithInstance`` idea, extended): one thing instance is
    drawn; along each axis the crop contains the instance's whole extent when it fits, else its centre, so crops
    rarely cut the chosen object in half and never miss it. Frames without instances get a plain random crop.
    With ``pad_to_size`` (INPUT.CROP.WITH_PAD, "absolute" type) a frame smaller than the crop is padded, centred,
    to the crop size, as the released DPS mapper does.
    """

    TYPES = ("absolute", "relative", "relative_range", "absolute_range")

    def __init__(self, crop_type: str, crop_size: Sequence[float], instance_aware: bool = False,
                 pad_to_size: bool = False) -> None:
        if crop_type not in self.TYPES:
            raise ValueError(f"INPUT.CROP.TYPE must be one of {self.TYPES}, got {crop_type!r}")
        if len(crop_size) != 2:
            raise ValueError(f"INPUT.CROP.SIZE must hold two values, got {list(crop_size)}")
        self.crop_type = crop_type
        self.crop_size = tuple(crop_size)
        self.instance_aware = instance_aware
        self.pad_to_size = pad_to_size and crop_type == "absolute"

    def crop_shape(self, h: int, w: int) -> tuple[int, int]:
        ch, cw = self.crop_size
        if self.crop_type == "absolute":
            return min(h, int(ch)), min(w, int(cw))
        if self.crop_type == "relative":
            return int(h * ch + 0.5), int(w * cw + 0.5)
        if self.crop_type == "relative_range":
            rh, rw = _uniform(ch, 1.0), _uniform(cw, 1.0)
            return int(h * rh + 0.5), int(w * rw + 0.5)
        return _randint(min(h, int(ch)), min(h, int(cw))), _randint(min(w, int(ch)), min(w, int(cw)))

    def __call__(self, frame: _Frame) -> _Frame:
        h, w = frame.size
        crop_h, crop_w = self.crop_shape(h, w)
        box = self._instance_box(frame.instance) if self.instance_aware else None
        if box is None:
            top, left = _randint(0, h - crop_h), _randint(0, w - crop_w)
        else:
            y0, y1, x0, x1 = box
            top, left = _axis_offset(h, crop_h, y0, y1), _axis_offset(w, crop_w, x0, x1)
        if (crop_h, crop_w) != (h, w):
            frame = crop_frame(frame, top, left, crop_h, crop_w)
        if self.pad_to_size:
            pad_h, pad_w = max(0, int(self.crop_size[0]) - crop_h), max(0, int(self.crop_size[1]) - crop_w)
            frame = pad_frame(frame, pad_w // 2, pad_h // 2, pad_w - pad_w // 2, pad_h - pad_h // 2)
        return frame

    @staticmethod
    def _instance_box(instance: Tensor) -> tuple[int, int, int, int] | None:
        ids = torch.unique(instance)
        ids = ids[ids > 0]
        if ids.numel() == 0:
            return None
        mask = instance == ids[_randint(0, ids.numel() - 1)]
        rows = torch.nonzero(mask.any(dim=1)).flatten()
        cols = torch.nonzero(mask.any(dim=0)).flatten()
        return int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])


class RandomHorizontalFlip:
    def __init__(self, prob: float = 0.5) -> None:
        self.prob = prob

    def __call__(self, frame: _Frame) -> _Frame:
        return hflip_frame(frame) if float(torch.rand(()).item()) < self.prob else frame


# ------------------------------------------------------------------------------------------ photometric
_GRAY = torch.tensor([0.299, 0.587, 0.114], dtype=torch.float64)
_RGB_TO_YIQ = torch.tensor(
    [[0.299, 0.587, 0.114], [0.595716, -0.274453, -0.321263], [0.211456, -0.522591, 0.311135]], dtype=torch.float64
)


def _hue_matrix(turns: float) -> Tensor:
    """RGB -> RGB rotation of the chroma plane in YIQ by ``turns`` of a full circle."""
    c, s = math.cos(2 * math.pi * turns), math.sin(2 * math.pi * turns)
    rot = torch.tensor([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]], dtype=torch.float64)
    return torch.linalg.inv(_RGB_TO_YIQ) @ rot @ _RGB_TO_YIQ


class ColorAugSSD:
    """SSD-style photometric distortion with the released ColorAugSSDTransform's ranges, fused into one pass.

    Each of brightness (+-32), contrast (x0.5..1.5), saturation (x0.5..1.5) and hue (+-0.1 turn, i.e. +-18 in
    OpenCV's 0..180 units) applies with probability 0.5, contrast first or last at random. All four are affine in
    RGB, so they are composed into one 3x3 matrix and offset and applied once (torchvision's per-op kernels take
    about 2.5 s per 2 MP image for hue alone on 2 cores); hue rotates the chroma plane in YIQ instead of shifting
    HSV hue, and intermediate clipping is skipped: both are small departures from the original that do not matter
    for augmentation.
    """

    def __init__(self, brightness_delta: float = 32.0, contrast: tuple[float, float] = (0.5, 1.5),
                 saturation: tuple[float, float] = (0.5, 1.5), hue_turns: float = 0.1) -> None:
        self.brightness_delta = brightness_delta
        self.contrast = contrast
        self.saturation = saturation
        self.hue_turns = hue_turns

    def __call__(self, frame: _Frame) -> _Frame:
        image = frame.image
        pixels = image.reshape(3, -1).to(torch.float32)  # (3, H*W)
        mean = pixels.mean(dim=1).to(torch.float64)  # (3,)
        a = torch.eye(3, dtype=torch.float64)
        c = torch.zeros(3, dtype=torch.float64)

        def coin() -> bool:
            return bool(torch.rand(()).item() < 0.5)

        if coin():
            c = c + _uniform(-self.brightness_delta, self.brightness_delta)
        contrast_first = coin()
        steps = ["contrast", "saturation", "hue"] if contrast_first else ["saturation", "hue", "contrast"]
        for step in steps:
            if not coin():
                continue
            if step == "contrast":
                alpha = _uniform(*self.contrast)
                grey_mean = float(_GRAY @ (a @ mean + c))
                a, c = alpha * a, alpha * c + (1 - alpha) * grey_mean
            elif step == "saturation":
                alpha = _uniform(*self.saturation)
                m = alpha * torch.eye(3, dtype=torch.float64) + (1 - alpha) * torch.ones(3, 1, dtype=torch.float64) * _GRAY
                a, c = m @ a, m @ c
            else:
                m = _hue_matrix(_uniform(-self.hue_turns, self.hue_turns))
                a, c = m @ a, m @ c
        if torch.equal(a, torch.eye(3, dtype=torch.float64)) and not c.any():
            return frame
        out = torch.addmm(c.to(torch.float32)[:, None], a.to(torch.float32), pixels)  # (3, H*W)
        out = out.clamp_(0, 255).round_().to(torch.uint8).reshape(image.shape)
        return replace(frame, image=tv_tensors.Image(out))


# ------------------------------------------------------------------------------------------ composition
class SampleTransform:
    """A chain of frame steps, applied to a ``Sample``, returning a ``TrainExample`` whose depth target is for the
    canonical camera ``focal_canonical`` (see ``depth_target``; 0: the released rule)."""

    def __init__(self, steps: Sequence, name: str = "", focal_canonical: float = 0.0, depth_bound: bool = True,
                 dataset: str = "") -> None:
        self.steps = list(steps)
        self.name = name
        self.focal_canonical = float(focal_canonical)
        self.depth_bound = bool(depth_bound)
        self.dataset = dataset  # named in the one log line about frames without intrinsics

    def __call__(self, sample: Sample) -> TrainExample:
        frame = _to_frame(sample)
        for step in self.steps:
            frame = step(frame)
        depth, own_camera = depth_target(frame, self.focal_canonical, self.depth_bound)
        if depth is not None and self.focal_canonical > 0 and not own_camera:
            self._say_no_intrinsics(sample)
        return TrainExample(
            image=frame.image.as_subclass(Tensor).contiguous(),
            target=InstanceTarget(
                semantic=frame.semantic.as_subclass(Tensor).contiguous(),
                instance=frame.instance.as_subclass(Tensor).contiguous(),
                depth=None if depth is None else depth.contiguous(),
            ),
            intrinsics=frame.intrinsics,
            name=sample.name,
            sequence=sample.sequence,
            frame=sample.frame,
            orig_size=(int(sample.image.shape[0]), int(sample.image.shape[1])),
        )

    def _say_no_intrinsics(self, sample: Sample) -> None:
        key = (self.name, self.dataset)
        if key in _WARNED_NO_INTRINSICS:
            return
        _WARNED_NO_INTRINSICS.add(key)
        logger.warning(
            "data set %r: frame %r has no usable intrinsics (fx); its depth targets assume the stored camera is "
            "the model's canonical one (MODEL.CANONICAL_FOCAL %g px), the released rule. Give the data set camera "
            "files for depth from several cameras. (Said once per data set.)",
            self.dataset or "?", sample.name, self.focal_canonical)

    def __repr__(self) -> str:
        return f"SampleTransform({', '.join(type(s).__name__ for s in self.steps)})"


def build_train_transform(cfg, dataset: str = "") -> SampleTransform:
    """INPUT.* -> the training chain: resize (multi-scale or RESCALE), crop (+pad), flip, colour; depth targets for
    MODEL.CANONICAL_FOCAL."""
    inp = cfg.INPUT
    steps: list = []
    crop = inp.CROP
    rescale = tuple(crop.RESCALE)
    if crop.ENABLED and rescale[0] > 0:
        steps.append(ResizeScale(rescale[0], rescale[1], tuple(crop.SIZE)))
    elif len(inp.MIN_SIZE_TRAIN) > 0:
        steps.append(ResizeShortestEdge(inp.MIN_SIZE_TRAIN, inp.MAX_SIZE_TRAIN, inp.MIN_SIZE_TRAIN_SAMPLING))
    if crop.ENABLED:
        steps.append(RandomCrop(crop.TYPE, tuple(crop.SIZE), crop.INSTANCE_AWARE, crop.WITH_PAD))
    if inp.FLIP:
        steps.append(RandomHorizontalFlip(0.5))
    if inp.COLOR_AUG:
        steps.append(ColorAugSSD())
    return SampleTransform(steps, name="train", focal_canonical=cfg.MODEL.CANONICAL_FOCAL,
                           depth_bound=inp.DEPTH_BOUND, dataset=dataset)


def build_test_transform(cfg, dataset: str = "") -> SampleTransform:
    """INPUT.MIN_SIZE_TEST / MAX_SIZE_TEST shortest-edge resize (0: keep the stored size)."""
    inp = cfg.INPUT
    steps = []
    if inp.MIN_SIZE_TEST > 0:
        steps.append(ResizeShortestEdge([inp.MIN_SIZE_TEST], inp.MAX_SIZE_TEST, "choice"))
    return SampleTransform(steps, name="test", focal_canonical=cfg.MODEL.CANONICAL_FOCAL,
                           depth_bound=inp.DEPTH_BOUND, dataset=dataset)


def build_transform(cfg, is_train: bool, dataset: str = "") -> SampleTransform:
    return build_train_transform(cfg, dataset) if is_train else build_test_transform(cfg, dataset)
