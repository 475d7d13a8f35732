"""The inputs of `panopticdepth extract` by role (image, camera_info, depth, LiDAR, labels) and the check that
the bag has each asked-for topic with a usable message type."""

from __future__ import annotations

from pathlib import Path

from ...messages import CAMERA_INFO, COMPRESSED_IMAGE, IMAGE, POINT_CLOUD2
from ..errors import BagError
from ..io import connections_by_topic, describe_topics

#: role -> (command-line flag, accepted message types)
ROLES: dict[str, tuple[str, tuple[str, ...]]] = {
    "image": ("--image-topic", (IMAGE, COMPRESSED_IMAGE)),
    "camera_info": ("--camera-info-topic", (CAMERA_INFO,)),
    "depth": ("--depth-topic", (IMAGE,)),
    "lidar": ("--lidar-topic", (POINT_CLOUD2,)),
    "semantic": ("--semantic-topic", (IMAGE,)),
    "instance": ("--instance-topic", (IMAGE,)),
    "panoptic": ("--panoptic-topic", (IMAGE,)),
}


def check_topics(reader, path: Path, topics: dict[str, str]) -> dict[str, list]:
    """role -> the bag's connections of its topic; missing topics and wrong types raise BagError."""
    by_topic = connections_by_topic(reader)
    missing = [f"{ROLES[role][0]} {topic}" for role, topic in topics.items() if topic not in by_topic]
    if missing:
        raise BagError(f"{path}: topic(s) not in the bag: {', '.join(missing)}. The bag has:\n"
                       + describe_topics(reader))
    out = {}
    for role, topic in topics.items():
        flag, accepted = ROLES[role]
        for conn in by_topic[topic]:
            if conn.msgtype not in accepted:
                raise BagError(f"{path}: {flag} {topic} has message type {conn.msgtype}; expected "
                               f"{' or '.join(accepted)}")
        out[role] = by_topic[topic]
    if sum(c.msgcount for c in out["image"]) == 0:
        raise BagError(f"{path}: {ROLES['image'][0]} {topics['image']} has no messages (the bag holds "
                       f"{reader.message_count} messages in all); nothing to extract")
    return out
