"""`panopticdepth extract`: bags made from synthetic scenes come out as the exact data set; bad bags and options
give the documented errors and never leave a folder that looks complete; training runs on the result."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_model import TINY_NODE_MODEL, random_model, tiny_cfg

from panopticdepth_core.data.cityscapes_dps import CityscapesDPSDataset
from panopticdepth_core.data.dps_writer import decode_depth, decode_instance_train_ids
from panopticdepth_core.data.image_io import read_rgb, read_uint16
from panopticdepth_ros.bags.errors import BagError, NoFramesError
from panopticdepth_ros.bags.extraction import ExtractOptions, extract_bag
from panopticdepth_ros.bags.extraction.depth import project_points
from panopticdepth_ros.bags.extraction.labels import ClassMap, load_class_map, renumber_instances
from panopticdepth_ros.bags.extraction.matching import header_stamp_ns, select_images
from panopticdepth_ros.bags.synthetic import synthetic_frame, write_synthetic_bag
from panopticdepth_ros.bags.tf_buffer import (
    ExtrapolationError,
    FrameNotFoundError,
    TfBuffer,
    euler_to_matrix,
    matrix_to_quaternion,
    quaternion_to_matrix,
)
from panopticdepth_ros.cli import main as cli_main
from panopticdepth_ros.messages import get_store, make_header, serialize

SIZE = (64, 128)
FOCAL = 80.0
FRAMES = 3
IMAGE, INFO, DEPTH, LIDAR = "/camera/image_raw", "/camera/camera_info", "/camera/depth/image_raw", "/lidar/points"
SEMANTIC, INSTANCE, PANOPTIC = "/camera/semantic", "/camera/instance", "/camera/panoptic"
DEPTH_STEP = 1 / 256  # the DPS layout stores round(metres * 256)


@pytest.fixture(scope="module")
def bag(tmp_path_factory) -> Path:
    return write_synthetic_bag(tmp_path_factory.mktemp("bag") / "bag", FRAMES, size=SIZE, focal=FOCAL)


def _options(bag: Path, out: Path, **kwargs) -> ExtractOptions:
    return ExtractOptions(bag=bag, out=out, image_topic=IMAGE, progress=False, **kwargs)


def _frames(split: Path) -> list[str]:
    return sorted(p.name[: -len("_leftImg8bit.png")] for p in split.glob("*_leftImg8bit.png"))


def _labels(split: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(semantic, instance) exactly as stored (the reader renumbers instances; the raw decode does not)."""
    return decode_instance_train_ids(read_uint16(split / f"{name}_gtFine_instanceTrainIds.png", "label"))


@pytest.fixture(scope="module")
def lidar_split(bag, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("lidar_out")
    summary = extract_bag(_options(bag, out, camera_info_topic=INFO, lidar_topic=LIDAR, semantic_topic=SEMANTIC,
                                   instance_topic=INSTANCE))
    assert summary.written == FRAMES and summary.skipped == {}
    return out / "train"


# ------------------------------------------------------------------------------------------------ exact results
def test_depth_topic_gives_exact_depth_labels_image_and_intrinsics(bag, tmp_path) -> None:
    summary = extract_bag(_options(bag, tmp_path, camera_info_topic=INFO, depth_topic=DEPTH, semantic_topic=SEMANTIC,
                                   instance_topic=INSTANCE))
    split = tmp_path / "train"
    assert summary.written == FRAMES and summary.output == str(split)
    names = _frames(split)
    assert names == [f"000000_{i:06d}_bag_000000_{i:06d}" for i in range(FRAMES)]
    for i, name in enumerate(names):
        truth = synthetic_frame(i, SIZE, focal=FOCAL).sample
        assert np.array_equal(read_rgb(split / f"{name}_leftImg8bit.png"), truth.image)
        depth = decode_depth(read_uint16(split / f"{name}_depth.png", "depth"))
        assert np.array_equal(depth > 0, truth.depth > 0)  # 0 exactly where the exact depth has none (sky)
        assert np.abs(depth - truth.depth).max() <= DEPTH_STEP / 2 + 1e-6
        semantic, instance = _labels(split, name)
        assert np.array_equal(semantic, truth.semantic) and np.array_equal(instance, truth.instance)
        camera = json.loads((split / f"{name}_camera.json").read_text())["intrinsic"]
        k = truth.intrinsics
        assert [camera[key] for key in ("fx", "fy", "u0", "v0")] == [k[0, 0], k[1, 1], k[0, 2], k[1, 2]]
    meta = json.loads((split / "dataset.json").read_text())
    assert meta["label_source"] == "topics" and meta["depth_source"] == "depth_image"
    assert meta["topics"]["depth"] == {"topic": DEPTH, "type": "sensor_msgs/msg/Image"}
    assert meta["summary"]["written"] == FRAMES and len(meta["frames"]) == FRAMES
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no partial folder left behind


def test_lidar_projection_lands_on_the_pixels_the_points_came_from(lidar_split) -> None:
    for i, name in enumerate(_frames(lidar_split)):
        truth = synthetic_frame(i, SIZE, focal=FOCAL)
        depth = decode_depth(read_uint16(lidar_split / f"{name}_depth.png", "depth"))
        got = np.argwhere(depth > 0)
        source = truth.lidar_pixels
        assert len(got) == len(source) > 500
        # each projected pixel is within 1 px of a source pixel, and vice versa (measured: always 0 px)
        distance = np.abs(got[:, None, :] - source[None, :, :]).max(axis=2)  # (N, N) Chebyshev distances
        assert distance.min(axis=1).max() <= 1 and distance.min(axis=0).max() <= 1
        assert set(map(tuple, got.tolist())) == set(map(tuple, source.tolist()))
        # nearest point per pixel: the occluded twins (30 % farther on the same rays) never win
        exact = truth.sample.depth[source[:, 0], source[:, 1]]
        assert np.abs(depth[source[:, 0], source[:, 1]] - exact).max() <= DEPTH_STEP / 2 + 1e-6
        semantic, instance = _labels(lidar_split, name)
        assert np.array_equal(semantic, truth.sample.semantic) and np.array_equal(instance, truth.sample.instance)
    meta = json.loads((lidar_split / "dataset.json").read_text())
    assert meta["depth_source"] == "lidar" and meta["frames"][0]["offsets_ms"]["lidar"] == 3.0


def test_sqlite3_dynamic_tf_sixteen_bit_depth_panoptic_and_class_map(tmp_path) -> None:
    bag = write_synthetic_bag(tmp_path / "bag", 2, size=SIZE, focal=FOCAL, storage="sqlite3", distro="jazzy",
                              depth_encoding="16UC1", with_panoptic=True, with_labels=False, lidar_tf="dynamic")
    class_map = tmp_path / "classes.yaml"
    class_map.write_text("panoptic_divisor: 1000\ndefault: 255\nclasses:\n  0: road\n  13: truck\n  11: 11\n")
    summary = extract_bag(_options(bag, tmp_path / "out", camera_info_topic=INFO, lidar_topic=LIDAR,
                                   panoptic_topic=PANOPTIC, class_map=class_map, storage="sqlite3"))
    assert summary.written == 2
    split = tmp_path / "out" / "train"
    for i, name in enumerate(_frames(split)):
        truth = synthetic_frame(i, SIZE, focal=FOCAL)
        expected = np.select([truth.sample.semantic == 0, truth.sample.semantic == 13, truth.sample.semantic == 11],
                             [0, 14, 11], 255)
        semantic, instance = _labels(split, name)
        assert np.array_equal(semantic, expected)
        assert np.array_equal(instance > 0, np.isin(expected, (11, 14)) & (truth.sample.instance > 0))
        depth = decode_depth(read_uint16(split / f"{name}_depth.png", "depth"))
        assert set(map(tuple, np.argwhere(depth > 0).tolist())) == set(map(tuple, truth.lidar_pixels.tolist()))
    meta = json.loads((split / "dataset.json").read_text())
    assert meta["storage"] == "sqlite3" and meta["class_map"]["default"] == 255

    depth_out = tmp_path / "depth_out"
    extract_bag(_options(bag, depth_out, depth_topic=DEPTH, panoptic_topic=PANOPTIC, class_map=class_map))
    name = _frames(depth_out / "train")[0]
    depth = decode_depth(read_uint16(depth_out / "train" / f"{name}_depth.png", "depth"))
    exact = synthetic_frame(0, SIZE, focal=FOCAL).sample.depth
    near = (exact > 0) & (exact < 65.0)  # 16UC1 millimetres end at 65.535 m
    assert np.abs(depth[near] - exact[near]).max() <= DEPTH_STEP / 2 + 0.0005 + 1e-6
    assert not (depth_out / "train" / f"{name}_camera.json").exists()  # no camera_info topic: no intrinsics


def test_every_and_max_rate_subsample_images(bag, tmp_path) -> None:
    summary = extract_bag(_options(bag, tmp_path / "a", depth_topic=DEPTH, every=2))
    assert (summary.written, summary.subsampled) == (2, 1)
    meta = json.loads((tmp_path / "a" / "train" / "dataset.json").read_text())
    stamps = [f["stamp_ns"] for f in meta["frames"]]
    assert stamps == [synthetic_frame(i, SIZE, focal=FOCAL).stamp_ns for i in (0, 2)]
    assert not list((tmp_path / "a" / "train").glob("*_gtFine_instanceTrainIds.png"))  # no label topics: no labels
    summary = extract_bag(_options(bag, tmp_path / "b", depth_topic=DEPTH, max_rate=6.0))  # 10 Hz bag
    assert summary.written == 2
    ms = 1_000_000
    assert select_images([0, 100 * ms, 200 * ms, 300 * ms, 400 * ms], 1, 1 / 0.15) == [0, 2, 4]
    assert select_images([0, None, 2, 3, 4, 5], 2, None) == [0, 2, 4]


def test_compressed_images_and_half_resolution_depth(tmp_path) -> None:
    import io

    from PIL import Image
    from rosbags.rosbag2 import StoragePlugin, Writer

    from panopticdepth_ros.messages import depth_image

    store = get_store("humble")
    truth = synthetic_frame(0, SIZE, focal=FOCAL).sample
    png = io.BytesIO()
    Image.fromarray(truth.image).save(png, format="PNG")
    header = make_header(store, 1_700_000_000, 0, "cam")
    compressed = store.types["sensor_msgs/msg/CompressedImage"](
        header=header, format="rgb8; png compressed rgb8", data=np.frombuffer(png.getvalue(), np.uint8))
    half = truth.depth[::2, ::2]  # registered depth at half resolution: resampled to the image (nearest)
    bag = tmp_path / "bag"
    with Writer(bag, version=8, storage_plugin=StoragePlugin.MCAP) as writer:
        image_conn = writer.add_connection("/cam/compressed", "sensor_msgs/msg/CompressedImage", typestore=store)
        depth_conn = writer.add_connection("/depth", "sensor_msgs/msg/Image", typestore=store)
        writer.write(image_conn, 1, serialize(compressed, "sensor_msgs/msg/CompressedImage", store))
        writer.write(depth_conn, 2, serialize(depth_image(store, header, half), "sensor_msgs/msg/Image", store))
    extract_bag(ExtractOptions(bag=bag, out=tmp_path / "out", image_topic="/cam/compressed", depth_topic="/depth",
                               progress=False))
    name = _frames(tmp_path / "out" / "train")[0]
    assert np.array_equal(read_rgb(tmp_path / "out" / "train" / f"{name}_leftImg8bit.png"), truth.image)
    depth = decode_depth(read_uint16(tmp_path / "out" / "train" / f"{name}_depth.png", "depth"))
    expected = np.repeat(np.repeat(half, 2, axis=0), 2, axis=1)
    assert np.abs(depth - expected).max() <= DEPTH_STEP / 2 + 1e-6


# ------------------------------------------------------------------------------------------------ errors
def test_missing_topic_lists_the_bags_topics(bag, tmp_path, capsys) -> None:
    with pytest.raises(BagError, match="--depth-topic /camera/depth") as info:
        extract_bag(_options(bag, tmp_path, depth_topic="/camera/depth"))
    message = str(info.value)
    assert str(bag) in message
    assert re.search(r"/lidar/points +sensor_msgs/msg/PointCloud2 +\(3 messages\)", message)
    rc = cli_main(["extract", "--bag", str(bag), "--out", str(tmp_path / "x"), "--image-topic", "/cam", "--quiet"])
    assert rc == 1 and "--image-topic /cam" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_command_line_prints_the_summary(bag, tmp_path, capsys) -> None:
    rc = cli_main(["extract", "--bag", str(bag), "--out", str(tmp_path), "--image-topic", IMAGE, "--depth-topic",
                   DEPTH, "--camera-info-topic", INFO, "--every", "3", "--split", "val", "--quiet"])
    assert rc == 0
    assert "3 images, 2 left out by --every/--max-rate, 1 selected, 1 written" in capsys.readouterr().out
    assert len(_frames(tmp_path / "val")) == 1


def test_wrong_message_type_names_topic_and_type(bag, tmp_path) -> None:
    with pytest.raises(BagError, match=r"--depth-topic /lidar/points has message type "
                                           r"sensor_msgs/msg/PointCloud2; expected sensor_msgs/msg/Image"):
        extract_bag(_options(bag, tmp_path, depth_topic=LIDAR))


def test_out_of_sync_timestamps_skip_every_frame_and_say_so(bag, tmp_path) -> None:
    # the LiDAR trails the camera by 3 ms: a 1 ms tolerance matches nothing
    with pytest.raises(NoFramesError) as info:
        extract_bag(_options(bag, tmp_path, camera_info_topic=INFO, lidar_topic=LIDAR, time_tolerance=0.001))
    assert info.value.summary.skipped == {"no_lidar": FRAMES} and info.value.summary.written == 0
    assert "no LiDAR cloud within +-0.001 s" in str(info.value)
    assert not (tmp_path / "train").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_empty_bag_is_an_error(tmp_path) -> None:
    empty = write_synthetic_bag(tmp_path / "empty", 0, size=SIZE)
    with pytest.raises(BagError, match=r"--image-topic /camera/image_raw has no messages"):
        extract_bag(_options(empty, tmp_path / "out", depth_topic=DEPTH))
    assert not (tmp_path / "out").exists()  # nothing created
    (tmp_path / "plain").mkdir()
    with pytest.raises(BagError, match="plain: not a readable rosbag2 folder"):
        extract_bag(_options(tmp_path / "plain", tmp_path / "out"))


def test_truncated_bag_is_named_and_nothing_is_written(tmp_path) -> None:
    bag = write_synthetic_bag(tmp_path / "bag", 2, size=SIZE)
    file = next(bag.glob("*.mcap"))
    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])
    with pytest.raises(BagError, match="truncated or corrupt") as info:
        extract_bag(_options(bag, tmp_path / "out", depth_topic=DEPTH))
    assert str(bag) in str(info.value)
    assert not (tmp_path / "out" / "train").exists()


def test_bad_options_and_non_empty_output_are_refused(bag, tmp_path) -> None:
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "old.png").write_bytes(b"x")
    with pytest.raises(BagError, match="not empty"):
        extract_bag(_options(bag, tmp_path, depth_topic=DEPTH))
    for kwargs, match in [
        ({"depth_topic": DEPTH, "lidar_topic": LIDAR}, "not both"),
        ({"lidar_topic": LIDAR}, "needs --camera-info-topic"),
        ({"semantic_topic": SEMANTIC}, "go together"),
        ({"class_map": tmp_path / "c.yaml"}, "applies to label topics"),
        ({"depth_topic": DEPTH, "every": 2, "max_rate": 1.0}, "--every or --max-rate"),
        ({"depth_topic": DEPTH, "storage": "sqlite3"}, "--storage sqlite3 given, but the bag is stored as mcap"),
    ]:
        with pytest.raises(BagError, match=match):
            extract_bag(_options(bag, tmp_path / "new", **kwargs))


def test_unknown_class_ids_are_named(bag, tmp_path) -> None:
    class_map = tmp_path / "classes.yaml"
    class_map.write_text("0: road\n1: 1\n")
    with pytest.raises(BagError, match=r"class ids \[2, .*not in the class map .*classes.yaml.*default") as info:
        extract_bag(_options(bag, tmp_path / "out", semantic_topic=SEMANTIC, instance_topic=INSTANCE,
                             class_map=class_map))
    assert SEMANTIC in str(info.value)
    assert not (tmp_path / "out" / "train").exists()
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]
    class_map.write_text("3: lamppost\n")
    with pytest.raises(BagError, match="unknown class name 'lamppost'"):
        load_class_map(class_map)
    identity = ClassMap.identity()
    with pytest.raises(BagError, match=r"class ids \[19\].*--class-map"):
        identity.apply(np.array([[0, 19]]), "here")
    assert identity.apply(np.array([[-1, 255, 18]]), "here").tolist() == [[255, 255, 18]]


# ------------------------------------------------------------------------------------------------ pieces
def test_projection_keeps_the_nearest_point_and_drops_points_behind_or_outside() -> None:
    k = np.array([[10.0, 0, 4.0], [0, 10.0, 3.0], [0, 0, 1]])
    points = np.array([
        [0.0, 0.0, 5.0], [0.0, 0.0, 2.0], [0.0, 0.0, 9.0],  # three on the centre ray: 2 m wins
        [0.0, 0.0, -3.0],  # behind the camera
        [100.0, 0.0, 1.0],  # outside the image
        [np.nan, 0.0, 1.0],
        [0.26, 0.1, 2.0],  # u = 4 + 1.3 = 5.3 -> column 5; v = 3 + 0.5 = 3.5 -> row 4 (pixel centres at integers)
    ])
    depth = project_points(points, k, (8, 10))
    assert depth[3, 4] == pytest.approx(2.0) and depth[4, 5] == pytest.approx(2.0)
    assert (depth > 0).sum() == 2


def test_instances_are_renumbered_per_thing_class_and_stuff_gets_none() -> None:
    semantic = np.array([[13, 13, 11, 0], [13, 14, 11, 0]])
    instance = np.array([[70000, 70000, 5, 9], [0, 70000, 5, 9]])
    out = renumber_instances(semantic, instance)
    assert out.tolist() == [[2, 2, 1, 0], [0, 3, 1, 0]]  # (id 5, person), (70000, car), (70000, truck); crowd 0


def test_header_stamp_is_read_from_cdr_bytes() -> None:
    store = get_store("humble")
    header = make_header(store, 1_700_000_123, 456, "cam")
    msg = store.types["sensor_msgs/msg/CameraInfo"](
        header=header, height=1, width=1, distortion_model="", d=np.zeros(0), k=np.zeros(9), r=np.zeros(9),
        p=np.zeros(12), binning_x=0, binning_y=0,
        roi=store.types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0,
                                                             do_rectify=False))
    assert header_stamp_ns(serialize(msg, "sensor_msgs/msg/CameraInfo", store)) == 1_700_000_123_000_000_456


def test_tf_buffer_chains_interpolates_and_names_missing_frames() -> None:
    rotation = euler_to_matrix(0.1, -0.2, 0.3)
    assert np.allclose(quaternion_to_matrix(matrix_to_quaternion(rotation)), rotation)
    buffer = TfBuffer(tolerance_ns=10)
    buffer.set_transform("map", "base", (1.0, 0.0, 0.0), (0, 0, 0, 1), static=True)
    buffer.set_transform("base", "arm", (0.0, 0.0, 0.0), (0, 0, 0, 1), stamp_ns=0)
    q90 = matrix_to_quaternion(euler_to_matrix(0.0, 0.0, np.pi / 2))
    buffer.set_transform("base", "arm", (0.0, 2.0, 0.0), q90, stamp_ns=100)
    buffer.set_transform("/map", "/cam", (0.0, 0.0, 1.0), (0, 0, 0, 1), static=True)
    half = buffer.lookup("map", "arm", 50)  # halfway: 1 m in y, 45 degrees of yaw, after base's 1 m in x
    assert np.allclose(half[:3, 3], [1.0, 1.0, 0.0])
    assert np.allclose(half[:3, :3], euler_to_matrix(0.0, 0.0, np.pi / 4))
    cam_from_arm = buffer.lookup("cam", "arm", 100)
    assert np.allclose(cam_from_arm @ [1.0, 0.0, 0.0, 1.0], [1.0, 3.0, -1.0, 1.0])  # x_arm -> +y in base
    assert np.allclose(buffer.lookup("arm", "cam", 100) @ cam_from_arm, np.eye(4))
    assert np.allclose(buffer.lookup("map", "arm", 105)[:3, 3], [1.0, 2.0, 0.0])  # 5 ns past the end: nearest
    with pytest.raises(ExtrapolationError, match="base -> arm is recorded from"):
        buffer.lookup("map", "arm", 200)
    with pytest.raises(FrameNotFoundError, match=r"'lidar' not in the transform tree; known frames: arm, base"):
        buffer.lookup("cam", "lidar", 0)
    buffer.set_transform("odom", "wheel", (0, 0, 0), (0, 0, 0, 1), static=True)
    with pytest.raises(FrameNotFoundError, match="different trees"):
        buffer.lookup("cam", "wheel")


# ------------------------------------------------------------------------------------------------ training
TINY = [*TINY_NODE_MODEL, "MODEL.DEVICE", "cpu", "MODEL.TENSOR_DIM", "16"]


def _tiny_config_file(path: Path, *extra: str) -> Path:
    path.write_text(tiny_cfg(*extra, base=TINY).dump())
    return path


def test_sparse_lidar_depth_targets_use_valid_pixels_only(lidar_split) -> None:
    from panopticdepth_core.modeling.losses import depth_loss_flatten
    from panopticdepth_core.modeling.targets import build_targets
    from panopticdepth_core.modeling.types import InstanceTarget

    sample = CityscapesDPSDataset(lidar_split)[0]
    depth = torch.from_numpy(sample.depth)
    valid = depth > 0
    assert 0.1 < valid.float().mean() < 0.5  # sparse: LiDAR rows only
    # losses count valid pixels only: garbage where there is no ground truth costs nothing
    prediction = torch.where(valid, depth, torch.full_like(depth, 123.0))
    assert depth_loss_flatten(depth, prediction).item() < 1e-6
    assert depth_loss_flatten(depth, prediction * 1.5).item() > 0.01
    # the instance-level target is the mean over the thing's valid pixels, not diluted by the empty ones
    cfg = tiny_cfg(base=TINY)
    semantic = torch.from_numpy(sample.semantic).long()
    instance = torch.from_numpy(sample.instance).long()
    height, width = SIZE
    levels = [(-(-height // s), -(-width // s)) for s in (8, 16, 32, 64, 128)]
    targets = build_targets([InstanceTarget(semantic, instance, depth)], SIZE, levels, (height // 4, width // 4), cfg)
    means = torch.cat([lv.thing_mean_depth[0][lv.thing_valid[0]] for lv in targets.levels])
    depth4 = targets.depth[0]
    assert (means > 0).any()
    assert means.min() >= 0 and means.max() <= depth4.max() + 1e-4
    assert (means[means > 0] >= depth4[depth4 > 0].min() - 1e-4).all()  # a mean with zeros mixed in would be lower
    # a thing without any valid depth gets mean 0, i.e. no instance depth loss
    no_depth = torch.where(instance == instance[instance > 0][0], torch.zeros_like(depth), depth)
    targets = build_targets([InstanceTarget(semantic, instance, no_depth)], SIZE, levels, (height // 4, width // 4), cfg)
    counts = [int(lv.thing_valid[0].sum()) for lv in targets.levels]
    zero = sum(int((lv.thing_mean_depth[0][lv.thing_valid[0]] == 0).sum()) for lv in targets.levels)
    assert sum(counts) > 0 and zero >= 1


def test_pseudo_labels_from_a_tiny_model_are_recorded(bag, tmp_path, one_thread) -> None:
    from panopticdepth_core.checkpoint.io import save_checkpoint
    from panopticdepth_core.config import load_config

    config = _tiny_config_file(tmp_path / "tiny.yaml")
    weights = save_checkpoint(random_model(load_config(config)), tmp_path / "tiny.safetensors")
    summary = extract_bag(_options(bag, tmp_path / "out", depth_topic=DEPTH, every=2,
                                   pseudo_labels=(str(config), str(weights))))
    assert summary.written == 2
    split = tmp_path / "out" / "train"
    meta = json.loads((split / "dataset.json").read_text())
    assert meta["label_source"] == "pseudo-labels" and meta["class_map"] is None
    import hashlib

    assert meta["pseudo_labels"]["weights_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert meta["pseudo_labels"]["config"] == str(config.resolve())
    semantic, _ = _labels(split, _frames(split)[0])
    assert semantic.shape == SIZE  # whatever a random model says, it is a full label map
    with pytest.raises(BagError, match="replaces label topics"):
        extract_bag(_options(bag, tmp_path / "o2", semantic_topic=SEMANTIC, instance_topic=INSTANCE,
                             pseudo_labels=(str(config), str(weights))))


def test_train_runs_on_the_extracted_lidar_data(lidar_split, tmp_path, one_thread) -> None:
    from panopticdepth_ros.cli import main as cli_main

    config = _tiny_config_file(
        tmp_path / "train.yaml",
        "DATASETS.TRAIN", f'("dps_folder:{lidar_split}",)', "DATASETS.TEST", "()",
        "DATALOADER.NUM_WORKERS", "0", "TEST.EVAL_PERIOD", "0", "SOLVER.MAX_ITER", "2", "SOLVER.IMS_PER_BATCH", "2",
        "SOLVER.CHECKPOINT_PERIOD", "1000", "TEST.LOG_PERIOD", "1", "INPUT.MIN_SIZE_TRAIN", "(64,)",
        "INPUT.MAX_SIZE_TRAIN", "128", "INPUT.CROP.ENABLED", "False", "SOLVER.WARMUP_ITERS", "1",
        "OUTPUT_DIR", str(tmp_path / "run"),
    )
    assert cli_main(["train", "--config-file", str(config)]) == 0
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.json").read_text().splitlines()]
    assert [r["iteration"] for r in records] == [1, 2]
    for record in records:
        assert np.isfinite(record["total_loss"]) and np.isfinite(record["loss_depth"])
    assert (tmp_path / "run" / "model_final.safetensors").is_file()
