"""Synthetic drives: persistent ids, a moving camera with recorded poses, one continuous bag with /tf, and the
bag tool's tracking on such a drive checked against the ground-truth ids."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from rosbags.rosbag2 import Reader

from panopticdepth_core.data.dps_writer import decode_instance_train_ids
from panopticdepth_core.data.synthetic import scene_seed, write_synthetic_sequences
from panopticdepth_core.data.synthetic_layout import sample_scene
from panopticdepth_core.data.synthetic_sequence import render_drive_frame, sample_motion, scene_at
from panopticdepth_core.modeling.types import Segment
from panopticdepth_ros import messages as m
from panopticdepth_ros.bags.offline import run_bag
from panopticdepth_ros.bags.synthetic import synthetic_frame, write_synthetic_bag
from panopticdepth_ros.frame_pipeline import FramePipeline, PipelineSettings

SIZE = (48, 96)


def _drive_with_movers(seed: int = 1):
    for s in range(20):
        scene = sample_scene(scene_seed(seed, s), SIZE)
        motion = sample_motion(scene)
        if sum(v != (0.0, 0.0) for v in motion.velocities) >= 2:
            return s, scene, motion
    raise AssertionError("no drive with moving things")


def test_a_drive_moves_camera_and_things_and_keeps_ids():
    s, scene, motion = _drive_with_movers()
    moved = scene_at(scene, motion, 0.5)
    assert moved.camera.x == pytest.approx(0.5 * motion.camera_speed) and moved.camera.x > 1.0
    for index, (vx, vy) in enumerate(motion.velocities):
        p = scene.objects[index].primitives[0]
        assert moved.primitives[p].params[0] == pytest.approx(scene.primitives[p].params[0] + 0.5 * vx)
        assert moved.primitives[p].params[1] == pytest.approx(scene.primitives[p].params[1] + 0.5 * vy)
    frames = [render_drive_frame(scene, motion, f, 10.0) for f in range(0, 12, 4)]
    classes_of: dict[int, set[int]] = {}
    for sample in frames:
        for instance in np.unique(sample.instance[sample.instance > 0]):
            classes_of.setdefault(int(instance), set()).update(np.unique(sample.semantic[sample.instance == instance]))
    assert classes_of and all(len(c) == 1 for c in classes_of.values())  # an id always names one object's class
    assert all(i - 1 < len(scene.objects) and scene.objects[i - 1].class_id in c for i, c in classes_of.items())
    xs = [sample.meta["extrinsic"]["x"] for sample in frames]
    assert xs == sorted(xs) and xs[0] == 0.0
    again = render_drive_frame(scene, motion, 8, 10.0)
    assert np.array_equal(again.image, frames[2].image) and np.array_equal(again.instance, frames[2].instance)


def test_sequences_are_written_in_the_dvps_naming(tmp_path: Path):
    split = write_synthetic_sequences(tmp_path, sequences=2, frames=3, size=SIZE, seed=3, progress=False)
    names = sorted(p.name for p in split.glob("*_leftImg8bit.png"))
    assert names == [f"{s:06d}_{f:06d}_synth_{s:06d}_{f:06d}_leftImg8bit.png" for s in range(2) for f in range(3)]
    from PIL import Image

    label = np.asarray(Image.open(split / "000001_000002_synth_000001_000002_gtFine_instanceTrainIds.png"))
    scene = sample_scene(scene_seed(3, 1), SIZE)
    truth = render_drive_frame(scene, sample_motion(scene), 2, 10.0)
    semantic, instance = decode_instance_train_ids(label)
    assert np.array_equal(instance, truth.instance)


def test_a_drive_bag_is_one_recording_with_tf(tmp_path: Path):
    bag = write_synthetic_bag(tmp_path / "drive", 4, size=SIZE, seed=0, sequence=0, with_lidar=False)
    store = m.get_store()
    tf, images = [], 0
    with Reader(bag) as reader:
        for connection, _, data in reader.messages():
            if connection.topic == "/tf":
                tf.append(m.deserialize(data, connection.msgtype, store))
            images += connection.topic == "/camera/image_raw"
    assert images == 4 and len(tf) == 4
    xs = [msg.transforms[0].transform.translation.x for msg in tf]
    assert [msg.transforms[0].header.frame_id for msg in tf] == ["odom"] * 4
    assert xs == sorted(xs) and xs[-1] > xs[0]


class GroundTruthPredictor:
    """Returns a drive's ground truth with the things renumbered in a random order each frame (as the per-frame
    post-processing numbers them by score), so only tracking can give them back their ids. Like a detector, it
    misses things smaller than MIN_AREA pixels (void there)."""

    MIN_AREA = 20

    def __init__(self, frames) -> None:
        self.frames, self.index, self.rng = frames, 0, np.random.default_rng(0)

    def __call__(self, rgb, focal=None):
        sample = self.frames[self.index].sample
        assert np.array_equal(rgb, sample.image)
        self.index += 1
        ids, areas = np.unique(sample.instance[sample.instance > 0], return_counts=True)
        small = ids[areas < self.MIN_AREA]
        ids = ids[areas >= self.MIN_AREA]
        renumber = np.zeros(max(1000, int(sample.instance.max()) + 1), np.int32)
        renumber[ids] = self.rng.permutation(ids.size) + 1
        instance = renumber[sample.instance]
        panoptic = (sample.semantic * 1000 + instance).astype(np.int32)
        panoptic[np.isin(sample.instance, small)] = -1
        segments = [Segment(int(v), int(v) // 1000, True, 0.9, 1, int(v) % 1000)
                    for v in np.unique(panoptic[instance > 0])]
        return SimpleNamespace(panoptic=panoptic, semantic=sample.semantic, instance=instance,
                               depth=sample.depth, segments=segments)


def test_the_bag_tool_keeps_each_objects_id_through_a_drive(tmp_path: Path):
    """A 30-frame drive through `panopticdepth bag`: every ground-truth object has one id wherever it is seen, and
    the detections carry exactly the ~/instance ids."""
    frames_count, seed, size = 30, 0, (64, 128)
    bag = write_synthetic_bag(tmp_path / "drive", frames_count, size=size, seed=seed, sequence=0, with_lidar=False,
                              with_labels=False, focal=80.0)
    frames = [synthetic_frame(i, size, seed, focal=80.0, sequence=0) for i in range(frames_count)]
    pipeline = FramePipeline(GroundTruthPredictor(frames), PipelineSettings())
    out = tmp_path / "out"
    run_bag(bag, out, outputs=["panoptic", "instance", "detections", "detections_3d"], pipeline=pipeline,
            progress=False, log=lambda _: None)
    store = m.get_store()
    by_topic: dict[str, list] = {}
    with Reader(out) as reader:
        for connection, _, data in reader.messages():
            by_topic.setdefault(connection.topic, []).append(m.deserialize(data, connection.msgtype, store))
    panoptics = by_topic["/panopticdepth_node/panoptic"]
    assert len(panoptics) == frames_count
    ids_of: dict[int, set[int]] = {}
    for frame, msg, instance_msg, det in zip(frames, panoptics, by_topic["/panopticdepth_node/instance"],
                                             by_topic["/panopticdepth_node/detections"]):
        panoptic = np.frombuffer(msg.data, "<i4").reshape(size)
        instance = np.frombuffer(instance_msg.data, "<u2").reshape(size)
        truth = frame.sample.instance
        for obj in np.unique(truth[truth > 0]):
            if np.count_nonzero(truth == obj) >= GroundTruthPredictor.MIN_AREA:
                ids_of.setdefault(int(obj), set()).update(np.unique(panoptic[truth == obj]).tolist())
        shown = {int(v) for v in np.unique(panoptic) if v > 0 and v % 1000}
        assert {int(d.id) for d in det.detections} == shown
        assert {int(d.id) % 1000 for d in det.detections} == {int(v) for v in np.unique(instance) if v}
    assert len(ids_of) >= 3, "the drive must show several things"
    assert all(len(ids) == 1 for ids in ids_of.values()), {k: v for k, v in ids_of.items() if len(v) > 1}
    assert len({next(iter(ids)) for ids in ids_of.values()}) == len(ids_of)  # and no two objects share one


def test_bag_no_track_flag_reaches_the_track_parameter(monkeypatch, tmp_path: Path):
    from panopticdepth_ros.bags import offline
    from panopticdepth_ros.cli import main

    seen = {}

    def fake_run_bag(input_path, output_path, params, **kwargs):
        seen["track"] = params.track
        raise offline.BagError("stop here")

    monkeypatch.setattr(offline, "run_bag", fake_run_bag)
    assert main(["bag", "--input", str(tmp_path), "--output", str(tmp_path / "o"), "--no-track", "--quiet"]) == 1
    assert seen == {"track": False}
    assert main(["bag", "--input", str(tmp_path), "--output", str(tmp_path / "o"), "--quiet"]) == 1
    assert seen == {"track": True}


def test_the_bag_tool_tracks_in_the_tf_world_frame(tmp_path: Path):
    """With the drive's /tf (odom -> base_link), positions are compared in odom: a parked car keeps one position
    while the camera drives past it, and the pose the tracker gets is the camera's recorded pose."""
    from panopticdepth_core.data.synthetic_sequence import camera_to_world
    from panopticdepth_ros.bags.io import open_reader
    from panopticdepth_ros.bags.offline import camera_pose_lookup

    size, frames_count = (64, 128), 6
    bag = write_synthetic_bag(tmp_path / "drive", frames_count, size=size, seed=0, sequence=0, with_lidar=False,
                              focal=80.0)
    reader = open_reader(bag)
    try:
        lookup, note = camera_pose_lookup(reader, m.get_store())
    finally:
        reader.close()
    assert lookup is not None and "root frame" in note
    store = m.get_store()
    for i in (0, 5):
        frame = synthetic_frame(i, size, 0, focal=80.0, sequence=0)
        header = m.make_header(store, *m.split_stamp(frame.stamp_ns), "camera_optical_frame")
        pose = lookup(header)
        truth = camera_to_world(frame.sample.meta["extrinsic"])  # the camera in the drive's street frame
        first = camera_to_world(synthetic_frame(0, size, 0, focal=80.0, sequence=0).sample.meta["extrinsic"])
        # odom is the street frame up to where base_link starts: compare the motion since frame 0
        np.testing.assert_allclose(np.linalg.inv(lookup(m.make_header(store, *m.split_stamp(
            synthetic_frame(0, size, 0, focal=80.0, sequence=0).stamp_ns), "camera_optical_frame"))) @ pose,
            np.linalg.inv(first) @ truth, atol=1e-6)
    unknown = m.make_header(store, 0, 0, "some_other_frame")
    assert lookup(unknown) is None


def test_synth_command_sequences_flags(tmp_path: Path, capsys):
    from panopticdepth_ros.cli import main

    assert main(["synth", "--out", str(tmp_path / "a"), "--sequences", "1", "--frames", "2", "--size", "24x48",
                 "--quiet"]) == 0
    assert len(list((tmp_path / "a" / "train").glob("000000_00000?_synth_000000_00000?_leftImg8bit.png"))) == 2
    assert main(["synth", "--out", str(tmp_path / "b"), "--size", "24x48", "--quiet"]) == 2
    assert main(["synth", "--out", str(tmp_path / "b"), "--num", "1", "--sequences", "1", "--quiet"]) == 2
    assert "either --num" in capsys.readouterr().err
