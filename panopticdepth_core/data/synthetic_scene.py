"""Synthetic street scenes, described: the primitives, objects, camera and lighting of one scene.

A ``SceneParams`` lists every primitive with its kind and parameters (see ``synthetic_geometry``), Cityscapes
train id, material and object (thing instance), exactly enough to re-derive the depth of any pixel; tests do.
``SceneBuilder`` is what the random layout (``synthetic_layout``, ``synthetic_things``) fills.
World frame: x forward along the street, y left, z up, origin on the ground below the camera.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .classes import CITYSCAPES_CLASSES
from .synthetic_geometry import KIND_BOX, NUM_PARAMS, Camera

# Cityscapes train ids, by name from data/classes.py.
_ID = {c.name: c.train_id for c in CITYSCAPES_CLASSES}
ROAD, SIDEWALK, BUILDING, WALL, FENCE = _ID["road"], _ID["sidewalk"], _ID["building"], _ID["wall"], _ID["fence"]
POLE, TRAFFIC_LIGHT, TRAFFIC_SIGN = _ID["pole"], _ID["traffic light"], _ID["traffic sign"]
VEGETATION, TERRAIN, SKY = _ID["vegetation"], _ID["terrain"], _ID["sky"]
PERSON, RIDER, CAR, TRUCK, BUS = _ID["person"], _ID["rider"], _ID["car"], _ID["truck"], _ID["bus"]
MOTORCYCLE, BICYCLE = _ID["motorcycle"], _ID["bicycle"]

X_BACK = -12.0  # the street starts this far behind the camera (nothing behind it is ever in view)
HFOV_RANGE_DEG = (60.0, 90.0)
MOUNT_HEIGHT_RANGE = (1.2, 2.2)
PITCH_RANGE_DEG = (-3.0, 5.0)  # positive = looking down
YAW_RANGE_DEG = (-4.0, 4.0)


@dataclass
class Primitive:
    """One analytic shape. ``params`` as documented per kind in ``synthetic_geometry``; colours are RGB in 0..1."""

    kind: int
    params: tuple[float, ...]
    class_id: int
    material: int
    color: tuple[float, float, float]
    color2: tuple[float, float, float] = (0.0, 0.0, 0.0)
    tex: tuple[float, float] = (0.0, 0.0)  # material-specific numbers (window period, hip height, ...)
    tex_seed: int = 0
    object_index: int = -1  # index into SceneParams.objects for things, -1 for stuff


@dataclass
class SceneObject:
    """A thing instance (made of one or more primitives)."""

    class_id: int
    label: str
    center: tuple[float, float, float]  # world position it was placed at (x = distance ahead)
    primitives: list[int] = field(default_factory=list)


@dataclass
class RoadLayout:
    """What the road texture needs: lane geometry and an optional zebra crossing."""

    center_y: float
    half_width: float
    lane_width: float
    num_lanes: int
    dash_period: float
    crosswalk_x: float | None


@dataclass
class Lighting:
    sun: tuple[float, float, float]  # unit vector towards the sun (world)
    sun_strength: float
    ambient: float
    sky_zenith: tuple[float, float, float]
    sky_horizon: tuple[float, float, float]
    haze_distance: float  # metres; colour -> haze with weight d / (d + haze_distance)
    noise: int  # +- amplitude of per-pixel sensor noise in 8-bit steps


@dataclass
class SceneParams:
    """Everything needed to render (or re-derive the ground truth of) one scene."""

    seed: int
    camera: Camera
    lighting: Lighting
    road: RoadLayout
    primitives: list[Primitive]
    objects: list[SceneObject]

    def arrays(self) -> dict[str, np.ndarray]:
        """Per-primitive tables: kinds (P,), params (P, NUM_PARAMS) float64 and params_t (NUM_PARAMS, P) float32,
        class_ids, object_index, materials, color / color2 (P, 3) float32, tex (P, 2) and tex_t (2, P) float32,
        tex_seed (P,) uint32."""
        prims = self.primitives
        params = np.zeros((len(prims), NUM_PARAMS), dtype=np.float64)
        for i, p in enumerate(prims):
            params[i, : len(p.params)] = p.params
        tex = np.array([p.tex for p in prims], dtype=np.float32).reshape(-1, 2)
        return {
            "kinds": np.array([p.kind for p in prims], dtype=np.int64),
            "params": params,
            "params_t": np.ascontiguousarray(params.T, dtype=np.float32),  # (NUM_PARAMS, P) for per-column gathers
            "class_ids": np.array([p.class_id for p in prims], dtype=np.int32),
            "object_index": np.array([p.object_index for p in prims], dtype=np.int32),
            "materials": np.array([p.material for p in prims], dtype=np.int64),
            "color": np.array([p.color for p in prims], dtype=np.float32).reshape(-1, 3),
            "color2": np.array([p.color2 for p in prims], dtype=np.float32).reshape(-1, 3),
            "tex": tex,
            "tex_t": np.ascontiguousarray(tex.T),
            "tex_seed": np.array([p.tex_seed for p in prims], dtype=np.uint32),
        }


# ------------------------------------------------------------------------------------------------------- palettes
FACADE_COLORS = ((0.78, 0.72, 0.62), (0.62, 0.60, 0.58), (0.62, 0.36, 0.28), (0.86, 0.84, 0.80), (0.80, 0.70, 0.45),
           (0.55, 0.62, 0.68), (0.45, 0.42, 0.40), (0.70, 0.55, 0.50))
CAR_PAINTS = ((0.90, 0.90, 0.90), (0.08, 0.08, 0.09), (0.62, 0.63, 0.66), (0.35, 0.36, 0.38), (0.65, 0.08, 0.07),
              (0.10, 0.20, 0.55), (0.06, 0.10, 0.25), (0.15, 0.35, 0.20), (0.80, 0.65, 0.20), (0.45, 0.28, 0.18))
CLOTHES_COLORS = ((0.10, 0.10, 0.12), (0.20, 0.22, 0.35), (0.55, 0.10, 0.12), (0.85, 0.85, 0.82), (0.30, 0.45, 0.30),
            (0.55, 0.45, 0.30), (0.25, 0.25, 0.28), (0.15, 0.30, 0.60), (0.75, 0.55, 0.20), (0.45, 0.20, 0.45))
SKIN_COLORS = ((0.87, 0.70, 0.58), (0.70, 0.50, 0.38), (0.45, 0.30, 0.22), (0.95, 0.80, 0.68))
HAIR_COLORS = ((0.08, 0.06, 0.05), (0.30, 0.20, 0.12), (0.60, 0.48, 0.30), (0.50, 0.50, 0.50))
SIGN_COLORS = ((0.10, 0.30, 0.70), (0.80, 0.10, 0.10), (0.95, 0.80, 0.10), (0.92, 0.92, 0.92), (0.10, 0.50, 0.20))


class SceneBuilder:
    """Collects primitives and objects while the layout is drawn; rejects overlapping footprints."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.primitives: list[Primitive] = []
        self.objects: list[SceneObject] = []
        self.footprints: list[tuple[float, float, float, float, float]] = []  # (cx, cy, hx, hy, yaw)

    def jitter(self, color: tuple[float, float, float], amount: float = 0.05) -> tuple[float, float, float]:
        c = np.clip(np.asarray(color) * (1.0 + self.rng.uniform(-amount, amount)) + self.rng.uniform(-amount, amount,
                                                                                                       3), 0.0, 1.0)
        return (float(c[0]), float(c[1]), float(c[2]))

    def pick(self, palette: tuple, amount: float = 0.05) -> tuple[float, float, float]:
        return self.jitter(palette[int(self.rng.integers(len(palette)))], amount)

    def add(self, kind: int, params: tuple[float, ...], class_id: int, material: int, color, color2=(0.0, 0.0, 0.0),
            tex=(0.0, 0.0), obj: int = -1) -> int:
        seed = int(self.rng.integers(0, 2**31))
        prim = Primitive(kind, tuple(float(v) for v in params), class_id, int(material), tuple(color), tuple(color2),
                         (float(tex[0]), float(tex[1])), seed, obj)
        self.primitives.append(prim)
        if obj >= 0:
            self.objects[obj].primitives.append(len(self.primitives) - 1)
        return len(self.primitives) - 1

    def box(self, x, y, z0, z1, hx, hy, yaw, class_id, material, color, color2=(0, 0, 0), tex=(0, 0), obj=-1) -> int:
        """Box standing on z0 up to z1, centred at (x, y), yawed."""
        return self.add(KIND_BOX, (x, y, 0.5 * (z0 + z1), hx, hy, 0.5 * (z1 - z0), yaw), class_id, material, color,
                        color2, tex, obj)

    def new_object(self, class_id: int, label: str, x: float, y: float, z: float = 0.0) -> int:
        self.objects.append(SceneObject(class_id, label, (float(x), float(y), float(z))))
        return len(self.objects) - 1

    def fits(self, cx: float, cy: float, hx: float, hy: float, yaw: float, margin: float = 0.25) -> bool:
        """True if the footprint misses every earlier one and keeps 0.8 m away from the camera."""
        rect = (cx, cy, hx + margin, hy + margin, yaw)
        if rects_overlap(rect, (0.0, 0.0, 0.8, 0.8, 0.0)):
            return False
        return not any(rects_overlap(rect, other) for other in self.footprints)

    def claim(self, cx: float, cy: float, hx: float, hy: float, yaw: float) -> None:
        self.footprints.append((cx, cy, hx, hy, yaw))


def rects_overlap(a: tuple, b: tuple) -> bool:
    """Separating-axis test of two yawed rectangles (cx, cy, hx, hy, yaw)."""
    axes = []
    for r in (a, b):
        c, s = math.cos(r[4]), math.sin(r[4])
        axes += [(c, s), (-s, c)]
    dx, dy = b[0] - a[0], b[1] - a[1]
    for ax, ay in axes:
        dist = abs(dx * ax + dy * ay)
        reach = 0.0
        for r in (a, b):
            c, s = math.cos(r[4]), math.sin(r[4])
            reach += r[2] * abs(c * ax + s * ay) + r[3] * abs(-s * ax + c * ay)
        if dist > reach:
            return False
    return True


def offset_xy(x: float, y: float, yaw: float, along: float, across: float = 0.0) -> tuple[float, float]:
    """(x, y) moved `along` the heading `yaw` and `across` it (to the left)."""
    c, s = math.cos(yaw), math.sin(yaw)
    return x + c * along - s * across, y + s * along + c * across
