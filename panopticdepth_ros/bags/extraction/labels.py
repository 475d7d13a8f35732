"""Label images -> Cityscapes train ids for ``panopticdepth extract``: the class map, panoptic decoding, instance ids."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from panopticdepth_core.data.classes import CLASS_NAMES, LABEL_DIVISOR, NUM_CLASSES, THING_IDS, VOID_CLASS

from ...conversions import image_array
from ..errors import BagError

#: colour panoptic encodings -> channel order (R, G, B)
_COLOUR_ORDER = {"rgb8": (0, 1, 2), "rgba8": (0, 1, 2), "bgr8": (2, 1, 0), "bgra8": (2, 1, 0)}
#: encodings accepted for semantic and instance label images
LABEL_ENCODINGS = ("mono8", "8uc1", "mono16", "16uc1", "16sc1", "32sc1")


@dataclass
class ClassMap:
    """Source label ids -> Cityscapes train ids (0..18, 255 void); see docs/bag_extraction.md for the YAML."""

    mapping: dict[int, int]
    default: int | None = None
    panoptic_divisor: int = LABEL_DIVISOR
    source: str = "identity"  # file path, or "identity"

    @classmethod
    def identity(cls) -> ClassMap:
        return cls({i: i for i in range(NUM_CLASSES)} | {VOID_CLASS: VOID_CLASS})

    def apply(self, ids: np.ndarray, where: str) -> np.ndarray:
        """Map an id array; negative ids are void. Unknown ids raise BagError (unless a default is set)."""
        ids = np.asarray(ids).astype(np.int64, copy=False)
        values, inverse = np.unique(ids, return_inverse=True)
        mapped = np.empty(values.shape, dtype=np.int32)
        unknown = []
        for i, value in enumerate(values.tolist()):
            if value < 0:
                mapped[i] = VOID_CLASS
            elif value in self.mapping:
                mapped[i] = self.mapping[value]
            elif self.default is not None:
                mapped[i] = self.default
            else:
                unknown.append(value)
        if unknown:
            hint = ("add them to the class map or set 'default: 255' there" if self.source != "identity" else
                    "ids must be Cityscapes train ids 0..18 or 255; pass --class-map YAML to map them")
            raise BagError(f"{where}: class ids {unknown[:20]} are not in the class map ({self.source}); {hint}")
        return mapped[inverse.reshape(ids.shape)]


def _target_id(value: Any, where: str) -> int:
    if isinstance(value, str):
        name = value.strip().lower()
        if name in ("void", "ignore", "unlabeled", "unlabelled"):
            return VOID_CLASS
        if name in CLASS_NAMES:
            return CLASS_NAMES.index(name)
        raise BagError(f"{where}: unknown class name {value!r}; expected one of {', '.join(CLASS_NAMES)} or void")
    if isinstance(value, bool) or not isinstance(value, int) or not (0 <= value < NUM_CLASSES or value == 255):
        raise BagError(f"{where}: target {value!r} must be a train id 0..{NUM_CLASSES - 1}, 255 or a class name")
    return int(value)


def load_class_map(path: str | Path) -> ClassMap:
    """Read a class-map YAML: ``{source_id: train id | class name | 255}``, optionally under ``classes:``, plus
    optional ``default:`` (target of unlisted ids) and ``panoptic_divisor:`` (default 1000)."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BagError(f"class map not found: {path}") from None
    except (OSError, yaml.YAMLError) as exc:
        raise BagError(f"{path}: cannot read the class map YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise BagError(f"{path}: expected a mapping {{source_id: train_id}}, got {type(data).__name__}")
    data = dict(data)
    default = data.pop("default", None)
    divisor = data.pop("panoptic_divisor", LABEL_DIVISOR)
    entries = data.pop("classes", {}) or {}
    if not isinstance(entries, dict):
        raise BagError(f"{path}: 'classes' must be a mapping {{source_id: train_id}}")
    entries = {**entries, **data}
    mapping: dict[int, int] = {}
    for key, value in entries.items():
        try:
            source = int(key)
        except (TypeError, ValueError):
            raise BagError(f"{path}: key {key!r} is not an integer source id (or default / panoptic_divisor / "
                           "classes)") from None
        if source < 0:
            raise BagError(f"{path}: source id {source} is negative (negative ids are always void)")
        mapping[source] = _target_id(value, f"{path}: entry {key}")
    if not mapping and default is None:
        raise BagError(f"{path}: the class map is empty")
    if isinstance(divisor, bool) or not isinstance(divisor, int) or divisor < 2:
        raise BagError(f"{path}: panoptic_divisor must be an integer >= 2, got {divisor!r}")
    return ClassMap(mapping, None if default is None else _target_id(default, f"{path}: default"), divisor,
                    str(path))


def renumber_instances(semantic: np.ndarray, instance: np.ndarray) -> np.ndarray:
    """Instance ids 1..N for thing pixels (train ids 11..18) with a source id > 0, in order of source id; 0 else.

    A source id shared by two thing classes gives two instances; thing pixels with id 0 stay 0 (crowd).
    """
    out = np.zeros(semantic.shape, dtype=np.int32)
    thing = np.isin(semantic, THING_IDS) & (instance > 0)
    if thing.any():
        keys = instance[thing].astype(np.int64) * 256 + semantic[thing]
        _, dense = np.unique(keys, return_inverse=True)
        out[thing] = dense.reshape(-1).astype(np.int32) + 1
    return out


def decode_panoptic(msg, class_map: ClassMap) -> tuple[np.ndarray, np.ndarray]:
    """A panoptic label image -> (source class ids, source instance ids), void as -1 class.

    Integer encodings (32SC1, 16UC1, mono16): ``class * divisor + instance``, negative = void. Colour encodings
    (rgb8, bgr8, rgba8, bgra8; CARLA's instance segmentation camera): class = R, instance = G + 256 * B.
    """
    encoding = str(msg.encoding).strip().lower()
    array = image_array(msg, "panoptic image", ("32sc1", "16uc1", "mono16", "rgb8", "bgr8", "rgba8", "bgra8"))
    if encoding in _COLOUR_ORDER:
        r, g, b = (array[:, :, c].astype(np.int64) for c in _COLOUR_ORDER[encoding])
        return r, g + 256 * b
    values = array.astype(np.int64)
    divisor = class_map.panoptic_divisor
    void = values < 0
    return np.where(void, -1, values // divisor), np.where(void, 0, values % divisor)
