"""Readers and writers of the public data formats (numpy, pandas and MNE; torch only to read
tensors someone pickled)."""

from mindsight.io.cache import default_cache_dir, load_float32
from mindsight.io.containers import read_dict, read_npy, write_npy_dict, write_pickle_dict
from mindsight.io.datasets import (
    DATASETS,
    Dataset,
    dataset_for,
    find_dataset,
    read_images,
    read_recording,
)
from mindsight.io.headers import read_header
from mindsight.io.images import ImagePartition, ImageSet, read_image_set
from mindsight.io.things_eeg2 import (
    find_preprocessed,
    find_raw_sessions,
    read_things_eeg2,
    read_things_eeg2_subject,
)
from mindsight.io.things_meg import (
    find_things_meg,
    read_sample_attributes,
    read_things_meg,
    things_meg_image_set,
    write_things_meg_atm,
    write_things_meg_official,
)

__all__ = [
    "DATASETS",
    "Dataset",
    "ImagePartition",
    "ImageSet",
    "dataset_for",
    "default_cache_dir",
    "find_dataset",
    "find_preprocessed",
    "find_raw_sessions",
    "find_things_meg",
    "load_float32",
    "read_dict",
    "read_header",
    "read_image_set",
    "read_images",
    "read_npy",
    "read_recording",
    "read_sample_attributes",
    "read_things_eeg2",
    "read_things_eeg2_subject",
    "read_things_meg",
    "things_meg_image_set",
    "write_npy_dict",
    "write_pickle_dict",
    "write_things_meg_atm",
    "write_things_meg_official",
]
