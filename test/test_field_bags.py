"""Recordings written by other tools, through `panopticdepth bag` and `panopticdepth extract`: legacy type names,
sqlite3 files without metadata.yaml or type definitions, one split file, missing splits, per-message and per-chunk
compressed mcap, JPEG and PNG CompressedImage, no camera_info. Every fixture is written here with the rosbags
writer (older layouts by editing what it wrote); every frame must be accounted for and the output must name the
type store it assumed. Also: the ROS distro our output bags declare."""

from __future__ import annotations

import io
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from rosbags.rosbag2 import CompressionFormat, CompressionMode, Reader, StoragePlugin, Writer
from tiny_model import TINY_NODE_MODEL, tiny_cfg, write_random_model

from panopticdepth_ros import cli
from panopticdepth_ros import messages as m
from panopticdepth_ros.bags.errors import BagError
from panopticdepth_ros.bags.extraction import ExtractOptions, extract_bag
from panopticdepth_ros.bags.io import open_reader, types_line
from panopticdepth_ros.bags.offline import NO_CAMERA_INFO, run_bag
from panopticdepth_ros.bags.recording import ros2_type_name
from panopticdepth_ros.bags.synthetic import synthetic_frame, write_synthetic_bag
from panopticdepth_ros.params import validate

SIZE = (64, 128)
FOCAL = 80.0
IMAGE, COMPRESSED, INFO, DEPTH = ("/camera/image_raw", "/camera/image_raw/compressed", "/camera/camera_info",
                                  "/camera/depth/image_raw")
NS = "/panopticdepth_node"
STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
SUFFIX = {"mcap": ".mcap", "sqlite3": ".db3"}
pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------------------------------------ fixtures
def legacy(msgtype: str) -> str:
    """``sensor_msgs/msg/Image`` -> ``sensor_msgs/Image``, as older rosbag2 versions and converters write it."""
    package, _, name = msgtype.split("/")
    return f"{package}/{name}"


def write_camera_bag(path: Path, frames: int = 3, start: int = 0, *, storage: str = "mcap", legacy_names: bool = False,
                     image_format: str | None = None, camera_info: bool = True, compression: str | None = None) -> Path:
    """A camera recording as other tools write it, at 10 Hz: the image (Image rgb8 on IMAGE, or CompressedImage
    JPEG/PNG on COMPRESSED), camera_info (pinhole, fx = fy = FOCAL) and a 32FC1 depth image; frames start..end.

    ``compression``: "message" (rosbag2 per-message zstd) or "chunk" (mcap chunks compressed with zstd)."""
    store = m.get_store("humble")
    writer = Writer(path, version=8, storage_plugin=STORAGES[storage])
    if compression == "message":
        writer.set_compression(CompressionMode.MESSAGE, CompressionFormat.ZSTD)
    elif compression == "chunk":
        writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
    with writer:
        def connect(topic: str, msgtype: str):
            msgdef, _ = store.generate_msgdef(msgtype, ros_version=2)
            return writer.add_connection(topic, legacy(msgtype) if legacy_names else msgtype, msgdef=msgdef,
                                         rihs01=store.hash_rihs01(msgtype))

        image_conn = connect(COMPRESSED, m.COMPRESSED_IMAGE) if image_format else connect(IMAGE, m.IMAGE)
        info_conn = connect(INFO, m.CAMERA_INFO) if camera_info else None
        depth_conn = connect(DEPTH, m.IMAGE)
        for index in range(start, start + frames):
            truth = synthetic_frame(index, SIZE, focal=FOCAL).sample
            stamp = 1_700_000_000 * 10**9 + index * 100_000_000
            header = m.make_header(store, *m.split_stamp(stamp), "camera_optical_frame")
            if image_format:
                encoded = io.BytesIO()
                Image.fromarray(truth.image).save(encoded, format=image_format.upper(), quality=95)
                msg = store.types[m.COMPRESSED_IMAGE](header=header, format=f"rgb8; {image_format} compressed rgb8",
                                                      data=np.frombuffer(encoded.getvalue(), np.uint8))
                writer.write(image_conn, stamp, m.serialize(msg, m.COMPRESSED_IMAGE, store))
            else:
                msg = m.image_message(store, header, truth.image, "rgb8")
                writer.write(image_conn, stamp, m.serialize(msg, m.IMAGE, store))
            if info_conn is not None:
                info = m.camera_info_message(store, header, truth.intrinsics, SIZE)
                writer.write(info_conn, stamp, m.serialize(info, m.CAMERA_INFO, store))
            writer.write(depth_conn, stamp + 1, m.serialize(m.depth_image(store, header, truth.depth), m.IMAGE, store))
    return path


def without_definitions(db3: Path, schema: int = 3) -> None:
    """Make a rosbags-written .db3 look like an older distro's: no message_definitions table (Humble's sqlite3
    storage is schema 3; Foxy's has no schema table at all: ``schema=2``)."""
    with sqlite3.connect(db3) as db:
        db.execute("DROP TABLE message_definitions")
        if schema >= 3:
            db.execute("UPDATE schema SET schema_version = ?", (schema,))
        else:
            db.execute("DROP TABLE schema")
            db.execute("DROP TABLE metadata")


def write_split_bag(path: Path, splits: int = 3, per_split: int = 2, storage: str = "sqlite3",
                    compression: str | None = None) -> Path:
    """A bag of ``splits`` storage files (``NAME_0.db3`` ...) with the metadata.yaml rosbag2 writes for it,
    assembled from one rosbags-written bag per split."""
    path.mkdir()
    parts = path.parent / f".{path.name}-parts"
    infos = []
    for k in range(splits):
        part = write_camera_bag(parts / str(k), per_split, k * per_split, storage=storage, compression=compression)
        next(part.glob(f"*{SUFFIX[storage]}")).rename(path / f"{path.name}_{k}{SUFFIX[storage]}")
        infos.append(yaml.safe_load((part / "metadata.yaml").read_text())["rosbag2_bagfile_information"])
    shutil.rmtree(parts)
    merged = dict(infos[0])
    merged["relative_file_paths"] = [f"{path.name}_{k}{SUFFIX[storage]}" for k in range(splits)]
    merged["files"] = [dict(info["files"][0], path=name) for info, name in zip(infos, merged["relative_file_paths"])]
    merged["message_count"] = sum(info["message_count"] for info in infos)
    merged["topics_with_message_count"] = [
        dict(topic, message_count=sum(info["topics_with_message_count"][i]["message_count"] for info in infos))
        for i, topic in enumerate(infos[0]["topics_with_message_count"])]
    end = infos[-1]["starting_time"]["nanoseconds_since_epoch"] + infos[-1]["duration"]["nanoseconds"]
    merged["duration"] = {"nanoseconds": end - infos[0]["starting_time"]["nanoseconds_since_epoch"]}
    (path / "metadata.yaml").write_text(yaml.safe_dump({"rosbag2_bagfile_information": merged}))
    return path


@pytest.fixture(scope="module")
def params(tmp_path_factory):
    config, weights = write_random_model(tmp_path_factory.mktemp("model"), tiny_cfg(base=TINY_NODE_MODEL),
                                         label_everything=True)
    return validate({"model_config": str(config), "weights": str(weights), "device": "cpu"})


def through_both(bag: Path, out: Path, params, frames: int, image_topic: str = IMAGE, distro: str = "humble",
                 **bag_kwargs) -> tuple[str, str]:
    """Run `bag` and `extract` on ``bag``; check every one of ``frames`` images came out of both; return the
    printed summaries (bag, extract)."""
    out.mkdir(parents=True, exist_ok=True)
    summary = run_bag(bag, out / "bag_out", params, distro=distro, progress=False, log=lambda _: None, **bag_kwargs)
    assert (summary.image_topic, summary.frames_in, summary.processed) == (image_topic, frames, frames)
    assert summary.written[f"{NS}/panoptic"] == frames and summary.written[f"{NS}/depth"] == frames
    with Reader(out / "bag_out") as reader:
        assert reader.ros_distro == distro
    extracted = extract_bag(ExtractOptions(bag=bag, out=out / "data", image_topic=image_topic,
                                           camera_info_topic=INFO, depth_topic=DEPTH, distro=distro, progress=False))
    assert (extracted.image_messages, extracted.selected, extracted.written, extracted.skipped) == (
        frames, frames, frames, {})
    assert len(list((out / "data" / "train").glob("*_leftImg8bit.png"))) == frames
    assert len(list((out / "data" / "train").glob("*_camera.json"))) == frames
    return "\n".join(summary.lines()), extracted.format()


# ------------------------------------------------------------------------------------------------ type names
def test_type_names_are_mapped_to_ros2() -> None:
    assert ros2_type_name("sensor_msgs/Image") == "sensor_msgs/msg/Image"
    assert ros2_type_name("sensor_msgs::msg::CameraInfo") == "sensor_msgs/msg/CameraInfo"
    assert ros2_type_name("sensor_msgs/msg/Image") == "sensor_msgs/msg/Image"
    assert ros2_type_name("odd") == "odd"


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_legacy_type_names_are_read_by_bag_and_extract(params, tmp_path: Path, storage: str) -> None:
    bag = write_camera_bag(tmp_path / "legacy", storage=storage, legacy_names=True)
    with Reader(bag) as reader:  # the fixture really has the legacy names
        assert {c.msgtype for c in reader.connections} == {"sensor_msgs/Image", "sensor_msgs/CameraInfo"}
    bag_text, extract_text = through_both(bag, tmp_path, params, 3)  # the image topic is auto-detected
    for text in (bag_text, extract_text):
        assert "legacy message type names read as their ROS 2 types: sensor_msgs/CameraInfo -> " \
               "sensor_msgs/msg/CameraInfo, sensor_msgs/Image -> sensor_msgs/msg/Image" in text
        assert "decoded as ROS 2 humble's (--distro)" in text and "assumed" not in text  # mcap/db3 carry definitions


def test_only_image_topic_is_auto_detected_whatever_its_encoding(params, tmp_path: Path) -> None:
    """A mono camera's plain /camera/image_raw (no colour encoding) is found when it is the only Image topic."""
    store = m.get_store("humble")
    bag = tmp_path / "mono"
    with Writer(bag, version=8, storage_plugin=StoragePlugin.MCAP) as writer:
        conn = writer.add_connection(IMAGE, m.IMAGE, typestore=store)
        for index in range(2):
            grey = synthetic_frame(index, SIZE).sample.image[:, :, 1]
            msg = m.image_message(store, m.make_header(store, 1 + index, 0, "cam"), grey, "mono8")
            writer.write(conn, 1 + index, m.serialize(msg, m.IMAGE, store))
    summary = run_bag(bag, tmp_path / "out", params, progress=False, log=lambda _: None)
    assert (summary.image_topic, summary.frames_in, summary.processed) == (IMAGE, 2, 2)
    assert NO_CAMERA_INFO in summary.lines()


# ------------------------------------------------------------------------------------------------ older sqlite3
@pytest.mark.parametrize("schema", [3, 2])
def test_db3_without_metadata_or_definitions_uses_the_distro_type_store(params, tmp_path: Path, schema: int) -> None:
    written = write_camera_bag(tmp_path / "old", storage="sqlite3", legacy_names=True)
    db3 = next(written.glob("*.db3"))
    without_definitions(db3, schema)
    (written / "metadata.yaml").unlink()
    with open_reader(db3) as reader:
        assert not reader.has_definitions()
    bag_text, extract_text = through_both(db3, tmp_path / "file", params, 3, distro="jazzy")
    for text in (bag_text, extract_text):
        assert "decoded as ROS 2 jazzy's (--distro); assumed: the bag has no message definitions of " \
               "sensor_msgs/msg/CameraInfo, sensor_msgs/msg/Image" in text
    # the folder without metadata.yaml (a recording that crashed before writing it) reads the same
    bag_text, extract_text = through_both(written, tmp_path / "folder", params, 3)
    for text in (bag_text, extract_text):
        assert f"no metadata.yaml: read the 1 sqlite3 file(s) in the folder in split order ({db3.name})" in text
        assert "decoded as ROS 2 humble's (--distro); assumed:" in text


def test_empty_definitions_count_as_none(tmp_path: Path) -> None:
    """rosbag2 records an empty definition for a type it could not look up; that is no definition either."""
    store = m.get_store("humble")
    bag = tmp_path / "empty_defs"
    with Writer(bag, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conn = writer.add_connection(IMAGE, m.IMAGE, msgdef="", rihs01=store.hash_rihs01(m.IMAGE))
        msg = m.image_message(store, m.make_header(store, 1, 0, "cam"), np.zeros((4, 4, 3), np.uint8), "rgb8")
        writer.write(conn, 1, m.serialize(msg, m.IMAGE, store))
    with open_reader(bag) as reader:
        assert not reader.has_definitions()
        assert "assumed: the bag has no message definitions of sensor_msgs/msg/Image" in types_line(
            reader, reader.connections, "humble")


def test_command_lines_say_which_type_store_was_assumed(params, tmp_path: Path, capsys) -> None:
    bag = write_camera_bag(tmp_path / "old", storage="sqlite3")
    without_definitions(next(bag.glob("*.db3")))
    code = cli.main(["bag", "--input", str(bag), "--output", str(tmp_path / "out"), "--config",
                     params.model_config, "--weights", params.weights, "--distro", "jazzy", "--quiet"])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert "decoded as ROS 2 jazzy's (--distro); assumed" in printed.out and "processed 3" in printed.out
    code = cli.main(["extract", "--bag", str(bag), "--out", str(tmp_path / "data"), "--image-topic", IMAGE,
                     "--distro", "jazzy", "--quiet"])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert "decoded as ROS 2 jazzy's (--distro); assumed" in printed.out and "3 written" in printed.out
    assert "no --camera-info-topic: frames are written without intrinsics" in printed.out


# ------------------------------------------------------------------------------------------------ splits
@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_one_split_file_given_directly(params, tmp_path: Path, storage: str) -> None:
    bag = write_split_bag(tmp_path / "run", storage=storage)
    with open_reader(bag) as reader:  # the whole bag: 3 splits of 2 frames
        assert sum(c.msgcount for c in reader.connections if c.topic == IMAGE) == 6
    split = bag / f"run_1{SUFFIX[storage]}"
    bag_text, extract_text = through_both(split, tmp_path, params, 2)
    for text in (bag_text, extract_text):
        assert f"read run_1{SUFFIX[storage]} only: one of the 3 files of the bag in {bag}" in text
    with Reader(tmp_path / "bag_out") as reader:  # the frames of split 1: stamps of frames 2 and 3
        stamps = [t for c, t, _ in reader.messages() if c.topic == f"{NS}/panoptic"]
    assert stamps == [1_700_000_000 * 10**9 + i * 100_000_000 for i in (2, 3)]


def test_missing_splits_are_named_and_the_rest_is_read(params, tmp_path: Path) -> None:
    bag = write_split_bag(tmp_path / "run", splits=3)
    (bag / "run_1.db3").unlink()
    bag_text, extract_text = through_both(bag, tmp_path, params, 4)
    for text in (bag_text, extract_text):
        assert "metadata.yaml lists 3 files, 1 missing (run_1.db3): read the 2 that are there (run_0.db3, " \
               "run_2.db3)" in text
    (bag / "run_0.db3").unlink()
    (bag / "run_2.db3").unlink()
    with pytest.raises(BagError, match=r"run: none of the files that metadata.yaml lists exists"):
        open_reader(bag)


def test_folder_of_splits_without_metadata_is_read_in_split_order(tmp_path: Path) -> None:
    bag = write_split_bag(tmp_path / "run", splits=3)
    for old, new in ((2, 10), (1, 2)):  # split 10 sorts after split 2
        (bag / f"run_{old}.db3").rename(bag / f"run_{new}.db3")
    (bag / "metadata.yaml").unlink()
    with open_reader(bag) as reader:
        assert "(run_0.db3, run_2.db3, run_10.db3)" in reader.notes[0]
        image = [c for c in reader.connections if c.topic == IMAGE]
        times = [t for _, t, _ in reader.messages(image)]
    assert len(image) == 1 and image[0].msgcount == 6 and times == sorted(times) and len(times) == 6
    damaged = bag / "run_2.db3"
    damaged.write_bytes(damaged.read_bytes()[:1000])  # a bad split fails fast with its own path
    with pytest.raises(BagError, match=r"run_2\.db3: not a readable rosbag2 .*truncated or corrupt"):
        open_reader(bag)
    (bag / "extra.mcap").write_bytes(b"")
    with pytest.raises(BagError, match="both .mcap and .db3 files"):
        open_reader(bag)


# ------------------------------------------------------------------------------------------------ compression
@pytest.mark.parametrize("compression", ["message", "chunk"])
def test_compressed_mcap(params, tmp_path: Path, compression: str) -> None:
    bag = write_camera_bag(tmp_path / "zstd", compression=compression)
    with Reader(bag) as reader:
        assert (reader.compression_mode or None) == ("message" if compression == "message" else None)
    if compression == "chunk":  # chunk records name their compression
        assert b"zstd" in next(bag.glob("*.mcap")).read_bytes()
    through_both(bag, tmp_path, params, 3)


def test_split_of_a_per_message_compressed_bag_given_directly(params, tmp_path: Path) -> None:
    """The metadata.yaml that says "compression_mode: message" is not read for one file: the zstd frames are
    recognised by their magic number."""
    bag = write_split_bag(tmp_path / "run", splits=2, storage="mcap", compression="message")
    through_both(bag / "run_1.mcap", tmp_path, params, 2)


# ------------------------------------------------------------------------------------------------ images
@pytest.mark.parametrize("image_format", ["jpeg", "png"])
def test_compressed_images(params, tmp_path: Path, image_format: str) -> None:
    bag = write_camera_bag(tmp_path / "bag", image_format=image_format, legacy_names=True)
    through_both(bag, tmp_path, params, 3, image_topic=COMPRESSED)
    name = sorted((tmp_path / "data" / "train").glob("*_leftImg8bit.png"))[0]
    image = np.asarray(Image.open(name).convert("RGB"), dtype=np.int16)
    truth = synthetic_frame(0, SIZE, focal=FOCAL).sample.image.astype(np.int16)
    if image_format == "png":
        np.testing.assert_array_equal(image, truth)
    else:  # JPEG at quality 95
        assert np.abs(image - truth).mean() < 8.0  # chroma subsampling on a textured scene; BGR would be ~40


# ------------------------------------------------------------------------------------------------ camera_info
def test_without_camera_info_2d_outputs_and_how_to_give_intrinsics(params, tmp_path: Path) -> None:
    bag = write_camera_bag(tmp_path / "bag", camera_info=False)
    summary = run_bag(bag, tmp_path / "out", params, progress=False, log=lambda _: None)
    assert (summary.frames_in, summary.processed, summary.camera_info_topic) == (3, 3, None)
    assert NO_CAMERA_INFO in summary.lines() and "--focal PX" in NO_CAMERA_INFO
    assert "--camera-info-topic" in NO_CAMERA_INFO
    written = {topic.removeprefix(f"{NS}/") for topic in summary.written}
    assert {"panoptic", "semantic", "instance", "depth", "overlay"} <= written
    assert not written & {"points", "instances", "depth/camera_info"}
    extracted = extract_bag(ExtractOptions(bag=bag, out=tmp_path / "data", image_topic=IMAGE, depth_topic=DEPTH,
                                           progress=False))
    assert (extracted.image_messages, extracted.written, extracted.skipped) == (3, 3, {})
    assert "no --camera-info-topic: frames are written without intrinsics" in extracted.format()
    split = tmp_path / "data" / "train"
    assert len(list(split.glob("*_depth.png"))) == 3 and not list(split.glob("*_camera.json"))

    with_focal = run_bag(bag, tmp_path / "focal", params, progress=False, log=lambda _: None, focal=FOCAL)
    assert with_focal.written[f"{NS}/points"] == 3 and NO_CAMERA_INFO not in with_focal.lines()
    assert "pinhole fx = fy = 80 px from --focal" in "\n".join(with_focal.lines())
    store = m.get_store("humble")
    with Reader(tmp_path / "focal") as reader:
        by_topic = {}
        for conn, _, data in reader.messages():
            by_topic.setdefault(conn.topic, []).append(m.deserialize(data, conn.msgtype, store))
    info = by_topic[f"{NS}/depth/camera_info"][0]
    np.testing.assert_allclose(info.k, [FOCAL, 0, (SIZE[1] - 1) / 2, 0, FOCAL, (SIZE[0] - 1) / 2, 0, 0, 1])
    depth_msg, cloud_msg = by_topic[f"{NS}/depth"][0], by_topic[f"{NS}/points"][0]
    depth = np.frombuffer(depth_msg.data, "<f4").reshape(SIZE)
    cloud = m.pointcloud2_to_array(cloud_msg)
    valid = np.isfinite(cloud["z"])
    assert valid.any()
    u = np.arange(SIZE[1])[None, :].repeat(SIZE[0], 0)
    np.testing.assert_allclose(cloud["z"][valid], depth[valid], rtol=1e-6)
    np.testing.assert_allclose(cloud["x"][valid], ((u - (SIZE[1] - 1) / 2) / FOCAL * depth)[valid], atol=1e-4)

    with pytest.raises(BagError, match="--focal gives the intrinsics of a bag without camera_info, but camera_info "
                                       "topic /camera/camera_info is used"):
        run_bag(write_camera_bag(tmp_path / "with_info"), tmp_path / "o2", params, progress=False, focal=FOCAL)
    with pytest.raises(BagError, match="--focal must be a positive number"):
        run_bag(bag, tmp_path / "o3", params, progress=False, focal=-1.0)
    with pytest.raises(SystemExit):
        cli.main(["bag", "--input", str(bag), "--output", str(tmp_path / "o4"), "--focal", "0"])


# ------------------------------------------------------------------------------------------------ reading = rosbags
@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_complete_bags_read_exactly_as_rosbags_reads_them(tmp_path: Path, storage: str) -> None:
    """Bags the tools already read go through rosbags' own folder reader: same messages, same order, same bytes."""
    bag = write_synthetic_bag(tmp_path / "bag", 2, size=SIZE, storage=storage, with_lidar=True)
    with Reader(bag) as plain:
        expected = [(c.topic, c.msgtype, t, bytes(d)) for c, t, d in plain.messages()]
    with open_reader(bag) as reader:
        assert reader.notes == [] and reader.has_definitions()
        got = [(c.topic, c.msgtype, t, bytes(d)) for c, t, d in reader.messages()]
    assert got == expected


# ------------------------------------------------------------------------------------------------ our outputs
@pytest.mark.parametrize(("storage", "distro"), [("mcap", "jazzy"), ("sqlite3", "humble"), ("sqlite3", "jazzy")])
def test_written_bags_declare_their_distro(tmp_path: Path, storage: str, distro: str) -> None:
    """`ros2 bag info` shows metadata.yaml's ros_distro (rosbags writes "rosbags"); the copies inside the storage
    file say the same."""
    bag = write_synthetic_bag(tmp_path / "bag", 1, size=SIZE, storage=storage, distro=distro)
    info = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert info["ros_distro"] == distro
    data = next(bag.glob(f"*{SUFFIX[storage]}"))
    if storage == "sqlite3":
        with sqlite3.connect(data) as db:
            assert db.execute("SELECT ros_distro FROM schema").fetchone() == (distro,)
            embedded = yaml.safe_load(db.execute("SELECT metadata FROM metadata").fetchone()[0])
        assert embedded["ros_distro"] == distro
    else:
        assert f"ros_distro: {distro}".encode() in data.read_bytes() and b"ros_distro: rosbags" not in data.read_bytes()
