"""Analyses of a trained run: how decoding depends on the averaged repetitions and on the time
window and on brain regions. Each writes ``RUN_DIR/analysis/<name>.json`` and a figure."""

from mindsight.analysis.repetitions import analyze_repetitions, repetition_curve
from mindsight.analysis.spatial import analyze_spatial, channel_importance
from mindsight.analysis.temporal import analyze_temporal, make_windows

__all__ = ["analyze_repetitions", "analyze_spatial", "analyze_temporal", "channel_importance",
           "make_windows", "repetition_curve"]
