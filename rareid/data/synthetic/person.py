"""Drawing one pedestrian with OpenCV primitives, back to front, one body part per function.

Why parts: the drawing order decides what hides what (far limbs, legs, hips, torso, details,
near arms, bag, head), so :func:`draw_person` reads as that order and each part stays small.
Every coordinate is a float in pixels, drawn with cv2's sub-pixel fixed point (``_SHIFT``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from rareid.data.synthetic.appearance import _Identity
from rareid.data.synthetic.common import (
    _H,
    _LOGO_SHAPES,
    _ONE,
    _PAD,
    _SHIFT,
    _W,
    VIEW_BACK,
    VIEW_FRONT,
    VIEW_LEFT,
    VIEW_RIGHT,
    Color,
    _poly,
    _pt,
)


@dataclass(frozen=True)
class _Body:
    """Where the body parts of one figure fall in the image (pixels, float)."""

    cx: float
    foot_y: float
    scale: float
    u: float  # figure height
    side: bool  # a side view (left/right)
    face: float  # facing direction in side views: +1 right, -1 left
    sh_hw: float  # shoulder half-width
    waist_hw: float
    y_neck: float
    y_sh: float
    y_waist: float
    y_crotch: float
    head_cy: float
    head_rx: float
    head_ry: float
    arm_len: float
    arm_w: float
    leg_len: float
    leg_w0: float
    leg_w1: float
    hand_r: float


def _body(ident: _Identity, view: int, cx: float, foot_y: float, scale: float) -> _Body:
    """Proportions of a figure of the identity's build and height, seen from ``view``."""
    u = ident.height * scale
    top = foot_y - u
    side = view in (VIEW_LEFT, VIEW_RIGHT)
    sh_hw = ident.build / 2 * scale * (0.6 if side else 1.0)
    y_crotch = top + 0.56 * u
    return _Body(
        cx=cx,
        foot_y=foot_y,
        scale=scale,
        u=u,
        side=side,
        face=1.0 if view == VIEW_RIGHT else -1.0,
        sh_hw=sh_hw,
        waist_hw=sh_hw * (0.95 if side else 0.8),
        y_neck=top + 0.115 * u,
        y_sh=top + 0.165 * u,
        y_waist=top + 0.5 * u,
        y_crotch=y_crotch,
        head_cy=top + 0.065 * u,
        head_rx=0.048 * u * (0.95 if side else 1.0),
        head_ry=0.062 * u,
        arm_len=0.34 * u,
        arm_w=0.055 * u,
        leg_len=foot_y - 0.03 * u - y_crotch,
        leg_w0=0.085 * u,
        leg_w1=0.055 * u,
        hand_r=0.025 * u,
    )


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


def _ellipse(
    img: np.ndarray,
    center: tuple[float, float],
    axes: tuple[float, float],
    color: Color,
    start: int = 0,
    end: int = 360,
) -> None:
    """A filled, anti-aliased (arc of an) ellipse at sub-pixel precision."""
    cv2.ellipse(img, _pt(*center), _pt(*axes), 0, start, end, color, -1, cv2.LINE_AA, _SHIFT)


def _rect(img: np.ndarray, p0: tuple[float, float], p1: tuple[float, float], color: Color) -> None:
    """A filled, anti-aliased rectangle at sub-pixel precision."""
    cv2.rectangle(img, _pt(*p0), _pt(*p1), color, -1, cv2.LINE_AA, _SHIFT)


def _line(
    img: np.ndarray,
    p0: tuple[float, float],
    p1: tuple[float, float],
    color: Color,
    thickness: int,
) -> None:
    """A thin anti-aliased line at sub-pixel precision (belts, straps, eyewear)."""
    cv2.line(img, _pt(*p0), _pt(*p1), color, thickness, cv2.LINE_AA, _SHIFT)


def _draw_legs(
    img: np.ndarray, colors: dict[str, Color], body: _Body, arm_swing: float, leg_swing: float
) -> None:
    """Legs and shoes; in side views also the far arm, all behind the torso."""
    u = body.u
    if body.side:
        sa, sl = math.sin(arm_swing), math.sin(leg_swing)
        ca, cl = math.cos(arm_swing), math.cos(leg_swing)
        hip = (body.cx, body.y_crotch - 0.03 * u)
        for sgn, lcol, scol in ((-1.0, "lower_far", "shoe_far"), (1.0, "lower", "shoe")):
            foot = (body.cx + sgn * sl * body.leg_len, hip[1] + cl * body.leg_len)
            _limb(img, hip, foot, body.leg_w0 * 0.9, body.leg_w1, colors[lcol])
            _ellipse(
                img,
                (foot[0] + body.face * 0.02 * u, foot[1] + 0.01 * u),
                (0.045 * u, 0.02 * u),
                colors[scol],
            )
        sh = (body.cx - body.face * 0.1 * body.sh_hw, body.y_sh + 0.02 * u)
        hand_far = (sh[0] - sa * body.arm_len, sh[1] + ca * body.arm_len)
        _limb(img, sh, hand_far, body.arm_w, body.arm_w * 0.8, colors["upper_far"])
        cv2.circle(
            img, _pt(*hand_far), round(body.hand_r * _ONE), colors["skin_far"], -1, cv2.LINE_AA, 4
        )
        return
    # front/back: legs swing in depth -> a slightly raised/shortened foot
    for sgn in (-1.0, 1.0):
        hip = (body.cx + sgn * body.waist_hw * 0.48, body.y_crotch - 0.03 * u)
        lift = abs(math.sin(leg_swing)) * 0.05 * u * (1 if sgn * leg_swing > 0 else 0)
        foot = (body.cx + sgn * body.waist_hw * 0.55, body.foot_y - 0.03 * u - lift)
        _limb(img, hip, foot, body.leg_w0, body.leg_w1, colors["lower"])
        _ellipse(
            img,
            (foot[0] + sgn * 0.01 * u, foot[1] + 0.012 * u),
            (0.032 * u, 0.02 * u),
            colors["shoe"],
        )


def _draw_hips_and_neck(img: np.ndarray, colors: dict[str, Color], body: _Body) -> None:
    hips = _poly(
        [
            (body.cx - body.waist_hw, body.y_waist - 1),
            (body.cx + body.waist_hw, body.y_waist - 1),
            (body.cx + body.waist_hw * 0.95, body.y_crotch),
            (body.cx - body.waist_hw * 0.95, body.y_crotch),
        ]
    )
    cv2.fillPoly(img, [hips], colors["lower"], cv2.LINE_AA, _SHIFT)
    _rect(
        img,
        (body.cx - 0.02 * body.u, body.y_neck - 1),
        (body.cx + 0.02 * body.u, body.y_sh + 1),
        colors["skin"],
    )


def _draw_torso(
    img: np.ndarray,
    mask: np.ndarray,
    ident: _Identity,
    body: _Body,
    tile_offset: tuple[int, int],
) -> None:
    """The torso, textured by copying the identity's precomputed tile through a polygon mask."""
    u = body.u
    torso = _poly(
        [
            (body.cx - body.sh_hw * 0.75, body.y_sh - 0.01 * u),
            (body.cx + body.sh_hw * 0.75, body.y_sh - 0.01 * u),
            (body.cx + body.sh_hw, body.y_sh + 0.04 * u),
            (body.cx + body.waist_hw, body.y_waist),
            (body.cx - body.waist_hw, body.y_waist),
            (body.cx - body.sh_hw, body.y_sh + 0.04 * u),
        ]
    )
    if ident.texture == 0:
        cv2.fillPoly(img, [torso], ident.colors["upper"], cv2.LINE_AA, _SHIFT)
        return
    mask.fill(0)
    cv2.fillPoly(mask, [torso], 255, cv2.LINE_8, _SHIFT)
    oy, ox = _PAD - tile_offset[1], _PAD - tile_offset[0]
    np.copyto(img, ident.tile[oy : oy + _H, ox : ox + _W], where=mask[..., None] > 0)


def _draw_logo(img: np.ndarray, ident: _Identity, body: _Body) -> None:
    """An identity-specific 4-6 px shape at an identity-specific place on the chest."""
    chest_h = body.y_waist - body.y_sh
    lx = body.cx + ident.logo_pos[0] * body.waist_hw * 0.8
    ly = body.y_sh + 0.08 * body.u + ident.logo_pos[1] * (chest_h - 0.12 * body.u)
    r = ident.logo_size * body.scale / 2
    shape = _LOGO_SHAPES[ident.logo_shape]
    color = ident.colors["logo"]
    if shape == "circle":
        cv2.circle(img, _pt(lx, ly), round(r * _ONE), color, -1, cv2.LINE_AA, _SHIFT)
        return
    if shape == "square":
        pts = [(lx - r, ly - r), (lx + r, ly - r), (lx + r, ly + r), (lx - r, ly + r)]
    elif shape == "diamond":
        pts = [(lx, ly - r * 1.2), (lx + r, ly), (lx, ly + r * 1.2), (lx - r, ly)]
    else:  # triangle
        pts = [(lx, ly - r * 1.1), (lx + r * 1.1, ly + r), (lx - r * 1.1, ly + r)]
    cv2.fillPoly(img, [_poly(pts)], color, cv2.LINE_AA, _SHIFT)


def _draw_belt_and_strap(img: np.ndarray, ident: _Identity, view: int, body: _Body) -> None:
    """A 1 px belt and a 1 px bag strap across the torso (its side flips from the back)."""
    colors = ident.colors
    if ident.belt is not None:
        y = body.y_waist - 1.0
        _line(img, (body.cx - body.waist_hw, y), (body.cx + body.waist_hw, y), colors["belt"], 1)
    if ident.strap_side == 0:
        return
    s = ident.strap_side * (-1.0 if view == VIEW_BACK else 1.0)
    if body.side:
        p0 = (body.cx + body.face * 0.2 * body.sh_hw, body.y_sh)
        p1 = (body.cx - body.face * body.waist_hw, body.y_waist - 0.02 * body.u)
    else:
        p0, p1 = (
            (body.cx - s * body.sh_hw * 0.7, body.y_sh),
            (body.cx + s * body.waist_hw, body.y_waist - 0.02 * body.u),
        )
    _line(img, p0, p1, colors["strap"], 1)


def _draw_arms(img: np.ndarray, colors: dict[str, Color], body: _Body, arm_swing: float) -> None:
    """Near arms with hands: both at the sides (front/back), or the near arm over the torso."""
    u = body.u
    if body.side:
        sh = (body.cx + body.face * 0.1 * body.sh_hw, body.y_sh + 0.02 * u)
        hand = (
            sh[0] + math.sin(arm_swing) * body.arm_len,
            sh[1] + math.cos(arm_swing) * body.arm_len,
        )
        pairs = [(sh, hand)]
    else:
        pairs = []
        for sgn in (-1.0, 1.0):
            sh = (body.cx + sgn * (body.sh_hw - body.arm_w * 0.45), body.y_sh + 0.025 * u)
            swing = arm_swing * sgn
            reach = body.arm_len * (0.93 + 0.07 * math.cos(swing))
            pairs.append((sh, (sh[0] + sgn * 0.12 * body.arm_len, sh[1] + reach)))
    for sh, hand in pairs:
        _limb(img, sh, hand, body.arm_w, body.arm_w * 0.8, colors["upper"])
        cv2.circle(
            img, _pt(*hand), round(body.hand_r * _ONE), colors["skin"], -1, cv2.LINE_AA, _SHIFT
        )


def _draw_bag(img: np.ndarray, ident: _Identity, view: int, body: _Body) -> None:
    """A small bag at the hip, on the strap's side."""
    u = body.u
    if body.side:
        bx = body.cx - body.face * (body.waist_hw + 0.03 * u)
    else:
        s = (ident.strap_side or 1) * (-1.0 if view == VIEW_BACK else 1.0)
        bx = body.cx + s * (body.waist_hw + 0.035 * u)
    by = body.y_waist - 0.02 * u
    bw, bh = 0.027 * u, 0.036 * u
    _rect(img, (bx - bw, by - bh), (bx + bw, by + bh), ident.colors["bag"])


def _draw_head(img: np.ndarray, ident: _Identity, view: int, body: _Body) -> None:
    """Long hair behind, then the face (or the back of the head), the hair cap and the eyes."""
    colors = ident.colors
    rx, ry, cy = body.head_rx, body.head_ry, body.head_cy
    if ident.long_hair and view != VIEW_FRONT:
        behind = (body.cx - (body.face * 0.2 * rx if body.side else 0), cy + 0.5 * ry)
        _ellipse(img, behind, (rx * 1.05, ry * 1.3), colors["hair"])
    if view == VIEW_BACK:
        _ellipse(img, (body.cx, cy), (rx, ry), colors["hair"])
        return
    _ellipse(img, (body.cx, cy), (rx, ry), colors["skin"])
    if body.side:  # hair cap over the back half of the head
        start, end = (90, 300) if body.face > 0 else (-120, 90)
        _ellipse(img, (body.cx, cy - 0.1 * ry), (rx * 1.05, ry * 1.0), colors["hair"], start, end)
    else:  # hair cap over the top half, long hair down both sides
        _ellipse(img, (body.cx, cy - 0.15 * ry), (rx * 1.05, ry * 0.9), colors["hair"], 180, 360)
        if ident.long_hair:
            for sgn in (-1.0, 1.0):
                _rect(
                    img,
                    (body.cx + sgn * rx * 0.8 - 1.2, cy - 0.2 * ry),
                    (body.cx + sgn * rx * 1.05, cy + 1.2 * ry),
                    colors["hair"],
                )
    eye_y = cy + 0.05 * ry
    eyes = (-0.4, 0.4) if view == VIEW_FRONT else (body.face * 0.55,)
    for offset in eyes:
        cv2.circle(img, _pt(body.cx + offset * rx, eye_y), 8, colors["eye"], -1, 8, 4)


def _draw_eyewear(img: np.ndarray, ident: _Identity, view: int, body: _Body) -> None:
    """Glasses (a thin dark bar over the eyes) or a headband (a line across the forehead)."""
    rx, ry, cy = body.head_rx, body.head_ry, body.head_cy
    if ident.eyewear == 1 and view != VIEW_BACK:
        x0 = body.cx - 0.8 * rx if not body.side else body.cx + body.face * 0.2 * rx
        x1 = body.cx + 0.8 * rx if not body.side else body.cx + body.face * 0.95 * rx
        _line(img, (x0, cy + 0.05 * ry), (x1, cy + 0.05 * ry), ident.colors["eyewear"], 1)
    elif ident.eyewear == 2:
        y = cy - 0.45 * ry
        _line(img, (body.cx - rx * 0.95, y), (body.cx + rx * 0.95, y), ident.colors["eyewear"], 2)


def draw_person(
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
    body = _body(ident, view, cx, foot_y, scale)
    colors = ident.colors
    _draw_legs(img, colors, body, arm_swing, leg_swing)
    _draw_hips_and_neck(img, colors, body)
    _draw_torso(img, mask, ident, body, tile_offset)
    if view == VIEW_FRONT:
        _draw_logo(img, ident, body)
    _draw_belt_and_strap(img, ident, view, body)
    _draw_arms(img, colors, body, arm_swing)
    if ident.bag:
        _draw_bag(img, ident, view, body)
    _draw_head(img, ident, view, body)
    _draw_eyewear(img, ident, view, body)
