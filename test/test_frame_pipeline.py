"""The node's per-frame path without ROS: fake predictor, CDR bytes in and out, skipped frames, diagnostics."""

from __future__ import annotations

import io
import platform
import tracemalloc
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from fuzzing import HealthCheck, given, settings, st
from PIL import Image as PilImage

from panopticdepth_core.inference.pointcloud import unpack_rgb
from panopticdepth_core.inference.visualize import colorize_panoptic, overlay
from panopticdepth_ros import frame_pipeline as fp
from panopticdepth_ros import messages as m
from panopticdepth_ros.diagnostics import STAGES
from panopticdepth_ros.frame_pipeline import OUTPUTS, FramePipeline, PipelineSettings
from panopticdepth_ros.memory import LargeFrameRelease

HEIGHT, WIDTH = 24, 32
STAMP = (1712345678, 987654321)
FRAME = "front_camera_color_optical_frame"


class FakePredictor:
    """Deterministic maps at ``scale`` times the input size: a car, a person, road, sky and a void corner."""

    def __init__(self, scale: float = 1.0, tensors: bool = False, depth: bool = True) -> None:
        self.scale, self.tensors, self.depth, self.calls = scale, tensors, depth, 0

    def __call__(self, rgb: np.ndarray, focal: float | None = None):
        assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
        self.calls += 1
        height, width = round(rgb.shape[0] * self.scale), round(rgb.shape[1] * self.scale)
        semantic = np.zeros((height, width), np.int32)
        instance = np.zeros((height, width), np.int32)
        semantic[: height // 4] = 10
        semantic[height // 2:, : width // 3], instance[height // 2:, : width // 3] = 13, 1
        semantic[height // 4: height // 2, width // 2:], instance[height // 4: height // 2, width // 2:] = 11, 2
        semantic[-2:, -2:] = 255
        panoptic = np.where(semantic == 255, -1, semantic * 1000 + instance).astype(np.int32)
        v = np.arange(height, dtype=np.float32)[:, None]
        depth = np.broadcast_to(3.0 + v, (height, width)).copy() if self.depth else None
        maps = [panoptic, semantic, instance, depth]
        if self.tensors:
            maps = [None if x is None else torch.from_numpy(x) for x in maps]
        return SimpleNamespace(panoptic=maps[0], semantic=maps[1], instance=maps[2], depth=maps[3], segments=[],
                               timings={"preprocess": 0.001, "model": 0.002, "postprocess": 0.003, "to_numpy": 0.0})


def _store(distro: str = "humble"):
    return m.get_store(distro)


def _image(store, rgb: np.ndarray | None = None, encoding: str = "rgb8"):
    rgb = np.random.default_rng(0).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8) if rgb is None else rgb
    header = m.make_header(store, STAMP[0], STAMP[1], FRAME)
    pixels = rgb[:, :, ::-1] if encoding == "bgr8" else rgb
    return m.image_message(store, header, pixels, encoding), rgb


def _camera_info(store, k=(30.0, 0.0, 15.5, 0.0, 30.0, 11.5, 0.0, 0.0, 1.0), height=HEIGHT, width=WIDTH):
    types = store.types
    roi = types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    p = np.zeros(12)
    p[[0, 1, 2, 4, 5, 6, 8, 9, 10]] = k
    return types[m.CAMERA_INFO](
        header=m.make_header(store, STAMP[0], STAMP[1], FRAME), height=height, width=width,
        distortion_model="plumb_bob", d=np.zeros(5), k=np.array(k, dtype=np.float64), r=np.eye(3).reshape(-1), p=p,
        binning_x=0, binning_y=0, roi=roi)


def _bytes(msg, typename, store) -> bytes:
    return m.serialize(msg, typename, store)


@pytest.fixture
def frame():
    store = _store()
    image, rgb = _image(store)
    return store, _bytes(image, m.IMAGE, store), _bytes(_camera_info(store), m.CAMERA_INFO, store), rgb


def _deserialized(result, store):
    return {suffix: m.deserialize(data, typename, store) for suffix, (typename, data) in result.outputs.items()}


@pytest.mark.parametrize("distro", ["humble", "jazzy"])
def test_all_outputs_built_with_the_input_header(distro: str) -> None:
    store = _store(distro)
    image, _ = _image(store)
    pipeline = FramePipeline(FakePredictor(), PipelineSettings(distro=distro))
    result = pipeline.process(_bytes(image, m.IMAGE, store), _bytes(_camera_info(store), m.CAMERA_INFO, store))
    assert not result.skipped and result.reason is None and result.warnings == []
    assert set(result.outputs) == set(OUTPUTS)
    for suffix, msg in _deserialized(result, store).items():
        assert result.outputs[suffix][0] == fp.OUTPUT_TYPES[suffix]
        headers = [x.header for x in msg.markers] if suffix == "instances" else [msg.header]
        for header in headers:
            assert (header.stamp.sec, header.stamp.nanosec, header.frame_id) == (*STAMP, FRAME), suffix
    assert set(result.timings) == set(STAGES)
    assert result.timings["model"] == pytest.approx(0.002)  # the predictor's own split is used
    assert pipeline.stats.frames_in == pipeline.stats.processed == 1


def test_only_asked_for_outputs_are_built(frame, monkeypatch: pytest.MonkeyPatch) -> None:
    store, image, info, _ = frame

    def forbidden(*args, **kwargs):
        raise AssertionError("built although not asked for")

    monkeypatch.setattr(fp, "fill_cloud", forbidden)
    monkeypatch.setattr(fp, "instance_boxes", forbidden)
    monkeypatch.setattr(fp, "overlay", forbidden)
    monkeypatch.setattr(fp, "colorize_panoptic", forbidden)
    pipeline = FramePipeline(FakePredictor())
    result = pipeline.process(image, info, wanted=["semantic", "depth"])
    assert not result.skipped, result.reason
    assert set(result.outputs) == {"semantic", "depth"}
    assert pipeline.process(image, info, wanted=[]).outputs == {}
    with pytest.raises(ValueError, match="unknown outputs"):
        pipeline.process(image, info, wanted=["pointcloud"])


def test_outputs_carry_the_predictions(frame) -> None:
    store, image, info, rgb = frame
    predictor = FakePredictor()
    result = FramePipeline(predictor, PipelineSettings(track=False)).process(image, info)  # ids as predicted
    out = _deserialized(result, store)
    truth = predictor(rgb)
    panoptic = np.frombuffer(out["panoptic"].data, "<i4").reshape(HEIGHT, WIDTH)
    np.testing.assert_array_equal(panoptic, truth.panoptic)
    np.testing.assert_array_equal(np.frombuffer(out["semantic"].data, np.uint8).reshape(HEIGHT, WIDTH),
                                  truth.semantic)
    np.testing.assert_array_equal(np.frombuffer(out["depth"].data, "<f4").reshape(HEIGHT, WIDTH), truth.depth)
    blended = overlay(rgb, colorize_panoptic(truth.semantic, truth.instance), 0.5, labels=truth.panoptic)
    np.testing.assert_array_equal(np.frombuffer(out["overlay"].data, np.uint8).reshape(HEIGHT, WIDTH, 3), blended)
    cloud = m.pointcloud2_to_array(out["points"])
    np.testing.assert_array_equal(unpack_rgb(cloud["rgb"]), blended)  # default cloud colour: the overlay
    np.testing.assert_array_equal(cloud["label"], truth.semantic)
    np.testing.assert_allclose(cloud["z"], truth.depth)
    texts = sorted(x.text for x in out["instances"].markers if x.text)
    assert len(texts) == 2 and texts[0].startswith("car ") and texts[1].startswith("person ")
    labels = m.deserialize(FramePipeline(predictor).label_info()[1], m.LABEL_INFO, store)
    assert labels.class_map[13].class_name == "car"


def test_bad_frames_are_skipped_counted_and_named(frame) -> None:
    store, image, info, rgb = frame
    predictor = FakePredictor()
    pipeline = FramePipeline(predictor)
    bad_encoding, _ = _image(store)
    bad_encoding.encoding = "yuv422"
    cases = [
        (image[: len(image) // 2], info, "deserialize"),
        (b"", info, "deserialize"),
        (_bytes(bad_encoding, m.IMAGE, store), info, "encoding"),
    ]
    for image_bytes, info_bytes, code in cases:
        result = pipeline.process(image_bytes, info_bytes)
        assert result.skipped and result.code == code and result.outputs == {}, (code, result.reason)
        assert result.reason
    assert "yuv422" in pipeline.process(_bytes(bad_encoding, m.IMAGE, store), info).reason
    assert predictor.calls == 0  # bad frames never reach the model
    assert pipeline.stats.frames_in == 4 and pipeline.stats.processed == 0
    assert pipeline.stats.dropped == {"deserialize": 2, "encoding": 2}
    typename, data = pipeline.diagnostics((5, 0))
    status = m.deserialize(data, typename, store).status[0]
    values = {kv.key: kv.value for kv in status.values}
    assert status.level == 1 and values["frames in"] == "4" and values["frames processed"] == "0"
    assert values["dropped (encoding)"] == "2" and "yuv422" in values["last drop reason"]


TWO_D = {"panoptic", "semantic", "instance", "depth", "overlay", "detections"}


def test_unusable_camera_info_costs_only_the_3d_outputs(frame) -> None:
    """An uncalibrated camera (all-zero K), NaN, another aspect ratio or undecodable bytes: every output that
    needs no intrinsics is still published, the warning names the field, the diagnostics count it (WARN)."""
    store, image, info, rgb = frame
    pipeline = FramePipeline(FakePredictor())
    zero_info = _bytes(_camera_info(store, k=(0.0,) * 9), m.CAMERA_INFO, store)
    nan_info = _bytes(_camera_info(store, k=(np.nan,) * 9), m.CAMERA_INFO, store)
    square_info = _bytes(_camera_info(store, height=48, width=48), m.CAMERA_INFO, store)
    cases = [(zero_info, "camera_info.k: fx=0"), (nan_info, "camera_info.k: contains NaN"),
             (square_info, "camera_info is 48x48 but the image is 32x24"), (info[:20], "camera_info: cannot deserialize")]
    for info_bytes, named in cases:
        result = pipeline.process(image, info_bytes)
        assert not result.skipped, result.reason
        assert set(result.outputs) == TWO_D, named
        assert len(result.warnings) == 1 and named in result.warnings[0], result.warnings
        assert "~/depth/camera_info, ~/detections_3d, ~/instances, ~/points off" in result.warnings[0]
        assert "canonical camera" in result.warnings[0]  # what depth means now
    assert pipeline.stats.processed == 4 and not pipeline.stats.dropped
    assert pipeline.stats.partial == {"camera_info": 4}
    typename, data = pipeline.diagnostics((5, 0))
    status = m.deserialize(data, typename, store).status[0]
    values = {kv.key: kv.value for kv in status.values}
    assert status.level == 1 and "without usable intrinsics" in status.message
    assert values["without intrinsics (camera_info)"] == "4" and "deserialize" in values["last intrinsics problem"]
    # The next report is OK again once a usable camera_info arrives, and the whole frame is back.
    result = pipeline.process(image, info)
    assert set(result.outputs) == set(OUTPUTS) and not result.warnings
    assert pipeline.stats.level_and_message()[0] == 0
    # A camera_info with zeros only matters when an output that uses it is asked for.
    result = pipeline.process(image, zero_info, wanted=["semantic", "overlay"])
    assert not result.skipped and not result.warnings and pipeline.stats.partial == {"camera_info": 4}


def test_depth_scale_follows_camera_info(frame) -> None:
    """The predictor gets camera_info's fx for the image size (P by default), None without a usable one."""
    store, image, info, rgb = frame
    seen = []

    class Recording(FakePredictor):
        def __call__(self, rgb, focal=None):
            seen.append(focal)
            return super().__call__(rgb, focal)

    pipeline = FramePipeline(Recording())
    pipeline.process(image, info)
    pipeline.process(image, None)
    pipeline.process(image, _bytes(_camera_info(store, k=(0.0,) * 9), m.CAMERA_INFO, store))
    half = _camera_info(store, k=(60.0, 0.0, 31.5, 0.0, 60.0, 23.5, 0.0, 0.0, 1.0), height=2 * HEIGHT,
                        width=2 * WIDTH)  # calibrated at twice the image size: fx scales to 30
    pipeline.process(image, _bytes(half, m.CAMERA_INFO, store))
    assert seen == [30.0, None, None, 30.0]


def test_failing_predictor_does_not_raise(frame) -> None:
    _, image, info, _ = frame

    def broken(rgb, focal=None):
        raise RuntimeError("CUDA out of memory")

    pipeline = FramePipeline(broken)
    result = pipeline.process(image, info)
    assert result.skipped and result.code == "internal" and "CUDA out of memory" in result.reason
    assert pipeline.stats.dropped["internal"] == 1


def test_without_camera_info_3d_outputs_stay_off_with_a_warning(frame) -> None:
    _, image, _, _ = frame
    result = FramePipeline(FakePredictor()).process(image, None)
    assert not result.skipped
    assert set(result.outputs) == TWO_D
    assert any("camera_info" in w and "~/points" in w for w in result.warnings)


def test_panoptic_only_model_turns_depth_outputs_off(frame) -> None:
    _, image, info, _ = frame
    result = FramePipeline(FakePredictor(depth=False)).process(image, info)
    assert not result.skipped and set(result.outputs) == {"panoptic", "semantic", "instance", "overlay", "detections"}
    assert any("depth head" in w for w in result.warnings)
    # A predictor that says so up front (Predictor.depth_on) never needs a valid camera_info.
    predictor = FakePredictor(depth=False)
    predictor.depth_on = False
    zero_info = _bytes(_camera_info(_store(), k=(0.0,) * 9), m.CAMERA_INFO, _store())
    result = FramePipeline(predictor).process(image, zero_info)
    assert not result.skipped and set(result.outputs) == {"panoptic", "semantic", "instance", "overlay", "detections"}


def test_message_objects_tensors_and_bgr_input(frame) -> None:
    store, image_bytes, info, rgb = frame
    bgr, _ = _image(store, rgb, "bgr8")
    from_bytes = FramePipeline(FakePredictor()).process(image_bytes, info)
    from_objects = FramePipeline(FakePredictor(tensors=True)).process(bgr, _camera_info(store))
    assert not from_objects.skipped, from_objects.reason
    for suffix in OUTPUTS:
        assert from_objects.outputs[suffix] == from_bytes.outputs[suffix], suffix


def test_compressed_input(frame) -> None:
    store, _, info, rgb = frame
    buffer = io.BytesIO()
    PilImage.fromarray(rgb).save(buffer, format="PNG")
    msg = store.types[m.COMPRESSED_IMAGE](header=m.make_header(store, *STAMP, FRAME), format="png",
                                          data=np.frombuffer(buffer.getvalue(), np.uint8))
    pipeline = FramePipeline(FakePredictor(), PipelineSettings(compressed_input=True))
    result = pipeline.process(_bytes(msg, m.COMPRESSED_IMAGE, store), info)
    assert not result.skipped, result.reason
    overlay_msg = m.deserialize(result.outputs["overlay"][1], m.IMAGE, store)
    assert overlay_msg.header.frame_id == FRAME and (overlay_msg.height, overlay_msg.width) == (HEIGHT, WIDTH)


def test_outputs_at_another_size_scale_the_intrinsics(frame) -> None:
    store, image, info, _ = frame
    result = FramePipeline(FakePredictor(scale=0.5)).process(image, info)
    out = _deserialized(result, store)
    assert (out["depth"].height, out["depth"].width) == (HEIGHT // 2, WIDTH // 2)
    np.testing.assert_allclose(out["depth/camera_info"].k, [15.0, 0, 7.5, 0, 15.0, 5.5, 0, 0, 1])
    cloud = m.pointcloud2_to_array(out["points"])
    u = np.arange(WIDTH // 2)
    np.testing.assert_allclose(cloud["x"][0] / cloud["z"][0], (u - 7.5) / 15.0, rtol=1e-5, atol=1e-6)


def test_cloud_settings_stride_unorganized_and_colour(frame) -> None:
    store, image, info, rgb = frame
    pipeline = FramePipeline(FakePredictor(), PipelineSettings(cloud_stride=2, cloud_organized=False,
                                                              cloud_color="image", cloud_max_depth=20.0))
    cloud_msg = m.deserialize(pipeline.process(image, info, ["points"]).outputs["points"][1], m.POINT_CLOUD2, store)
    cloud = m.pointcloud2_to_array(cloud_msg).reshape(-1)
    kept_rows = 9  # depth is 3 + v: sampled rows v = 0, 2, ..., 16 are within 20 m
    assert cloud_msg.height == 1 and cloud_msg.is_dense and cloud.size == kept_rows * (WIDTH // 2)
    assert cloud["z"].max() <= 20.0
    np.testing.assert_array_equal(unpack_rgb(cloud["rgb"]).reshape(kept_rows, WIDTH // 2, 3),
                                  rgb[: 2 * kept_rows:2, ::2])
    with pytest.raises(ValueError, match="cloud_color"):
        PipelineSettings(cloud_color="rainbow")


def test_cpu_threads_bound_the_cloud_builders(frame, monkeypatch: pytest.MonkeyPatch) -> None:
    """cpu_threads (the node parameter) reaches the cloud: 0 leaves fill_cloud its default, N gives it N."""
    from panopticdepth_ros import frame_pipeline

    store, image, info, _ = frame
    asked = []
    fill = frame_pipeline.fill_cloud
    monkeypatch.setattr(frame_pipeline, "fill_cloud", lambda *a, threads=None, **k: asked.append(threads) or
                        fill(*a, threads=threads, **k))
    outputs = [FramePipeline(FakePredictor(), PipelineSettings(cpu_threads=n)).process(image, info, ["points"])
               .outputs["points"][1] for n in (0, 1, 3)]
    assert asked == [None, 1, 3] and outputs[0] == outputs[1] == outputs[2]
    with pytest.raises(ValueError, match="cpu_threads"):
        PipelineSettings(cpu_threads=-1)


def test_cloud_buffer_shrinks_after_a_large_frame() -> None:
    """One large frame must not keep its cloud's memory: the pipeline holds no more after the next normal frame
    than after the first one (the cloud is built into each frame's own message bytes; nothing of it is kept)."""
    store = _store()
    pipeline = FramePipeline(FakePredictor(), PipelineSettings(track=False))
    sizes = [(HEIGHT, WIDTH), (8 * HEIGHT, 8 * WIDTH), (HEIGHT, WIDTH)]
    held, cloud_bytes = [], []
    tracemalloc.start()
    try:
        for height, width in sizes:
            rgb = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
            image, _ = _image(store, rgb)
            info = _camera_info(store, height=height, width=width)
            image_bytes, info_bytes = _bytes(image, m.IMAGE, store), _bytes(info, m.CAMERA_INFO, store)
            result = pipeline.process(image_bytes, info_bytes, ["points"])
            cloud_bytes.append(len(result.outputs["points"][1]))
            del result, image_bytes, info_bytes, rgb, image, info
            held.append(tracemalloc.get_traced_memory()[0])
    finally:
        tracemalloc.stop()
    assert cloud_bytes[1] > 60 * cloud_bytes[0]  # the large frame's cloud was 64 times the size
    assert held[2] <= held[0] + cloud_bytes[0], held  # none of it is held afterwards


def test_freed_memory_is_given_back_once_frames_are_small_again() -> None:
    """After a large frame, the first frame at most half its size asks the allocator to return free memory, and
    the two frames after it again (what the DDS layer frees later), not every frame (glibc keeps it otherwise: the
    live node stayed 30-80 MiB above its level after one 4000x3000 frame)."""
    store = _store()
    pipeline = FramePipeline(FakePredictor(), PipelineSettings(track=False))
    log = []
    pipeline.memory = LargeFrameRelease(release=lambda: log.append("release"))
    for scale in (1, 1, 3, 3, 1, 1, 2, 1, 1, 1, 1):
        rgb = np.zeros((scale * HEIGHT, scale * WIDTH, 3), dtype=np.uint8)
        image, _ = _image(store, rgb)
        pipeline.process(_bytes(image, m.IMAGE, store), None, ["semantic"])
        log.append(scale)
    assert pipeline.process(b"not an image", None, ["semantic"]).skipped  # a skipped frame changes nothing
    # after the first small frame that follows the large ones and the two after it (the second of them the 2x
    # frame); then after the small frame that follows the 2x one (4x the pixels) and its two followers; then none
    assert log == [1, 1, 3, 3, "release", 1, "release", 1, "release", 2, "release", 1, "release", 1, "release", 1, 1]
    if platform.libc_ver()[0] == "glibc":
        assert LargeFrameRelease().release is not None  # the real malloc_trim is found


def test_rate_and_latency_from_stamp() -> None:
    ticks = iter(np.arange(0.0, 100.0, 0.25))
    store = _store()
    image, _ = _image(store)
    pipeline = FramePipeline(FakePredictor(), clock=lambda: float(next(ticks)))
    for _ in range(5):
        pipeline.process(image, None, wanted=["semantic"], receive_time=STAMP[0] + STAMP[1] * 1e-9 + 0.5)
    values = pipeline.stats.values()
    assert values["rate (Hz)"] == pytest.approx(4.0)
    assert 500.0 <= values["latency from stamp mean (ms)"] < 1500.0
    assert pipeline.stats.level_and_message()[0] == 0


#: The failure codes of bad input: FrameError codes of conversions.py ("invalid": a field of an unreadable type)
#: and of the pipeline's deserialization. "internal" (an exception nobody anticipated) is not among them.
INPUT_FAILURE_CODES = {"deserialize", "encoding", "size", "data", "empty", "truncated", "decode", "camera_info",
                       "invalid"}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz_malformed_cdr_is_classified(frame, data) -> None:
    store, image, info, _ = frame
    mutate = data.draw(st.sampled_from(["truncate", "flip", "garbage"]))
    target = data.draw(st.sampled_from(["image", "info"]))
    blob = bytearray(image if target == "image" else info)
    if mutate == "truncate":
        blob = blob[: data.draw(st.integers(0, len(blob)))]
    elif mutate == "flip":
        for _ in range(data.draw(st.integers(1, 8))):
            position = data.draw(st.integers(0, min(len(blob) - 1, 400)))
            blob[position] = data.draw(st.integers(0, 255))
    else:
        blob = bytearray(data.draw(st.binary(max_size=300)))
    pipeline = FramePipeline(FakePredictor())
    args = (bytes(blob), info) if target == "image" else (image, bytes(blob))
    result = pipeline.process(*args)
    # Malformed input must be recognised as such: a specific code naming what was wrong, never "internal" (the
    # code of an exception nobody anticipated, i.e. a bug in the decoding path). A malformed camera_info never
    # costs the outputs that need no intrinsics; neither does an image whose damaged header gives it another size
    # than camera_info's (the intrinsics no longer fit it, so only the 3D outputs go, naming both sizes).
    if result.skipped:
        assert target == "image", result.reason
        assert result.code in INPUT_FAILURE_CODES, (result.code, result.reason)
        assert result.outputs == {} and result.reason
    elif pipeline.stats.partial:
        assert set(pipeline.stats.partial) == {"camera_info"}
        assert set(result.outputs) == TWO_D and result.warnings
        if target == "image":
            assert any("but the image is" in warning for warning in result.warnings), result.warnings
    else:
        assert set(result.outputs) == set(OUTPUTS)
    assert pipeline.stats.frames_in == 1 and pipeline.stats.processed + sum(pipeline.stats.dropped.values()) == 1
