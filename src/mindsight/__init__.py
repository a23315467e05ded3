"""mindsight: decode what a person sees from EEG/MEG.

The top level is light (numpy only); torch-based parts live in ``mindsight.embed`` (and later
``mindsight.encoders``), imported when used.
"""

from mindsight.io import read_image_set, read_things_eeg2, read_things_eeg2_subject
from mindsight.recording import Recording, Trials

__version__ = "0.1.0"

__all__ = [
    "Recording",
    "Trials",
    "__version__",
    "read_image_set",
    "read_things_eeg2",
    "read_things_eeg2_subject",
]
