"""What people and cameras look like: coarse groups, fine identity details, camera styles.

Why two layers: members of a coarse group share clothing colours, build, height, hair and skin
(ambiguous at low resolution) and differ in fine details that only survive at high resolution.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from rareid.data.synthetic.common import (
    _BG_WIDTH,
    _H,
    _K_CAMERA,
    _LOGO_SHAPES,
    _NOISE_BANK,
    _PAD,
    _TEXTURES,
    _W,
    VIEW_BACK,
    VIEW_FRONT,
    VIEW_LEFT,
    VIEW_RIGHT,
    Color,
    _hsv,
    _rng,
    _tup,
)


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
