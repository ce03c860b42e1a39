"""Calibration on a user's own labelled crops, with the embeddings already in an index.

Labels come as a CSV (``path, person[, camera]``; a header row is optional) or as a folder with
one sub-folder per person. Every labelled file must be in the index: its stored HR embedding is
the gallery side. The query side of level ``k`` is the same crop degraded to the rate of level
``k`` and embedded at that level (level ``m``: the stored embedding itself), so each level is
calibrated on the distances a real level-``k`` query produces. Genuine pairs are two different
images of one person (from different cameras when cameras are known, as in re-ID), impostor
pairs images of two people.

Identities the checkpoint trained on are refused: their distances are smaller than a new
person's, and thresholds set on them would accept impostors at more than the stated FAR.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from rareid.checkpoint_reader import content_digest
from rareid.deploy.model.inference import list_images

if TYPE_CHECKING:
    from rareid.deploy.gallery.index import GalleryIndex
    from rareid.deploy.model.backends import EmbeddingBackend

#: Checkpoint key of the record of the training identities (written by the LightningModule).
TRAINING_RECORD_KEY = "rareid_training_identities"


class LabelsError(ValueError):
    """Labels that cannot be used (named so, as one line)."""


@dataclass
class Labels:
    """Index positions of the labelled images with their person and camera (or None)."""

    positions: list[int]
    people: list[str]
    cameras: list[str | None]
    source: str

    @property
    def identities(self) -> int:
        return len(set(self.people))


def _index_lookup(index: GalleryIndex) -> dict[str, int]:
    root = Path(index.root)
    return {str((root / path).resolve()): position for position, path in enumerate(index.paths)}


def read_labels(spec: str | os.PathLike, index: GalleryIndex) -> Labels:
    """Labels of a CSV file or a folder-per-person layout, matched to the index's images.

    A CSV path is taken relative to the CSV's folder, then to the index's gallery folder.
    """
    source = Path(spec)
    lookup = _index_lookup(index)
    entries: list[tuple[Path, str, str | None]] = []
    if source.is_dir():
        for person in sorted(child for child in source.iterdir() if child.is_dir()):
            entries += [(path, person.name, None) for path in list_images(person)]
        if not entries:
            raise LabelsError(f"--labels: {str(source)!r} has no person sub-folder with images")
    elif source.is_file():
        # utf-8-sig: a spreadsheet's byte-order mark is not part of the first path
        with open(source, newline="", encoding="utf-8-sig") as stream:
            rows = [row for row in csv.reader(stream) if row and any(cell.strip() for cell in row)]
        if rows and rows[0][0].strip().lower() in ("path", "file", "image", "filename"):
            rows = rows[1:]
        for number, row in enumerate(rows, start=1):
            if len(row) < 2 or not row[0].strip() or not row[1].strip():
                raise LabelsError(
                    f"--labels: {str(source)!r} row {number}: expected 'path, person[, camera]', "
                    f"got {row!r}"
                )
            name = Path(row[0].strip())
            candidates = [name] if name.is_absolute() else [source.parent / name, index.root / name]
            path = next((c for c in candidates if str(c.resolve()) in lookup), candidates[0])
            camera = row[2].strip() if len(row) > 2 and row[2].strip() else None
            entries.append((path, row[1].strip(), camera))
    else:
        raise LabelsError(f"--labels: {str(source)!r} is neither a CSV file nor a folder")
    missing = [path for path, _, _ in entries if str(path.resolve()) not in lookup]
    if missing:
        raise LabelsError(
            f"--labels: {len(missing)} of {len(entries)} labelled images are not in the index "
            f"(first: {str(missing[0])!r}); add them with `rareid index --add`"
        )
    seen: dict[int, str] = {}
    for path, person, _ in entries:
        position = lookup[str(path.resolve())]
        if seen.setdefault(position, person) != person:
            raise LabelsError(
                f"--labels: {str(path)!r} is labelled both {seen[position]!r} and {person!r}"
            )
    unique = {lookup[str(path.resolve())]: (person, camera) for path, person, camera in entries}
    return Labels(
        positions=list(unique),
        people=[person for person, _ in unique.values()],
        cameras=[camera for _, camera in unique.values()],
        source=str(source),
    )


def trained_identities(
    labels: Labels, index: GalleryIndex, record: dict[str, Any] | None
) -> list[str]:
    """The labelled people the checkpoint trained on, by its training record: a labelled image
    that is one of the training files (by name, or by content: a renamed copy), or a person
    labelled with a training id whose images lie in the training dataset's folder.

    Contents are compared with the digests the checkpoint recorded; a checkpoint written
    before digests were recorded is compared with the training files still readable at its
    recorded root."""
    if not record:
        return []
    files = record.get("files") or []
    names = {Path(name).name for name in files}
    train_ids = {str(pid) for pid in record.get("pids") or []}
    root = Path(record.get("root") or "/nonexistent").resolve()
    contents = record.get("contents")
    if contents is None:
        contents = (content_digest(root / name) for name in files)
    known = {digest for digest in contents if digest is not None}
    found = set()
    for position, person in zip(labels.positions, labels.people, strict=True):
        path = index.absolute_path(position).resolve()
        by_id = path.is_relative_to(root) and _as_id(person) in train_ids
        if path.name in names or by_id or (known and content_digest(path) in known):
            found.add(person)
    return sorted(found)


def _as_id(person: str) -> str:
    return str(int(person)) if person.strip().lstrip("-").isdigit() else person


def label_distances(
    index: GalleryIndex,
    labels: Labels,
    backend: EmbeddingBackend,
    batch_size: int = 64,
) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
    """Genuine and impostor distances per query level among the labelled images."""
    import cv2

    from rareid.data.lowres import degrade
    from rareid.evaluation.distances import level_distances

    positions = torch.tensor(labels.positions)
    gallery = index.embeddings[positions]
    people = np.array(labels.people)
    same = people[:, None] == people[None, :]
    distinct = ~np.eye(len(people), dtype=bool)
    if all(camera is not None for camera in labels.cameras):
        cameras = np.array(labels.cameras)
        distinct &= cameras[:, None] != cameras[None, :]  # genuine pairs across cameras
    images = []
    for position in labels.positions:
        image = cv2.imread(str(index.absolute_path(position)), cv2.IMREAD_COLOR)
        if image is None:
            raise LabelsError(f"--labels: cannot read {str(index.absolute_path(position))!r}")
        images.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
    genuine, impostor = {}, {}
    for level, rate in enumerate(index.rates, start=1):
        if level == index.num_levels:
            queries = gallery
        else:
            parts = []
            for start in range(0, len(images), batch_size):
                chunk = [degrade(image, rate) for image in images[start : start + batch_size]]
                tensor = index.preprocess(chunk)
                parts.append(backend.embed(tensor, torch.full((len(chunk),), level)).cpu())
            queries = torch.cat(parts).float()
        levels = torch.full((len(images),), level)
        dist = level_distances(queries, levels, gallery, None, index.split_sizes, index.metric)
        dist = dist.numpy().astype(np.float64)
        genuine[level] = dist[same & distinct]
        impostor[level] = dist[~same]
    return genuine, impostor


def describe_shortage(
    labels: Labels, impostor: dict[int, np.ndarray], fars: Sequence[float]
) -> str:
    """One line: why no level resolves any requested FAR with these labels."""
    pairs = max((values.size for values in impostor.values()), default=0)
    smallest = max(fars)
    return (
        f"--labels: {labels.identities} identities in {len(labels.positions)} images give at "
        f"most {pairs} impostor pairs per level; FAR {smallest:g} needs at least "
        f"{int(np.ceil(1 / smallest - 1e-9))} (and every identity two images"
        + (", from two cameras" if all(c is not None for c in labels.cameras) else "")
        + "): label more identities or ask a larger --far"
    )
