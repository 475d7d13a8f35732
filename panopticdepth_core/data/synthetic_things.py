"""Thing instances for the synthetic streets: cars, trucks, buses, pedestrians, riders, bicycles, motorcycles.

Each is one ``SceneObject`` (one instance) made of boxes, cylinders, ellipsoids and discs; a rider and the bicycle
or motorcycle under them are two instances, as in Cityscapes. Placement rejects overlapping footprints, so
objects occlude each other only in the image.
"""

from __future__ import annotations

import math

import numpy as np

from .synthetic_geometry import KIND_BOX, KIND_CYLINDER, KIND_DISC, KIND_ELLIPSOID
from .synthetic_profiles import THING_KINDS, SceneProfile
from .synthetic_scene import (
    BICYCLE,
    BUS,
    CAR,
    CAR_PAINTS,
    CLOTHES_COLORS,
    FACADE_COLORS,
    HAIR_COLORS,
    MOTORCYCLE,
    PERSON,
    RIDER,
    SKIN_COLORS,
    TRUCK,
    RoadLayout,
    SceneBuilder,
    offset_xy,
)
from .synthetic_textures import Material

_THING_WEIGHTS = np.array([0.42, 0.24, 0.08, 0.06, 0.08, 0.05, 0.04])  # per THING_KINDS entry


def place_things(b: SceneBuilder, road: RoadLayout, sides: list, curb: float, profile: SceneProfile) -> None:
    """Up to ``profile.max_things`` instances of the profile's kinds; ``sides``: (side sign, road edge y, grass
    strip width, sidewalk width) each."""
    rng = b.rng
    max_things = profile.max_things
    slots = int(rng.integers(0, max_things + 1))
    weights = _THING_WEIGHTS * np.array([kind in profile.thing_kinds for kind in THING_KINDS])
    weights = weights / weights.sum()
    attempts = 0
    while slots > 0 and attempts < 4 * max_things:
        attempts += 1
        kind = THING_KINDS[int(rng.choice(len(THING_KINDS), p=weights))]
        need = 2 if kind.startswith("rider") else 1
        if need > slots:
            continue
        lo, hi = profile.thing_distance
        x = lo + (hi - lo) * float(rng.random()) ** 1.3
        if kind in ("car", "truck", "bus"):
            placed = _vehicle(b, kind, x, road)
        elif kind == "person":
            placed = _pedestrian(b, x, road, sides, curb)
        elif kind == "bicycle":
            placed = _parked_bicycle(b, x, sides, curb)
        else:
            placed = _rider(b, kind, x, road)
        if placed:
            slots -= need


def _lane_center(road: RoadLayout, lane: int) -> float:
    return road.center_y - road.half_width + road.lane_width * (lane + 0.5)


def _vehicle(b: SceneBuilder, kind: str, x: float, road: RoadLayout) -> bool:
    rng = b.rng
    if kind == "car":
        length, width, height = rng.uniform(3.8, 4.9), rng.uniform(1.7, 1.95), rng.uniform(1.35, 1.65)
    elif kind == "truck":
        length, width, height = rng.uniform(6.5, 10.5), rng.uniform(2.3, 2.55), rng.uniform(3.0, 3.9)
    else:
        length, width, height = rng.uniform(10.0, 12.5), rng.uniform(2.5, 2.55), rng.uniform(2.9, 3.3)
    lane = int(rng.integers(road.num_lanes))
    y = _lane_center(road, lane) + float(rng.normal(0.0, 0.2))
    yaw = 0.0 if y < road.center_y else math.pi
    if rng.random() < 0.2:
        yaw = math.pi - yaw
    parked = kind != "bus" and rng.random() < 0.3
    if parked:
        side = 1.0 if rng.random() < 0.5 else -1.0
        y = road.center_y + side * (road.half_width - width / 2 - 0.2)
    yaw += float(rng.normal(0.0, 0.04))
    if kind == "car" and not parked and rng.random() < 0.05:
        yaw = math.pi / 2 * (1 if rng.random() < 0.5 else -1) + float(rng.normal(0.0, 0.2))
    if not b.fits(x, y, length / 2, width / 2, yaw):
        return False
    b.claim(x, y, length / 2, width / 2, yaw)
    cls = {"car": CAR, "truck": TRUCK, "bus": BUS}[kind]
    obj = b.new_object(cls, kind, x, y)
    paint = b.pick(CAR_PAINTS, 0.05)
    glass = b.jitter((0.10, 0.12, 0.15), 0.1)
    if kind == "car":
        body_top = 0.1 + 0.58 * height
        b.box(x, y, 0.08, body_top, length / 2, width / 2, yaw, CAR, Material.VEHICLE_BODY, paint, obj=obj)
        cab_len = length * float(rng.uniform(0.45, 0.6))
        cx, cy = offset_xy(x, y, yaw, -length * float(rng.uniform(0.0, 0.12)))
        b.box(cx, cy, body_top, height, cab_len / 2, width / 2 - 0.06, yaw, CAR, Material.VEHICLE_CABIN, paint, glass,
              obj=obj)
    elif kind == "truck":
        cab_len = float(rng.uniform(2.0, 2.4))
        cargo_len = length - cab_len - 0.1
        cx, cy = offset_xy(x, y, yaw, length / 2 - cab_len / 2)
        b.box(cx, cy, 0.1, min(height, float(rng.uniform(2.6, 3.1))), cab_len / 2, width / 2 - 0.05, yaw, TRUCK,
              Material.VEHICLE_BAND, paint, glass, tex=(1.45, 2.3), obj=obj)
        gx, gy = offset_xy(x, y, yaw, -length / 2 + cargo_len / 2)
        b.box(gx, gy, 0.1, height, cargo_len / 2, width / 2, yaw, TRUCK, Material.CARGO, b.pick(FACADE_COLORS[:4], 0.1),
              obj=obj)
    else:
        b.box(x, y, 0.1, height, length / 2, width / 2, yaw, BUS, Material.VEHICLE_BAND, paint, glass, tex=(1.1, 2.4),
              obj=obj)
    return True


def _person(b: SceneBuilder, x: float, y: float, base: float, height: float, cls: int, obj: int,
            radius: float | None = None, body_bottom: float | None = None) -> None:
    rng = b.rng
    r = float(rng.uniform(0.17, 0.24)) if radius is None else radius
    head_r = 0.11
    bottom = base if body_bottom is None else body_bottom
    hip = base + 0.47 * height
    b.add(KIND_CYLINDER, (x, y, bottom, base + height - 2 * head_r - 0.02, r), cls, Material.PERSON,
          b.pick(CLOTHES_COLORS, 0.08), b.pick(CLOTHES_COLORS, 0.08), tex=(hip, base), obj=obj)
    head_z = base + height - head_r
    b.add(KIND_ELLIPSOID, (x, y, head_z, head_r, head_r, head_r * 1.1), cls, Material.HEAD, b.pick(SKIN_COLORS, 0.05),
          b.pick(HAIR_COLORS, 0.05), tex=(head_z + head_r * float(rng.uniform(0.1, 0.5)), 0.0), obj=obj)


def _pedestrian(b: SceneBuilder, x: float, road: RoadLayout, sides: list, curb: float) -> bool:
    rng = b.rng
    if rng.random() < 0.75:
        side, edge, strip, walk = sides[int(rng.integers(2))]
        y = side * (abs(edge) + strip + float(rng.uniform(0.3, walk - 0.3)))
        base = curb
    else:
        y = road.center_y + float(rng.uniform(-road.half_width + 0.4, road.half_width - 0.4))
        base = 0.0
    if not b.fits(x, y, 0.25, 0.25, 0.0, margin=0.1):
        return False
    b.claim(x, y, 0.25, 0.25, 0.0)
    obj = b.new_object(PERSON, "person", x, y, base)
    _person(b, x, y, base, float(rng.uniform(1.5, 1.92)), PERSON, obj)
    return True


def _bike(b: SceneBuilder, x: float, y: float, yaw: float, base: float, motor: bool) -> int:
    rng = b.rng
    cls = MOTORCYCLE if motor else BICYCLE
    obj = b.new_object(cls, "motorcycle" if motor else "bicycle", x, y, base)
    r = float(rng.uniform(0.29, 0.33)) if motor else float(rng.uniform(0.31, 0.35))
    axle = 0.7 if motor else 0.52
    frame_color = b.pick(CAR_PAINTS, 0.08)
    for along in (-axle, axle):
        wx, wy = offset_xy(x, y, yaw, along)
        b.add(KIND_DISC, (wx, wy, base + r, r, yaw), cls, Material.WHEEL, (0.05, 0.05, 0.05), (0.45, 0.45, 0.47),
              obj=obj)
    if motor:
        b.add(KIND_BOX, (x, y, base + 0.6, 0.6, 0.17, 0.25, yaw), cls, Material.BIKE_FRAME, frame_color, obj=obj)
    else:
        b.add(KIND_BOX, (x, y, base + r + 0.2, 0.42, 0.025, 0.2, yaw), cls, Material.BIKE_FRAME, frame_color, obj=obj)
    return obj


def _parked_bicycle(b: SceneBuilder, x: float, sides: list, curb: float) -> bool:
    rng = b.rng
    side, edge, strip, walk = sides[int(rng.integers(2))]
    y = side * (abs(edge) + strip + float(rng.uniform(0.5, max(0.6, walk - 0.5))))
    yaw = float(rng.uniform(0.0, 2 * math.pi))
    if not b.fits(x, y, 0.9, 0.3, yaw, margin=0.1):
        return False
    b.claim(x, y, 0.9, 0.3, yaw)
    _bike(b, x, y, yaw, curb, motor=False)
    return True


def _rider(b: SceneBuilder, kind: str, x: float, road: RoadLayout) -> bool:
    rng = b.rng
    motor = kind == "rider_motorcycle"
    side = 1.0 if rng.random() < 0.5 else -1.0
    if motor:
        y = _lane_center(road, int(rng.integers(road.num_lanes))) + float(rng.normal(0.0, 0.3))
    else:
        y = road.center_y + side * (road.half_width - float(rng.uniform(0.5, 1.2)))
    yaw = (0.0 if y < road.center_y else math.pi) + float(rng.normal(0.0, 0.05))
    half_len = 1.05 if motor else 0.9
    if not b.fits(x, y, half_len, 0.35, yaw):
        return False
    b.claim(x, y, half_len, 0.35, yaw)
    _bike(b, x, y, yaw, 0.0, motor)
    obj = b.new_object(RIDER, "rider", x, y)
    px, py = offset_xy(x, y, yaw, -0.15)
    seat = 0.75 if motor else 0.85
    _person(b, px, py, seat - 0.75, float(rng.uniform(1.6, 1.85)), RIDER, obj, radius=0.2, body_bottom=seat - 0.2)
    return True
