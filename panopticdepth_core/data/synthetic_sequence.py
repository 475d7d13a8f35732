"""Synthetic drives: one street scene seen from a camera that drives along it while its things move.

A sequence is scene ``scene_seed(seed, s)`` (the same layout a single-frame data set draws for index s) plus a
motion drawn from its own random stream, so adding motion never changes the scenes:

- the camera drives along the street (+x) at 4-12 m/s, its yaw and pitch swaying by up to 2 and 0.6 degrees;
- cars, trucks, buses and motorcycles drive along their lane at the lane's speed (every mover of a lane has the
  same speed, so they never run into each other; the camera's lane, and anything on the camera's path, moves with
  the camera); vehicles facing
  against their lane's direction, crossing ones and parked bicycles stand still; cyclists ride at 3-6 m/s;
- pedestrians walk along the sidewalk (either way) or across the road at 0.8-1.6 m/s.

Things drive into and out of view, and pass in front of each other. Every thing keeps its instance id (its
object index + 1) for the whole sequence. Frame f is at time f / fps; the camera pose is in each frame's
``extrinsic`` (Cityscapes vehicle frame: x, y, z metres and pitch, roll, yaw radians; world = the street at
frame 0, origin on the ground below the camera's start).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from .sample import Sample
from .synthetic_scene import SceneParams

_MOTION_STREAM = 0x5E0  # seeds the motion's random stream next to the scene's seed
VEHICLES = ("car", "truck", "bus", "motorcycle")
EGO_PATH_HALF_WIDTH = 1.5  # metres: things (not people) this close to the camera's line drive ahead of it


@dataclass(frozen=True)
class DriveMotion:
    """How a sequence moves: the camera's speed and sway, every object's velocity (m/s, world x and y)."""

    camera_speed: float
    yaw_amplitude: float  # radians
    pitch_amplitude: float  # radians
    sway_period: float  # seconds
    velocities: tuple[tuple[float, float], ...]  # one (vx, vy) per SceneObject


def sample_motion(scene: SceneParams) -> DriveMotion:
    """The motion of the drive through ``scene`` (deterministic in the scene's seed)."""
    rng = np.random.Generator(np.random.PCG64([scene.seed, _MOTION_STREAM]))
    camera_speed = float(rng.uniform(4.0, 12.0))
    road = scene.road
    lanes = max(1, road.num_lanes)
    lane_speeds = rng.uniform(3.0, 14.0, size=lanes)
    ego_lane = _lane(road, 0.0)
    if ego_lane is not None:
        lane_speeds[ego_lane] = camera_speed
    velocities = []
    previous = (0.0, 0.0)
    for obj in scene.objects:
        x, y, z = obj.center
        heading = _heading(scene, obj)
        velocity = (0.0, 0.0)
        lane = _lane(road, y)
        if obj.label == "rider":
            velocity = previous  # a rider sits on the bike placed just before it
        elif obj.label in VEHICLES and lane is not None and heading is not None:
            direction = 1.0 if lane == ego_lane or y < road.center_y else -1.0
            if math.cos(heading) * direction > 0.9:  # drives the lane's way (not wrong-way, not crossing)
                velocity = (direction * float(lane_speeds[lane]), 0.0)
        elif obj.label == "bicycle" and z < 0.05 and heading is not None:  # ridden (parked ones stand on the curb)
            velocity = (math.copysign(float(rng.uniform(3.0, 6.0)), math.cos(heading)), 0.0)
            if lane == ego_lane:
                velocity = (camera_speed, 0.0)
        elif obj.label == "person":
            speed = float(rng.uniform(0.8, 1.6))
            if z > 0.0 or lane is None:  # on the sidewalk: along it
                velocity = (speed if rng.random() < 0.5 else -speed, 0.0)
            else:  # on the road: across it, towards the farther edge
                velocity = (0.0, speed if y < road.center_y else -speed)
        if obj.label not in ("person", "rider") and abs(y) < EGO_PATH_HALF_WIDTH:
            velocity = (camera_speed, 0.0)  # in the camera's path: drives ahead of it (never run over)
        velocities.append(velocity)
        previous = velocity
    return DriveMotion(camera_speed, math.radians(float(rng.uniform(0.5, 2.0))),
                       math.radians(float(rng.uniform(0.1, 0.6))), float(rng.uniform(2.0, 6.0)), tuple(velocities))


def scene_at(scene: SceneParams, motion: DriveMotion, time: float) -> SceneParams:
    """``scene`` at ``time`` seconds: the camera driven and swayed, every object's primitives moved."""
    camera = scene.camera
    phase = 2.0 * math.pi * time / motion.sway_period
    camera = dataclasses.replace(camera, x=camera.x + motion.camera_speed * time,
                                 yaw=camera.yaw + motion.yaw_amplitude * math.sin(phase),
                                 pitch=camera.pitch + motion.pitch_amplitude * math.sin(1.7 * phase))
    primitives = list(scene.primitives)
    for index, (vx, vy) in enumerate(motion.velocities):
        if vx == 0.0 and vy == 0.0:
            continue
        for p in scene.objects[index].primitives:
            prim = primitives[p]
            params = list(prim.params)
            params[0] += vx * time  # every primitive kind starts with its centre (cx, cy)
            params[1] += vy * time
            primitives[p] = dataclasses.replace(prim, params=tuple(params))
    return dataclasses.replace(scene, camera=camera, primitives=primitives)


def render_drive_frame(scene: SceneParams, motion: DriveMotion, frame: int, fps: float) -> Sample:
    """Frame ``frame`` of the drive (time frame / fps), instance ids = object index + 1 in every frame."""
    from .synthetic import render

    sample = render(scene_at(scene, motion, frame / fps), object_ids=True)
    sample.frame = frame
    sample.meta["timestamp"] = frame / fps
    return sample


def camera_to_world(extrinsic: dict) -> np.ndarray:
    """(4, 4) pose of the optical frame (x right, y down, z forward) in the world of a sequence, from a frame's
    Cityscapes ``extrinsic`` (x, y, z metres; pitch down-positive, yaw left-positive, roll radians; roll 0)."""
    from .synthetic_geometry import Camera

    cam = Camera(1, 1, 1.0, 1.0, 0.0, 0.0, float(extrinsic["z"]), float(extrinsic["pitch"]),
                 float(extrinsic["yaw"]), float(extrinsic["x"]), float(extrinsic["y"]))
    pose = np.eye(4)
    pose[:3, :3], pose[:3, 3] = cam.rotation, cam.origin
    return pose


def _lane(road, y: float) -> int | None:
    offset = y - (road.center_y - road.half_width)
    if not 0.0 <= offset < 2 * road.half_width:
        return None
    return min(road.num_lanes - 1, int(offset // road.lane_width))


def _heading(scene: SceneParams, obj) -> float | None:
    """Yaw of the object's first box (vehicles, bike frames), None without one."""
    from .synthetic_geometry import KIND_BOX

    for p in obj.primitives:
        prim = scene.primitives[p]
        if prim.kind == KIND_BOX:
            return float(prim.params[6])
    return None
