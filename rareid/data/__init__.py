"""Datasets (on-disk readers), LR synthesis and the Lightning DataModule.

Importing this package stays light (numpy only): readers import OpenCV/h5py when they
need them, and nothing here imports torch or Lightning.
"""

from rareid.data.datasets import (
    DATASET_NAMES,
    BadImageError,
    DatasetFormatError,
    DatasetNotFoundError,
    ImageRecord,
    ReIDDataset,
    build_dataset,
)

__all__ = [
    "DATASET_NAMES",
    "BadImageError",
    "DatasetFormatError",
    "DatasetNotFoundError",
    "ImageRecord",
    "ReIDDataset",
    "build_dataset",
]
