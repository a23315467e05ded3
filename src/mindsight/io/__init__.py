"""Readers and writers of the public data formats (numpy and MNE only; never torch)."""

from mindsight.io.cache import default_cache_dir, load_float32
from mindsight.io.containers import read_dict, read_npy, write_npy_dict, write_pickle_dict
from mindsight.io.images import ImagePartition, ImageSet, read_image_set
from mindsight.io.things_eeg2 import (
    find_preprocessed,
    find_raw_sessions,
    read_things_eeg2,
    read_things_eeg2_subject,
)

__all__ = [
    "ImagePartition",
    "ImageSet",
    "default_cache_dir",
    "find_preprocessed",
    "find_raw_sessions",
    "load_float32",
    "read_dict",
    "read_image_set",
    "read_npy",
    "read_things_eeg2",
    "read_things_eeg2_subject",
    "write_npy_dict",
    "write_pickle_dict",
]
