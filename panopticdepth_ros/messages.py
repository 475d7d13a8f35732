"""Build the node's output messages as rosbags objects and serialize them to CDR bytes (no rclpy).

One code path for the live node and the bag tool: the node hands the bytes to ``Publisher.publish(bytes)``, the
bag writer writes the same bytes. Wire formats of every type used here are identical in Humble and Jazzy (only
Jazzy's Marker gains the ARROW_STRIP constant), so either type store serializes for both.

Encodings (see docs/ros_node.md): ~/panoptic 32SC1 ``class * 1000 + instance`` with -1 void; ~/semantic mono8
class id with 255 void; ~/instance 16UC1 instance id (1..N things, 0 otherwise); ~/depth 32FC1 metres with NaN
where there is no estimate (REP 118/117); ~/overlay rgb8.
"""

from __future__ import annotations

import dataclasses
import math
import struct
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import cache

import numpy as np
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from panopticdepth_core.inference.pointcloud import InstanceBox, all_valid_depths, scale_intrinsics

from .conversions import camera_geometry

DISTROS = {"humble": Stores.ROS2_HUMBLE, "jazzy": Stores.ROS2_JAZZY}

# vision_msgs is not in rosbags' Humble/Jazzy stores. Field declarations of vision_msgs 4.x (ros2 branch, the
# version released into Humble and Jazzy); comments abbreviated. Registered with get_types_from_msg.
VISION_CLASS_MSG = """\
# Maps an integer class id to a class name; 65535 (uint16) or 255 (uint8 pipelines) is "UNLABELED".
uint16 class_id
string class_name
"""
LABEL_INFO_MSG = """\
# Meta-information of a vision pipeline: class id -> name map and the confidence threshold used.
std_msgs/Header header
vision_msgs/VisionClass[] class_map
float32 threshold
"""

# Detections (vision_msgs 4.x: Humble's 4.1 and Jazzy's 4.1 declare these fields alike; Foxy's 3.x had no
# ObjectHypothesis and a different Detection2D). Field declarations only, in dependency order.
VISION_DETECTION_MSGS = {
    "vision_msgs/msg/Point2D": "float64 x\nfloat64 y\n",
    "vision_msgs/msg/Pose2D": "vision_msgs/Point2D position\nfloat64 theta\n",
    "vision_msgs/msg/BoundingBox2D": "vision_msgs/Pose2D center\nfloat64 size_x\nfloat64 size_y\n",
    "vision_msgs/msg/BoundingBox3D": "geometry_msgs/Pose center\ngeometry_msgs/Vector3 size\n",
    "vision_msgs/msg/ObjectHypothesis": "string class_id\nfloat64 score\n",
    "vision_msgs/msg/ObjectHypothesisWithPose": ("vision_msgs/ObjectHypothesis hypothesis\n"
                                                 "geometry_msgs/PoseWithCovariance pose\n"),
    "vision_msgs/msg/Detection2D": ("std_msgs/Header header\nvision_msgs/ObjectHypothesisWithPose[] results\n"
                                    "vision_msgs/BoundingBox2D bbox\nstring id\n"),
    "vision_msgs/msg/Detection2DArray": "std_msgs/Header header\nvision_msgs/Detection2D[] detections\n",
    "vision_msgs/msg/Detection3D": ("std_msgs/Header header\nvision_msgs/ObjectHypothesisWithPose[] results\n"
                                    "vision_msgs/BoundingBox3D bbox\nstring id\n"),
    "vision_msgs/msg/Detection3DArray": "std_msgs/Header header\nvision_msgs/Detection3D[] detections\n",
}

IMAGE = "sensor_msgs/msg/Image"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
POINT_CLOUD2 = "sensor_msgs/msg/PointCloud2"
LABEL_INFO = "vision_msgs/msg/LabelInfo"
DETECTION_2D_ARRAY = "vision_msgs/msg/Detection2DArray"
DETECTION_3D_ARRAY = "vision_msgs/msg/Detection3DArray"
MARKER_ARRAY = "visualization_msgs/msg/MarkerArray"
DIAGNOSTIC_ARRAY = "diagnostic_msgs/msg/DiagnosticArray"

#: Bytes that follow the trailing ``uint8[] data`` in the CDR of these types (PointCloud2: ``bool is_dense``).
_BYTES_AFTER_DATA = {IMAGE: 0, POINT_CLOUD2: 1}
_SPLICE_MIN_BYTES = 4096

_POINT_FIELD_TYPES = {
    np.dtype("int8"): 1, np.dtype("uint8"): 2, np.dtype("<i2"): 3, np.dtype("<u2"): 4,
    np.dtype("<i4"): 5, np.dtype("<u4"): 6, np.dtype("<f4"): 7, np.dtype("<f8"): 8,
}
_POINT_FIELD_DTYPES = {code: dtype for dtype, code in _POINT_FIELD_TYPES.items()}


@cache
def get_store(distro: str = "humble"):
    """The rosbags type store of ``distro`` ("humble" or "jazzy") with vision_msgs LabelInfo and the detection
    arrays registered."""
    if distro not in DISTROS:
        raise ValueError(f"ROS distro must be one of {sorted(DISTROS)}, got {distro!r}")
    store = get_typestore(DISTROS[distro])
    if LABEL_INFO not in store.types:  # a future rosbags store may ship vision_msgs itself
        types = {}
        types.update(get_types_from_msg(VISION_CLASS_MSG, "vision_msgs/msg/VisionClass"))
        types.update(get_types_from_msg(LABEL_INFO_MSG, LABEL_INFO))
        store.register(types)
    for name, text in VISION_DETECTION_MSGS.items():  # one at a time: each may refer to the ones before
        if name not in store.types:
            store.register(get_types_from_msg(text, name))
    return store


def serialize(msg, typename: str, store) -> bytes:
    """CDR bytes (with the 4-byte encapsulation header) of a rosbags message, as rclpy's ``publish`` wants.

    Why the splice: ``bytes(store.serialize_cdr(...))`` copies large image/cloud payloads twice; serializing the
    message with empty ``data`` and joining prefix + length + payload + tail copies the payload once. Tests check
    it is byte-identical to rosbags' own serializer.
    """
    data = getattr(msg, "data", None)
    if typename in _BYTES_AFTER_DATA and isinstance(data, np.ndarray) and data.nbytes >= _SPLICE_MIN_BYTES:
        payload = np.ascontiguousarray(data).view(np.uint8).reshape(-1)
        empty = store.serialize_cdr(dataclasses.replace(msg, data=np.empty(0, np.uint8)), typename)
        after = _BYTES_AFTER_DATA[typename]
        prefix_end = len(empty) - after - 4
        return b"".join((empty[:prefix_end], struct.pack("<I", payload.size), payload, empty[len(empty) - after:]))
    return bytes(store.serialize_cdr(msg, typename))


def deserialize(data: bytes | memoryview, typename: str, store):
    """A rosbags message from CDR bytes (rclpy raw subscriptions and bag readers deliver these)."""
    return store.deserialize_cdr(data, typename)


def split_stamp(stamp_ns: int) -> tuple[int, int]:
    """Nanoseconds since the epoch -> (sec, nanosec) of a builtin_interfaces/Time."""
    return stamp_ns // 1_000_000_000, stamp_ns % 1_000_000_000


def make_header(store, stamp_sec: int = 0, stamp_nanosec: int = 0, frame_id: str = ""):
    """A std_msgs/Header."""
    types = store.types
    stamp = types["builtin_interfaces/msg/Time"](sec=int(stamp_sec), nanosec=int(stamp_nanosec))
    return types["std_msgs/msg/Header"](stamp=stamp, frame_id=str(frame_id))


def copy_header(store, header):
    """A new Header equal to ``header`` (a rosbags or rclpy Header): outputs carry the input's stamp and frame."""
    return make_header(store, header.stamp.sec, header.stamp.nanosec, header.frame_id)


_IMAGE_ENCODINGS = {  # (numpy dtype, channels) -> encoding
    (np.dtype("uint8"), 1): "mono8", (np.dtype("uint8"), 3): "rgb8", (np.dtype("<u2"), 1): "16UC1",
    (np.dtype("<i4"), 1): "32SC1", (np.dtype("<f4"), 1): "32FC1",
}


def image_message(store, header, array: np.ndarray, encoding: str | None = None):
    """sensor_msgs/Image of a (H, W) or (H, W, C) array, little-endian, unpadded rows; data is a view if it can be."""
    array = np.asarray(array)
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("<"))
    array = np.ascontiguousarray(array)
    if array.ndim not in (2, 3):
        raise ValueError(f"image array must be (H, W) or (H, W, C), got shape {array.shape}")
    height, width = array.shape[:2]
    channels = 1 if array.ndim == 2 else array.shape[2]
    if encoding is None:
        encoding = _IMAGE_ENCODINGS.get((array.dtype, channels))
        if encoding is None:
            raise ValueError(f"no image encoding for {channels}-channel {array.dtype}; pass one")
    return store.types[IMAGE](
        header=copy_header(store, header),
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=0,
        step=width * channels * array.dtype.itemsize,
        data=array.view(np.uint8).reshape(-1),
    )


def panoptic_image(store, header, panoptic: np.ndarray):
    """~/panoptic: 32SC1, ``class * 1000 + instance`` (instance 0 for stuff), -1 void."""
    return image_message(store, header, np.asarray(panoptic).astype("<i4", copy=False), "32SC1")


def semantic_image(store, header, semantic: np.ndarray, void: int = 255):
    """~/semantic: mono8 class ids; anything outside 0..254 (void, ignore) becomes 255."""
    semantic = np.asarray(semantic)
    return image_message(store, header, _filled(semantic.shape, np.uint8, _semantic_pixels, semantic, void), "mono8")


def instance_image(store, header, instance: np.ndarray):
    """~/instance: 16UC1 instance ids (1..N for things, 0 for stuff and void)."""
    instance = np.asarray(instance)
    return image_message(store, header, _filled(instance.shape, "<u2", _instance_pixels, instance), "16UC1")


def depth_image(store, header, depth: np.ndarray):
    """~/depth: 32FC1 metres along the optical axis (REP 118); no estimate (<= 0 or non-finite) is NaN (REP 117)."""
    depth = np.asarray(depth, dtype="<f4")
    return image_message(store, header, _filled(depth.shape, "<f4", _depth_pixels, depth), "32FC1")


def _filled(shape: tuple[int, ...], dtype, fill: Callable[..., None], *sources) -> np.ndarray:
    """A new array of ``shape`` and ``dtype`` written by ``fill(out, *sources)``."""
    out = np.empty(shape, dtype=dtype)
    fill(out, *sources)
    return out


def _semantic_pixels(out: np.ndarray, semantic: np.ndarray, void: int = 255) -> None:
    """~/semantic's pixels into ``out`` (uint8): class ids, 255 for anything outside 0..254."""
    if semantic.size and semantic.min() >= 0 and semantic.max() <= void:  # already in range: one cast
        np.copyto(out, semantic, casting="unsafe")
    else:
        np.copyto(out, np.where((semantic >= 0) & (semantic < void), semantic, void), casting="unsafe")


def _instance_pixels(out: np.ndarray, instance: np.ndarray) -> None:
    """~/instance's pixels into ``out`` (uint16): ids clipped to 0..65535."""
    in_range = instance.size and instance.min() >= 0 and instance.max() <= 65535  # already in range: one cast
    np.copyto(out, instance if in_range else np.clip(instance, 0, 65535), casting="unsafe")


def _depth_pixels(out: np.ndarray, depth: np.ndarray) -> None:
    """~/depth's pixels into ``out`` (float32): metres, NaN where there is no estimate."""
    np.copyto(out, depth)
    if all_valid_depths(out):  # the network's depth usually is: no mask to build
        return
    # no estimate: <= 0, NaN or inf, i.e. the bits as an unsigned integer, less one, are not below
    # 0x7F7FFFFF (positive finite floats are 0x00000001..0x7F7FFFFF); two passes instead of four
    bits = np.subtract(depth.view("<u4"), np.uint32(1))
    out[bits >= np.uint32(0x7F7FFFFF)] = np.float32(np.nan)


def rgb_image(store, header, rgb: np.ndarray):
    """~/overlay: rgb8."""
    return image_message(store, header, np.asarray(rgb, dtype=np.uint8), "rgb8")


# ---- the same images, written straight into their CDR bytes (the node's path: no array, then copy, per image)


def serialized_image(store, header, shape: tuple[int, ...], dtype, encoding: str,
                     fill: Callable[[np.ndarray], None]) -> bytes:
    """CDR bytes of a sensor_msgs/Image of ``shape`` (H, W) or (H, W, C) and little-endian ``dtype``, whose pixels
    ``fill`` writes into the given (shape) view of the message's own buffer. Equal to ``serialize`` of
    :func:`image_message` with the same pixels. The pixels start 4-byte aligned (after the uint32 length)."""
    dtype = np.dtype(dtype)
    height, width = int(shape[0]), int(shape[1])
    channels = 1 if len(shape) == 2 else int(shape[2])
    empty = store.serialize_cdr(store.types[IMAGE](
        header=copy_header(store, header), height=height, width=width, encoding=encoding, is_bigendian=0,
        step=width * channels * dtype.itemsize, data=np.empty(0, np.uint8)), IMAGE)
    data, raw, payload = _with_room(empty, height * width * channels * dtype.itemsize, trailer=0)
    fill(payload.view(dtype).reshape(shape))
    del raw, payload
    return bytes(data) if isinstance(data, bytearray) else data


def _with_room(empty: bytes, nbytes: int, trailer: int) -> tuple[bytes | bytearray, np.ndarray, np.ndarray]:
    """(message bytes, writable view of them, view of the payload) from the CDR ``empty`` of a message serialized
    with an empty ``uint8[]`` field followed by ``trailer`` more bytes: the same message with room for ``nbytes``
    in that field (its uint32 length written, the trailer left for the caller). uint8[] needs no padding."""
    prefix_end = len(empty) - 4 - trailer  # before the field's uint32 length
    data, raw = _writable_bytes(len(empty) + nbytes)
    raw[:prefix_end] = np.frombuffer(empty, np.uint8, prefix_end)
    raw[prefix_end:prefix_end + 4] = np.frombuffer(struct.pack("<I", nbytes), np.uint8)
    start = prefix_end + 4
    return data, raw, raw[start:start + nbytes]


def panoptic_image_bytes(store, header, panoptic: np.ndarray) -> bytes:
    """CDR bytes of :func:`panoptic_image`."""
    panoptic = np.asarray(panoptic)
    return serialized_image(store, header, panoptic.shape, "<i4", "32SC1",
                            lambda out: np.copyto(out, panoptic, casting="unsafe"))


def semantic_image_bytes(store, header, semantic: np.ndarray, void: int = 255) -> bytes:
    """CDR bytes of :func:`semantic_image`."""
    semantic = np.asarray(semantic)
    return serialized_image(store, header, semantic.shape, np.uint8, "mono8",
                            lambda out: _semantic_pixels(out, semantic, void))


def instance_image_bytes(store, header, instance: np.ndarray) -> bytes:
    """CDR bytes of :func:`instance_image`."""
    instance = np.asarray(instance)
    return serialized_image(store, header, instance.shape, "<u2", "16UC1", lambda out: _instance_pixels(out, instance))


def depth_image_bytes(store, header, depth: np.ndarray) -> bytes:
    """CDR bytes of :func:`depth_image`."""
    depth = np.asarray(depth, dtype="<f4")
    return serialized_image(store, header, depth.shape, "<f4", "32FC1", lambda out: _depth_pixels(out, depth))


def rgb_image_bytes(store, header, rgb: np.ndarray) -> bytes:
    """CDR bytes of :func:`rgb_image`."""
    rgb = np.asarray(rgb)
    return serialized_image(store, header, rgb.shape, np.uint8, "rgb8",
                            lambda out: np.copyto(out, rgb, casting="unsafe"))


def camera_info_message(store, header, k: np.ndarray, size: tuple[int, int]):
    """sensor_msgs/CameraInfo of an undistorted pinhole camera: K, plumb_bob with D = 0, R = I, P = [K | 0]."""
    k = np.asarray(k, dtype=np.float64).reshape(3, 3)
    roi = store.types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    return store.types[CAMERA_INFO](
        header=header, height=int(size[0]), width=int(size[1]), distortion_model="plumb_bob",
        d=np.zeros(5, np.float64), k=k.reshape(-1).copy(), r=np.eye(3).reshape(-1),
        p=np.concatenate([k, np.zeros((3, 1))], axis=1).reshape(-1),
        binning_x=0, binning_y=0, roi=roi,
    )


def pinhole_camera_info(store, header, size: tuple[int, int], focal: float):
    """CameraInfo of a pinhole camera with fx = fy = ``focal`` px and the principal point at the image centre
    ((W - 1) / 2, (H - 1) / 2; pixel centres at integer coordinates): `panopticdepth bag --focal`."""
    height, width = size
    k = np.array([[focal, 0.0, (width - 1) / 2.0], [0.0, focal, (height - 1) / 2.0], [0.0, 0.0, 1.0]])
    return camera_info_message(store, header, k, size)


def depth_camera_info(store, header, source_info, output_size: tuple[int, int], rectified: bool = False):
    """~/depth/camera_info: ``source_info`` (the input camera_info) for an image of ``output_size`` (height, width).

    K and P are scaled from the size camera_info describes (after its binning and ROI) to the output size; D, R
    and the distortion model are copied; binning and ROI are reset because they are already applied. An all-zero
    input P is published as [K | 0] so depth_image_proc (which reads P) works. ``rectified``: the pipeline
    undistorted the image (parameter ``rectify``), so the outputs show the rectified camera: K = P's 3x3, zero D
    (plumb_bob), identity R, P kept.
    """
    geometry = camera_geometry(source_info)
    height, width = output_size
    k, p = geometry.K, geometry.P
    if geometry.size is not None and geometry.size != (height, width):
        k = scale_intrinsics(k, geometry.size, (height, width))
        p = scale_intrinsics(p, geometry.size, (height, width))
    model = str(source_info.distortion_model)
    d = np.asarray(source_info.d, dtype=np.float64).reshape(-1).copy()
    r = np.asarray(source_info.r, dtype=np.float64).reshape(-1).copy()
    if rectified:
        k, model, d, r = p[:, :3].copy(), "plumb_bob", np.zeros(5), np.eye(3).reshape(-1)
    types = store.types
    roi = types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    return types[CAMERA_INFO](
        header=copy_header(store, header),
        height=int(height),
        width=int(width),
        distortion_model=model,
        d=d,
        k=k.reshape(-1).astype(np.float64),
        r=r,
        p=p.reshape(-1).astype(np.float64),
        binning_x=0,
        binning_y=0,
        roi=roi,
    )


def label_info_message(
    store, header, class_names: Sequence[str], threshold: float, void_id: int = 255, void_name: str = "unlabeled"
):
    """~/label_info (vision_msgs/LabelInfo): id -> name for every class plus ``void_id`` -> ``void_name``.

    vision_msgs reserves the largest id of the label type (255 for uint8 label images) for "UNLABELED", which is
    exactly ~/semantic's void value.
    """
    vision_class = store.types["vision_msgs/msg/VisionClass"]
    class_map = [vision_class(class_id=i, class_name=str(name)) for i, name in enumerate(class_names)]
    if void_id not in range(len(class_names)):
        class_map.append(vision_class(class_id=int(void_id), class_name=void_name))
    return store.types[LABEL_INFO](header=copy_header(store, header), class_map=class_map, threshold=float(threshold))


def pointcloud2_message(store, header, cloud: np.ndarray, is_dense: bool | None = None):
    """sensor_msgs/PointCloud2 of a structured array: (h, w) organized or (N,) unorganized (height 1).

    Fields, offsets and point_step come from the array's dtype (itemsize = point_step); data is a zero-copy
    view of the array. ``is_dense`` None: computed as "no NaN z" (x, y are NaN exactly where z is, for clouds
    from depth maps; one field keeps the check cheap).
    """
    cloud = np.ascontiguousarray(cloud)
    if cloud.dtype.names is None or cloud.ndim not in (1, 2):
        raise ValueError(f"cloud must be a 1-D or 2-D structured array, got {cloud.dtype} {cloud.shape}")
    height, width = (1, cloud.shape[0]) if cloud.ndim == 1 else cloud.shape
    if is_dense is None:
        is_dense = "z" not in cloud.dtype.names or not np.isnan(cloud["z"]).any()
    return _pointcloud2(store, header, cloud.dtype, height, width, cloud.view(np.uint8).reshape(-1), is_dense)


def _pointcloud2(store, header, dtype: np.dtype, height: int, width: int, data: np.ndarray, is_dense: bool):
    point_field = store.types["sensor_msgs/msg/PointField"]
    fields = []
    for name in dtype.names:
        field_dtype, offset = dtype.fields[name][:2]
        code = _POINT_FIELD_TYPES.get(field_dtype.newbyteorder("<") if field_dtype.byteorder == "=" else field_dtype)
        if code is None:
            raise ValueError(f"cloud field {name!r} has type {field_dtype}, which PointField cannot describe")
        fields.append(point_field(name=name, offset=int(offset), datatype=code, count=1))
    return store.types[POINT_CLOUD2](
        header=copy_header(store, header),
        height=int(height),
        width=int(width),
        fields=fields,
        is_bigendian=False,
        point_step=dtype.itemsize,
        row_step=dtype.itemsize * int(width),
        data=data,
        is_dense=bool(is_dense),
    )


class SerializedPointCloud2:
    """The CDR bytes of a PointCloud2 laid out before its points exist: fill :attr:`points` in place, then
    :meth:`finish`. The bytes equal ``serialize(pointcloud2_message(...))`` of the same cloud.

    Why: the labeled 1280x720 cloud is 22 MB; building it straight into the published bytes saves a copy and a
    second buffer of that size per frame. CDR of PointCloud2 ends with ``uint8[] data`` (a uint32 length, then
    the bytes, no padding: uint8 needs none) and ``bool is_dense``, so everything before the points is the CDR of
    the message with empty data, and is_dense is the last byte. The points start 4-byte aligned (the length is).
    """

    def __init__(self, store, header, dtype: np.dtype, height: int, width: int) -> None:
        dtype = np.dtype(dtype)
        if dtype.names is None or dtype.itemsize % 4:
            raise ValueError(f"point dtype must be structured with a multiple of 4 bytes, got {dtype}")
        empty = store.serialize_cdr(_pointcloud2(store, header, dtype, height, width, np.empty(0, np.uint8), False),
                                    POINT_CLOUD2)
        # data is followed by the bool is_dense, written by finish()
        self.data, self._raw, payload = _with_room(empty, dtype.itemsize * int(height) * int(width), trailer=1)
        #: (height * width,) structured view of the points inside the message bytes
        self.points = payload.view(dtype)

    def finish(self, is_dense: bool) -> bytes:
        """The message's bytes, with ``is_dense`` written; the views into them are released."""
        self._raw[-1] = 1 if is_dense else 0
        data = self.data
        if isinstance(data, bytearray):
            data = bytes(data)
        self._raw = self.points = self.data = None
        return data


def _writable_bytes(size: int) -> tuple[bytes | bytearray, np.ndarray]:
    """A new ``bytes`` of ``size`` bytes and a writable uint8 view of its contents, to fill before it is shared.

    rclpy's ``publish`` takes ``bytes`` only, and a bytes object cannot be written from Python: this uses the
    C API's own way to build one (``PyBytes_FromStringAndSize(NULL, size)`` returns an uninitialised object for
    the caller to fill, as extension modules do) through ``ctypes.pythonapi``, which saves a copy of the whole
    message. Where that is unavailable (not CPython) it returns a bytearray, copied to bytes at the end.
    """
    if _PYTHONAPI is None or size < 2:  # CPython shares the objects of sizes 0 and 1
        data = bytearray(size)
        return data, np.frombuffer(data, np.uint8)
    new_bytes, as_string = _PYTHONAPI
    data = new_bytes(None, size)
    return data, np.asarray(_Contents(data, as_string(data), size))  # the view keeps ``data`` alive


class _Contents:
    """The array interface of a new bytes object's contents; as the view's base it holds the object."""

    def __init__(self, owner: bytes, address: int, size: int) -> None:
        self.owner = owner
        self.__array_interface__ = {"shape": (size,), "typestr": "|u1", "data": (address, False), "version": 3}


def _pythonapi():
    if sys.implementation.name != "cpython":
        return None
    try:
        import ctypes

        # our own prototypes (PYFUNCTYPE: called with the GIL held), not the shared ctypes.pythonapi attributes
        new_bytes = ctypes.PYFUNCTYPE(ctypes.py_object, ctypes.c_void_p, ctypes.c_ssize_t)(
            ("PyBytes_FromStringAndSize", ctypes.pythonapi))
        as_string = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.py_object)(("PyBytes_AsString", ctypes.pythonapi))
    except (ImportError, AttributeError, OSError):
        return None
    return new_bytes, as_string


_PYTHONAPI = _pythonapi()


def pointcloud2_to_array(msg) -> np.ndarray:
    """Structured array (height, width) of a PointCloud2's fields (little-endian, count 1): reading clouds back."""
    if msg.is_bigendian:
        raise ValueError("big-endian PointCloud2 is not supported")
    dtype = np.dtype(
        {
            "names": [f.name for f in msg.fields],
            "formats": [_POINT_FIELD_DTYPES[f.datatype] for f in msg.fields],
            "offsets": [f.offset for f in msg.fields],
            "itemsize": msg.point_step,
        }
    )
    data = np.frombuffer(memoryview(msg.data).cast("B") if not isinstance(msg.data, np.ndarray) else msg.data,
                         dtype=np.uint8)
    rows = data.reshape(msg.height, msg.row_step)[:, : msg.width * msg.point_step]
    return np.ascontiguousarray(rows).view(dtype).reshape(msg.height, msg.width)


def _duration(store, seconds: float):
    seconds = max(0.0, float(seconds))
    whole = math.floor(seconds)
    return store.types["builtin_interfaces/msg/Duration"](sec=int(whole), nanosec=int(round((seconds - whole) * 1e9)))


def _marker(store, header, ns: str, marker_id: int, marker_type: int, action: int, position=(0.0, 0.0, 0.0),
            scale=(0.0, 0.0, 0.0), color=(0.0, 0.0, 0.0, 0.0), lifetime_s: float = 0.0, text: str = ""):
    """A visualization_msgs/Marker with every field set (rviz2 rejects NaN/Inf and unnormalised orientations)."""
    types = store.types
    point, vector = types["geometry_msgs/msg/Point"], types["geometry_msgs/msg/Vector3"]
    pose = types["geometry_msgs/msg/Pose"](
        position=point(x=float(position[0]), y=float(position[1]), z=float(position[2])),
        orientation=types["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0),
    )
    texture = types[COMPRESSED_IMAGE](header=make_header(store), format="", data=np.empty(0, np.uint8))
    return types["visualization_msgs/msg/Marker"](
        header=copy_header(store, header),
        ns=ns,
        id=int(marker_id),
        type=int(marker_type),
        action=int(action),
        pose=pose,
        scale=vector(x=float(scale[0]), y=float(scale[1]), z=float(scale[2])),
        color=types["std_msgs/msg/ColorRGBA"](r=float(color[0]), g=float(color[1]), b=float(color[2]),
                                              a=float(color[3])),
        lifetime=_duration(store, lifetime_s),
        frame_locked=False,
        points=[],
        colors=[],
        texture_resource="",
        texture=texture,
        uv_coordinates=[],
        text=text,
        mesh_resource="",
        mesh_file=types["visualization_msgs/msg/MeshFile"](filename="", data=np.empty(0, np.uint8)),
        mesh_use_embedded_materials=False,
    )


def instance_markers(
    store,
    header,
    boxes: Iterable[InstanceBox],
    class_names: Sequence[str],
    class_colors: Sequence[tuple[int, int, int]],
    lifetime_s: float = 1.0,
    text_height: float = 0.4,
    box_alpha: float = 0.4,
):
    """~/instances (MarkerArray): DELETEALL first (stale boxes vanish), then per thing a CUBE (ns "boxes") and a
    TEXT_VIEW_FACING "car 12.3 m" above it (ns "labels"), both with the instance's panoptic id as marker id.

    Boxes are axis-aligned in the optical frame (x right, y down, z forward); the distance is the median depth.
    """
    marker_type = store.types["visualization_msgs/msg/Marker"]
    markers = [_marker(store, header, "", 0, marker_type.CUBE, marker_type.DELETEALL)]
    for box in boxes:
        if not (np.all(np.isfinite(box.center)) and np.all(np.isfinite(box.size)) and math.isfinite(box.distance)):
            continue
        name = class_names[box.class_id] if 0 <= box.class_id < len(class_names) else f"class {box.class_id}"
        rgb = class_colors[box.class_id] if 0 <= box.class_id < len(class_colors) else (255, 255, 255)
        color = (rgb[0] / 255.0, rgb[1] / 255.0, rgb[2] / 255.0, box_alpha)
        markers.append(_marker(store, header, "boxes", box.panoptic_id, marker_type.CUBE, marker_type.ADD,
                               box.center, box.size, color, lifetime_s))
        top = (box.center[0], box.center[1] - box.size[1] / 2 - 0.75 * text_height, box.center[2])
        markers.append(_marker(store, header, "labels", box.panoptic_id, marker_type.TEXT_VIEW_FACING,
                               marker_type.ADD, top, (0.0, 0.0, text_height), (1.0, 1.0, 1.0, 1.0), lifetime_s,
                               f"{name} {box.distance:.1f} m"))
    return store.types[MARKER_ARRAY](markers=markers)


def _hypothesis(store, class_id: int, score: float, position=(0.0, 0.0, 0.0)):
    """ObjectHypothesisWithPose: class id as text (vision_msgs 4.x; the ~/label_info id), score, a pose at
    ``position`` with zero covariance (no uncertainty is estimated)."""
    types = store.types
    pose = types["geometry_msgs/msg/Pose"](
        position=types["geometry_msgs/msg/Point"](x=float(position[0]), y=float(position[1]), z=float(position[2])),
        orientation=types["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0))
    return types["vision_msgs/msg/ObjectHypothesisWithPose"](
        hypothesis=types["vision_msgs/msg/ObjectHypothesis"](class_id=str(int(class_id)), score=float(score)),
        pose=types["geometry_msgs/msg/PoseWithCovariance"](pose=pose, covariance=np.zeros(36, np.float64)))


def detection2d_array(store, header, boxes: Iterable, scores: Mapping[int, float]):
    """~/detections (vision_msgs/Detection2DArray): per thing its 2D box (pixels; centre with pixel centres at
    integer coordinates), ``results`` = [class id, score], ``id`` = its panoptic id (class * 1000 + tracked
    instance, the ~/panoptic value and marker id; the last three digits are the ~/instance value)."""
    types = store.types
    point2d, pose2d = types["vision_msgs/msg/Point2D"], types["vision_msgs/msg/Pose2D"]
    detections = []
    for box in boxes:
        (cx, cy), (sx, sy) = box.center, box.size
        bbox = types["vision_msgs/msg/BoundingBox2D"](center=pose2d(position=point2d(x=float(cx), y=float(cy)),
                                                                    theta=0.0), size_x=float(sx), size_y=float(sy))
        detections.append(types["vision_msgs/msg/Detection2D"](
            header=copy_header(store, header), results=[_hypothesis(store, box.class_id,
                                                                    scores.get(box.panoptic_id, 1.0))],
            bbox=bbox, id=str(box.panoptic_id)))
    return types[DETECTION_2D_ARRAY](header=copy_header(store, header), detections=detections)


def detection3d_array(store, header, boxes: Iterable[InstanceBox], scores: Mapping[int, float]):
    """~/detections_3d (vision_msgs/Detection3DArray): per thing the ~/instances marker's box (axis-aligned in the
    optical frame: centre and size in metres), ``results`` = [class id, score] posed at the box centre, ``id`` as
    in ~/detections. Boxes with a non-finite centre or size are left out, as in the markers."""
    types = store.types
    detections = []
    for box in boxes:
        if not (np.all(np.isfinite(box.center)) and np.all(np.isfinite(box.size))):
            continue
        center = types["geometry_msgs/msg/Pose"](
            position=types["geometry_msgs/msg/Point"](x=float(box.center[0]), y=float(box.center[1]),
                                                      z=float(box.center[2])),
            orientation=types["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0))
        size = types["geometry_msgs/msg/Vector3"](x=float(box.size[0]), y=float(box.size[1]), z=float(box.size[2]))
        detections.append(types["vision_msgs/msg/Detection3D"](
            header=copy_header(store, header),
            results=[_hypothesis(store, box.class_id, scores.get(box.panoptic_id, 1.0), box.center)],
            bbox=types["vision_msgs/msg/BoundingBox3D"](center=center, size=size), id=str(box.panoptic_id)))
    return types[DETECTION_3D_ARRAY](header=copy_header(store, header), detections=detections)


def diagnostics_message(
    store,
    stamp: tuple[int, int],
    name: str,
    hardware_id: str,
    level: int,
    message: str,
    values: Mapping[str, object],
):
    """diagnostic_msgs/DiagnosticArray with one status; ``level`` 0 OK, 1 WARN, 2 ERROR, 3 STALE."""
    types = store.types
    key_value = types["diagnostic_msgs/msg/KeyValue"]
    status = types["diagnostic_msgs/msg/DiagnosticStatus"](
        level=int(level),  # msg type ``byte``; rosbags (like rclpy) takes an int
        name=name,
        message=message,
        hardware_id=hardware_id,
        values=[key_value(key=str(key), value=_format_value(value)) for key, value in values.items()],
    )
    return types[DIAGNOSTIC_ARRAY](header=make_header(store, stamp[0], stamp[1], ""), status=[status])


def _format_value(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if math.isfinite(value) else "nan"
    return str(value)
