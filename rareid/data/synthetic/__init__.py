"""Procedural synthetic pedestrians written in the Market-1501 layout.

Why: the whole pipeline (training, multi-resolution evaluation, notebooks, CI) must run with no
download. The images are designed so that resolution *matters*, like in real cross-resolution
re-ID: identities come in groups that share their coarse look (clothing colours, build, height,
hair, skin), so a low-resolution query is genuinely ambiguous inside its group, while members of
a group differ in fine details that only survive at high resolution (1-2 px stripes / checks /
dots on the torso, a tiny chest logo, a thin belt, a bag strap, glasses or a headband, shoe
colour). Cameras differ in viewpoint, illumination, background clutter, blur, noise and
occlusion.

Everything is drawn with numpy + OpenCV primitives at the native 128x64 size. Each image gets its
own ``numpy.random.Generator(PCG64)`` seeded from ``(seed, kind, pid, cam, frame)``, so the bytes
of a file do not depend on the generation order: same seed, same bytes.

Modules: ``appearance`` (what people and cameras look like), ``person`` (drawing one pedestrian),
``world`` (:class:`SyntheticWorld`, the renderer), ``writer`` (files on disk) and ``pictures``
(:func:`make_contact_sheet`).
"""

from rareid.data.synthetic.common import (
    GENERATOR_VERSION,
    IMAGE_SIZE,
    JPEG_QUALITY,
    VIEW_BACK,
    VIEW_FRONT,
    VIEW_LEFT,
    VIEW_RIGHT,
)
from rareid.data.synthetic.pictures import make_contact_sheet
from rareid.data.synthetic.world import SyntheticWorld
from rareid.data.synthetic.writer import (
    SyntheticSummary,
    ensure_synthetic_dataset,
    write_synthetic_dataset,
)

__all__ = [
    "GENERATOR_VERSION",
    "IMAGE_SIZE",
    "JPEG_QUALITY",
    "VIEW_BACK",
    "VIEW_FRONT",
    "VIEW_LEFT",
    "VIEW_RIGHT",
    "SyntheticSummary",
    "SyntheticWorld",
    "ensure_synthetic_dataset",
    "make_contact_sheet",
    "write_synthetic_dataset",
]
