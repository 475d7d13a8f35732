"""Ray casting for the synthetic scenes: pinhole camera rays, analytic primitives, a z-buffer over all of them.

Frames (all right-handed, metres):

- world: x forward along the street, y to the left, z up; origin on the ground right below the camera
  (the Cityscapes vehicle frame, so the camera's pose is directly its Cityscapes ``extrinsic``);
- camera (optical): x right, y down, z forward along the optical axis (OpenCV / ROS ``*_optical_frame``).

Pixel (u, v) (integer column/row, pixel centres at integers as in OpenCV) looks along
``d_cam = ((u - cx) / fx, (v - cy) / fy, 1)``. Because that direction has optical-z 1, the ray parameter t of a hit
*is* its z-depth (distance along the optical axis, the Cityscapes-DPS depth convention), not its range.

Everything per pixel is vectorised NumPy in float32 using only +, -, *, /, sqrt, min/max and comparisons, which
IEEE 754 rounds exactly, so results do not depend on the machine's SIMD or math library. Each primitive is
tested only against the pixels inside its projected bounding rectangle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Primitive kinds and their parameter vectors (world frame; ``Primitive.params``):
KIND_HPLANE = 0  # horizontal rectangle seen from above: (cx, cy, z, half_x, half_y)
KIND_BOX = 1  # box yawed about z: (cx, cy, cz, half_x, half_y, half_z, yaw)
KIND_CYLINDER = 2  # vertical capped cylinder: (cx, cy, z_bottom, z_top, radius)
KIND_ELLIPSOID = 3  # axis-aligned ellipsoid: (cx, cy, cz, rx, ry, rz)
KIND_DISC = 4  # vertical two-sided disc in the plane through (cos yaw, sin yaw, 0): (cx, cy, cz, radius, yaw)
KIND_NAMES = {KIND_HPLANE: "hplane", KIND_BOX: "box", KIND_CYLINDER: "cylinder", KIND_ELLIPSOID: "ellipsoid",
              KIND_DISC: "disc"}
NUM_PARAMS = 7
NEAR = 1e-3  # metres; hits closer than this along the optical axis are ignored

# The 12 edges of a box given by 8 corners indexed by bits (x, y, z) -> used to clip against the near plane.
_BOX_EDGES = np.array([(a, a | bit) for bit in (1, 2, 4) for a in range(8) if not a & bit], dtype=np.int64)  # (12, 2)


@dataclass(frozen=True)
class Camera:
    """Pinhole camera on a pole above the ground: intrinsics, height, pitch (down positive) and yaw (left positive)."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    mount_height: float  # metres above the ground (world z of the optical centre)
    pitch: float  # radians, positive = optical axis below the horizon (Cityscapes extrinsic convention)
    yaw: float  # radians, positive = turned to the left (about world +z)
    x: float = 0.0  # metres along the street of the optical centre (sequences: the camera drives forward)
    y: float = 0.0  # metres to the left

    @property
    def intrinsics(self) -> np.ndarray:
        """(3, 3) float64 K."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]], dtype=np.float64)

    @property
    def origin(self) -> np.ndarray:
        """(3,) optical centre in the world frame."""
        return np.array([self.x, self.y, self.mount_height], dtype=np.float64)

    @property
    def rotation(self) -> np.ndarray:
        """(3, 3) world-from-camera rotation; columns are the optical x (right), y (down), z (forward) axes."""
        cp, sp, cyw, syw = math.cos(self.pitch), math.sin(self.pitch), math.cos(self.yaw), math.sin(self.yaw)
        forward = np.array([cp * cyw, cp * syw, -sp])
        right = np.array([syw, -cyw, 0.0])
        down = np.cross(forward, right)
        return np.stack([right, down, forward], axis=1)

    def ray_directions(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """World-frame ray directions (dx, dy, dz), each (H, W) float32, scaled so the optical-z component is 1."""
        rot = self.rotation
        xn = ((np.arange(self.width, dtype=np.float64) - self.cx) / self.fx).astype(np.float32)  # (W,)
        yn = ((np.arange(self.height, dtype=np.float64) - self.cy) / self.fy).astype(np.float32)  # (H,)
        out = []
        for row in rot.astype(np.float32):  # d_world[i] = R[i,0] * xn + R[i,1] * yn + R[i,2]
            out.append(row[0] * xn[None, :] + (row[1] * yn[:, None] + row[2]))  # (H, W)
        return out[0], out[1], out[2]


# --------------------------------------------------------------------------------------------- bounding rectangles
def bounding_corners(kinds: np.ndarray, params: np.ndarray) -> np.ndarray:
    """(P,) kinds, (P, NUM_PARAMS) params -> (P, 8, 3) world corners of a box enclosing each primitive.

    Corner index bits are (x, y, z) in the primitive's own (yawed, for boxes) frame, so ``_BOX_EDGES`` applies.
    """
    n = len(kinds)
    centre = np.zeros((n, 3))
    half = np.zeros((n, 3))
    yaw = np.zeros(n)
    for kind in np.unique(kinds):
        m = kinds == kind
        p = params[m]
        if kind == KIND_HPLANE:
            centre[m] = p[:, 0:3]
            half[m] = np.stack([p[:, 3], p[:, 4], np.zeros(len(p))], axis=1)
        elif kind == KIND_BOX:
            centre[m], half[m], yaw[m] = p[:, 0:3], p[:, 3:6], p[:, 6]
        elif kind == KIND_CYLINDER:
            centre[m] = np.stack([p[:, 0], p[:, 1], 0.5 * (p[:, 2] + p[:, 3])], axis=1)
            half[m] = np.stack([p[:, 4], p[:, 4], 0.5 * (p[:, 3] - p[:, 2])], axis=1)
        elif kind == KIND_ELLIPSOID:
            centre[m], half[m] = p[:, 0:3], p[:, 3:6]
        elif kind == KIND_DISC:
            centre[m] = p[:, 0:3]
            half[m] = np.stack([p[:, 3], np.full(len(p), 1e-3), p[:, 3]], axis=1)
            yaw[m] = p[:, 4]
    bits = np.array([[(i >> 0) & 1, (i >> 1) & 1, (i >> 2) & 1] for i in range(8)], dtype=np.float64) * 2 - 1
    local = bits[None] * half[:, None, :]  # (P, 8, 3)
    c, s = np.cos(yaw)[:, None], np.sin(yaw)[:, None]
    world = np.empty_like(local)
    world[..., 0] = c * local[..., 0] - s * local[..., 1] + centre[:, None, 0]
    world[..., 1] = s * local[..., 0] + c * local[..., 1] + centre[:, None, 1]
    world[..., 2] = local[..., 2] + centre[:, None, 2]
    return world


def screen_rects(camera: Camera, corners: np.ndarray) -> np.ndarray:
    """(P, 8, 3) world corners -> (P, 4) int pixel rectangles (v0, v1, u0, u1), empty (v0 >= v1) when unseen.

    The box is clipped against the near plane first, so boxes reaching behind the camera get exact bounds.
    """
    rot = camera.rotation
    rel = corners - camera.origin  # (P, 8, 3)
    cam = rel @ rot  # (P, 8, 3) optical-frame coordinates
    a, b = cam[:, _BOX_EDGES[:, 0]], cam[:, _BOX_EDGES[:, 1]]  # (P, 12, 3)
    za, zb = a[..., 2], b[..., 2]
    crosses = (za - NEAR) * (zb - NEAR) < 0
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.where(crosses, (NEAR - za) / np.where(crosses, zb - za, 1.0), 0.0)
    cut = a + s[..., None] * (b - a)  # (P, 12, 3)
    pts = np.concatenate([cam, cut], axis=1)  # (P, 20, 3)
    valid = np.concatenate([cam[..., 2] >= NEAR, crosses], axis=1)  # (P, 20)
    z = np.where(valid, pts[..., 2], 1.0)
    u = camera.fx * pts[..., 0] / z + camera.cx
    v = camera.fy * pts[..., 1] / z + camera.cy
    inf = np.inf
    u_lo = np.where(valid, u, inf).min(axis=1)
    u_hi = np.where(valid, u, -inf).max(axis=1)
    v_lo = np.where(valid, v, inf).min(axis=1)
    v_hi = np.where(valid, v, -inf).max(axis=1)
    seen = valid.any(axis=1)
    rects = np.zeros((len(corners), 4), dtype=np.int64)
    big = 1e7  # keeps float->int conversion defined for points projecting near infinity
    rects[:, 0] = np.clip(np.floor(np.clip(v_lo, -big, big)) - 1, 0, camera.height)
    rects[:, 1] = np.clip(np.ceil(np.clip(v_hi, -big, big)) + 2, 0, camera.height)
    rects[:, 2] = np.clip(np.floor(np.clip(u_lo, -big, big)) - 1, 0, camera.width)
    rects[:, 3] = np.clip(np.ceil(np.clip(u_hi, -big, big)) + 2, 0, camera.width)
    rects[~seen] = 0
    return rects


# ------------------------------------------------------------------------------------------- ray-primitive tests
# Each takes the camera origin o (3 python floats) and direction arrays (dx, dy, dz) of one rectangle and returns
# t (float32, +inf where the ray misses or the hit is nearer than NEAR).
_F = np.float32
_INF = np.float32(np.inf)


def _finish(t: np.ndarray, hit: np.ndarray) -> np.ndarray:
    return np.where(hit & (t >= _F(NEAR)), t, _INF)


def intersect_hplane(o, d, p) -> np.ndarray:
    dx, dy, dz = d
    t = _F(p[2] - o[2]) / dz
    px = _F(o[0] - p[0]) + t * dx
    py = _F(o[1] - p[1]) + t * dy
    hit = (np.abs(px) <= _F(p[3])) & (np.abs(py) <= _F(p[4]))
    return _finish(t, hit)


def intersect_box(o, d, p) -> np.ndarray:
    dx, dy, dz = d
    c, s = math.cos(p[6]), math.sin(p[6])
    ox, oy, oz = o[0] - p[0], o[1] - p[1], o[2] - p[2]
    if p[6] != 0.0:  # into the box frame: local = R(-yaw) world
        lx, ly = c * ox + s * oy, -s * ox + c * oy
        ldx = _F(c) * dx + _F(s) * dy
        ldy = _F(c) * dy - _F(s) * dx
    else:
        lx, ly, ldx, ldy = ox, oy, dx, dy
    t_near = None
    t_far = None
    for origin, direction, half in ((lx, ldx, p[3]), (ly, ldy, p[4]), (oz, dz, p[5])):
        inv = _F(1.0) / direction
        t1 = _F(-half - origin) * inv
        t2 = _F(half - origin) * inv
        lo, hi = np.minimum(t1, t2), np.maximum(t1, t2)
        t_near = lo if t_near is None else np.maximum(t_near, lo)
        t_far = hi if t_far is None else np.minimum(t_far, hi)
    return _finish(t_near, t_near <= t_far)


def intersect_cylinder(o, d, p) -> np.ndarray:
    dx, dy, dz = d
    ox, oy = _F(o[0] - p[0]), _F(o[1] - p[1])
    r2 = _F(p[4] * p[4])
    # closest approach of the ray to the axis first, then the half chord: no b*b - a*c cancellation in float32
    a = dx * dx + dy * dy
    tc = -(ox * dx + oy * dy) / a
    qx = ox + tc * dx
    qy = oy + tc * dy
    h2 = r2 - (qx * qx + qy * qy)
    with np.errstate(invalid="ignore"):
        t = tc - np.sqrt(h2 / a)
    z = _F(o[2]) + t * dz
    side = np.where((h2 >= 0) & (z >= _F(p[2])) & (z <= _F(p[3])), t, _INF)
    if o[2] > p[3]:  # camera above the top cap: the cap can be seen
        tc = _F(p[3] - o[2]) / dz
        qx = ox + tc * dx
        qy = oy + tc * dy
        cap = (qx * qx + qy * qy <= r2) & (tc > 0)
        side = np.where(cap & (tc < side), tc, side)
    return _finish(side, side < _INF)


def intersect_ellipsoid(o, d, p) -> np.ndarray:
    dx, dy, dz = d
    ix, iy, iz = 1.0 / p[3], 1.0 / p[4], 1.0 / p[5]
    ox, oy, oz = _F((o[0] - p[0]) * ix), _F((o[1] - p[1]) * iy), _F((o[2] - p[2]) * iz)
    sx, sy, sz = dx * _F(ix), dy * _F(iy), dz * _F(iz)  # the ellipsoid is the unit sphere in scaled coordinates
    a = sx * sx + sy * sy + sz * sz
    tc = -(ox * sx + oy * sy + oz * sz) / a
    qx, qy, qz = ox + tc * sx, oy + tc * sy, oz + tc * sz
    h2 = _F(1.0) - (qx * qx + qy * qy + qz * qz)
    with np.errstate(invalid="ignore"):
        t = tc - np.sqrt(h2 / a)
    return _finish(t, h2 >= 0)


def intersect_disc(o, d, p) -> np.ndarray:
    dx, dy, dz = d
    nx, ny = -math.sin(p[4]), math.cos(p[4])
    ox, oy, oz = o[0] - p[0], o[1] - p[1], o[2] - p[2]
    denom = _F(nx) * dx + _F(ny) * dy
    t = _F(-(ox * nx + oy * ny)) / denom
    qx = _F(ox) + t * dx
    qy = _F(oy) + t * dy
    qz = _F(oz) + t * dz
    return _finish(t, qx * qx + qy * qy + qz * qz <= _F(p[3] * p[3]))


INTERSECTORS = {
    KIND_HPLANE: intersect_hplane,
    KIND_BOX: intersect_box,
    KIND_CYLINDER: intersect_cylinder,
    KIND_ELLIPSOID: intersect_ellipsoid,
    KIND_DISC: intersect_disc,
}


def cast_rays(camera: Camera, kinds: np.ndarray, params: np.ndarray,
              rays: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Nearest hit per pixel over all primitives -> (z-depth (H, W) float32, +inf for no hit; primitive index
    (H, W) int16, -1 for no hit). Ties go to the primitive listed first."""
    if len(kinds) >= np.iinfo(np.int16).max:
        raise ValueError(f"too many primitives ({len(kinds)}) for an int16 primitive map")
    dx, dy, dz = camera.ray_directions() if rays is None else rays
    o = [float(v) for v in camera.origin]
    zbuf = np.full((camera.height, camera.width), np.inf, dtype=np.float32)
    ids = np.full((camera.height, camera.width), -1, dtype=np.int16)
    rects = screen_rects(camera, bounding_corners(kinds, params))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for k in range(len(kinds)):
            v0, v1, u0, u1 = rects[k]
            if v0 >= v1 or u0 >= u1:
                continue
            win = (slice(v0, v1), slice(u0, u1))
            t = INTERSECTORS[int(kinds[k])](o, (dx[win], dy[win], dz[win]), params[k])
            zwin = zbuf[win]
            better = t < zwin
            np.copyto(zwin, t, where=better)
            np.copyto(ids[win], np.int16(k), where=better)
    return zbuf, ids


# ------------------------------------------------------------------------------------------------- surface normals
def yaw_table(params: np.ndarray, column: int) -> np.ndarray:
    """(2, P) float32 (cos, sin) of one parameter column, via ``math`` (never per-pixel SIMD transcendentals)."""
    return np.array([(math.cos(v), math.sin(v)) for v in params[:, column]], dtype=np.float32).reshape(-1, 2).T.copy()


def group_by(values: np.ndarray, num: int) -> list[np.ndarray]:
    """Indices of ``values`` (ints in 0..num-1, num <= 256) grouped by value: [indices where value == k]."""
    values = values.astype(np.uint8)  # stable argsort of 8-bit keys is a radix sort
    order = np.argsort(values, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(values, minlength=num))])
    return [order[bounds[k]:bounds[k + 1]] for k in range(num)]


def surface_normals(kinds: np.ndarray, params: np.ndarray, prim: np.ndarray, px: np.ndarray, py: np.ndarray,
                    pz: np.ndarray, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """Unit world normals facing the camera at hit points.

    kinds (P,), params (P, NUM_PARAMS); prim: (N,) primitive index per hit; px, py, pz: (N,) hit points;
    dx, dy: (N,) ray directions (to turn disc normals towards the camera). Returns (nx, ny, nz), each (N,) float32.
    """
    cols = np.ascontiguousarray(params.T, dtype=np.float32)  # (NUM_PARAMS, P)
    nx = np.zeros(len(prim), dtype=np.float32)
    ny = np.zeros(len(prim), dtype=np.float32)
    nz = np.zeros(len(prim), dtype=np.float32)
    one = np.float32(1.0)
    for k, sel in enumerate(group_by(kinds[prim], len(KIND_NAMES))):
        if len(sel) == 0:
            continue
        pr = prim[sel]
        if k == KIND_HPLANE:
            nz[sel] = one
            continue
        qx, qy, qz = px[sel] - cols[0][pr], py[sel] - cols[1][pr], pz[sel] - cols[2][pr]
        if k == KIND_BOX:
            cs = yaw_table(params, 6)
            c, s = cs[0][pr], cs[1][pr]
            lx, ly = c * qx + s * qy, c * qy - s * qx
            ax, ay, az = np.abs(lx) / cols[3][pr], np.abs(ly) / cols[4][pr], np.abs(qz) / cols[5][pr]
            on_x = (ax >= ay) & (ax >= az)
            on_y = ~on_x & (ay >= az)
            sx = np.where(on_x, np.where(lx >= 0, one, -one), 0)
            sy = np.where(on_y, np.where(ly >= 0, one, -one), 0)
            nx[sel] = c * sx - s * sy
            ny[sel] = s * sx + c * sy
            nz[sel] = np.where(on_x | on_y, 0, np.where(qz >= 0, one, -one))
        elif k == KIND_CYLINDER:
            qz = pz[sel]
            radial = np.sqrt(qx * qx + qy * qy)
            top = (qz >= cols[3][pr] - np.float32(1e-3)) & (radial < cols[4][pr] * np.float32(0.999))
            inv = one / np.maximum(radial, np.float32(1e-6))
            nx[sel] = np.where(top, 0, qx * inv)
            ny[sel] = np.where(top, 0, qy * inv)
            nz[sel] = top
        elif k == KIND_ELLIPSOID:
            rx, ry, rz = cols[3][pr], cols[4][pr], cols[5][pr]
            gx, gy, gz = qx / (rx * rx), qy / (ry * ry), qz / (rz * rz)
            inv = one / np.sqrt(gx * gx + gy * gy + gz * gz)
            nx[sel], ny[sel], nz[sel] = gx * inv, gy * inv, gz * inv
        elif k == KIND_DISC:
            cs = yaw_table(params, 4)
            dnx, dny = -cs[1][pr], cs[0][pr]
            flip = np.where(dnx * dx[sel] + dny * dy[sel] > 0, -one, one)
            nx[sel], ny[sel] = dnx * flip, dny * flip
    return nx, ny, nz
