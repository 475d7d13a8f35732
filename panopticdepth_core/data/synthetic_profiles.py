"""Scene profiles: what a synthetic street may contain.

``streets`` (the default) is the full generator: 18 of the 19 Cityscapes classes, up to 20 things of seven kinds
at 2-80 m. ``basic`` keeps the same streets, camera, lighting and textures but only large classes: road,
sidewalk, building, vegetation, sky and up to 12 cars at 3-30 m; no poles, traffic signs or lights, hedges
instead of fences and walls, no grass (the open ground is paved), no people or two-wheelers. It exists for the CPU
learning test (test/test_learning.py): minutes of training from scratch on a CPU do not learn 18 classes, several
of them a few pixels wide at 128x256, and PQ averages over classes. Measured there with the earlier basic profile
that still had people and grass: people and terrain stayed at PQ 0 after 6000 images in every run (never
predicted / confused with vegetation) while cars reached PQ 20-45, which made the test a lottery on two classes
it cannot learn in its budget. The profile changes what is drawn, never how it is rendered: ``streets`` scenes
are the same bit for bit as before profiles existed.
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
    terrain: bool  # grass strips, parks and grass beyond the street (else no strips or parks, paved ground)


PROFILES = {
    "streets": SceneProfile("streets", THING_KINDS, 20, (2.0, 80.0), street_furniture=True, barriers=True,
                            terrain=True),
    "basic": SceneProfile("basic", ("car",), 12, (3.0, 30.0), street_furniture=False, barriers=False, terrain=False),
}


def get_profile(profile: str | SceneProfile) -> SceneProfile:
    """The profile of that name (or the profile itself); a clear error for unknown names."""
    if isinstance(profile, SceneProfile):
        return profile
    try:
        return PROFILES[profile]
    except KeyError:
        raise ValueError(f"unknown synthetic scene profile {profile!r}; known: {', '.join(PROFILES)}") from None
