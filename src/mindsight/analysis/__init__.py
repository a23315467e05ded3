"""Analyses of a trained run: how decoding depends on the averaged repetitions, the time window
and the brain region. Each is an :class:`Analysis` registered in :data:`ANALYSES` and writes
``RUN_DIR/analysis/<name>.json`` and a figure; ``mindsight analyze NAME RUN_DIR`` runs it.

A new analysis is one module here holding its class (see :mod:`mindsight.analysis.base`) and
one import line below.
"""

from mindsight.analysis.base import ANALYSES, Analysis, Mode, Summary, analysis_names, get_analysis
from mindsight.analysis.repetitions import Repetitions, analyze_repetitions, repetition_curve
from mindsight.analysis.spatial import Spatial, analyze_spatial, channel_importance
from mindsight.analysis.temporal import Temporal, analyze_temporal, make_windows

__all__ = ["ANALYSES", "Analysis", "Mode", "Repetitions", "Spatial", "Summary", "Temporal",
           "analysis_names", "analyze_repetitions", "analyze_spatial", "analyze_temporal",
           "channel_importance", "get_analysis", "make_windows", "repetition_curve"]
