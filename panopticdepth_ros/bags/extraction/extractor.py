"""Turn a rosbag2 recording into a training set in the Cityscapes-DPS layout (``panopticdepth extract``).

Read with ``rosbags`` (mcap or sqlite3, no ROS install), in two passes: pass 1 reads every header stamp of the
chosen topics (straight from the CDR bytes) and /tf_static + /tf, and matches each camera image with the nearest
message of every other input within ``time_tolerance``; pass 2 decodes only the matched messages and writes
each complete frame with ``write_dps_frame``. Memory therefore holds the transforms and the few messages of the
frames being assembled, not the bag.

Per frame: the image (Image or CompressedImage), intrinsics from camera_info (``{frame}_camera.json``), depth
from a registered depth image (32FC1 metres or 16UC1 millimetres; NaN, Inf and 0 are "no depth") or from a
LiDAR PointCloud2 moved into the camera's optical frame with /tf_static and /tf at the image stamp and projected
with K (nearest point per pixel), and labels from label topics (semantic + instance, or panoptic) mapped to the
Cityscapes train ids by a class map, or pseudo-labels from a trained model. See docs/bag_extraction.md.

Output: ``OUT/SPLIT/`` written as ``OUT/.SPLIT.partial-PID/`` and renamed at the end, so an interrupted or failed
run never leaves a folder that looks complete; ``OUT/SPLIT/dataset.json`` records the source, topics, class map,
label source and the summary (frames written, frames skipped per reason).

This module holds the two passes; the parts live beside it: options (the flags and their checks), summary (the
counts), topics (inputs by role), matching (stamps, --every/--max-rate, nearest message), depth (depth image,
LiDAR projection) and labels (class map, label decoding). Bags are opened and read through ``bags.io``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from panopticdepth_core.data.classes import LABEL_DIVISOR, VOID_CLASS
from panopticdepth_core.data.dps_writer import frame_prefix, write_dps_frame
from panopticdepth_core.data.sample import Sample

from ...conversions import (
    FrameError,
    camera_info_to_K,
    compressed_msg_to_rgb,
    fit_to_image,
    image_array,
    image_msg_to_rgb,
)
from ...messages import COMPRESSED_IMAGE, IMAGE, deserialize, get_store
from ..errors import BagError, NoFramesError
from ..io import TF_MESSAGE, TF_STATIC_TOPIC, TF_TOPIC, open_reader, read_messages, types_line
from ..tf_buffer import ExtrapolationError, FrameNotFoundError, TfBuffer, transform_points
from .depth import cloud_xyz, depth_from_image, project_points
from .labels import LABEL_ENCODINGS, ClassMap, decode_panoptic, load_class_map, renumber_instances
from .matching import header_stamp_ns, nearest, select_images
from .options import ExtractOptions, validate_options
from .summary import ExtractSummary
from .topics import ROLES, check_topics

CITY = "bag"  # the city field of the frame names: {seq}_{frame}_bag_{seq}_{frame}
NO_CAMERA_INFO = ("no --camera-info-topic: frames are written without intrinsics (no *_camera.json); give the "
                  "camera's sensor_msgs/CameraInfo topic to record them")


# ------------------------------------------------------------------------------------------------ matching
@dataclass
class _Frame:
    """A selected image and the message (role -> index within its topic) matched to it."""

    number: int  # frame number in the output names
    stamp_ns: int
    parts: dict[str, int]
    offsets_ns: dict[str, int]


# ------------------------------------------------------------------------------------------------ the extractor
def _sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _bar(enabled: bool, total: int, desc: str, unit: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, leave=False)


class _Extractor:
    """One run of the extraction (state shared by the two passes)."""

    def __init__(self, opts: ExtractOptions) -> None:
        self.opts = opts
        self.bag = Path(opts.bag)
        self.store = get_store(opts.distro)  # every type read here has the same definition in Humble and Jazzy
        self.tolerance_ns = int(round(opts.time_tolerance * 1e9))
        self.tf = TfBuffer(tolerance_ns=self.tolerance_ns)
        self.class_map = load_class_map(opts.class_map) if opts.class_map else ClassMap.identity()
        self.summary = ExtractSummary(bag=str(self.bag))
        self.predictor: Callable | None = None
        self.pseudo_meta: dict[str, Any] | None = None
        self.frames_meta: list[dict[str, Any]] = []
        self._image_type = IMAGE

    # -------------------------------------------------------------------------------------- pass 1
    def index(self, reader, conns: dict[str, list]) -> list[_Frame]:
        """Read stamps and transforms; return the selected frames that have every input."""
        role_of = {conn.id: role for role, cs in conns.items() for conn in cs}
        stamps: dict[str, list[int | None]] = {role: [] for role in conns}
        tf_conns = [c for c in reader.connections if c.topic in (TF_STATIC_TOPIC, TF_TOPIC)
                    and c.msgtype == TF_MESSAGE] if "lidar" in conns else []
        wanted = [c for cs in conns.values() for c in cs] + tf_conns
        total = sum(c.msgcount for c in wanted)
        with _bar(self.opts.progress, total, "index", "msg") as bar:
            for conn, log_time, data in read_messages(reader, wanted):
                bar.update(1)
                if conn.topic in (TF_STATIC_TOPIC, TF_TOPIC) and conn.id not in role_of:
                    self._add_tf(conn, data)
                    continue
                try:
                    stamp = header_stamp_ns(data)
                except (ValueError, struct.error):
                    stamp = None
                if stamp == 0:  # an unset header stamp: the receive time is the best guess
                    stamp = log_time
                stamps[role_of[conn.id]].append(stamp)
        images = stamps["image"]
        self.summary.image_messages = len(images)
        kept = select_images(images, self.opts.every, self.opts.max_rate)
        self.summary.subsampled = len(images) - len(kept)
        self.summary.selected = len(kept)
        lookup = {}
        for role, values in stamps.items():
            if role == "image":
                continue
            idx = np.array([i for i, s in enumerate(values) if s is not None], dtype=np.int64)
            arr = np.array([s for s in values if s is not None], dtype=np.int64)
            order = np.argsort(arr, kind="stable")
            lookup[role] = (arr[order], idx[order])
        frames = []
        for image_index in kept:
            stamp = images[image_index]
            if stamp is None:
                self.summary.skip("bad_stamp")
                continue
            parts, offsets = {"image": image_index}, {}
            for role in ("camera_info", "depth", "lidar", "semantic", "instance", "panoptic"):
                if role not in lookup:
                    continue
                match = nearest(*lookup[role], stamp, self.tolerance_ns)
                if match is None:
                    self.summary.skip(f"no_{role}")
                    break
                parts[role], offsets[role] = match
            else:
                frames.append(_Frame(len(frames), stamp, parts, offsets))
        return frames

    def _add_tf(self, conn, data: bytes) -> None:
        try:
            msg = deserialize(data, TF_MESSAGE, self.store)
            self.tf.add_tf_message(msg, static=conn.topic == TF_STATIC_TOPIC)
        except Exception as exc:  # rosbags raises assorted errors on malformed CDR
            raise BagError(f"{self.bag}: a {conn.topic} message cannot be decoded ({type(exc).__name__}: {exc})"
                               ) from exc

    # -------------------------------------------------------------------------------------- pass 2
    def write(self, reader, conns: dict[str, list], frames: list[_Frame], split_dir: Path) -> None:
        """Decode the matched messages and write each frame as soon as it is complete."""
        role_of = {conn.id: role for role, cs in conns.items() for conn in cs}
        needed: dict[tuple[str, int], list[int]] = {}
        for frame in frames:
            for role, index in frame.parts.items():
                needed.setdefault((role, index), []).append(frame.number)
        remaining = Counter({key: len(users) for key, users in needed.items()})
        missing_parts = {frame.number: len(frame.parts) for frame in frames}
        buffer: dict[tuple[str, int], bytes] = {}
        counters: Counter = Counter()
        with _bar(self.opts.progress, len(frames), "extract", "frame") as bar:
            for conn, _, data in read_messages(reader, [c for cs in conns.values() for c in cs]):
                role = role_of[conn.id]
                key = (role, counters[role])
                counters[role] += 1
                if key not in needed:
                    continue
                buffer[key] = bytes(data)
                for number in needed[key]:
                    missing_parts[number] -= 1
                    if missing_parts[number] == 0:
                        frame = frames[number]
                        self._write_frame(frame, {r: buffer[(r, i)] for r, i in frame.parts.items()}, split_dir)
                        bar.update(1)
                        for r, i in frame.parts.items():
                            remaining[(r, i)] -= 1
                            if remaining[(r, i)] == 0:
                                buffer.pop((r, i), None)

    def _decode(self, role: str, data: bytes):
        msgtype = self._image_type if role == "image" else ROLES[role][1][0]
        return deserialize(data, msgtype, self.store)

    def _write_frame(self, frame: _Frame, raw: dict[str, bytes], split_dir: Path) -> None:
        try:
            sample = self._sample(frame, raw)
        except FrameError as exc:
            self.summary.skip(getattr(exc, "reason", "bad_image"), f"{frame.stamp_ns / 1e9:.3f} s: {exc}")
            return
        files = write_dps_frame(split_dir, sample, seq=0, frame=frame.number, city=CITY)
        if sample.meta.get("unlabelled"):
            files["label"].unlink()
        self.summary.written += 1
        self.frames_meta.append({"name": frame_prefix(0, frame.number, CITY), "stamp_ns": frame.stamp_ns,
                                 "offsets_ms": {r: round(o / 1e6, 3) for r, o in frame.offsets_ns.items()}})

    @staticmethod
    def _frame_error(exc: FrameError, reason: str) -> FrameError:
        exc.reason = reason  # type: ignore[attr-defined]
        return exc

    def _sample(self, frame: _Frame, raw: dict[str, bytes]) -> Sample:
        """The frame's Sample; FrameError (with ``reason``) when a message is unusable."""
        try:
            msg = self._decode("image", raw["image"])
            rgb = compressed_msg_to_rgb(msg) if self._image_type == COMPRESSED_IMAGE else image_msg_to_rgb(msg)
        except FrameError as exc:
            raise self._frame_error(exc, "bad_image") from exc
        size = rgb.shape[:2]
        k = None
        info = None
        if "camera_info" in raw:
            try:
                info = self._decode("camera_info", raw["camera_info"])
                k = camera_info_to_K(info, size)
            except FrameError as exc:
                raise self._frame_error(exc, "bad_camera_info") from exc
        depth = None
        if "depth" in raw:
            try:
                depth = depth_from_image(self._decode("depth", raw["depth"]), size, self.opts.depth_scale)
            except FrameError as exc:
                raise self._frame_error(exc, "bad_depth") from exc
        elif "lidar" in raw:
            depth = self._lidar_depth(frame, msg, info, raw["lidar"], k, size)
        semantic, instance, meta = self._labels(frame, raw, rgb, None if k is None else float(k[0, 0]))
        return Sample(image=rgb, semantic=semantic, instance=instance, depth=depth, intrinsics=k,
                      name=frame_prefix(0, frame.number, CITY), sequence="000000", frame=frame.number, meta=meta)

    def _lidar_depth(self, frame: _Frame, image_msg, info, data: bytes, k: np.ndarray,
                     size: tuple[int, int]) -> np.ndarray:
        try:
            cloud = self._decode("lidar", data)
            xyz = cloud_xyz(cloud)
        except FrameError as exc:
            raise self._frame_error(exc, "bad_lidar") from exc
        camera_frame = str(image_msg.header.frame_id) or str(info.header.frame_id)
        if not camera_frame:
            raise BagError(f"{self.bag}: {self.opts.image_topic} and {self.opts.camera_info_topic} have an empty "
                           "header.frame_id; the LiDAR projection needs the camera's optical frame")
        try:
            transform = self.tf.lookup(camera_frame, str(cloud.header.frame_id), frame.stamp_ns)
        except FrameNotFoundError as exc:
            raise BagError(f"{self.bag}: {exc}") from exc
        except ExtrapolationError as exc:
            raise self._frame_error(FrameError(str(exc), "transform"), "no_transform") from exc
        return project_points(transform_points(transform, xyz), k, size)

    def _labels(self, frame: _Frame, raw: dict[str, bytes], rgb: np.ndarray, focal: float | None = None
                ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        size = rgb.shape[:2]
        where = f"{self.bag} at {frame.stamp_ns / 1e9:.3f} s"
        if self.predictor is not None:
            # the camera's focal length, as everywhere the model runs (labels do not depend on it; its depth does)
            prediction = self.predictor(rgb, focal=focal)
            return prediction.semantic.astype(np.int32), prediction.instance.astype(np.int32), {"pseudo_labels": True}
        try:
            if "panoptic" in raw:
                classes, ids = decode_panoptic(self._decode("panoptic", raw["panoptic"]), self.class_map)
                where = f"{self.opts.panoptic_topic} ({where})"
            elif "semantic" in raw:
                classes = image_array(self._decode("semantic", raw["semantic"]), "semantic image", LABEL_ENCODINGS)
                ids = image_array(self._decode("instance", raw["instance"]), "instance image", LABEL_ENCODINGS)
                where = f"{self.opts.semantic_topic} ({where})"
            else:
                unlabelled = np.full(size, VOID_CLASS, np.int32)
                return unlabelled, np.zeros(size, np.int32), {"unlabelled": True}
            classes = fit_to_image(np.asarray(classes), size, "label image")
            ids = fit_to_image(np.asarray(ids), size, "instance image")
        except FrameError as exc:
            raise self._frame_error(exc, "bad_labels") from exc
        semantic = self.class_map.apply(classes, where)
        instance = renumber_instances(semantic, ids.astype(np.int64))
        if instance.max(initial=0) >= LABEL_DIVISOR:
            raise self._frame_error(FrameError(f"{int(instance.max())} thing instances", "labels"),
                                    "too_many_instances")
        return semantic, instance, {}

    # -------------------------------------------------------------------------------------- metadata
    def _load_predictor(self) -> None:
        from panopticdepth_core.inference.model_files import resolve_model
        from panopticdepth_core.inference.predictor import Predictor

        config, weights = self.opts.pseudo_labels
        try:
            model = resolve_model(config, weights, names=("--pseudo-labels CONFIG", "--pseudo-labels WEIGHTS"))
            predictor = Predictor(model.cfg, model.weights, device=self.opts.device)
        except Exception as exc:
            raise BagError(f"--pseudo-labels {config} {weights}: cannot load the model ({type(exc).__name__}: "
                           f"{exc})") from exc
        self.predictor = predictor
        self.pseudo_meta = {
            "config": str(Path(config).resolve()), "config_sha256": _sha256(config),
            "weights": str(Path(weights).resolve()), "weights_sha256": _sha256(weights),
            "model_config_sha256": hashlib.sha256(predictor.cfg.dump().encode()).hexdigest(),
        }

    def metadata(self, reader, conns: dict[str, list], storage: str) -> dict[str, Any]:
        opts = self.opts
        if self.pseudo_meta is not None:
            label_source = "pseudo-labels"
        elif opts.semantic_topic or opts.panoptic_topic:
            label_source = "topics"
        else:
            label_source = None
        class_map = None
        if label_source == "topics":
            class_map = {"file": self.class_map.source if opts.class_map else None,
                         "sha256": _sha256(opts.class_map) if opts.class_map else None,
                         "map": {str(k): v for k, v in sorted(self.class_map.mapping.items())},
                         "default": self.class_map.default, "panoptic_divisor": self.class_map.panoptic_divisor}
        return {
            "generator": "panopticdepth extract",
            "source_bag": str(self.bag.resolve()),
            "storage": storage,
            "bag_message_count": int(reader.message_count),
            "message_types": opts.distro,
            "topics": {role: {"topic": conns[role][0].topic, "type": conns[role][0].msgtype} for role in conns},
            "time_tolerance_s": opts.time_tolerance,
            "every": opts.every,
            "max_rate_hz": opts.max_rate,
            "depth_source": "depth_image" if opts.depth_topic else "lidar" if opts.lidar_topic else None,
            "depth_scale": opts.depth_scale,
            "label_source": label_source,
            "pseudo_labels": self.pseudo_meta,
            "class_map": class_map,
            "split": opts.split,
            "layout": "Cityscapes-DPS (ViP-DeepLab Cityscapes-DVPS), flat per split",
            "frame_naming": "000000_{frame:06d}_bag_000000_{frame:06d}; frame = index among matched images",
            "label_encoding": "16-bit PNG, train_id * 1000 + instance (things), train_id * 1000 (stuff), 32000 void",
            "depth_encoding": "16-bit PNG, round(z-depth metres * 256), 0 = no depth",
            "summary": self.summary.to_dict(),
            "frames": self.frames_meta,
        }

    # -------------------------------------------------------------------------------------- run
    def run(self) -> ExtractSummary:
        opts = self.opts
        reader = open_reader(self.bag, opts.storage)
        storage = reader.storage
        try:
            conns = check_topics(reader, self.bag, opts.topics())
            self._image_type = conns["image"][0].msgtype
            read = [c for cs in conns.values() for c in cs]
            self.summary.notes = [*reader.notes, types_line(reader, read, opts.distro)]
            if not opts.camera_info_topic:
                self.summary.notes.append(NO_CAMERA_INFO)
            frames = self.index(reader, conns)
            if not frames:
                raise NoFramesError(f"{self.bag}: no frame has every input; nothing written (are the sensors' "
                                    "clocks in sync? see --time-tolerance).\n"
                                    + self.summary.format(opts.time_tolerance), self.summary)
            if opts.pseudo_labels:
                self._load_predictor()
            out = Path(opts.out)
            out.mkdir(parents=True, exist_ok=True)
            final = out / opts.split
            partial = out / f".{opts.split}.partial-{os.getpid()}"
            if partial.exists():
                shutil.rmtree(partial)
            try:
                partial.mkdir()
                self.write(reader, conns, frames, partial)
                if self.summary.written == 0:
                    raise NoFramesError(f"{self.bag}: every matched frame was unusable; nothing written.\n"
                                        + self.summary.format(opts.time_tolerance), self.summary)
                self.summary.output = str(final)
                with open(partial / "dataset.json", "w", encoding="utf-8", newline="\n") as f:
                    json.dump(self.metadata(reader, conns, storage), f, indent=2, sort_keys=True)
                    f.write("\n")
                if final.exists():  # validated empty before the run
                    final.rmdir()
                partial.rename(final)
            except BaseException:
                self.summary.output = None
                shutil.rmtree(partial, ignore_errors=True)
                raise
        finally:
            reader.close()
        return self.summary


def extract_bag(opts: ExtractOptions) -> ExtractSummary:
    """Extract ``opts.bag`` into ``opts.out/opts.split``; raises BagError (NoFramesError: nothing written)."""
    validate_options(opts)
    return _Extractor(opts).run()
