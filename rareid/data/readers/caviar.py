"""CAVIAR4REID: ``CAVIARa/<pid:04d><idx:03d>.jpg``; idx 1-10 near (HR), 11-20 far (LR)."""

from __future__ import annotations

import re
from pathlib import Path

from rareid.data.readers.base import (
    DatasetFiles,
    DatasetFormatError,
    DatasetNotFoundError,
    ImageRecord,
    check_int_option,
    draw_test_ids,
    list_images,
    require_root,
)

__all__ = ["read_caviar"]

_CAVIAR_RE = re.compile(r"(?P<pid>\d{4})(?P<idx>\d{3})")
_CAVIAR_HINT = "download CAVIAR4REID and extract it so that the images are in <root>/CAVIARa/"


def read_caviar(root: Path, *, split_seed: int = 0, caviar_num_test: int = 25) -> DatasetFiles:
    """CAVIAR4REID with its cross-resolution protocol.

    Image ``<pid:04d><idx:03d>.jpg``: idx 1-10 come from the near camera (HR, camid 0),
    11-20 from the far camera (LR, camid 1). Only identities seen by both cameras are
    used (50 in the real dataset; the others are counted in the log). ``caviar_num_test``
    of them (default 25) are test identities, drawn by ``split_seed``. Train = near-camera
    images of the training identities (their LR views are synthesised like every other
    dataset's; far-camera images are never trained on, they are kept in ``train_lowres``
    for validation); query = far-camera images of the test identities (real LR images,
    ``query_is_lowres=True``); gallery = their near-camera images.
    """
    split_seed = check_int_option("split_seed", split_seed, 0)
    num_test = check_int_option("caviar_num_test", caviar_num_test, 1)
    require_root(root, "CAVIAR4REID", _CAVIAR_HINT)
    folder = root / "CAVIARa"
    if not folder.is_dir():
        if root.name == "CAVIARa" or any(_CAVIAR_RE.fullmatch(p.stem) for p in list_images(root)):
            folder = root
        else:
            raise DatasetNotFoundError(
                f"CAVIAR4REID not found under {root}: expected {folder}/ ({_CAVIAR_HINT}, "
                f"or pass the CAVIARa folder itself)"
            )
    by_identity: dict[int, list[ImageRecord]] = {}
    for path in list_images(folder):
        match = _CAVIAR_RE.fullmatch(path.stem)
        if match is None:
            raise DatasetFormatError(
                f"CAVIAR4REID: cannot parse file name {path}: expected <pid:04d><idx:03d>.jpg "
                f"(e.g. 0001001.jpg); rename or remove the file"
            )
        pid, idx = int(match["pid"]), int(match["idx"])
        if not 1 <= idx <= 20:
            raise DatasetFormatError(
                f"CAVIAR4REID: image index {idx} out of range 1..20 in file name {path} "
                f"(001-010 near camera, 011-020 far camera)"
            )
        camid = 0 if idx <= 10 else 1
        by_identity.setdefault(pid, []).append(ImageRecord(str(path), pid, camid))
    if not by_identity:
        raise DatasetFormatError(
            f"CAVIAR4REID: no images in {folder} (expected files like 0001001.jpg)"
        )

    both = sorted(p for p, recs in by_identity.items() if {r.camid for r in recs} == {0, 1})
    single = len(by_identity) - len(both)
    if len(both) <= num_test:
        raise DatasetFormatError(
            f"CAVIAR4REID: {len(both)} identities appear in both cameras in {folder}, not enough "
            f"for caviar_num_test={num_test} test identities plus at least one training "
            f"identity; lower caviar_num_test"
        )
    test_ids = draw_test_ids(both, num_test, split_seed)
    train_all = [r for p in both if p not in test_ids for r in by_identity[p]]
    test = [r for p in both if p in test_ids for r in by_identity[p]]
    notes = [
        f"split (split_seed={split_seed}): {len(both) - num_test} train / {num_test} "
        f"test identities seen by both cameras",
    ]
    if single:
        notes.append(f"not used: {single} identities seen by one camera only (protocol)")
    notes.append(
        "training uses the near-camera (HR) images of the training identities; their "
        "far-camera images serve only as validation queries of held-out identities"
    )
    return DatasetFiles(
        name="caviar",
        source=folder,
        train=[r for r in train_all if r.camid == 0],
        train_lowres=[r for r in train_all if r.camid == 1],
        query=[r for r in test if r.camid == 1],
        gallery=[r for r in test if r.camid == 0],
        query_is_lowres=True,
        notes=notes,
    )
