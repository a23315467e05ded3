"""Analyses of a trained run: how decoding depends on the averaged repetitions (and, to come,
on time windows and brain regions). Each writes ``RUN_DIR/analysis/<name>.json`` and a figure."""

from mindsight.analysis.repetitions import analyze_repetitions, repetition_curve

__all__ = ["analyze_repetitions", "repetition_curve"]
