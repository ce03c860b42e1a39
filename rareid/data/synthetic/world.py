"""The world of one synthetic dataset: its identities, coarse groups and cameras, and the renderer.

Each image gets its own random stream seeded from ``(seed, kind, pid, cam, frame)``, so the pixels
of an image do not depend on which other images were drawn before it.
"""

from __future__ import annotations

import cv2
import numpy as np

from rareid.data.synthetic.appearance import (
    _Camera,
    _draw_coarse,
    _Identity,
    _jitter_coarse,
    _make_camera,
    _make_identity,
    _partition,
)
from rareid.data.synthetic.common import (
    _BG_WIDTH,
    _H,
    _K_DISTRACTOR,
    _K_GROUP,
    _K_IDENT,
    _K_IMAGE,
    _K_JUNK,
    _K_PARTITION,
    _NOISE_BANK,
    _TEXTURES,
    _W,
    _rng,
    _tup,
)
from rareid.data.synthetic.person import draw_person


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
            draw_person(img, self._mask, ident, view, cx, foot_y, scale, arm, leg, (dx, dy))
        if clean:
            return img
        return _through_camera(img, camera, rng, r)


def _scaled_lut(lut: np.ndarray, gain: float) -> np.ndarray:
    return np.clip(np.round(lut.astype(np.float32) * gain), 0, 255).astype(np.uint8)


def _through_camera(
    img: np.ndarray, camera: _Camera, rng: np.random.Generator, r: list[float]
) -> np.ndarray:
    """What the camera does to a drawn scene: an occluder, illumination, blur and sensor noise."""
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
