"""Dataset readers (:mod:`rareid.data.readers`), LR synthesis and the Lightning DataModule.

Importing this package stays light (numpy only): readers import OpenCV/h5py when they
need them, and nothing here imports torch or Lightning.
"""

from rareid.data.readers import (
    DATASET_NAMES,
    BadImageError,
    DatasetFiles,
    DatasetFormatError,
    DatasetNotFoundError,
    ImageRecord,
    ReIDSplits,
    build_dataset,
    register_dataset,
)

__all__ = [
    "DATASET_NAMES",
    "BadImageError",
    "DatasetFiles",
    "DatasetFormatError",
    "DatasetNotFoundError",
    "ImageRecord",
    "ReIDSplits",
    "build_dataset",
    "register_dataset",
]
