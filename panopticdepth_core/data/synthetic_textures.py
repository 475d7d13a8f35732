"""Procedural textures for the synthetic scenes: world-space hit points + normals -> surface colours.

Textures are functions of the world-space hit point, so they stay put on surfaces: hashed cell and value noise,
stripes, tiles, bricks, lane markings and window grids, with per-primitive colours. Only exactly rounded
arithmetic (no per-pixel transcendental functions), so colours are the same on every machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from .synthetic_geometry import group_by

if TYPE_CHECKING:
    from .synthetic_scene import RoadLayout


class Material(IntEnum):
    """How a primitive looks (one texture function each); chosen per primitive, independent of its class."""

    ROAD = 0
    SIDEWALK = 1
    TERRAIN = 2
    BUILDING = 3
    WALL = 4
    FENCE = 5
    POLE = 6
    TRAFFIC_LIGHT = 7
    SIGN = 8
    FOLIAGE = 9
    TRUNK = 10
    PERSON = 11
    HEAD = 12
    VEHICLE_BODY = 13
    VEHICLE_CABIN = 14
    VEHICLE_BAND = 15
    CARGO = 16
    WHEEL = 17
    BIKE_FRAME = 18


_F = np.float32


@dataclass
class Hits:
    """Visible surface points (N of them) and the per-primitive tables they index into."""

    px: np.ndarray  # (N,) float32 world hit point
    py: np.ndarray
    pz: np.ndarray
    nx: np.ndarray  # (N,) float32 unit normal
    ny: np.ndarray
    nz: np.ndarray
    prim: np.ndarray  # (N,) primitive index
    tables: dict  # SceneParams.arrays()
    road: RoadLayout


# ------------------------------------------------------------------------------------------------ noise helpers
_M1, _M2, _M3 = np.uint32(0x9E3779B1), np.uint32(0x85EBCA77), np.uint32(0xC2B2AE3D)
_M4, _M5 = np.uint32(0x2C1B3C6D), np.uint32(0x297A2D39)
_INV24 = _F(1.0 / (1 << 24))


def hash01(ix: np.ndarray, iy: np.ndarray, seed: np.ndarray | int) -> np.ndarray:
    """Integer lattice coordinates (int32) and seeds -> float32 uniform in [0, 1)."""
    h = ix.astype(np.int32).view(np.uint32) * _M1
    h ^= iy.astype(np.int32).view(np.uint32) * _M2
    h ^= np.asarray(seed, dtype=np.uint32) * _M3
    h ^= h >> np.uint32(15)
    h *= _M4
    h ^= h >> np.uint32(12)
    h *= _M5
    h ^= h >> np.uint32(15)
    return (h >> np.uint32(8)).astype(np.float32) * _INV24


def _floor_i(x: np.ndarray) -> np.ndarray:
    return np.floor(x).astype(np.int32)


def cell_noise(x: np.ndarray, y: np.ndarray, scale: float, seed) -> np.ndarray:
    """Piecewise-constant noise on a square grid of `scale` metres."""
    inv = _F(1.0 / scale)
    return hash01(_floor_i(x * inv), _floor_i(y * inv), seed)


def value_noise(x: np.ndarray, y: np.ndarray, scale: float, seed) -> np.ndarray:
    """Smooth (bilinear, smoothstep-weighted) lattice noise in [0, 1)."""
    inv = _F(1.0 / scale)
    xs, ys = x * inv, y * inv
    fx, fy = np.floor(xs), np.floor(ys)
    ix, iy = fx.astype(np.int32), fy.astype(np.int32)
    tx, ty = xs - fx, ys - fy
    tx = tx * tx * (_F(3.0) - _F(2.0) * tx)
    ty = ty * ty * (_F(3.0) - _F(2.0) * ty)
    a, b = hash01(ix, iy, seed), hash01(ix + 1, iy, seed)
    c, d = hash01(ix, iy + 1, seed), hash01(ix + 1, iy + 1, seed)
    top = a + (b - a) * tx
    return top + (c + (d - c) * tx - top) * ty


def _frac(x: np.ndarray) -> np.ndarray:
    return x - np.floor(x)


def _mix(a: np.ndarray, b: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Per-row blend of (n, 3) colours with (n,) weights."""
    return a + (b - a) * w[:, None]


def _const(color, n: int) -> np.ndarray:
    return np.broadcast_to(np.asarray(color, dtype=np.float32), (n, 3)).copy()


# ----------------------------------------------------------------------------------------------------- materials
class _Sel:
    """The hits of one material; their primitives' table entries are gathered on first use."""

    def __init__(self, hits: Hits, idx: np.ndarray) -> None:
        self.hits, self.idx = hits, idx
        self.prim = hits.prim[idx]
        self.tables = hits.tables
        self.road = hits.road
        self.n = len(idx)

    @cached_property
    def x(self) -> np.ndarray:
        return self.hits.px[self.idx]

    @cached_property
    def y(self) -> np.ndarray:
        return self.hits.py[self.idx]

    @cached_property
    def z(self) -> np.ndarray:
        return self.hits.pz[self.idx]

    @cached_property
    def nx(self) -> np.ndarray:
        return self.hits.nx[self.idx]

    @cached_property
    def ny(self) -> np.ndarray:
        return self.hits.ny[self.idx]

    @cached_property
    def nz(self) -> np.ndarray:
        return self.hits.nz[self.idx]

    def param(self, column: int) -> np.ndarray:
        """(n,) float32 primitive parameter ``column`` (see synthetic_geometry) per hit."""
        return self.tables["params_t"][column][self.prim]

    @cached_property
    def color(self) -> np.ndarray:
        return self.tables["color"][self.prim]

    @cached_property
    def color2(self) -> np.ndarray:
        return self.tables["color2"][self.prim]

    @cached_property
    def tex0(self) -> np.ndarray:
        return self.tables["tex_t"][0][self.prim]

    @cached_property
    def tex1(self) -> np.ndarray:
        return self.tables["tex_t"][1][self.prim]

    @cached_property
    def seed(self) -> np.ndarray:
        return self.tables["tex_seed"][self.prim]

    def along(self) -> np.ndarray:
        """Horizontal coordinate along a vertical face (metres)."""
        return -self.ny * self.x + self.nx * self.y

    def vertical(self) -> np.ndarray:
        return np.abs(self.nz) < _F(0.5)


def _road(s: _Sel) -> np.ndarray:
    r = s.road
    base = s.color * (_F(0.80) + _F(0.20) * value_noise(s.x, s.y, 1.7, s.seed))[:, None]
    base *= (_F(0.93) + _F(0.07) * cell_noise(s.x, s.y, 0.11, s.seed + 1))[:, None]
    patch = cell_noise(s.x + _F(0.5), s.y, 3.0, s.seed + 2) > _F(0.88)
    base[patch] *= _F(0.8)
    lat = s.y - _F(r.center_y)
    paint = np.zeros(s.n, dtype=bool)
    dash = _frac(s.x * _F(1.0 / r.dash_period)) < _F(0.4)
    for lane in range(1, r.num_lanes):
        boundary = -r.half_width + lane * r.lane_width
        paint |= (np.abs(lat - _F(boundary)) < _F(0.07)) & dash
    paint |= np.abs(np.abs(lat) - _F(r.half_width - 0.3)) < _F(0.07)
    if r.crosswalk_x is not None:
        paint |= (s.x > _F(r.crosswalk_x)) & (s.x < _F(r.crosswalk_x + 4.0)) & (_frac(lat * _F(1.0 / 1.1)) < 0.5)
    wear = _F(0.75) + _F(0.2) * cell_noise(s.x, s.y, 0.3, s.seed + 3)
    base[paint] = (_F(0.92) * wear[paint])[:, None]
    return base


def _sidewalk(s: _Sel) -> np.ndarray:
    size = np.maximum(s.tex0, _F(0.2))
    u, v = s.x / size, s.y / size
    grout = (_frac(u) < _F(0.07)) | (_frac(v) < _F(0.07))
    tile = _F(0.88) + _F(0.14) * hash01(_floor_i(u), _floor_i(v), s.seed)
    out = s.color * np.where(grout, _F(0.72), tile)[:, None]
    curb = s.vertical()
    out[curb] = s.color2[curb] * (_F(0.9) + _F(0.1) * cell_noise(s.x[curb], s.z[curb], 0.2, s.seed[curb]))[:, None]
    return out


def _terrain(s: _Sel) -> np.ndarray:
    w = value_noise(s.x, s.y, 2.5, s.seed)
    out = _mix(s.color, s.color2, w * w)
    return out * (_F(0.8) + _F(0.3) * cell_noise(s.x, s.y, 0.12, s.seed + 1))[:, None]


def _building(s: _Sel) -> np.ndarray:
    u, z = s.along(), s.z
    period = np.maximum(s.tex0, _F(1.5))
    style = s.tex1
    out = s.color * (_F(0.9) + _F(0.1) * value_noise(u, z, 1.5, s.seed))[:, None]
    # bricks (style 1): staggered 0.6 x 0.3 m courses with light mortar
    brick = np.flatnonzero(style == 1)
    if len(brick):
        bz, bu = z[brick], u[brick]
        row = _floor_i(bz * _F(1 / 0.3))
        bu = bu * _F(1 / 0.6) + (row & 1).astype(np.float32) * _F(0.5)
        mortar = (_frac(bz * _F(1 / 0.3)) < _F(0.14)) | (_frac(bu) < _F(0.06))
        shade = np.where(mortar, _F(1.25), _F(0.85) + _F(0.25) * hash01(_floor_i(bu), row, s.seed[brick]))
        out[brick] *= shade[:, None]
    # window grid: floors of 3.2 m above a 3.5 m ground floor; glass facades (style 2) have wide windows
    col = _frac(u / period)
    floor = _frac((z - _F(0.5)) * _F(1 / 3.2))
    width = np.where(style == 2, _F(0.42), _F(0.22))
    window = (np.abs(col - _F(0.5)) < width) & (floor > _F(0.3)) & (floor < _F(0.85)) & (z > _F(3.5))
    shop = (z > _F(0.4)) & (z < _F(2.8)) & (np.abs(col - _F(0.5)) < _F(0.4)) & (cell_noise(u, u, 6.0, s.seed) > 0.4)
    glass = window | shop
    lit = hash01(_floor_i(u / period), _floor_i(z * _F(1 / 3.2)), s.seed + 5)
    glass_color = s.color2 * (_F(0.6) + _F(0.8) * lit)[:, None]
    face = s.vertical()
    out = np.where((glass & face)[:, None], glass_color, out)
    roof = ~face
    out[roof] = s.color[roof] * _F(0.45)
    return out


def _wall(s: _Sel) -> np.ndarray:
    u, z = s.along(), s.z
    lines = (_frac(z * _F(1 / 0.4)) < _F(0.06)) | (_frac(u * _F(1 / 1.2)) < _F(0.03))
    return s.color * np.where(lines, _F(0.75), _F(0.92) + _F(0.1) * cell_noise(u, z, 0.4, s.seed))[:, None]


def _fence(s: _Sel) -> np.ndarray:
    slat = _frac(s.along() * _F(1 / 0.14)) < _F(0.6)
    rail = np.abs(_frac(s.z * _F(1 / 0.9)) - _F(0.5)) < _F(0.05)
    return s.color * np.where(slat | rail, _F(1.0), _F(0.45))[:, None]


def _pole(s: _Sel) -> np.ndarray:
    band = _frac(s.z * _F(1 / 1.7)) < _F(0.04)
    return s.color * np.where(band, _F(0.7), _F(0.95) + _F(0.1) * cell_noise(s.x, s.z, 0.3, s.seed))[:, None]


def _front_local(s: _Sel) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For thin boxes (sign plates, lights): (is front face, local horizontal, local vertical) coordinates."""
    yaw_c, yaw_s = _yaw_cs(s.param(6))
    front = (s.nx * yaw_c + s.ny * yaw_s) < _F(-0.5)
    qx, qy = s.x - s.param(0), s.y - s.param(1)
    lateral = -yaw_s * qx + yaw_c * qy
    return front, lateral, s.z - s.param(2)


def _yaw_cs(yaw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # yaws of thin boxes are 0 or +-pi/2 (exactly representable cases), so a table keeps this exact and cheap
    c = np.where(np.abs(yaw) < 0.1, _F(1.0), _F(0.0))
    s = np.where(yaw > 0.1, _F(1.0), np.where(yaw < -0.1, _F(-1.0), _F(0.0)))
    return c, s


def _sign(s: _Sel) -> np.ndarray:
    front, lat, vert = _front_local(s)
    hw, hh = s.param(4), s.param(5)
    edge = np.minimum(hw - np.abs(lat), hh - np.abs(vert))
    border = edge < _F(0.06)
    symbol = (np.abs(lat) < hw * _F(0.35)) & (np.abs(vert) < hh * _F(0.35)) & (s.tex0 > 0.5)
    out = np.where(border[:, None], _F(0.92), s.color)
    out = np.where(symbol[:, None], s.color2, out)
    back = _const((0.55, 0.56, 0.58), s.n)
    return np.where(front[:, None], out, back)


def _traffic_light(s: _Sel) -> np.ndarray:
    front, lat, vert = _front_local(s)
    out = s.color.copy()
    lamp_colors = np.array([[1.0, 0.15, 0.1], [1.0, 0.7, 0.1], [0.2, 1.0, 0.4]], dtype=np.float32)
    for i, offset in enumerate((0.28, 0.0, -0.28)):
        dz = vert - _F(offset)
        lamp = front & (lat * lat + dz * dz < _F(0.1 * 0.1))
        on = np.abs(s.tex0 - _F(i)) < _F(0.5)
        color = np.where(on[:, None], lamp_colors[i][None, :] * _F(1.6), lamp_colors[i][None, :] * _F(0.18))
        out = np.where(lamp[:, None], color, out)
    return out


def _foliage(s: _Sel) -> np.ndarray:
    a = s.x + _F(0.7) * s.z
    b = s.y - _F(0.6) * s.z
    w = value_noise(a, b, 0.9, s.seed)
    out = _mix(s.color, s.color2, w)
    return out * (_F(0.7) + _F(0.5) * cell_noise(a, b, 0.18, s.seed + 1))[:, None]


def _trunk(s: _Sel) -> np.ndarray:
    streak = cell_noise(s.x + s.y, s.z, 0.06, s.seed)
    return s.color * (_F(0.75) + _F(0.35) * streak)[:, None]


def _person(s: _Sel) -> np.ndarray:
    legs = s.z < s.tex0
    out = np.where(legs[:, None], s.color2, s.color)
    shoes = s.z < s.tex1 + _F(0.08)
    out[shoes] = _F(0.06)
    return out * (_F(0.9) + _F(0.15) * cell_noise(s.x + s.y, s.z, 0.1, s.seed))[:, None]


def _head(s: _Sel) -> np.ndarray:
    hair = s.z > s.tex0
    return np.where(hair[:, None], s.color2, s.color)


def _vehicle_lower(s: _Sel, out: np.ndarray) -> np.ndarray:
    """Dark band near the ground (wheels, bumpers)."""
    low = s.z < _F(0.42)
    out[low] = out[low] * _F(0.25) + _F(0.02)
    return out


def _vehicle_body(s: _Sel) -> np.ndarray:
    out = s.color * (_F(0.95) + _F(0.08) * value_noise(s.along(), s.z, 0.8, s.seed))[:, None]
    return _vehicle_lower(s, out)


def _vehicle_cabin(s: _Sel) -> np.ndarray:
    side = s.vertical()
    glass = s.color2 * (_F(0.8) + _F(0.6) * _frac(s.z * _F(1.7) + s.along() * _F(0.3)))[:, None]
    return np.where(side[:, None], glass, s.color)


def _vehicle_band(s: _Sel) -> np.ndarray:
    u = s.along()
    band = (s.z > s.tex0) & (s.z < s.tex1) & (_frac(u * _F(1 / 1.3)) > _F(0.1)) & s.vertical()
    out = np.where(band[:, None], s.color2 * (_F(0.8) + _F(0.5) * _frac(s.z + u * _F(0.2)))[:, None], s.color)
    return _vehicle_lower(s, out)


def _cargo(s: _Sel) -> np.ndarray:
    panel = _frac(s.along() * _F(1 / 0.7)) < _F(0.05)
    out = s.color * np.where(panel, _F(0.7), _F(0.95) + _F(0.08) * cell_noise(s.along(), s.z, 0.5, s.seed))[:, None]
    return _vehicle_lower(s, out)


def _wheel(s: _Sel) -> np.ndarray:
    qx, qy, qz = s.x - s.param(0), s.y - s.param(1), s.z - s.param(2)
    r2 = (qx * qx + qy * qy + qz * qz) / (s.param(3) * s.param(3))
    tyre = r2 > _F(0.72)
    hub = r2 < _F(0.03)
    out = np.where(tyre[:, None], s.color, s.color2 * _F(0.7))
    out[hub] = s.color2[hub]
    return out


def _bike_frame(s: _Sel) -> np.ndarray:
    return s.color.copy()


_MATERIAL_FUNCS = {
    Material.ROAD: _road, Material.SIDEWALK: _sidewalk, Material.TERRAIN: _terrain, Material.BUILDING: _building,
    Material.WALL: _wall, Material.FENCE: _fence, Material.POLE: _pole, Material.TRAFFIC_LIGHT: _traffic_light,
    Material.SIGN: _sign, Material.FOLIAGE: _foliage, Material.TRUNK: _trunk, Material.PERSON: _person,
    Material.HEAD: _head, Material.VEHICLE_BODY: _vehicle_body, Material.VEHICLE_CABIN: _vehicle_cabin,
    Material.VEHICLE_BAND: _vehicle_band, Material.CARGO: _cargo, Material.WHEEL: _wheel,
    Material.BIKE_FRAME: _bike_frame,
}


def albedo(hits: Hits) -> np.ndarray:
    """(N, 3) float32 surface colours, grouped by material."""
    out = np.empty((len(hits.prim), 3), dtype=np.float32)
    for m, idx in enumerate(group_by(hits.tables["materials"][hits.prim], len(Material))):
        if len(idx):
            out[idx] = _MATERIAL_FUNCS[Material(m)](_Sel(hits, idx))
    return out
