"""Where each sensor is, found from its name: EEG 10-05 names and CTF MEG names.

EEG channels take the colin27 10-05 montage that MNE ships. MEG channels take MNE's CTF-275
layout (``MLC11``, ``MRO52``…; a system suffix such as ``-4408`` is ignored), placed on a
spherical helmet. Both give 3-D positions in the head frame (metres; +x right, +y anterior,
+z up), which the brain module's spatial attention, the simulator's lead field, the spatial
analysis and the topomaps all use. A channel known to neither raises
:class:`~mindsight.errors.DataFormatError` naming it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from mindsight.errors import DataFormatError

HELMET_RADIUS = 0.12  # m, sphere the MEG sensors sit on (CTF helmets are ~11–13 cm from the centre)
HELMET_ORIGIN = np.array([0.0, 0.0, 0.04])  # m, sphere centre in the head frame
_CTF_NAME = re.compile(r"^M([LRZ])([FCTPO])(\d\d)(?:-\d+)?$")
REGIONS = ("frontal", "temporal", "central", "parietal", "occipital")
# CTF names carry their lobe: MLF = left frontal, MRO = right occipital, …
_CTF_REGION = {"F": "frontal", "T": "temporal", "C": "central", "P": "parietal", "O": "occipital"}
# 10-05 prefixes, longest first (FT before F, PO before P, TP before T, CP before C)
_EEG_REGION = (
    ("Fp", "frontal"), ("AF", "frontal"), ("FT", "temporal"), ("FC", "central"),
    ("TP", "temporal"), ("CP", "central"), ("PO", "occipital"), ("F", "frontal"),
    ("T", "temporal"), ("C", "central"), ("P", "parietal"), ("O", "occipital"),
    ("I", "occipital"),
)
# Electrodes of common caps that have no 10-05 name, and the 10-05 position used for them: the
# Neuroscan Quik-Cap's cerebellar CB1/CB2 (EEG-ImageNet, SEED) sit below O1/O2, near I1/I2.
EEG_ALIASES = {"cb1": "i1", "cb2": "i2"}


def is_meg_name(name: str) -> bool:
    """True for a CTF MEG channel name (``MLC11``, ``MZO01-4408``)."""
    return _CTF_NAME.match(name) is not None


def channel_types(ch_names: Sequence[str]) -> list[str]:
    """MNE channel type of each channel, from its name: ``'mag'`` for CTF MEG names, ``'eeg'``
    for the rest. THINGS-MEG's CTF sensors are axial gradiometers measuring tesla, which MNE
    types ``'mag'`` (``read_raw_ctf`` and the derivative's ``-epo.fif`` both do, and
    THINGS-data's ``step1_preprocessing.py`` keeps them with ``picks='mag'``)."""
    return ["mag" if is_meg_name(n) else "eeg" for n in ch_names]


def ctf_base(name: str) -> str:
    """``'MLC11-4408'`` → ``'MLC11'``."""
    return name.split("-")[0]


@lru_cache(maxsize=1)
def _eeg_montage() -> dict[str, np.ndarray]:
    import mne

    builtin = mne.channels.get_builtin_montages()
    montage = mne.channels.make_standard_montage(
        "colin27_1005" if "colin27_1005" in builtin else "standard_1005")
    return {k.lower(): np.asarray(v) for k, v in montage.get_positions()["ch_pos"].items()}


@lru_cache(maxsize=1)
def ctf_layout() -> dict[str, np.ndarray]:
    """CTF-275 sensor → 3-D position on the helmet sphere, from MNE's 2-D layout.

    The layout is an azimuthal projection seen from above; it is inverted onto a sphere of
    radius :data:`HELMET_RADIUS` whose rim (the layout's outermost sensors) lies 115° from the
    vertex, about where a CTF helmet ends.
    """
    import mne

    lay = mne.channels.read_layout("CTF-275")
    xy = lay.pos[:, :2] + lay.pos[:, 2:4] / 2  # box centres
    centre = np.array([xy[:, 0].mean(), np.median(xy[:, 1])])
    d = xy - centre
    rho = np.linalg.norm(d, axis=1)
    polar = np.deg2rad(115.0) * rho / rho.max()
    azim = np.arctan2(d[:, 1], d[:, 0])
    pos = HELMET_ORIGIN + HELMET_RADIUS * np.c_[
        np.sin(polar) * np.cos(azim), np.sin(polar) * np.sin(azim), np.cos(polar)]
    return {ctf_base(n): p for n, p in zip(lay.names, pos, strict=True)}


def sensor_positions(ch_names: Sequence[str]) -> np.ndarray:
    """(n_chans, 3) head-frame positions of ``ch_names`` (EEG 10-05 or CTF MEG names)."""
    eeg, meg = _eeg_montage(), ctf_layout()
    out, missing = [], []
    for name in ch_names:
        pos = meg.get(ctf_base(name)) if is_meg_name(name) else eeg.get(EEG_ALIASES.get(name.lower(), name.lower()))
        if pos is None or not np.all(np.isfinite(pos)):
            missing.append(name)
            pos = np.full(3, np.nan)
        out.append(pos)
    if missing:
        raise DataFormatError(
            f"missing sensor positions for {len(missing)} channel(s) {missing[:8]}: they are neither "
            "10-05 EEG names nor CTF-275 MEG names. Rename them to standard names, or leave them "
            "out with data.channels (spatial attention, the simulator and spatial maps need positions)"
        )
    return np.asarray(out, dtype=np.float64)


def sensor_xy(ch_names: Sequence[str]) -> np.ndarray:
    """(n_chans, 2) positions flattened to the plane (azimuthal projection from the vertex),
    scaled to [0, 1] per axis: the input of the brain module's spatial attention."""
    pos = sensor_positions(ch_names)
    origin = HELMET_ORIGIN if all(is_meg_name(n) for n in ch_names) else np.zeros(3)
    v = pos - origin
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    polar = np.arccos(np.clip(v[:, 2], -1, 1))
    azim = np.arctan2(v[:, 1], v[:, 0])
    xy = np.c_[polar * np.cos(azim), polar * np.sin(azim)]
    lo, hi = xy.min(0), xy.max(0)
    return (xy - lo) / np.maximum(hi - lo, 1e-9)


def region_of(name: str) -> str:
    """Lobe of a channel (one of :data:`REGIONS`), from its 10-05 or CTF name."""
    if m := _CTF_NAME.match(name):
        return _CTF_REGION[m.group(2)]
    name = EEG_ALIASES.get(name.lower(), name)
    base = name.rstrip("0123456789z").rstrip("h") if name[-1:] in "0123456789zh" else name
    for prefix, region in _EEG_REGION:
        if base.lower().startswith(prefix.lower()):
            return region
    raise DataFormatError(
        f"channel {name!r}: no brain region for this name (expected a 10-05 EEG or CTF MEG name)")


def regions(ch_names: Sequence[str]) -> dict[str, list[str]]:
    """Channels of each region, in :data:`REGIONS` order (regions without channels omitted)."""
    out: dict[str, list[str]] = {r: [] for r in REGIONS}
    for name in ch_names:
        out[region_of(name)].append(name)
    return {r: chs for r, chs in out.items() if chs}


def make_info(ch_names: Sequence[str], sfreq: float) -> Any:
    """An ``mne.Info`` with positions: EEG channels, or MEG magnetometers pointing radially
    (point magnetometers on the helmet; what the simulator's lead field and topomaps need)."""
    import mne

    names = list(ch_names)
    pos = sensor_positions(names)
    if all(is_meg_name(n) for n in names):
        info = mne.create_info(names, sfreq, "mag")
        with info._unlock():
            for ch, p in zip(info["chs"], pos, strict=True):
                ez = (p - HELMET_ORIGIN) / np.linalg.norm(p - HELMET_ORIGIN)
                ex = np.cross([0.0, 1.0, 0.0], ez)
                if np.linalg.norm(ex) < 1e-6:
                    ex = np.array([1.0, 0.0, 0.0])
                ex /= np.linalg.norm(ex)
                ey = np.cross(ez, ex)
                ch["loc"][:] = np.r_[p, ex, ey, ez]
                ch["coil_type"] = mne.io.constants.FIFF.FIFFV_COIL_POINT_MAGNETOMETER
                ch["coord_frame"] = mne.io.constants.FIFF.FIFFV_COORD_HEAD
            info["dev_head_t"] = mne.transforms.Transform("meg", "head", np.eye(4))
        return info
    if any(is_meg_name(n) for n in names):
        raise DataFormatError("a recording mixes EEG and MEG channel names; mindsight expects one kind")
    info = mne.create_info(names, sfreq, "eeg")
    montage = mne.channels.make_dig_montage(dict(zip(names, pos, strict=True)), coord_frame="head")
    info.set_montage(montage)
    return info


# The 271 CTF sensors of THINGS-MEG: the CTF-275 layout less four sensors absent from the
# THINGS-MEG recordings' channel list.
CTF_MISSING = ("MLF25", "MRF43", "MRO13", "MRP52")


def ctf_271() -> tuple[str, ...]:
    return tuple(n for n in ctf_layout() if n not in CTF_MISSING)
