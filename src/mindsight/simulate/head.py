"""The head: a lead field from MNE's spherical head model, for EEG or MEG sensors.

``make_sphere_model`` + ``setup_volume_source_space(sphere=...)`` + ``make_forward_solution``
give the gain of dipoles on a 12 mm grid, without any download:

- EEG (the 63 THINGS-EEG2 channels): a four-shell sphere fitted to the standard (colin27)
  montage; the gain is average-referenced, as the data are.
- MEG (the 271 CTF sensors of THINGS-MEG, :func:`mindsight.sensors.ctf_271`): radial point
  magnetometers on a spherical helmet around the same kind of sphere (Sarvas' formula, so radial
  dipoles are silent, as in real MEG).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from mindsight.io.things_eeg2 import CH_NAMES_63


@dataclass(frozen=True)
class LeadField:
    ch_names: tuple[str, ...]
    gain: np.ndarray  # (n_chans, n_dipoles, 3): field of a unit dipole along x, y, z
    positions: np.ndarray  # (n_dipoles, 3) metres, head frame (+y anterior, +z up)
    ch_positions: np.ndarray  # (n_chans, 3)

    def topography(self, dipoles: np.ndarray, orientations: np.ndarray) -> np.ndarray:
        """(n_chans, n) scalp maps of dipoles ``dipoles`` with ``orientations`` (n, 3), each
        scaled to unit norm (source strengths are set by the models, not by depth)."""
        maps = np.einsum("cnk,nk->cn", self.gain[:, dipoles], orientations)
        return maps / np.linalg.norm(maps, axis=0, keepdims=True)

    def posterior_rank(self) -> np.ndarray:
        """0 for the most posterior dipole … 1 for the most anterior."""
        order = np.argsort(np.argsort(self.positions[:, 1]))
        return order / max(len(order) - 1, 1)


def unit_vectors(v: np.ndarray) -> np.ndarray:
    """Rows of ``v`` scaled to unit length."""
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


@lru_cache(maxsize=4)
def lead_field(ch_names: tuple[str, ...] = CH_NAMES_63, spacing_mm: float = 12.0) -> LeadField:
    from mindsight.sensors import is_meg_name

    if all(is_meg_name(c) for c in ch_names):
        return _meg_lead_field(tuple(ch_names), spacing_mm)
    return _eeg_lead_field(tuple(ch_names), spacing_mm)


def _meg_lead_field(ch_names: tuple[str, ...], spacing_mm: float) -> LeadField:
    import mne

    from mindsight.sensors import HELMET_ORIGIN, make_info

    info = make_info(ch_names, 1000.0)
    sphere = mne.make_sphere_model(r0=tuple(HELMET_ORIGIN), head_radius=0.09, verbose="error")
    src = mne.setup_volume_source_space(sphere=sphere, pos=spacing_mm, mindist=10.0, verbose="error")
    fwd = mne.make_forward_solution(info, trans=None, src=src, bem=sphere, eeg=False, meg=True,
                                    verbose="error")
    fwd = mne.convert_forward_solution(fwd, force_fixed=False, surf_ori=False, verbose="error")
    gain = fwd["sol"]["data"].reshape(len(ch_names), -1, 3)
    positions = fwd["source_rr"] - HELMET_ORIGIN
    ch_pos = np.array([ch["loc"][:3] for ch in info["chs"]]) - HELMET_ORIGIN
    return LeadField(tuple(ch_names), gain.astype(np.float64), positions, ch_pos)


def _eeg_lead_field(ch_names: tuple[str, ...], spacing_mm: float) -> LeadField:
    import mne

    builtin = mne.channels.get_builtin_montages()
    montage = mne.channels.make_standard_montage("colin27_1005" if "colin27_1005" in builtin else "standard_1005")
    info = mne.create_info(list(ch_names), 1000.0, "eeg")
    info.set_montage(montage, verbose="error")
    sphere = mne.make_sphere_model("auto", "auto", info, verbose="error")
    src = mne.setup_volume_source_space(sphere=sphere, pos=spacing_mm, mindist=10.0, verbose="error")
    fwd = mne.make_forward_solution(info, trans=None, src=src, bem=sphere, eeg=True, meg=False,
                                    verbose="error")
    fwd = mne.convert_forward_solution(fwd, force_fixed=False, surf_ori=False, verbose="error")
    gain = fwd["sol"]["data"].reshape(len(ch_names), -1, 3)
    gain = gain - gain.mean(axis=0, keepdims=True)  # average reference
    positions = fwd["source_rr"] - np.asarray(sphere["r0"])
    ch_pos = np.array([info["chs"][i]["loc"][:3] for i in range(len(ch_names))]) - np.asarray(sphere["r0"])
    return LeadField(tuple(ch_names), gain.astype(np.float64), positions, ch_pos)
