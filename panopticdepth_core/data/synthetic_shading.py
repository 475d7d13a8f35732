"""Lighting for the synthetic scenes: z-buffer + textures -> an 8-bit RGB image.

Lambertian shading with one sun and a hemispherical ambient term, hard sun shadows of boxes and cylinders cast on
the ground, distance haze, a sky gradient with clouds and a little sensor noise. Like the geometry, all per-pixel
arithmetic avoids transcendental functions so that images are the same on every machine.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from .synthetic_geometry import (
    KIND_BOX,
    KIND_CYLINDER,
    KIND_ELLIPSOID,
    NUM_PARAMS,
    Camera,
    bounding_corners,
    screen_rects,
    surface_normals,
)
from .synthetic_textures import Hits, albedo, value_noise

if TYPE_CHECKING:
    from .synthetic_scene import Lighting, RoadLayout

_F = np.float32


# ------------------------------------------------------------------------------------------------------ shadows
def shadow_casters(kinds: np.ndarray, params: np.ndarray) -> np.ndarray:
    """(C, 8) upright boxes (cx, cy, z0, z1, hx, hy, cos yaw, sin yaw) of the primitives that cast sun shadows.

    Boxes (except street-long ones: road side boxes and backdrops), cylinders as their enclosing boxes, and tree
    crowns as boxes somewhat smaller than the crown.
    """
    rows = []
    for k, p in zip(kinds, params):
        if k == KIND_BOX and 2 * p[5] >= 0.3 and p[3] < 50 and p[4] < 50:
            rows.append((p[0], p[1], p[2] - p[5], p[2] + p[5], p[3], p[4], math.cos(p[6]), math.sin(p[6])))
        elif k == KIND_CYLINDER:
            rows.append((p[0], p[1], p[2], p[3], p[4], p[4], 1.0, 0.0))
        elif k == KIND_ELLIPSOID and p[3] > 0.5:
            rows.append((p[0], p[1], p[2] - 0.7 * p[5], p[2] + 0.7 * p[5], 0.75 * p[3], 0.75 * p[4], 1.0, 0.0))
    return np.array(rows, dtype=np.float64).reshape(-1, 8)


def _shadow_windows(camera: Camera, casters: np.ndarray, sun: tuple[float, float, float]) -> np.ndarray:
    """(C, 4) pixel rectangles (v0, v1, u0, u1) that can contain each caster's shadow on the ground."""
    sx, sy = sun[0] / sun[2], sun[1] / sun[2]
    c, s = casters[:, 6], casters[:, 7]
    reach_x = np.abs(c) * casters[:, 4] + np.abs(s) * casters[:, 5]  # (C,) footprint AABB half sizes
    reach_y = np.abs(s) * casters[:, 4] + np.abs(c) * casters[:, 5]
    top = casters[:, 3] + 0.05
    x0 = np.minimum(casters[:, 0] - reach_x, casters[:, 0] - reach_x - sx * top)
    x1 = np.maximum(casters[:, 0] + reach_x, casters[:, 0] + reach_x - sx * top)
    y0 = np.minimum(casters[:, 1] - reach_y, casters[:, 1] - reach_y - sy * top)
    y1 = np.maximum(casters[:, 1] + reach_y, casters[:, 1] + reach_y - sy * top)
    n = len(casters)
    boxes = np.zeros((n, NUM_PARAMS))
    boxes[:, 0], boxes[:, 1], boxes[:, 2] = 0.5 * (x0 + x1), 0.5 * (y0 + y1), 0.5 * (GROUND_MAX_Z - 0.05)
    boxes[:, 3], boxes[:, 4], boxes[:, 5] = 0.5 * (x1 - x0), 0.5 * (y1 - y0), 0.5 * (GROUND_MAX_Z + 0.05)
    return screen_rects(camera, bounding_corners(np.full(n, KIND_BOX), boxes))


GROUND_MAX_Z = 0.5  # shadows are received by near-horizontal surfaces up to this height (road, walks, terrain)


def ground_shadow(camera: Camera, px: np.ndarray, py: np.ndarray, pz: np.ndarray, receiver: np.ndarray,
                  sun: tuple[float, float, float], casters: np.ndarray) -> np.ndarray:
    """(H, W) bool: receiver pixels whose ray towards the sun passes through a caster box.

    px, py, pz: (H, W) hit points; receiver: (H, W) bool. A 2D slab test per caster along the sun ray, with the
    ray parameter h (height gained) limited to the caster's height range, over the caster's shadow window only.
    """
    shadow = np.zeros(receiver.shape, dtype=bool)
    if sun[2] <= 0.05 or len(casters) == 0:
        return shadow
    sx, sy = sun[0] / sun[2], sun[1] / sun[2]
    for (cx, cy, z0, z1, hx, hy, cos_y, sin_y), (v0, v1, u0, u1) in zip(casters, _shadow_windows(camera, casters,
                                                                                                    sun)):
        if v0 >= v1 or u0 >= u1:
            continue
        win = (slice(v0, v1), slice(u0, u1))
        wz = pz[win]
        lo = np.maximum(_F(z0) - wz, _F(0.0))
        hi = _F(z1 - 0.01) - wz
        ox, oy = px[win] - _F(cx), py[win] - _F(cy)
        lx, ly = _F(cos_y) * ox + _F(sin_y) * oy, _F(cos_y) * oy - _F(sin_y) * ox
        for o, d, half in ((lx, cos_y * sx + sin_y * sy, hx), (ly, cos_y * sy - sin_y * sx, hy)):
            if abs(d) < 1e-9:
                hi = np.where(np.abs(o) <= _F(half), hi, _F(-1.0))
                continue
            t1 = (_F(-half) - o) * _F(1.0 / d)
            t2 = (_F(half) - o) * _F(1.0 / d)
            lo = np.maximum(lo, np.minimum(t1, t2))
            hi = np.minimum(hi, np.maximum(t1, t2))
        shadow[win] |= (lo <= hi) & receiver[win]
    return shadow


# ------------------------------------------------------------------------------------------------ the whole image
def shade_image(camera: Camera, lighting: Lighting, road: RoadLayout, tables: dict, depth: np.ndarray, prim_map: np.ndarray,
                rays: tuple[np.ndarray, np.ndarray, np.ndarray], noise_seed: int) -> np.ndarray:
    """Z-buffer (depth (H, W) float32 +inf = sky, prim_map (H, W) int16) -> (H, W, 3) uint8 RGB."""
    h, w = depth.shape
    dx, dy, dz = rays
    o = camera.origin
    with np.errstate(invalid="ignore"):  # sky pixels: inf * direction
        full_x, full_y, full_z = _F(o[0]) + depth * dx, _F(o[1]) + depth * dy, _F(o[2]) + depth * dz  # (H, W)
    flat_ids = prim_map.reshape(-1)
    idx = np.flatnonzero(flat_ids >= 0)
    t = depth.reshape(-1)[idx]
    px, py, pz = full_x.reshape(-1)[idx], full_y.reshape(-1)[idx], full_z.reshape(-1)[idx]
    rdx, rdy = dx.reshape(-1)[idx], dy.reshape(-1)[idx]
    prim = flat_ids[idx].astype(np.intp)
    nx, ny, nz = surface_normals(tables["kinds"], tables["params"], prim, px, py, pz, rdx, rdy)
    color = albedo(Hits(px, py, pz, nx, ny, nz, prim, tables, road))

    sun = lighting.sun
    lambert = np.maximum(nx * _F(sun[0]) + ny * _F(sun[1]) + nz * _F(sun[2]), _F(0.0))
    receiver = (nz > _F(0.9)) & (pz < _F(GROUND_MAX_Z))
    if receiver.any():
        recv = np.zeros(h * w, dtype=bool)
        recv[idx] = receiver
        casters = shadow_casters(tables["kinds"], tables["params"])
        shadow = ground_shadow(camera, full_x, full_y, full_z, recv.reshape(h, w), sun, casters)
        lambert[shadow.reshape(-1)[idx]] = 0.0
    light = _F(lighting.ambient) * (_F(0.8) + _F(0.2) * nz) + _F(lighting.sun_strength) * lambert
    haze = t / (t + _F(lighting.haze_distance))  # (N,) weight of the haze colour
    horizon = np.asarray(lighting.sky_horizon, dtype=np.float32)
    color *= (light * (_F(1.0) - haze))[:, None]
    color += horizon[None, :] * haze[:, None]

    # sky: zenith/horizon gradient by the ray's elevation, with soft clouds on a plane 1 km up
    image = np.empty((h * w, 3), dtype=np.float32)
    image[idx] = color
    sky = np.flatnonzero(flat_ids < 0)
    if len(sky):
        sdx, sdy, sdz = dx.reshape(-1)[sky], dy.reshape(-1)[sky], dz.reshape(-1)[sky]
        elev = sdz / np.sqrt(sdx * sdx + sdy * sdy + sdz * sdz)
        g = np.clip(elev * _F(2.5), _F(0.0), _F(1.0))
        zenith = np.asarray(lighting.sky_zenith, dtype=np.float32)
        sky_col = horizon[None, :] + (zenith - horizon)[None, :] * g[:, None]
        k = _F(1000.0) / np.maximum(sdz, _F(0.02))
        cloud = value_noise(sdx * k, sdy * k, 400.0, noise_seed) * value_noise(sdx * k, sdy * k, 150.0,
                                                                            (noise_seed + 1) & 0xFFFFFFFF)
        cloud = np.clip((cloud - _F(0.25)) * _F(2.5), _F(0.0), _F(0.8)) * g
        image[sky] = sky_col + (_F(0.95) - sky_col) * cloud[:, None]

    out = image * _F(255.0) + _F(0.5)
    if lighting.noise > 0:
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([noise_seed, 0x5EED])))
        out += rng.integers(-lighting.noise, lighting.noise + 1, size=out.shape, dtype=np.int8)
    return np.clip(out, 0.0, 255.0).astype(np.uint8).reshape(h, w, 3)
