"""Random street layouts: ``sample_scene(seed, size, focal)`` draws a whole scene from one seed.

Everything comes from ``numpy.random.Generator(PCG64(seed))``: camera (focal, height, pitch, yaw), lighting, a
straight street (road with lanes, curbs, sidewalks, grass strips), building rows with gaps (fences, walls, hedges),
far and side backdrops that bound every view (so all depths stay below ~220 m), poles with traffic signs and
lights, trees, and 0-20 thing instances (``synthetic_things``) at 2-80 m.
"""

from __future__ import annotations

import math

import numpy as np

from .synthetic_geometry import KIND_BOX, KIND_CYLINDER, KIND_ELLIPSOID, KIND_HPLANE, Camera
from .synthetic_profiles import SceneProfile, get_profile
from .synthetic_scene import (
    BUILDING,
    FACADE_COLORS,
    FENCE,
    HFOV_RANGE_DEG,
    MOUNT_HEIGHT_RANGE,
    PITCH_RANGE_DEG,
    POLE,
    ROAD,
    SIDEWALK,
    SIGN_COLORS,
    TERRAIN,
    TRAFFIC_LIGHT,
    TRAFFIC_SIGN,
    VEGETATION,
    WALL,
    X_BACK,
    YAW_RANGE_DEG,
    Lighting,
    RoadLayout,
    SceneBuilder,
    SceneParams,
    offset_xy,
)
from .synthetic_textures import Material
from .synthetic_things import place_things


def sample_scene(seed: int, size: tuple[int, int] = (256, 512), focal: float | None = None,
                 profile: str | SceneProfile = "streets",
                 hfov_range: tuple[float, float] = HFOV_RANGE_DEG) -> SceneParams:
    """Draw one scene. ``size`` is (height, width) in pixels; ``focal`` (pixels, fx = fy) fixes the intrinsics,
    otherwise the horizontal field of view is drawn uniformly from ``hfov_range`` degrees (default 60-90);
    ``profile`` says what the scene may contain (``synthetic_profiles``). The field of view is one draw of the
    stream whatever its range, so the rest of the scene (layout, things, lighting) does not depend on it."""
    profile = get_profile(profile)
    height, width = int(size[0]), int(size[1])
    if height < 8 or width < 8:
        raise ValueError(f"image size must be at least 8x8 pixels, got {height}x{width}")
    if focal is not None and not (focal > 0 and math.isfinite(focal)):
        raise ValueError(f"focal must be a positive number of pixels, got {focal}")
    low, high = (float(v) for v in hfov_range)
    if not 0 < low <= high < 180:
        raise ValueError(f"hfov_range must be (min, max) degrees with 0 < min <= max < 180, got {tuple(hfov_range)}")
    rng = np.random.Generator(np.random.PCG64(seed))
    b = SceneBuilder(rng)

    hfov = math.radians(rng.uniform(low, high))  # always drawn: the stream does not depend on `focal`
    f = float(focal) if focal is not None else (width / 2.0) / math.tan(hfov / 2.0)
    camera = Camera(width, height, f, f, (width - 1) / 2.0, (height - 1) / 2.0,
                    mount_height=float(rng.uniform(*MOUNT_HEIGHT_RANGE)),
                    pitch=math.radians(rng.uniform(*PITCH_RANGE_DEG)), yaw=math.radians(rng.uniform(*YAW_RANGE_DEG)))
    lighting = _sample_lighting(rng)

    # Street cross-section (y): road | grass strip? | sidewalk | facade line, on both sides.
    num_lanes = int(rng.integers(2, 5))
    lane_width = float(rng.uniform(2.8, 3.6))
    half = num_lanes * lane_width / 2.0
    road_cy = float(rng.uniform(-(half - 1.2), half - 1.2))
    x_far = float(rng.uniform(90.0, 200.0))
    curb = float(rng.uniform(0.10, 0.18))
    road = RoadLayout(road_cy, half, lane_width, num_lanes, float(rng.uniform(6.0, 12.0)),
                      float(rng.uniform(8.0, 40.0)) if rng.random() < 0.3 else None)
    x_mid, x_half = 0.5 * (X_BACK + x_far), 0.5 * (x_far - X_BACK)
    asphalt = float(rng.uniform(0.26, 0.46))
    b.add(KIND_HPLANE, (x_mid, road_cy, 0.0, x_half, half), ROAD, Material.ROAD,
          b.jitter((asphalt, asphalt, asphalt * 1.04), 0.025))
    ground = (TERRAIN, Material.TERRAIN, b.jitter((0.36, 0.46, 0.20), 0.1), b.jitter((0.45, 0.38, 0.28), 0.1), (0, 0))
    if not profile.terrain:  # paved open ground, drawn like the sidewalks (grass colours still drawn: same stream)
        ground = (SIDEWALK, Material.SIDEWALK, b.jitter((0.62, 0.60, 0.58), 0.08), b.jitter((0.72, 0.71, 0.69), 0.05),
                  (0.45, 0.0))
    b.add(KIND_HPLANE, (x_mid + 30.0, 0.0, -0.02, x_half + 40.0, 250.0), *ground)

    sides = []
    for side in (1.0, -1.0):
        edge = road_cy + side * half  # road edge (signed y)
        strip = float(rng.uniform(0.8, 2.0)) if rng.random() < 0.3 else 0.0
        strip = strip if profile.terrain else 0.0  # drawn in every profile: the same stream
        walk = float(rng.uniform(1.5, 5.0))
        sides.append((side, edge, strip, walk))
        inner = abs(edge)
        if strip > 0:
            b.box(x_mid, side * (inner + strip / 2), -0.1, curb - 0.05, x_half, strip / 2, 0.0, TERRAIN,
                  Material.TERRAIN, b.jitter((0.30, 0.48, 0.18), 0.1), b.jitter((0.42, 0.36, 0.25), 0.1))
        b.box(x_mid, side * (inner + strip + walk / 2), -0.1, curb, x_half, walk / 2, 0.0, SIDEWALK,
              Material.SIDEWALK, b.jitter((0.62, 0.60, 0.58), 0.08), b.jitter((0.72, 0.71, 0.69), 0.05),
              tex=(rng.uniform(0.3, 0.6), 0.0))

    # Backdrops: a far row across the street and a row behind each side (bound every ray that is not sky).
    far_class = BUILDING if rng.random() < 0.55 else VEGETATION
    _backdrop(b, x_far + 10.0, 0.0, 10.0, 260.0, float(rng.uniform(10.0, 35.0)), far_class)
    for side, edge, strip, walk in sides:
        facade = abs(edge) + strip + walk
        lateral = facade + float(rng.uniform(18.0, 45.0))
        _backdrop(b, x_mid, side * (lateral + 10.0), x_half, 10.0, float(rng.uniform(6.0, 25.0)),
                  VEGETATION if rng.random() < 0.6 else BUILDING)

    for side, edge, strip, walk in sides:
        park = rng.random() < 0.15 and profile.terrain
        facade = abs(edge) + strip + walk
        if not park:
            _building_row(b, side, facade, x_far, profile.barriers)
        if profile.street_furniture:
            _poles(b, side, abs(edge) + strip, curb, x_far)
        _trees(b, side, abs(edge), strip, facade, curb, x_far, park)

    place_things(b, road, sides, curb, profile)
    return SceneParams(int(seed), camera, lighting, road, b.primitives, b.objects)


def _sample_lighting(rng: np.random.Generator) -> Lighting:
    elevation = math.radians(rng.uniform(15.0, 70.0))
    azimuth = math.radians(rng.uniform(0.0, 360.0))
    sun = (math.cos(elevation) * math.cos(azimuth), math.cos(elevation) * math.sin(azimuth), math.sin(elevation))
    if rng.random() < 0.25:  # overcast
        grey = float(rng.uniform(0.68, 0.86))
        zenith = (grey, grey + 0.01, grey + 0.03)
        horizon = (grey + 0.06, grey + 0.06, grey + 0.06)
        sun_strength, ambient = float(rng.uniform(0.1, 0.3)), float(rng.uniform(0.6, 0.8))
    else:
        zenith = (float(rng.uniform(0.22, 0.42)), float(rng.uniform(0.42, 0.60)), float(rng.uniform(0.75, 0.95)))
        horizon = (float(rng.uniform(0.70, 0.85)), float(rng.uniform(0.78, 0.88)), float(rng.uniform(0.86, 0.95)))
        sun_strength, ambient = float(rng.uniform(0.55, 0.85)), float(rng.uniform(0.32, 0.48))
    return Lighting(sun, sun_strength, ambient, zenith, horizon, float(rng.uniform(150.0, 700.0)),
                    int(rng.integers(0, 3)))


def _backdrop(b: SceneBuilder, cx: float, cy: float, hx: float, hy: float, height: float, class_id: int) -> None:
    if class_id == BUILDING:
        b.box(cx, cy, -0.1, height, hx, hy, 0.0, BUILDING, Material.BUILDING, b.pick(FACADE_COLORS, 0.08),
              b.jitter((0.25, 0.30, 0.36), 0.1), tex=(b.rng.uniform(2.5, 4.0), float(b.rng.integers(0, 3))))
    else:
        b.box(cx, cy, -0.1, height, hx, hy, 0.0, VEGETATION, Material.FOLIAGE, b.jitter((0.24, 0.36, 0.14), 0.12),
              b.jitter((0.15, 0.25, 0.10), 0.1))


def _building_row(b: SceneBuilder, side: float, facade: float, x_far: float, barriers: bool) -> None:
    rng = b.rng
    x = X_BACK + float(rng.uniform(0.0, 8.0))
    while x < x_far - 2.0:
        if rng.random() < 0.15:  # a gap, sometimes closed by a fence, wall or hedge
            gap = float(rng.uniform(3.0, 15.0))
            gap = min(gap, x_far - x)
            choice = rng.random()
            if choice < 0.5:
                cls, mat = [(FENCE, Material.FENCE), (WALL, Material.WALL), (VEGETATION, Material.FOLIAGE)][
                    int(rng.integers(3))]
                if not barriers:
                    cls, mat = VEGETATION, Material.FOLIAGE
                thick = float(rng.uniform(0.1, 0.4)) if cls != VEGETATION else float(rng.uniform(0.6, 1.2))
                top = float(rng.uniform(1.0, 2.4))
                color = {FENCE: (0.55, 0.50, 0.45), WALL: (0.65, 0.63, 0.60), VEGETATION: (0.22, 0.38, 0.14)}[cls]
                b.box(x + gap / 2, side * (facade + thick / 2 + 0.05), -0.05, top, gap / 2, thick / 2, 0.0, cls, mat,
                      b.jitter(color, 0.1), b.jitter((0.15, 0.25, 0.10), 0.1))
            x += gap
            continue
        length = min(float(rng.uniform(6.0, 25.0)), x_far - x)
        setback = float(rng.uniform(0.0, 2.5)) if rng.random() < 0.4 else 0.0
        depth = float(rng.uniform(8.0, 16.0))
        top = float(rng.uniform(5.0, 28.0))
        b.box(x + length / 2, side * (facade + setback + depth / 2), -0.1, top, length / 2, depth / 2, 0.0, BUILDING,
              Material.BUILDING, b.pick(FACADE_COLORS, 0.08), b.jitter((0.22, 0.27, 0.33), 0.12),
              tex=(rng.uniform(2.5, 4.0), float(rng.integers(0, 3))))
        x += length


def _poles(b: SceneBuilder, side: float, walk_inner: float, curb: float, x_far: float) -> None:
    rng = b.rng
    x = float(rng.uniform(3.0, 20.0))
    while x < x_far - 5.0:
        y = side * (walk_inner + float(rng.uniform(0.3, 0.6)))
        r = float(rng.uniform(0.05, 0.12))
        top = curb + float(rng.uniform(3.5, 8.5))
        if b.fits(x, y, r, r, 0.0, margin=0.1):
            b.claim(x, y, r, r, 0.0)
            b.add(KIND_CYLINDER, (x, y, curb - 0.05, top, r), POLE, Material.POLE, b.jitter((0.45, 0.46, 0.47), 0.2))
            attach = rng.random()
            if attach < 0.35:  # a sign plate facing the street, or (sometimes) seen edge-on
                w, h = float(rng.uniform(0.45, 0.8)), float(rng.uniform(0.45, 0.8))
                z = min(top - h / 2, curb + float(rng.uniform(2.0, 3.0)))
                yaw = 0.0 if rng.random() < 0.8 else side * math.pi / 2
                sx, sy = offset_xy(x, y, yaw, -(r + 0.03))
                b.add(KIND_BOX, (sx, sy, z, 0.02, w / 2, h / 2, yaw), TRAFFIC_SIGN, Material.SIGN,
                      b.pick(SIGN_COLORS, 0.04), b.pick(SIGN_COLORS, 0.04), tex=(float(rng.integers(0, 3)), 0.0))
            elif attach < 0.5 and top - curb > 4.0:
                b.add(KIND_BOX, (x - r - 0.16, y, top - 0.6, 0.15, 0.15, 0.45, 0.0), TRAFFIC_LIGHT,
                      Material.TRAFFIC_LIGHT, b.jitter((0.12, 0.12, 0.12), 0.3), (0.0, 0.0, 0.0),
                      tex=(float(rng.integers(0, 3)), 0.0))
        x += float(rng.uniform(12.0, 40.0))


def _trees(b: SceneBuilder, side: float, edge: float, strip: float, facade: float, curb: float, x_far: float,
           park: bool) -> None:
    rng = b.rng
    if not park and rng.random() > 0.6:
        return
    x = float(rng.uniform(2.0, 15.0))
    while x < x_far - 3.0:
        if park:
            y, base = side * (facade + float(rng.uniform(1.0, 12.0))), -0.02
        elif strip > 0:
            y, base = side * (edge + strip / 2), curb - 0.05
        else:
            y, base = side * (facade - float(rng.uniform(0.5, 1.0))), curb
        trunk_r = float(rng.uniform(0.1, 0.25))
        trunk_top = base + float(rng.uniform(1.8, 3.5))
        rxy, rz = float(rng.uniform(1.2, 3.0)), float(rng.uniform(1.5, 3.5))
        crown_z = trunk_top + 0.6 * rz
        if math.hypot(x, y) > rxy + 0.5 and b.fits(x, y, trunk_r, trunk_r, 0.0, margin=0.1):
            b.claim(x, y, trunk_r, trunk_r, 0.0)
            b.add(KIND_CYLINDER, (x, y, base - 0.05, trunk_top + 0.3 * rz, trunk_r), VEGETATION, Material.TRUNK,
                  b.jitter((0.35, 0.25, 0.17), 0.1))
            b.add(KIND_ELLIPSOID, (x, y, crown_z, rxy, rxy, rz), VEGETATION, Material.FOLIAGE,
                  b.jitter((0.25, 0.42, 0.15), 0.12), b.jitter((0.12, 0.22, 0.08), 0.1))
        x += float(rng.uniform(7.0, 25.0))
