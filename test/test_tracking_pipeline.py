"""Tracking in the node's per-frame path (FramePipeline, shared with `panopticdepth bag`), and the vision_msgs
detection outputs checked against the Humble and Jazzy .msg definitions."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from panopticdepth_core.modeling.types import Segment
from panopticdepth_ros import messages as m
from panopticdepth_ros.frame_pipeline import FramePipeline, PipelineSettings

H, W = 48, 96
FRAME = "cam_optical"
ROS_REFS = Path(os.environ.get("PANOPTICDEPTH_ROS_REFS", "/work/ros_refs"))
CAR, PERSON = 13, 11


class MovingThings:
    """Two cars crossing and a standing person; frame t is read from the image's first pixel. Things are numbered
    in a new random order every frame, as the per-frame post-processing numbers them by score."""

    def __init__(self) -> None:
        self.rng = np.random.default_rng(0)

    def boxes(self, t: int):
        return {"a": (CAR, 2 + 4 * t, 20, 20 + 4 * t, 34, 8.0),
                "b": (CAR, 78 - 3 * t, 22, 88 - 3 * t, 32, 14.0),  # behind a in some frames
                "p": (PERSON, 44, 4, 50, 18, 20.0)}

    def __call__(self, rgb: np.ndarray, focal: float | None = None):
        t = int(rgb[0, 0, 0])
        semantic = np.zeros((H, W), np.int32)
        depth = np.full((H, W), 40.0, np.float32)
        panoptic = np.zeros((H, W), np.int32)
        numbers = self.rng.permutation(3) + 1
        self.truth = {}
        for (key, (category, x0, y0, x1, y1, z)), number in zip(sorted(self.boxes(t).items(), key=lambda kv: -kv[1][5]),
                                                                numbers):
            panoptic[y0:y1, x0:x1] = category * 1000 + number
            semantic[y0:y1, x0:x1] = category
            depth[y0:y1, x0:x1] = z
            self.truth[key] = category * 1000 + int(number)
        present = set(np.unique(panoptic).tolist())
        self.truth = {k: v for k, v in self.truth.items() if v in present}
        self.panoptic = panoptic
        segments = [Segment(v, v // 1000, True, 0.8, 1, v % 1000) for v in self.truth.values()]
        instance = np.where(panoptic % 1000 > 0, panoptic % 1000, 0).astype(np.int32)
        return SimpleNamespace(panoptic=panoptic, semantic=semantic, instance=instance, depth=depth,
                               segments=segments)


def _inputs(store, t: int, stamp: float, fx: float = 60.0):
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[0, 0, 0] = t
    sec, nsec = int(stamp), int(round((stamp - int(stamp)) * 1e9))
    image = m.image_message(store, m.make_header(store, sec, nsec, FRAME), rgb, "rgb8")
    k = np.array([[fx, 0, (W - 1) / 2], [0, fx, (H - 1) / 2], [0, 0, 1]])
    info = m.camera_info_message(store, m.make_header(store, sec, nsec, FRAME), k, (H, W))
    return m.serialize(image, m.IMAGE, store), m.serialize(info, m.CAMERA_INFO, store)


def _run(pipeline, predictor, frames, start=0.0, fx=60.0):
    """Per frame: (truth key -> panoptic id in ~/panoptic, the deserialized outputs, warnings)."""
    store = pipeline.store
    out = []
    for i, t in enumerate(frames):
        result = pipeline.process(*_inputs(store, t, start + 0.1 * i, fx))
        assert not result.skipped, result.reason
        msgs = {s: m.deserialize(data, typename, store) for s, (typename, data) in result.outputs.items()}
        panoptic = np.frombuffer(msgs["panoptic"].data, "<i4").reshape(H, W)
        ids = {}
        for key, frame_id in predictor.truth.items():  # the thing's visible pixels, as the predictor drew them
            values = np.unique(panoptic[predictor.panoptic == frame_id])
            assert values.size == 1
            ids[key] = int(values[0])
        out.append((ids, msgs, result.warnings))
    return out


def test_ids_persist_in_every_output_and_detections_carry_them():
    predictor = MovingThings()
    pipeline = FramePipeline(predictor, PipelineSettings())
    frames = _run(pipeline, predictor, range(20))
    for key in "abp":
        assert len({ids[key] for ids, _, _ in frames if key in ids}) == 1, key
    assert any("b" not in ids for ids, _, _ in frames), "b must be hidden in some frames"
    assert len({ids["a"] for ids, _, _ in frames} | {ids["b"] for ids, _, _ in frames if "b" in ids}) == 2
    for ids, msgs, _ in frames:
        panoptic = np.frombuffer(msgs["panoptic"].data, "<i4").reshape(H, W)
        instance = np.frombuffer(msgs["instance"].data, "<u2").reshape(H, W)
        np.testing.assert_array_equal(instance, np.where(panoptic % 1000 > 0, panoptic % 1000, 0))
        cloud = m.pointcloud2_to_array(msgs["points"])
        np.testing.assert_array_equal(cloud["instance"], instance)
        marker_ids = {mk.id for mk in msgs["instances"].markers if mk.ns == "boxes"}
        det2 = {int(d.id): d for d in msgs["detections"].detections}
        det3 = {int(d.id): d for d in msgs["detections_3d"].detections}
        assert set(det2) == set(ids.values())
        assert set(det3) == marker_ids <= set(det2)  # 3D: the markers' boxes (a sliver has too few points)
        for pid, det in det2.items():
            assert det.results[0].hypothesis.class_id == str(pid // 1000)
            assert det.results[0].hypothesis.score == pytest.approx(0.8)
            ys, xs = np.nonzero(panoptic == pid)
            assert det.bbox.size_x == xs.max() - xs.min() + 1 and det.bbox.size_y == ys.max() - ys.min() + 1
            assert det.bbox.center.position.x == (xs.max() + xs.min()) / 2
            assert (det.header.stamp.sec, det.header.frame_id) == (msgs["panoptic"].header.stamp.sec, FRAME)
        for pid, det in det3.items():
            marker = next(mk for mk in msgs["instances"].markers if mk.ns == "boxes" and mk.id == pid)
            assert det.bbox.center.position.z == pytest.approx(marker.pose.position.z)
            assert det.bbox.size.x == pytest.approx(marker.scale.x)
    assert pipeline.stats.tracking_resets == 0


def test_without_tracking_ids_follow_the_frame_numbering():
    predictor = MovingThings()
    pipeline = FramePipeline(predictor, PipelineSettings(track=False))
    frames = _run(pipeline, predictor, range(6))
    assert len({ids["a"] for ids, _, _ in frames}) > 1  # the random numbering shows through


def test_time_going_back_and_a_new_camera_restart_tracking():
    predictor = MovingThings()
    pipeline = FramePipeline(predictor, PipelineSettings())
    first = _run(pipeline, predictor, [0, 1, 2], start=100.0)
    assert all(not warnings for _, _, warnings in first)
    again = _run(pipeline, predictor, [5, 6], start=50.0)  # the bag played again
    assert any("time went back" in w for w in again[0][2]) and not again[1][2]
    other = _run(pipeline, predictor, [7], start=60.0, fx=90.0)
    assert any("camera changed" in w for w in other[0][2])
    assert pipeline.stats.tracking_resets == 2
    # ids start over after a restart: the first thing of each class is 1 again
    assert {pid % 1000 for pid in other[0][0].values()} <= {1, 2}


def _reference_store(distro: str):
    folder = ROS_REFS / distro / "vision_msgs" / "msg"
    if not folder.is_dir():
        pytest.skip(f"no vision_msgs reference definitions at {folder} (set PANOPTICDEPTH_ROS_REFS)")
    store = get_typestore(Stores.ROS2_HUMBLE if distro == "humble" else Stores.ROS2_JAZZY)
    types = {}
    for path in sorted(folder.glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"vision_msgs/msg/{path.stem}"))
    store.register(types)
    return store


@pytest.mark.parametrize("distro", ["humble", "jazzy"])
def test_detections_deserialize_with_the_released_definitions(distro: str):
    """The bytes we publish are read field by field by a type store built from the distro's own .msg files, and
    serialize back to the same bytes."""
    reference = _reference_store(distro)
    predictor = MovingThings()
    pipeline = FramePipeline(predictor, PipelineSettings(distro=distro))
    result = pipeline.process(*_inputs(pipeline.store, 3, 1.0))
    for suffix, typename in (("detections", m.DETECTION_2D_ARRAY), ("detections_3d", m.DETECTION_3D_ARRAY)):
        data = result.outputs[suffix][1]
        msg = reference.deserialize_cdr(data, typename)
        assert len(msg.detections) == 3
        assert {d.id for d in msg.detections} == {str(v) for v in result_ids(result, pipeline.store)}
        assert bytes(reference.serialize_cdr(msg, typename)) == data


def result_ids(result, store) -> set[int]:
    panoptic = m.deserialize(result.outputs["panoptic"][1], m.IMAGE, store)
    values = np.frombuffer(panoptic.data, "<i4")
    return {int(v) for v in np.unique(values) if v > 0 and v % 1000}


def test_detections_deserialize_with_rclpy():
    """Where ROS 2 is sourced: rclpy's own deserializer reads the bytes into vision_msgs classes."""
    serialization = pytest.importorskip("rclpy.serialization", reason="needs a sourced ROS 2")
    vision = pytest.importorskip("vision_msgs.msg", reason="needs vision_msgs")
    predictor = MovingThings()
    pipeline = FramePipeline(predictor, PipelineSettings())
    result = pipeline.process(*_inputs(pipeline.store, 3, 1.0))
    two = serialization.deserialize_message(result.outputs["detections"][1], vision.Detection2DArray)
    three = serialization.deserialize_message(result.outputs["detections_3d"][1], vision.Detection3DArray)
    ids = {str(v) for v in result_ids(result, pipeline.store)}
    assert {d.id for d in two.detections} == ids and {d.id for d in three.detections} <= ids
    assert all(d.results[0].hypothesis.class_id in ("11", "13") for d in two.detections)
    assert two.header.frame_id == FRAME and three.detections[0].bbox.size.x > 0



def test_core_predictions_are_relabelled_in_place_and_other_results_left_alone():
    """A core Prediction's maps are new on every call, so tracking writes its ids into them (no copies); any other
    predictor may keep what it returned, so those maps stay as they were."""
    from panopticdepth_core.inference.predictor import Prediction

    class TwoThings:
        def __init__(self, core: bool) -> None:
            self.core = core

        def __call__(self, rgb, focal=None):
            panoptic = np.zeros((H, W), np.int32)
            panoptic[10:20, 10:30] = CAR * 1000 + 2  # numbered 2 by the frame; the tracker's first car id is 1
            panoptic[5:15, 50:60] = PERSON * 1000 + 1
            semantic = panoptic // 1000
            instance = (panoptic % 1000).astype(np.int32)
            depth = np.full((H, W), 10.0, np.float32)
            segments = [Segment(CAR * 1000 + 2, CAR, True, 0.9, 200, 2), Segment(PERSON * 1000 + 1, PERSON, True, 0.8,
                                                                                  100, 1)]
            self.original = panoptic.copy()
            kind = Prediction if self.core else SimpleNamespace
            self.returned = kind(panoptic=panoptic, semantic=semantic, instance=instance, depth=depth,
                                 segments=segments)
            return self.returned

    for core in (False, True):
        predictor = TwoThings(core)
        pipeline = FramePipeline(predictor, PipelineSettings())
        result = pipeline.process(*_inputs(pipeline.store, 0, 0.0))
        published = np.frombuffer(m.deserialize(result.outputs["panoptic"][1], m.IMAGE, pipeline.store).data,
                                  "<i4").reshape(H, W)
        assert (published == CAR * 1000 + 1).sum() == 200 and not (published == CAR * 1000 + 2).any()
        expected = published if core else predictor.original
        assert np.array_equal(predictor.returned.panoptic, expected)
