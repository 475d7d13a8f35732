"""Class metadata: Cityscapes' 19 training classes (the label space of every shipped config).

Thing classes are the last eight train ids (11..18), matching the released PanopticDepth head layout where the
stuff/region head covers all 19 classes and the centre head covers the 8 things in order.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ClassInfo:
    train_id: int
    name: str
    is_thing: bool
    color: tuple[int, int, int]


CITYSCAPES_CLASSES: tuple[ClassInfo, ...] = (
    ClassInfo(0, "road", False, (128, 64, 128)),
    ClassInfo(1, "sidewalk", False, (244, 35, 232)),
    ClassInfo(2, "building", False, (70, 70, 70)),
    ClassInfo(3, "wall", False, (102, 102, 156)),
    ClassInfo(4, "fence", False, (190, 153, 153)),
    ClassInfo(5, "pole", False, (153, 153, 153)),
    ClassInfo(6, "traffic light", False, (250, 170, 30)),
    ClassInfo(7, "traffic sign", False, (220, 220, 0)),
    ClassInfo(8, "vegetation", False, (107, 142, 35)),
    ClassInfo(9, "terrain", False, (152, 251, 152)),
    ClassInfo(10, "sky", False, (70, 130, 180)),
    ClassInfo(11, "person", True, (220, 20, 60)),
    ClassInfo(12, "rider", True, (255, 0, 0)),
    ClassInfo(13, "car", True, (0, 0, 142)),
    ClassInfo(14, "truck", True, (0, 0, 70)),
    ClassInfo(15, "bus", True, (0, 60, 100)),
    ClassInfo(16, "train", True, (0, 80, 100)),
    ClassInfo(17, "motorcycle", True, (0, 0, 230)),
    ClassInfo(18, "bicycle", True, (119, 11, 32)),
)

NUM_CLASSES = len(CITYSCAPES_CLASSES)
THING_IDS: tuple[int, ...] = tuple(c.train_id for c in CITYSCAPES_CLASSES if c.is_thing)
STUFF_IDS: tuple[int, ...] = tuple(c.train_id for c in CITYSCAPES_CLASSES if not c.is_thing)
FIRST_THING_ID = THING_IDS[0]
CLASS_NAMES: tuple[str, ...] = tuple(c.name for c in CITYSCAPES_CLASSES)

# The label conventions every layer shares (model output, data sets, files, ROS topics): defined here once, in a
# module without torch, so the ROS per-frame path can use them without importing the network.
#: Panoptic ids are ``class * LABEL_DIVISOR + instance`` (Cityscapes' convention), so instances stay below 1000.
LABEL_DIVISOR = 1000
#: The class id of void pixels: unlabelled in targets (the losses' ignore value), "no class" in predictions.
VOID_CLASS = 255
#: The panoptic id of void pixels in the model's output and on ~/panoptic.
VOID_PANOPTIC_ID = -1


def thing_index_to_class(thing_index: int) -> int:
    """Index into the centre head's T channels -> class id."""
    return FIRST_THING_ID + thing_index


def class_to_thing_index(class_id: int) -> int:
    """Class id -> index into the centre head's channels (raises for stuff classes)."""
    if class_id not in THING_IDS:
        raise ValueError(f"class {class_id} is not a thing class")
    return class_id - FIRST_THING_ID
