"""Per-class instance ids below the panoptic label divisor, unique while in use, recycled oldest-retired first.

Why a limit: panoptic ids are ``class * 1000 + instance``, so a tracker may hand out at most 999 instance ids per
class. Ids are never reused while that is possible: the first 999 things of a class get 1..999. Only after that
does a new thing take the id that was retired longest ago (a track retires when it has been unseen for longer
than the occlusion allowance), so a reused id always belonged to an object gone for the longest time; an id that
is still in use (visible, or hidden but still awaited) is never handed out twice.
"""

from __future__ import annotations

from collections import OrderedDict

from ..data.classes import LABEL_DIVISOR

MAX_INSTANCE_ID = LABEL_DIVISOR - 1


class IdsExhausted(RuntimeError):
    """Every id of a class is held by a live track."""


class ClassIds:
    """Ids of one class: a counter up to ``limit``, then the retired ids in the order they retired."""

    def __init__(self, limit: int = MAX_INSTANCE_ID) -> None:
        if not 1 <= limit <= MAX_INSTANCE_ID:
            raise ValueError(f"id limit must lie in 1..{MAX_INSTANCE_ID}, got {limit}")
        self.limit = limit
        self._next = 1
        self._retired: OrderedDict[int, None] = OrderedDict()  # oldest retirement first
        self.in_use: set[int] = set()

    def allocate(self) -> int:
        if self._next <= self.limit:
            new, self._next = self._next, self._next + 1
        elif self._retired:
            new, _ = self._retired.popitem(last=False)
        else:
            raise IdsExhausted(f"all {self.limit} ids of the class are held by live tracks")
        self.in_use.add(new)
        return new

    def retire(self, instance: int) -> None:
        self.in_use.discard(instance)
        self._retired[instance] = None


class IdAllocator:
    """``ClassIds`` for every class, created on first use."""

    def __init__(self, limit: int = MAX_INSTANCE_ID) -> None:
        ClassIds(limit)  # validates
        self.limit = limit
        self._classes: dict[int, ClassIds] = {}

    def of(self, category: int) -> ClassIds:
        if category not in self._classes:
            self._classes[category] = ClassIds(self.limit)
        return self._classes[category]

    def allocate(self, category: int) -> int:
        return self.of(category).allocate()

    def retire(self, category: int, instance: int) -> None:
        self.of(category).retire(instance)
