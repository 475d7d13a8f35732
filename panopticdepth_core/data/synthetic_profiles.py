"""Scene profiles: what a synthetic street may contain.

``streets`` (the default) is the full generator: 18 of the 19 Cityscapes classes, up to 20 things of seven kinds
at 2-80 m. ``basic`` keeps the same streets, camera, lighting and textures but only the large classes (road,
sidewalk, building, vegetation, terrain, sky; cars and people up to 40 m): no poles, traffic signs or lights,
and hedges instead of fences and walls. It exists for the CPU learning test (test/test_learning.py): a network
trained from scratch for minutes cannot learn 18 classes, several of them a few pixels wide at 128x256, but it
can learn these, and whether it does is what the test checks. The profile changes what is drawn, never how it is
rendered: ``streets`` scenes are the same bit for bit as before profiles existed.
"""

from __future__ import annotations

from dataclasses import dataclass

THING_KINDS = ("car", "person", "rider_bicycle", "bicycle", "truck", "bus", "rider_motorcycle")


@dataclass(frozen=True)
class SceneProfile:
    """What ``synthetic_layout.sample_scene`` may place in a scene."""

    name: str
    thing_kinds: tuple[str, ...]  # subset of THING_KINDS, drawn with the generator's relative weights
    max_things: int  # a scene has 0..max_things thing instances (a rider with its bike counts 2)
    thing_distance: tuple[float, float]  # metres ahead of the camera
    street_furniture: bool  # poles with traffic signs and lights
    barriers: bool  # fences and walls in the gaps between buildings (else hedges: vegetation)


PROFILES = {
    "streets": SceneProfile("streets", THING_KINDS, 20, (2.0, 80.0), street_furniture=True, barriers=True),
    "basic": SceneProfile("basic", ("car", "person"), 10, (3.0, 40.0), street_furniture=False, barriers=False),
}


def get_profile(profile: str | SceneProfile) -> SceneProfile:
    """The profile of that name (or the profile itself); a clear error for unknown names."""
    if isinstance(profile, SceneProfile):
        return profile
    try:
        return PROFILES[profile]
    except KeyError:
        raise ValueError(f"unknown synthetic scene profile {profile!r}; known: {', '.join(PROFILES)}") from None
