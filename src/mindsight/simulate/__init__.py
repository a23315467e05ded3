"""A THINGS-EEG2-like simulator with a known ceiling: OpenMoji stimuli, a four-level forward
model through an MNE lead field, EEG-like noise, and an ideal observer."""

from mindsight.simulate.dataset import DIFFICULTY, PRESETS, SimConfig, preset, simulate

__all__ = ["DIFFICULTY", "PRESETS", "SimConfig", "preset", "simulate"]
