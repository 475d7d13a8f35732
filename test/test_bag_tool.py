"""`panopticdepth bag` round trip: synthetic bag in, the node's topics out; headers, depth and cloud geometry checked
against the Predictor; bad inputs, existing outputs and interruptions leave nothing behind."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from rosbags.rosbag2 import Reader
from tiny_model import TINY_NODE_MODEL, tiny_cfg, write_random_model

from panopticdepth_core.inference.predictor import Predictor
from panopticdepth_ros import cli
from panopticdepth_ros import messages as m
from panopticdepth_ros.bags.errors import BagError
from panopticdepth_ros.bags.offline import run_bag
from panopticdepth_ros.bags.synthetic import CAMERA_INFO_TOPIC, IMAGE_TOPIC, write_synthetic_bag
from panopticdepth_ros.frame_pipeline import OUTPUT_TYPES, OUTPUTS
from panopticdepth_ros.params import validate

NUM_FRAMES = 3
SIZE = (64, 128)
NS = "/panopticdepth_node"
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> tuple[Path, Path]:
    """(config YAML, weights) of a random tiny model biased to output stuff and one thing with valid depth."""
    return write_random_model(tmp_path_factory.mktemp("model"), tiny_cfg(base=TINY_NODE_MODEL), label_everything=True)


@pytest.fixture(scope="module")
def bags(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bags")
    return {storage: write_synthetic_bag(folder / f"in_{storage}", NUM_FRAMES, size=SIZE, storage=storage,
                                         with_lidar=False)
            for storage in ("mcap", "sqlite3")}


def _params(model, **extra):
    config, weights = model
    return validate({"model_config": str(config), "weights": str(weights), "device": "cpu", **extra})


def _read(path: Path) -> dict[str, list]:
    """topic -> [(log time, msgtype, message)] of a bag."""
    store = m.get_store()
    out: dict[str, list] = {}
    with Reader(path) as reader:
        for connection, log_time, data in reader.messages():
            out.setdefault(connection.topic, []).append(
                (log_time, connection.msgtype, m.deserialize(data, connection.msgtype, store)))
    return out


def _header(msg) -> tuple[int, int, str]:
    return msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_round_trip_matches_the_predictor(model, bags, tmp_path: Path, storage: str) -> None:
    out = tmp_path / "out"
    other = "sqlite3" if storage == "mcap" else "mcap"
    summary = run_bag(bags[storage], out, _params(model), storage=other, progress=False, log=lambda _: None)
    assert (summary.frames_in, summary.processed, sum(summary.skipped.values())) == (NUM_FRAMES, NUM_FRAMES, 0)
    assert (summary.image_topic, summary.camera_info_topic) == (IMAGE_TOPIC, CAMERA_INFO_TOPIC)  # auto-detected

    inputs, outputs = _read(bags[storage]), _read(out)
    expected_topics = {f"{NS}/{s}": t for s, t in OUTPUT_TYPES.items()}
    expected_topics |= {f"{NS}/label_info": m.LABEL_INFO, "/diagnostics": m.DIAGNOSTIC_ARRAY}
    assert {topic: rows[0][1] for topic, rows in outputs.items()} == expected_topics
    images = inputs[IMAGE_TOPIC]
    infos = inputs[CAMERA_INFO_TOPIC]
    for suffix in OUTPUTS:  # every frame on every topic, at the image's log time, with the image's header
        rows = outputs[f"{NS}/{suffix}"]
        assert [t for t, _, _ in rows] == [t for t, _, _ in images], suffix
        for (_, _, image), (_, _, msg) in zip(images, rows):
            headers = [mk.header for mk in msg.markers] if suffix == "instances" else [msg.header]
            assert all((h.stamp.sec, h.stamp.nanosec, h.frame_id) == _header(image) for h in headers), suffix
    assert len(outputs[f"{NS}/label_info"]) == 1 and outputs[f"{NS}/label_info"][0][2].class_map[10].class_name == "sky"
    final = {kv.key: kv.value for kv in outputs["/diagnostics"][-1][2].status[0].values}
    assert (final["frames in"], final["frames processed"]) == (str(NUM_FRAMES), str(NUM_FRAMES))

    config, weights = model
    predictor = Predictor.from_files(config, weights, device="cpu")
    for index, (_, _, image) in enumerate(images):
        rgb = np.frombuffer(image.data, np.uint8).reshape(image.height, image.width, 3)
        prediction = predictor(rgb.copy())
        expected = np.where(prediction.depth > 0, prediction.depth, np.nan)
        depth_msg = outputs[f"{NS}/depth"][index][2]
        assert depth_msg.encoding == "32FC1"
        depth = np.frombuffer(depth_msg.data, "<f4").reshape(depth_msg.height, depth_msg.width)
        np.testing.assert_allclose(depth, expected, rtol=1e-6, equal_nan=True)
        assert np.isfinite(depth).mean() > 0.5  # the biased model gives depth nearly everywhere

        semantic_msg = outputs[f"{NS}/semantic"][index][2]
        semantic = np.frombuffer(semantic_msg.data, np.uint8).reshape(SIZE)
        np.testing.assert_array_equal(semantic, np.where(prediction.semantic == 255, 255, prediction.semantic))
        assert outputs[f"{NS}/panoptic"][index][2].encoding == "32SC1"
        assert outputs[f"{NS}/instance"][index][2].encoding == "16UC1"
        assert outputs[f"{NS}/overlay"][index][2].encoding == "rgb8"

        # cloud points lie on the depth rays of the camera_info's intrinsics
        info = infos[index][2]
        fx, cx, fy, cy = info.p[0], info.p[2], info.p[5], info.p[6]
        cloud = m.pointcloud2_to_array(outputs[f"{NS}/points"][index][2])
        assert cloud.shape == SIZE
        v, u = np.mgrid[0 : SIZE[0], 0 : SIZE[1]]
        valid = np.isfinite(expected) & (expected <= 80.0)
        assert valid.any()
        np.testing.assert_allclose(cloud["z"][valid], expected[valid], rtol=1e-6)
        np.testing.assert_allclose(cloud["x"][valid], ((u - cx) / fx * expected)[valid], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(cloud["y"][valid], ((v - cy) / fy * expected)[valid], rtol=1e-5, atol=1e-5)
        assert np.isnan(cloud["z"][~valid]).all()
        np.testing.assert_array_equal(cloud["instance"], prediction.instance)

        depth_info = outputs[f"{NS}/depth/camera_info"][index][2]
        np.testing.assert_allclose(depth_info.k, info.k)
        markers = outputs[f"{NS}/instances"][index][2].markers
        assert markers[0].action == 3  # DELETEALL first


def test_cli_outputs_params_file_and_topics(model, bags, tmp_path: Path, capsys) -> None:
    config, weights = model
    params_file = tmp_path / "node.yaml"
    params_file.write_text("/**:\n  ros__parameters:\n    cloud_stride: 2\n    device: cpu\n")
    out = tmp_path / "out"
    code = cli.main(["bag", "--input", str(bags["mcap"]), "--output", str(out), "--config", str(config),
                     "--weights", str(weights), "--params-file", str(params_file), "--outputs", "points,~/depth",
                     "--image-topic", IMAGE_TOPIC, "--namespace", "robot/pd", "--distro", "jazzy", "--quiet"])
    assert code == 0, capsys.readouterr().err
    assert "processed 3" in capsys.readouterr().out
    outputs = _read(out)
    assert set(outputs) == {"/robot/pd/points", "/robot/pd/depth", "/robot/pd/label_info", "/diagnostics"}
    cloud = outputs["/robot/pd/points"][0][2]
    assert (cloud.height, cloud.width) == (SIZE[0] // 2, SIZE[1] // 2)  # cloud_stride from the params file

    with pytest.raises(SystemExit):  # argparse usage error
        cli.main(["bag", "--input", str(bags["mcap"]), "--output", str(tmp_path / "o2"), "--outputs", "pointz"])
    assert "expected a comma-separated list of panoptic" in capsys.readouterr().err
    code = cli.main(["bag", "--input", str(bags["mcap"]), "--output", str(tmp_path / "o3"), "--config", str(config),
                     "--weights", str(weights), "--device", "cpu", "--precision", "fp16", "--quiet"])
    assert code == 1 and "'precision'" in capsys.readouterr().err


def test_depth_is_scaled_by_the_bags_camera(bags, tmp_path: Path, capsys) -> None:
    """A camera-aware model (canonical fx 40 px at its 64x128 input): ~/depth is the Predictor's depth for the
    camera_info's fx (the sample bag's camera: fx / 40 times the network's depth). --rectify runs too (the
    synthetic camera has no distortion: the image is left as it is)."""
    cfg = tiny_cfg("MODEL.CANONICAL_FOCAL", "40", base=TINY_NODE_MODEL)
    config, weights = write_random_model(tmp_path, cfg, label_everything=True)
    out = tmp_path / "out"
    code = cli.main(["bag", "--input", str(bags["mcap"]), "--output", str(out), "--config", str(config),
                     "--weights", str(weights), "--device", "cpu", "--outputs", "depth", "--rectify", "--quiet"])
    assert code == 0, capsys.readouterr().err
    inputs, outputs = _read(bags["mcap"]), _read(out)
    predictor = Predictor.from_files(config, weights, device="cpu")
    for (_, _, image), (_, _, info), (_, _, depth_msg) in zip(inputs[IMAGE_TOPIC], inputs[CAMERA_INFO_TOPIC],
                                                              outputs[f"{NS}/depth"]):
        rgb = np.frombuffer(image.data, np.uint8).reshape(image.height, image.width, 3).copy()
        fx = float(info.p[0])
        prediction = predictor(rgb, focal=fx)
        assert prediction.depth_scaling.factor == pytest.approx(fx / 40.0) and fx != 40.0
        depth = np.frombuffer(depth_msg.data, "<f4").reshape(depth_msg.height, depth_msg.width)
        np.testing.assert_allclose(depth, np.where(prediction.depth > 0, prediction.depth, np.nan), rtol=1e-6,
                                   equal_nan=True)
    final = {kv.key: kv.value for kv in outputs["/diagnostics"][-1][2].status[0].values}
    assert final["depth scale"].startswith("camera: fx")


def test_missing_and_ambiguous_topics_list_the_bag(model, bags, tmp_path: Path) -> None:
    with pytest.raises(BagError, match=r"(?s)/camera/left is not in the bag; its topics:.*/camera/image_raw"):
        run_bag(bags["mcap"], tmp_path / "a", _params(model), image_topic="/camera/left", progress=False)
    with pytest.raises(BagError, match="has type sensor_msgs/msg/CameraInfo; expected"):
        run_bag(bags["mcap"], tmp_path / "b", _params(model), image_topic=CAMERA_INFO_TOPIC, progress=False)
    with pytest.raises(BagError, match="camera_info topic /nope is not in the bag"):
        run_bag(bags["mcap"], tmp_path / "c", _params(model), camera_info_topic="/nope", progress=False)
    assert not any(tmp_path.iterdir())  # nothing written

    two = tmp_path / "two"  # two colour cameras: auto-detection must refuse and list them
    from rosbags.rosbag2 import StoragePlugin, Writer

    store = m.get_store()
    with Writer(two, version=8, storage_plugin=StoragePlugin.MCAP) as writer:
        for topic in ("/left/image", "/right/image"):
            connection = writer.add_connection(topic, m.IMAGE, typestore=store)
            msg = m.image_message(store, m.make_header(store, 1, 0, "cam"), np.zeros((4, 4, 3), np.uint8), "rgb8")
            writer.write(connection, 1, m.serialize(msg, m.IMAGE, store))
    with pytest.raises(BagError, match=r"several image topics \['/left/image', '/right/image'\]"):
        run_bag(two, tmp_path / "d", _params(model), progress=False)


def test_existing_output_is_never_overwritten(model, bags, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(BagError, match="already exists"):
        run_bag(bags["mcap"], out, _params(model), progress=False)
    assert (out / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_bad_input_bags_give_a_clear_error_and_no_output(model, bags, tmp_path: Path, storage: str) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(bags[storage], broken)
    data_file = next(p for p in broken.iterdir() if p.suffix in (".mcap", ".db3"))
    data = data_file.read_bytes()
    data_file.write_bytes(data[: len(data) // 3])
    with pytest.raises(BagError, match="broken"):
        run_bag(broken, tmp_path / "out", _params(model), progress=False, log=lambda _: None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken"]  # no output, no staging folder

    with pytest.raises(BagError, match="bag not found: .*missing"):
        run_bag(tmp_path / "missing", tmp_path / "out", _params(model), progress=False)
    not_a_bag = tmp_path / "notes.txt"
    not_a_bag.write_text("hello")
    with pytest.raises(BagError, match="notes.txt: not a readable rosbag2"):
        run_bag(not_a_bag, tmp_path / "out", _params(model), progress=False)


def test_interrupted_run_leaves_nothing(model, bags, tmp_path: Path) -> None:
    from panopticdepth_ros.frame_pipeline import FramePipeline

    class Interrupting:
        depth_on = True
        calls = 0

        def __call__(self, rgb, focal=None):
            self.calls += 1
            if self.calls == 2:
                raise KeyboardInterrupt
            return Predictor.from_files(*model, device="cpu")(rgb)

    with pytest.raises(KeyboardInterrupt):
        run_bag(bags["mcap"], tmp_path / "out", pipeline=FramePipeline(Interrupting()), progress=False)
    assert list(tmp_path.iterdir()) == []


def test_corruption_found_while_reading_removes_the_partial_output(model, bags, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(bags["mcap"], broken)
    data_file = next(broken.glob("*.mcap"))
    data = bytearray(data_file.read_bytes())
    data[len(data) // 3: len(data) // 3 + 2000] = b"\xff" * 2000  # a damaged chunk; header and summary intact
    data_file.write_bytes(bytes(data))
    with pytest.raises(BagError, match=r"broken: reading failed .*truncated or corrupt"):
        run_bag(broken, tmp_path / "out", _params(model), image_topic=IMAGE_TOPIC, progress=False,
                log=lambda _: None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken"]
