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

Public API: :func:`write_synthetic_dataset`, :func:`ensure_synthetic_dataset`,
:class:`SyntheticSummary`, :class:`SyntheticWorld` (the renderer, for tests and pictures) and
:func:`make_contact_sheet`.
"""

from __future__ import annotations

import colorsys
import json
import math
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

__all__ = [
    "IMAGE_SIZE",
    "SyntheticSummary",
    "SyntheticWorld",
    "ensure_synthetic_dataset",
    "make_contact_sheet",
    "write_synthetic_dataset",
]

#: Native (height, width) of every synthetic crop.
IMAGE_SIZE: tuple[int, int] = (128, 64)
JPEG_QUALITY = 95
#: Bumped whenever the pictures change, so ``ensure_synthetic_dataset`` rewrites old folders.
GENERATOR_VERSION = 1

_H, _W = IMAGE_SIZE
_PAD = 8  # margin of the per-identity torso texture tile (covers the +-4 px translation jitter)
_SHIFT = 4  # cv2 sub-pixel drawing: coordinates are fixed point with 4 fractional bits
_ONE = 1 << _SHIFT
_BG_WIDTH = 192  # per-camera background panorama; each image crops a random 64 px window
_NOISE_BANK = 16  # pre-drawn Gaussian noise fields per camera

# Kinds of random streams (first entropy word after the seed) so streams never collide.
_K_PARTITION, _K_GROUP, _K_IDENT, _K_CAMERA, _K_IMAGE, _K_LAYOUT, _K_DISTRACTOR, _K_JUNK = range(8)

VIEW_FRONT, VIEW_BACK, VIEW_LEFT, VIEW_RIGHT = 0, 1, 2, 3
_VIEW_NAMES = ("front", "back", "left", "right")

# Torso textures: zero-mean +-1 modulation patterns with 1-2 px structure, so they average away
# when the image is downsampled by >= 2 (INTER_AREA) but are plain to see at full resolution.
_TEXTURES = ("plain", "hstripe1", "hstripe2", "vstripe1", "vstripe2", "checks", "dots")
_LOGO_SHAPES = ("square", "circle", "triangle", "diamond")

_OUR_ENTRIES = (
    "bounding_box_train",
    "query",
    "bounding_box_test",
    "README.txt",
    "synthetic.json",
    ".complete",
)

Color = tuple[float, float, float]


def _rng(seed: int, *words: int) -> np.random.Generator:
    """A Generator(PCG64) that depends only on (seed, words): order/parallelism independent."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, *words])))


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), dtype=np.float64) * 255.0


def _tup(c: np.ndarray) -> Color:
    c = np.clip(c, 0, 255)
    return (float(c[0]), float(c[1]), float(c[2]))


def _pt(x: float, y: float) -> tuple[int, int]:
    return (round(x * _ONE), round(y * _ONE))


def _poly(points: Sequence[tuple[float, float]]) -> np.ndarray:
    return np.round(np.asarray(points, dtype=np.float64) * _ONE).astype(np.int32)


# --------------------------------------------------------------------------------------------
# Attributes
# --------------------------------------------------------------------------------------------


@dataclass
class _Identity:
    """Everything needed to draw one person; ``tile`` is the precomputed textured torso."""

    upper: np.ndarray
    lower: np.ndarray
    skin: np.ndarray
    hair: np.ndarray
    long_hair: bool
    build: float  # shoulder width in px at scale 1
    height: float  # figure height in px at scale 1
    texture: int
    tex_vec: np.ndarray  # RGB modulation direction*amplitude
    logo_shape: int
    logo_color: np.ndarray
    logo_pos: tuple[float, float]  # (x in [-1,1] of torso half-width, y in [0,1] of chest)
    logo_size: float
    belt: np.ndarray | None
    strap_side: int  # -1/+1 = strap to the image-left/right hip in front view, 0 = none
    bag: bool
    bag_color: np.ndarray
    eyewear: int  # 0 none, 1 glasses, 2 headband
    eyewear_color: np.ndarray
    shoe: np.ndarray
    tile: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))
    colors: dict[str, Color] = field(repr=False, default_factory=dict)

    def finalize(self) -> _Identity:
        """Precompute the torso texture tile and the cv2 colour tuples (speed)."""
        self.tile = _texture_tile(self.texture, self.upper, self.tex_vec)
        dark = 0.72
        self.colors = {
            "upper": _tup(self.upper),
            "upper_far": _tup(self.upper * dark),
            "lower": _tup(self.lower),
            "lower_far": _tup(self.lower * dark),
            "skin": _tup(self.skin),
            "skin_far": _tup(self.skin * dark),
            "hair": _tup(self.hair),
            "eye": _tup(self.skin * 0.45),
            "logo": _tup(self.logo_color),
            "belt": _tup(self.belt) if self.belt is not None else (0.0, 0.0, 0.0),
            "bag": _tup(self.bag_color),
            "strap": _tup(self.bag_color * 0.8),
            "eyewear": _tup(self.eyewear_color),
            "shoe": _tup(self.shoe),
            "shoe_far": _tup(self.shoe * dark),
        }
        return self


def _texture_tile(texture: int, base: np.ndarray, vec: np.ndarray) -> np.ndarray:
    hh, ww = _H + 2 * _PAD, _W + 2 * _PAD
    y = np.arange(hh)[:, None]
    x = np.arange(ww)[None, :]
    name = _TEXTURES[texture]
    if name == "plain":
        m = np.zeros((hh, ww))
    elif name == "hstripe1":
        m = np.broadcast_to((y % 2) * 2.0 - 1.0, (hh, ww))
    elif name == "hstripe2":
        m = np.broadcast_to(((y // 2) % 2) * 2.0 - 1.0, (hh, ww))
    elif name == "vstripe1":
        m = np.broadcast_to((x % 2) * 2.0 - 1.0, (hh, ww))
    elif name == "vstripe2":
        m = np.broadcast_to(((x // 2) % 2) * 2.0 - 1.0, (hh, ww))
    elif name == "checks":
        m = (((x // 2) + (y // 2)) % 2) * 2.0 - 1.0
    else:  # dots: one bright pixel every 3x3, slightly darker elsewhere, zero mean
        on = ((x % 3) == 1) & ((y % 3) == 1)
        m = np.where(on, 1.6, -0.2)
    tile = base[None, None, :] + m[..., None] * vec[None, None, :]
    return np.clip(np.round(tile), 0, 255).astype(np.uint8)


def _coarse_upper(rng: np.random.Generator) -> np.ndarray:
    if rng.random() < 0.25:  # achromatic: greys, near-black, near-white
        return _hsv(0.0, 0.0, rng.uniform(0.22, 0.85))
    return _hsv(rng.random(), rng.uniform(0.35, 0.9), rng.uniform(0.3, 0.9))


def _coarse_lower(rng: np.random.Generator) -> np.ndarray:
    u = rng.random()
    if u < 0.35:  # jeans-like blues
        return _hsv(rng.uniform(0.57, 0.65), rng.uniform(0.35, 0.7), rng.uniform(0.25, 0.6))
    if u < 0.6:  # dark/grey trousers
        return _hsv(0.0, 0.0, rng.uniform(0.12, 0.55))
    if u < 0.75:  # khaki/brown
        return _hsv(rng.uniform(0.07, 0.13), rng.uniform(0.3, 0.6), rng.uniform(0.35, 0.75))
    return _hsv(rng.random(), rng.uniform(0.3, 0.85), rng.uniform(0.3, 0.85))


_SKINS = np.array(
    [[238, 205, 180], [224, 178, 145], [198, 148, 110], [160, 110, 75], [110, 75, 50]],
    dtype=np.float64,
)
_HAIRS = np.array(
    [[25, 20, 18], [70, 45, 25], [120, 80, 40], [200, 170, 110], [150, 150, 150], [110, 30, 20]],
    dtype=np.float64,
)


@dataclass(frozen=True)
class _Coarse:
    upper: np.ndarray
    lower: np.ndarray
    skin: np.ndarray
    hair: np.ndarray
    long_hair: bool
    build: float
    height: float


def _draw_coarse(rng: np.random.Generator) -> _Coarse:
    return _Coarse(
        upper=_coarse_upper(rng),
        lower=_coarse_lower(rng),
        skin=_SKINS[rng.integers(len(_SKINS))],
        hair=_HAIRS[rng.integers(len(_HAIRS))],
        long_hair=bool(rng.random() < 0.3),
        build=float(rng.uniform(15.0, 23.0)),
        height=float(rng.uniform(98.0, 114.0)),
    )


def _jitter_coarse(c: _Coarse, rng: np.random.Generator) -> _Coarse:
    """Members of a group share the coarse look, only slightly perturbed."""

    def col(x: np.ndarray, a: float) -> np.ndarray:
        return np.clip(x + rng.uniform(-a, a, 3), 0, 255)

    return _Coarse(
        upper=np.clip(col(c.upper, 5.0), 35.0, 220.0),  # headroom for the torso texture
        lower=col(c.lower, 5.0),
        skin=col(c.skin, 4.0),
        hair=col(c.hair, 4.0),
        long_hair=c.long_hair,
        build=c.build + float(rng.uniform(-0.8, 0.8)),
        height=c.height + float(rng.uniform(-1.5, 1.5)),
    )


def _vivid(rng: np.random.Generator) -> np.ndarray:
    return _hsv(rng.random(), rng.uniform(0.6, 1.0), rng.uniform(0.55, 1.0))


def _contrast(base: np.ndarray, rng: np.random.Generator, lo: float, hi: float) -> np.ndarray:
    """A colour clearly different from ``base`` (visible at HR) but not a glaring LR blob."""
    d = rng.normal(size=3)
    d /= np.linalg.norm(d) + 1e-9
    c = base + d * rng.uniform(lo, hi)
    return np.clip(np.where((c < 0) | (c > 255), base - d * rng.uniform(lo, hi), c), 0, 255)


def _make_identity(
    coarse: _Coarse,
    rng: np.random.Generator,
    texture: int | None = None,
    logo_pos: tuple[float, float] | None = None,
) -> _Identity:
    """Fine attributes on top of a coarse look; ``texture``/``logo_pos`` fixed by the group."""
    if texture is None:
        texture = int(rng.integers(len(_TEXTURES)))
    if logo_pos is None:
        logo_pos = (float(rng.uniform(-0.6, 0.6)), float(rng.uniform(0.15, 0.7)))
    # Texture direction: a random colour direction, limited by the headroom of the base colour
    # so the pattern stays zero-mean (no clipping) and therefore invisible at low resolution.
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction) + 1e-9
    vec = direction * rng.uniform(45.0, 70.0)
    headroom = np.minimum(coarse.upper, 255.0 - coarse.upper) / 1.6
    vec = np.clip(vec, -headroom, headroom)
    belt = _hsv(rng.random(), rng.uniform(0, 0.8), rng.uniform(0.05, 0.9))
    return _Identity(
        upper=coarse.upper,
        lower=coarse.lower,
        skin=coarse.skin,
        hair=coarse.hair,
        long_hair=coarse.long_hair,
        build=coarse.build,
        height=coarse.height,
        texture=int(texture),
        tex_vec=vec,
        logo_shape=int(rng.integers(len(_LOGO_SHAPES))),
        logo_color=_contrast(coarse.upper, rng, 70.0, 110.0),
        logo_pos=logo_pos,
        logo_size=float(rng.uniform(4.0, 6.0)),
        belt=belt if rng.random() < 0.5 else None,
        strap_side=int(rng.choice([-1, 0, 0, 1])),
        bag=bool(rng.random() < 0.5),
        bag_color=_hsv(rng.random(), rng.uniform(0.2, 0.9), rng.uniform(0.15, 0.8)),
        eyewear=int(rng.integers(3)),
        eyewear_color=(
            _vivid(rng) if rng.random() < 0.5 else _hsv(0, 0, float(rng.uniform(0.05, 0.2)))
        ),
        shoe=_hsv(rng.random(), rng.uniform(0, 0.9), rng.uniform(0.1, 0.95)),
    ).finalize()


@dataclass
class _Camera:
    view: int  # dominant viewpoint
    view_prob: float
    lut: np.ndarray  # (256, 1, 3) uint8 gain/colour cast/gamma
    blur: float
    noise: np.ndarray  # (_NOISE_BANK, H, W, 3) int16
    occlusion: float  # probability of an occluding box
    background: np.ndarray  # (H, _BG_WIDTH, 3) uint8 cluttered panorama
    flat: np.ndarray  # (H, W, 3) plain background (clean renders)


def _make_camera(seed: int, cam: int) -> _Camera:
    rng = _rng(seed, _K_CAMERA, cam)
    view = (VIEW_FRONT, VIEW_BACK, VIEW_LEFT, VIEW_RIGHT)[cam % 4]
    gain = rng.uniform(0.75, 1.2)
    cast = rng.uniform(0.88, 1.12, 3)
    gamma = rng.uniform(0.8, 1.25)
    x = np.arange(256, dtype=np.float64) / 255.0
    lut = 255.0 * np.clip((x[:, None] ** gamma) * gain * cast[None, :], 0, 1)
    lut = np.round(lut).astype(np.uint8).reshape(256, 1, 3)
    sigma = rng.uniform(2.0, 6.0)
    noise = np.round(rng.normal(0.0, sigma, size=(_NOISE_BANK, _H, _W, 3))).astype(np.int16)

    # Cluttered background: a wall, a floor and a few random boxes (windows, shop fronts,
    # cars) and poles, all around a per-camera base colour.
    base = _hsv(rng.random(), rng.uniform(0.05, 0.35), rng.uniform(0.35, 0.75))
    bg = np.empty((_H, _BG_WIDTH, 3), dtype=np.float64)
    horizon = int(rng.integers(60, 95))
    floor = np.clip(base * rng.uniform(0.7, 1.25) + rng.uniform(-20, 20, 3), 0, 255)
    bg[:horizon] = base
    bg[horizon:] = floor
    ramp = np.linspace(-12, 12, _H)[:, None, None]
    bg = bg + ramp
    bg = np.clip(bg, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(8, 16))):
        x0 = int(rng.integers(-10, _BG_WIDTH))
        y0 = int(rng.integers(-10, horizon + 10))
        w = int(rng.integers(6, 40))
        h = int(rng.integers(6, 50))
        col = _tup(base + rng.normal(0, 35, 3))
        cv2.rectangle(bg, (x0, y0), (x0 + w, y0 + h), col, -1)
    for _ in range(int(rng.integers(3, 8))):
        x0 = int(rng.integers(0, _BG_WIDTH))
        col = _tup(base + rng.normal(0, 40, 3))
        if rng.random() < 0.6:  # vertical pole
            cv2.line(bg, (x0, 0), (x0, horizon + int(rng.integers(0, 30))), col, 2)
        else:
            y0 = int(rng.integers(0, _H))
            cv2.line(bg, (0, y0), (_BG_WIDTH, y0 + int(rng.integers(-8, 8))), col, 1)
    flat = np.empty((_H, _W, 3), dtype=np.uint8)
    flat[:] = np.round(base).astype(np.uint8)
    return _Camera(
        view=view,
        view_prob=float(rng.uniform(0.65, 0.8)),
        lut=lut,
        blur=float(rng.uniform(0.0, 0.85)) if cam > 0 else float(rng.uniform(0.0, 0.4)),
        noise=noise,
        occlusion=float(rng.uniform(0.08, 0.2)),
        background=bg,
        flat=flat,
    )


def _partition(ids: list[int], rng: np.random.Generator) -> list[list[int]]:
    """Consecutive groups of 4-6 identities (7 only when 7 are left; fewer only if < 4 in all)."""
    groups: list[list[int]] = []
    i = 0
    while i < len(ids):
        left = len(ids) - i
        # never leave a remainder of 1-3: it could not form a group of its own
        size = left if left <= 7 else int(rng.integers(4, min(6, left - 4) + 1))
        groups.append(ids[i : i + size])
        i += size
    return groups


# --------------------------------------------------------------------------------------------
# Drawing
# --------------------------------------------------------------------------------------------


def _limb(
    img: np.ndarray,
    p0: tuple[float, float],
    p1: tuple[float, float],
    w0: float,
    w1: float,
    color: Color,
) -> None:
    """A tapered limb as a filled quadrilateral plus round caps."""
    dx, dy = p1[0] - p0[0], p1[1] - p0[1]
    n = (dx * dx + dy * dy) ** 0.5 + 1e-6
    nx, ny = -dy / n, dx / n
    quad = _poly(
        [
            (p0[0] + nx * w0 / 2, p0[1] + ny * w0 / 2),
            (p1[0] + nx * w1 / 2, p1[1] + ny * w1 / 2),
            (p1[0] - nx * w1 / 2, p1[1] - ny * w1 / 2),
            (p0[0] - nx * w0 / 2, p0[1] - ny * w0 / 2),
        ]
    )
    cv2.fillPoly(img, [quad], color, cv2.LINE_AA, _SHIFT)
    cv2.circle(img, _pt(*p0), round(w0 / 2 * _ONE), color, -1, cv2.LINE_AA, _SHIFT)


def _draw_person(
    img: np.ndarray,
    mask: np.ndarray,
    ident: _Identity,
    view: int,
    cx: float,
    foot_y: float,
    scale: float,
    arm_swing: float,
    leg_swing: float,
    tile_offset: tuple[int, int] = (0, 0),
) -> None:
    """Draw one pedestrian in place (RGB uint8 ``img``); ``mask`` is a scratch HxW buffer."""
    c = ident.colors
    u = ident.height * scale
    top = foot_y - u
    side = view in (VIEW_LEFT, VIEW_RIGHT)
    face = 1.0 if view == VIEW_RIGHT else -1.0  # facing direction for side views
    sh_hw = ident.build / 2 * scale * (0.6 if side else 1.0)
    waist_hw = sh_hw * (0.95 if side else 0.8)
    y_neck = top + 0.115 * u
    y_sh = top + 0.165 * u
    y_waist = top + 0.5 * u
    y_crotch = top + 0.56 * u
    head_cy = top + 0.065 * u
    head_rx, head_ry = 0.048 * u * (0.95 if side else 1.0), 0.062 * u
    arm_len, arm_w = 0.34 * u, 0.055 * u
    leg_len = foot_y - 0.03 * u - y_crotch
    leg_w0, leg_w1 = 0.085 * u, 0.055 * u
    hand_r = 0.025 * u

    if side:
        # far limbs first (darker), then legs, torso, near arm
        sa, sl = math.sin(arm_swing), math.sin(leg_swing)
        ca, cl = math.cos(arm_swing), math.cos(leg_swing)
        hip = (cx, y_crotch - 0.03 * u)
        for sgn, lcol, scol in ((-1.0, "lower_far", "shoe_far"), (1.0, "lower", "shoe")):
            foot = (cx + sgn * sl * leg_len, hip[1] + cl * leg_len)
            _limb(img, hip, foot, leg_w0 * 0.9, leg_w1, c[lcol])
            cv2.ellipse(
                img,
                _pt(foot[0] + face * 0.02 * u, foot[1] + 0.01 * u),
                _pt(0.045 * u, 0.02 * u),
                0,
                0,
                360,
                c[scol],
                -1,
                cv2.LINE_AA,
                _SHIFT,
            )
        sh = (cx - face * 0.1 * sh_hw, y_sh + 0.02 * u)
        hand_far = (sh[0] - sa * arm_len, sh[1] + ca * arm_len)
        _limb(img, sh, hand_far, arm_w, arm_w * 0.8, c["upper_far"])
        cv2.circle(img, _pt(*hand_far), round(hand_r * _ONE), c["skin_far"], -1, cv2.LINE_AA, 4)
    else:
        # front/back: legs swing in depth -> a slightly raised/shortened foot
        for sgn in (-1.0, 1.0):
            hip = (cx + sgn * waist_hw * 0.48, y_crotch - 0.03 * u)
            lift = abs(math.sin(leg_swing)) * 0.05 * u * (1 if sgn * leg_swing > 0 else 0)
            foot = (cx + sgn * waist_hw * 0.55, foot_y - 0.03 * u - lift)
            _limb(img, hip, foot, leg_w0, leg_w1, c["lower"])
            cv2.ellipse(
                img,
                _pt(foot[0] + sgn * 0.01 * u, foot[1] + 0.012 * u),
                _pt(0.032 * u, 0.02 * u),
                0,
                0,
                360,
                c["shoe"],
                -1,
                cv2.LINE_AA,
                _SHIFT,
            )

    # hips / trousers top
    hips = _poly(
        [
            (cx - waist_hw, y_waist - 1),
            (cx + waist_hw, y_waist - 1),
            (cx + waist_hw * 0.95, y_crotch),
            (cx - waist_hw * 0.95, y_crotch),
        ]
    )
    cv2.fillPoly(img, [hips], c["lower"], cv2.LINE_AA, _SHIFT)

    # neck
    cv2.rectangle(
        img,
        _pt(cx - 0.02 * u, y_neck - 1),
        _pt(cx + 0.02 * u, y_sh + 1),
        c["skin"],
        -1,
        cv2.LINE_AA,
        _SHIFT,
    )

    # torso with the identity's texture (copied from the precomputed tile through a mask)
    torso = _poly(
        [
            (cx - sh_hw * 0.75, y_sh - 0.01 * u),
            (cx + sh_hw * 0.75, y_sh - 0.01 * u),
            (cx + sh_hw, y_sh + 0.04 * u),
            (cx + waist_hw, y_waist),
            (cx - waist_hw, y_waist),
            (cx - sh_hw, y_sh + 0.04 * u),
        ]
    )
    if ident.texture == 0:
        cv2.fillPoly(img, [torso], c["upper"], cv2.LINE_AA, _SHIFT)
    else:
        mask.fill(0)
        cv2.fillPoly(mask, [torso], 255, cv2.LINE_8, _SHIFT)
        oy, ox = _PAD - tile_offset[1], _PAD - tile_offset[0]
        np.copyto(img, ident.tile[oy : oy + _H, ox : ox + _W], where=mask[..., None] > 0)

    chest_h = y_waist - y_sh
    if view == VIEW_FRONT:
        # logo: an identity-specific 4-6 px shape at an identity-specific place on the chest
        lx = cx + ident.logo_pos[0] * waist_hw * 0.8
        ly = y_sh + 0.08 * u + ident.logo_pos[1] * (chest_h - 0.12 * u)
        r = ident.logo_size * scale / 2
        shape = _LOGO_SHAPES[ident.logo_shape]
        if shape == "square":
            pts = [(lx - r, ly - r), (lx + r, ly - r), (lx + r, ly + r), (lx - r, ly + r)]
        elif shape == "diamond":
            pts = [(lx, ly - r * 1.2), (lx + r, ly), (lx, ly + r * 1.2), (lx - r, ly)]
        elif shape == "triangle":
            pts = [(lx, ly - r * 1.1), (lx + r * 1.1, ly + r), (lx - r * 1.1, ly + r)]
        else:
            pts = []
        if pts:
            cv2.fillPoly(img, [_poly(pts)], c["logo"], cv2.LINE_AA, _SHIFT)
        else:
            cv2.circle(img, _pt(lx, ly), round(r * _ONE), c["logo"], -1, cv2.LINE_AA, _SHIFT)

    if ident.belt is not None:
        cv2.line(
            img,
            _pt(cx - waist_hw, y_waist - 1.0),
            _pt(cx + waist_hw, y_waist - 1.0),
            c["belt"],
            1,
            cv2.LINE_AA,
            _SHIFT,
        )

    # bag strap across the torso and the small bag (side flips between front and back)
    if ident.strap_side != 0:
        s = ident.strap_side * (-1.0 if view == VIEW_BACK else 1.0)
        if side:
            p0, p1 = (cx + face * 0.2 * sh_hw, y_sh), (cx - face * waist_hw, y_waist - 0.02 * u)
        else:
            p0, p1 = (cx - s * sh_hw * 0.7, y_sh), (cx + s * waist_hw, y_waist - 0.02 * u)
        cv2.line(img, _pt(*p0), _pt(*p1), c["strap"], 1, cv2.LINE_AA, _SHIFT)

    # arms (front/back: both at the sides; side view: the near arm over the torso)
    if side:
        sh = (cx + face * 0.1 * sh_hw, y_sh + 0.02 * u)
        hand = (sh[0] + math.sin(arm_swing) * arm_len, sh[1] + math.cos(arm_swing) * arm_len)
        _limb(img, sh, hand, arm_w, arm_w * 0.8, c["upper"])
        cv2.circle(img, _pt(*hand), round(hand_r * _ONE), c["skin"], -1, cv2.LINE_AA, _SHIFT)
    else:
        for sgn in (-1.0, 1.0):
            sh = (cx + sgn * (sh_hw - arm_w * 0.45), y_sh + 0.025 * u)
            swing = arm_swing * sgn
            reach = arm_len * (0.93 + 0.07 * math.cos(swing))
            hand = (sh[0] + sgn * 0.12 * arm_len, sh[1] + reach)
            _limb(img, sh, hand, arm_w, arm_w * 0.8, c["upper"])
            cv2.circle(img, _pt(*hand), round(hand_r * _ONE), c["skin"], -1, cv2.LINE_AA, _SHIFT)

    if ident.bag:
        if side:
            bx = cx - face * (waist_hw + 0.03 * u)
        else:
            s = (ident.strap_side or 1) * (-1.0 if view == VIEW_BACK else 1.0)
            bx = cx + s * (waist_hw + 0.035 * u)
        by = y_waist - 0.02 * u
        bw, bh = 0.027 * u, 0.036 * u
        cv2.rectangle(
            img, _pt(bx - bw, by - bh), _pt(bx + bw, by + bh), c["bag"], -1, cv2.LINE_AA, _SHIFT
        )

    # head: hair behind (long hair), face, hair cap
    if ident.long_hair and view != VIEW_FRONT:
        cv2.ellipse(
            img,
            _pt(cx - (face * 0.2 * head_rx if side else 0), head_cy + 0.5 * head_ry),
            _pt(head_rx * 1.05, head_ry * 1.3),
            0,
            0,
            360,
            c["hair"],
            -1,
            cv2.LINE_AA,
            _SHIFT,
        )
    if view == VIEW_BACK:
        cv2.ellipse(
            img,
            _pt(cx, head_cy),
            _pt(head_rx, head_ry),
            0,
            0,
            360,
            c["hair"],
            -1,
            cv2.LINE_AA,
            _SHIFT,
        )
    else:
        cv2.ellipse(
            img,
            _pt(cx, head_cy),
            _pt(head_rx, head_ry),
            0,
            0,
            360,
            c["skin"],
            -1,
            cv2.LINE_AA,
            _SHIFT,
        )
        # hair cap: top half (front), back half (side)
        if side:
            a0, a1 = (90, 300) if face > 0 else (-120, 90)
            cv2.ellipse(
                img,
                _pt(cx, head_cy - 0.1 * head_ry),
                _pt(head_rx * 1.05, head_ry * 1.0),
                0,
                a0,
                a1,
                c["hair"],
                -1,
                cv2.LINE_AA,
                _SHIFT,
            )
        else:
            cv2.ellipse(
                img,
                _pt(cx, head_cy - 0.15 * head_ry),
                _pt(head_rx * 1.05, head_ry * 0.9),
                0,
                180,
                360,
                c["hair"],
                -1,
                cv2.LINE_AA,
                _SHIFT,
            )
            if ident.long_hair:
                for sgn in (-1.0, 1.0):
                    cv2.rectangle(
                        img,
                        _pt(cx + sgn * head_rx * 0.8 - 1.2, head_cy - 0.2 * head_ry),
                        _pt(cx + sgn * head_rx * 1.05, head_cy + 1.2 * head_ry),
                        c["hair"],
                        -1,
                        cv2.LINE_AA,
                        _SHIFT,
                    )
        eye_y = head_cy + 0.05 * head_ry
        if view == VIEW_FRONT:
            for sgn in (-1.0, 1.0):
                cv2.circle(img, _pt(cx + sgn * 0.4 * head_rx, eye_y), 8, c["eye"], -1, 8, 4)
        else:
            cv2.circle(img, _pt(cx + face * 0.55 * head_rx, eye_y), 8, c["eye"], -1, 8, 4)
    if ident.eyewear == 1 and view != VIEW_BACK:  # glasses: a thin dark bar over the eyes
        x0 = cx - 0.8 * head_rx if not side else cx + face * 0.2 * head_rx
        x1 = cx + 0.8 * head_rx if not side else cx + face * 0.95 * head_rx
        cv2.line(
            img,
            _pt(x0, head_cy + 0.05 * head_ry),
            _pt(x1, head_cy + 0.05 * head_ry),
            c["eyewear"],
            1,
            cv2.LINE_AA,
            _SHIFT,
        )
    elif ident.eyewear == 2:  # headband: a coloured line across the forehead, any view
        cv2.line(
            img,
            _pt(cx - head_rx * 0.95, head_cy - 0.45 * head_ry),
            _pt(cx + head_rx * 0.95, head_cy - 0.45 * head_ry),
            c["eyewear"],
            2,
            cv2.LINE_AA,
            _SHIFT,
        )


# --------------------------------------------------------------------------------------------
# The world: identities, groups, cameras
# --------------------------------------------------------------------------------------------


class SyntheticWorld:
    """All identities, coarse groups and cameras of one synthetic dataset, plus the renderer.

    ``groups`` lists the coarse groups (lists of pids); train pids ``1..train_identities`` and
    test pids are grouped separately so every test group is ambiguous at low resolution.
    """

    def __init__(self, identities: int, seed: int, cameras: int, train_identities: int) -> None:
        self.seed = seed
        self.identities = identities
        self.train_identities = train_identities
        prng = _rng(seed, _K_PARTITION)
        train_ids = list(range(1, train_identities + 1))
        test_ids = list(range(train_identities + 1, identities + 1))
        self.groups: list[list[int]] = _partition(train_ids, prng) + _partition(test_ids, prng)
        self.group_of: dict[int, int] = {}
        self.people: dict[int, _Identity] = {}
        for g, members in enumerate(self.groups):
            grng = _rng(seed, _K_GROUP, g)
            coarse = _draw_coarse(grng)
            # distinct fine attributes inside the group: a different torso texture and logo
            # place per member (the remaining details are drawn per identity)
            textures = grng.permutation(len(_TEXTURES))
            cells = grng.permutation(9)  # 3x3 places on the chest for the logo
            for k, pid in enumerate(members):
                irng = _rng(seed, _K_IDENT, pid)
                cell = int(cells[k])
                pos = (
                    -0.6 + 0.6 * (cell % 3) + float(irng.uniform(-0.1, 0.1)),
                    0.12 + 0.38 * (cell // 3) + float(irng.uniform(-0.06, 0.06)),
                )
                self.people[pid] = _make_identity(
                    _jitter_coarse(coarse, irng), irng, int(textures[k]), pos
                )
                self.group_of[pid] = g
        self.cameras = [_make_camera(seed, c) for c in range(cameras)]
        self._mask = np.zeros((_H, _W), dtype=np.uint8)

    def random_identity(self, rng: np.random.Generator) -> _Identity:
        """A person outside every group (distractors, junk)."""
        return _make_identity(_draw_coarse(rng), rng)

    def render(
        self,
        pid: int,
        cam: int,
        frame: int,
        *,
        view: int | None = None,
        clean: bool = False,
    ) -> np.ndarray:
        """RGB uint8 (128, 64, 3) image of ``pid`` (>= 1, 0 distractor, -1 junk) in ``cam``.

        ``cam`` is 0-based. ``clean=True`` draws the bare person (no jitter, plain background,
        no illumination, blur, noise or occlusion), for tests and pictures.
        """
        kind = _K_IMAGE if pid > 0 else (_K_DISTRACTOR if pid == 0 else _K_JUNK)
        rng = _rng(self.seed, kind, max(pid, 0), cam, frame)
        r = rng.random(24).tolist()  # python floats: faster scalar maths below
        camera = self.cameras[cam]
        ident = self.people[pid] if pid > 0 else self.random_identity(rng)
        if view is None:
            view = camera.view if r[0] < camera.view_prob else int(r[1] * 4)
        if clean:
            dx = dy = 0
            scale, arm, leg = 1.0, 0.0, 0.0
            img = camera.flat.copy()
        else:
            dx, dy = round((r[2] * 2 - 1) * 4), round((r[3] * 2 - 1) * 4)
            scale = 1.0 + (r[4] * 2 - 1) * 0.08
            arm, leg = (r[5] * 2 - 1) * 0.4, (r[6] * 2 - 1) * 0.35
            x0 = int(r[7] * (_BG_WIDTH - _W))
            img = camera.background[:, x0 : x0 + _W].copy()
        cx, foot_y = _W / 2 + dx, _H - 5 + dy
        if pid == -1 and not clean:  # junk: a bad detection, mostly background or a fragment
            if r[16] < 0.5:
                scale = 1.7 + r[17] * 0.8
                cx += (r[18] * 2 - 1) * 30
                foot_y += r[19] * 80
            else:
                scale = -1.0
        if scale > 0:
            _draw_person(img, self._mask, ident, view, cx, foot_y, scale, arm, leg, (dx, dy))
        if clean:
            return img
        if r[8] < camera.occlusion:  # occluder: an object/person part entering from a side
            col = _tup(rng.uniform(20, 230, 3))
            where = int(r[9] * 3)
            if where == 0:  # bottom (car, bench)
                y0 = int(_H * (0.6 + 0.2 * r[10]))
                cv2.rectangle(img, (-1, y0), (_W, _H), col, -1)
            else:  # side (another pedestrian, pole)
                w = int(_W * (0.2 + 0.2 * r[10]))
                y0 = int(_H * 0.3 * r[11])
                x0, x1 = (-1, w) if where == 1 else (_W - w, _W)
                cv2.rectangle(img, (x0, y0), (x1, _H), col, -1)
        gain = 1.0 + (r[13] * 2 - 1) * 0.06
        lut = camera.lut if abs(gain - 1.0) < 1e-3 else _scaled_lut(camera.lut, gain)
        img = cv2.LUT(img, lut)
        if camera.blur > 0.25:
            img = cv2.GaussianBlur(img, (0, 0), camera.blur)
        noise = camera.noise[int(r[14] * _NOISE_BANK)]
        if r[15] < 0.5:
            noise = noise[::-1]
        out = img.astype(np.int16)
        out += noise
        np.clip(out, 0, 255, out=out)
        return out.astype(np.uint8)


def _scaled_lut(lut: np.ndarray, gain: float) -> np.ndarray:
    return np.clip(np.round(lut.astype(np.float32) * gain), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyntheticSummary:
    """What was written (or found complete) under ``root``."""

    root: Path
    seed: int
    identities: int
    train_identities: int
    test_identities: int
    cameras: int
    train_images: int
    query_images: int
    gallery_images: int  # including distractors and junk
    distractors: int
    junk: int
    groups: int  # number of coarse groups
    written: bool = True  # False when ensure_synthetic_dataset found it already complete

    @property
    def total_images(self) -> int:
        return self.train_images + self.query_images + self.gallery_images

    def __str__(self) -> str:
        verb = "wrote" if self.written else "found complete"
        return (
            f"synthetic dataset ({verb}) at {self.root}: {self.identities} identities "
            f"({self.train_identities} train / {self.test_identities} test, {self.groups} coarse "
            f"groups), {self.cameras} cameras, seed {self.seed}; {self.train_images} train, "
            f"{self.query_images} query, {self.gallery_images} gallery images "
            f"(incl. {self.distractors} distractors, {self.junk} junk)"
        )


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _normalize_params(
    identities: Any,
    seed: Any,
    cameras: Any,
    images_per_camera: Any,
    train_fraction: Any,
    distractors: Any,
    junk: Any,
) -> dict[str, Any]:
    identities = _check_int("identities", identities, 2)
    seed = _check_int("seed", seed, 0)
    cameras = _check_int("cameras", cameras, 2)
    if isinstance(images_per_camera, (int, np.integer)) and not isinstance(images_per_camera, bool):
        lo = hi = _check_int("images_per_camera", images_per_camera, 1)
    elif isinstance(images_per_camera, Sequence) and len(images_per_camera) == 2:
        lo = _check_int("images_per_camera[0]", images_per_camera[0], 1)
        hi = _check_int("images_per_camera[1]", images_per_camera[1], lo)
    else:
        raise ValueError(
            f"images_per_camera must be an int >= 1 or a (min, max) pair, got {images_per_camera!r}"
        )
    if isinstance(train_fraction, bool) or not isinstance(train_fraction, (int, float)):
        raise ValueError(f"train_fraction must be a number in (0, 1), got {train_fraction!r}")
    if not 0.0 < float(train_fraction) < 1.0:
        raise ValueError(f"train_fraction must be in (0, 1), got {train_fraction}")
    n_train = round(identities * float(train_fraction))
    if not 1 <= n_train <= identities - 1:
        raise ValueError(
            f"train_fraction={train_fraction} with identities={identities} leaves {n_train} "
            "training identities; both train and test need at least one identity"
        )
    return {
        "identities": identities,
        "seed": seed,
        "cameras": cameras,
        "images_per_camera": [lo, hi],
        "train_fraction": float(train_fraction),
        "train_identities": n_train,
        "distractors": _check_int("distractors", distractors, 0),
        "junk": _check_int("junk", junk, 0),
        "image_size": list(IMAGE_SIZE),
        "jpeg_quality": JPEG_QUALITY,
        "version": GENERATOR_VERSION,
    }


@dataclass(frozen=True)
class _Job:
    folder: str
    pid: int
    cam: int  # 0-based
    frame: int

    @property
    def name(self) -> str:
        pid = "-1" if self.pid < 0 else f"{self.pid:04d}"
        return f"{pid}_c{self.cam + 1}s1_{self.frame:06d}_01.jpg"


def _frames(rng: np.random.Generator, n: int) -> list[int]:
    """Distinct increasing frame numbers (like a tracker's), all < 10**6."""
    steps = rng.integers(15, 400, size=n)
    return (int(rng.integers(1, 5000)) + np.cumsum(steps)).tolist()


def _plan(params: dict[str, Any]) -> list[_Job]:
    """All files to write; depends only on the parameters (never on generation order)."""
    seed, cams = params["seed"], params["cameras"]
    lo, hi = params["images_per_camera"]
    n_train = params["train_identities"]
    jobs: list[_Job] = []
    for pid in range(1, params["identities"] + 1):
        rng = _rng(seed, _K_LAYOUT, pid)
        per_cam = {c: _frames(rng, int(rng.integers(lo, hi + 1))) for c in range(cams)}
        if pid <= n_train:
            jobs += [_Job("bounding_box_train", pid, c, f) for c, fs in per_cam.items() for f in fs]
            continue
        queries = _pick_queries(per_cam, rng)
        for c, fs in per_cam.items():
            for i, f in enumerate(fs):
                folder = "query" if queries.get(c) == i else "bounding_box_test"
                jobs.append(_Job(folder, pid, c, f))
    for kind, pid, count in (
        (_K_DISTRACTOR, 0, params["distractors"]),
        (_K_JUNK, -1, params["junk"]),
    ):
        rng = _rng(seed, _K_LAYOUT, kind)
        cams_of = rng.integers(0, cams, size=count)
        for c in range(cams):
            n = int((cams_of == c).sum())
            jobs += [_Job("bounding_box_test", pid, c, f) for f in _frames(rng, n)]
    return jobs


def _pick_queries(per_cam: dict[int, list[int]], rng: np.random.Generator) -> dict[int, int]:
    """One query image from each of up to 2 cameras, keeping a cross-camera gallery match.

    Returns {camera: index of its query frame}. Each query camera q must keep, after removing
    the queries, a gallery image of the same identity in some camera != q.
    """
    order = [int(c) for c in rng.permutation(sorted(per_cam))]

    def valid(qcams: list[int]) -> bool:
        left = {c: len(fs) - (c in qcams) for c, fs in per_cam.items()}
        return all(any(n > 0 for c, n in left.items() if c != q) for q in qcams)

    first = order[0]
    chosen = [first]
    for c in order[1:]:
        if valid([first, c]):
            chosen.append(c)
            break
    if not valid(chosen):  # cannot happen with >= 2 cameras and >= 1 image each
        raise RuntimeError("internal error: no valid query camera")
    return {c: int(rng.integers(len(per_cam[c]))) for c in chosen}


def _readme(params: dict[str, Any], summary: SyntheticSummary) -> str:
    return f"""rareid synthetic pedestrian dataset (Market-1501 layout)
=========================================================

Written by rareid.data.synthetic.write_synthetic_dataset (generator version {GENERATOR_VERSION}).
Seed: {params["seed"]}. Same parameters and seed give byte-identical files.

Parameters: {json.dumps(params, sort_keys=True)}

Layout: bounding_box_train/ holds pids 1..{params["train_identities"]}; query/ and bounding_box_test/
hold pids {params["train_identities"] + 1}..{params["identities"]}. File names: <pid:04d>_c<cam>s1_<frame:06d>_01.jpg
(cameras 1-based). pid 0000 = distractor (a person outside the identity set), pid -1 = junk
(bad detections); both only in the gallery. Each test identity has one query from each of up
to 2 cameras and a gallery image in another camera.

Images: 128x64 RGB JPEG (quality {JPEG_QUALITY}), drawn procedurally with OpenCV. Identities come
in coarse groups of 4-6 that share clothing colours, build, height, hair and skin (ambiguous at
low resolution); group members differ in fine details visible only at high resolution (1-2 px
torso stripes/checks/dots, a 4-6 px chest logo seen from the front, belt, bag strap, bag,
glasses/headband, shoes). Cameras differ in viewpoint, illumination (gain, colour cast, gamma),
background clutter, blur, noise and occlusion; each image has small pose jitter.

Counts: {summary.train_images} train, {summary.query_images} query and {summary.gallery_images} gallery images
({summary.distractors} distractors, {summary.junk} junk); {summary.groups} coarse groups, listed (as pids) in synthetic.json.
"""


def _prepare_folder(root: Path) -> None:
    """Create ``root`` or clear a previous synthetic dataset; refuse foreign content."""
    if root.exists() and not root.is_dir():
        raise FileExistsError(f"synthetic dataset output {root} exists and is not a folder")
    if not root.exists():
        root.mkdir(parents=True)
        return
    entries = {p.name for p in root.iterdir()}
    if not entries:
        return
    foreign = sorted(entries - set(_OUR_ENTRIES))
    if foreign or "synthetic.json" not in entries:
        raise FileExistsError(
            f"synthetic dataset output {root} already exists and does not hold a rareid synthetic "
            f"dataset (found {sorted(entries)[:5]}); choose an empty or new folder"
        )
    for name in _OUR_ENTRIES:  # a previous synthetic dataset: replace it
        p = root / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


def write_synthetic_dataset(
    out: str | Path,
    identities: int = 100,
    seed: int = 0,
    cameras: int = 4,
    images_per_camera: int | tuple[int, int] = (4, 6),
    train_fraction: float = 0.5,
    distractors: int = 100,
    junk: int = 50,
    progress: bool = True,
) -> SyntheticSummary:
    """Write the synthetic dataset in the Market-1501 layout under ``out``; return its summary.

    ``images_per_camera`` is images per identity per camera (an int, or a (min, max) range drawn
    per identity and camera). The first ``round(identities * train_fraction)`` pids train, the rest
    test. ``out`` must be new/empty or hold a previous synthetic dataset (which is replaced).
    The defaults give ~2,000 identity images plus 150 distractor/junk images.
    """
    params = _normalize_params(
        identities, seed, cameras, images_per_camera, train_fraction, distractors, junk
    )
    root = Path(out)
    _prepare_folder(root)
    world = SyntheticWorld(
        params["identities"], params["seed"], params["cameras"], params["train_identities"]
    )
    jobs = _plan(params)
    for folder in ("bounding_box_train", "query", "bounding_box_test"):
        (root / folder).mkdir()
    encode = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
    iterator: Any = jobs
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(jobs, desc="synthetic images", unit="img", mininterval=0.5)
    for job in iterator:
        rgb = world.render(job.pid, job.cam, job.frame)
        path = root / job.folder / job.name
        if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), encode):
            raise OSError(f"could not write {path} (disk full or folder not writable?)")

    count = {f: 0 for f in ("bounding_box_train", "query", "bounding_box_test")}
    for job in jobs:
        count[job.folder] += 1
    summary = SyntheticSummary(
        root=root,
        seed=params["seed"],
        identities=params["identities"],
        train_identities=params["train_identities"],
        test_identities=params["identities"] - params["train_identities"],
        cameras=params["cameras"],
        train_images=count["bounding_box_train"],
        query_images=count["query"],
        gallery_images=count["bounding_box_test"],
        distractors=params["distractors"],
        junk=params["junk"],
        groups=len(world.groups),
    )
    meta = {
        "generator": "rareid.data.synthetic",
        "params": params,
        "summary": {k: v for k, v in asdict(summary).items() if k not in ("root", "written")},
        "groups": world.groups,
    }
    (root / "synthetic.json").write_text(json.dumps(meta, indent=1) + "\n")
    (root / "README.txt").write_text(_readme(params, summary))
    (root / ".complete").write_text("ok\n")  # last: marks a finished dataset
    return summary


def ensure_synthetic_dataset(
    out: str | Path,
    identities: int = 100,
    seed: int = 0,
    cameras: int = 4,
    images_per_camera: int | tuple[int, int] = (4, 6),
    train_fraction: float = 0.5,
    distractors: int = 100,
    junk: int = 50,
    progress: bool = True,
) -> SyntheticSummary:
    """Write the dataset unless ``out`` already holds a complete one with the same parameters.

    Why: tests, notebooks and the quickstart call this on every run; rewriting ~2,000 images each
    time is wasteful. A folder with other content raises ``FileExistsError``.
    """
    params = _normalize_params(
        identities, seed, cameras, images_per_camera, train_fraction, distractors, junk
    )
    root = Path(out)
    meta_path = root / "synthetic.json"
    if (root / ".complete").is_file() and meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            meta = {}
        if meta.get("params") == params:
            s = meta["summary"]
            return SyntheticSummary(root=root, written=False, **s)
    return write_synthetic_dataset(
        root,
        identities=identities,
        seed=seed,
        cameras=cameras,
        images_per_camera=images_per_camera,
        train_fraction=train_fraction,
        distractors=distractors,
        junk=junk,
        progress=progress,
    )


# --------------------------------------------------------------------------------------------
# Pictures
# --------------------------------------------------------------------------------------------


def make_contact_sheet(
    path: str | Path,
    seed: int = 0,
    groups: int = 2,
    members: int = 4,
    cameras: int = 4,
    lr_factor: int = 4,
    zoom: int = 2,
    identities: int = 100,
) -> Path:
    """PNG grid of test identities (rows: ``groups`` x ``members``) in each camera, at full
    resolution (left block) and downsampled by ``lr_factor`` then upsampled back (right block).

    Why: to check by eye that same-group people look alike at low resolution while fine details
    tell them apart at full resolution.
    """
    n_train = identities // 2
    world = SyntheticWorld(identities, seed, cameras, n_train)
    test_groups = [g for g in world.groups if g[0] > n_train][:groups]
    rows = []
    for g in test_groups:
        for pid in g[:members]:
            hr = [world.render(pid, c, 1000 + c) for c in range(cameras)]
            lr = [
                cv2.resize(
                    cv2.resize(
                        im, (_W // lr_factor, _H // lr_factor), interpolation=cv2.INTER_AREA
                    ),
                    (_W, _H),
                    interpolation=cv2.INTER_LINEAR,
                )
                for im in hr
            ]
            sep = np.full((_H, 8, 3), 255, np.uint8)
            rows.append(np.concatenate([*hr, sep, *lr], axis=1))
        rows.append(np.full((6, rows[-1].shape[1], 3), 255, np.uint8))
    sheet = np.concatenate(rows, axis=0)
    sheet = cv2.resize(
        sheet, (sheet.shape[1] * zoom, sheet.shape[0] * zoom), interpolation=cv2.INTER_NEAREST
    )
    path = Path(path)
    cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    return path
