"""Honest evaluation: zero-shot retrieval/classification metrics and run-level summaries."""

from mindsight.evaluate.retrieval import k_way, retrieval_metrics, similarity
from mindsight.evaluate.run import evaluate_run, load_model
from mindsight.evaluate.stats import mean_ci

__all__ = ["evaluate_run", "k_way", "load_model", "mean_ci", "retrieval_metrics", "similarity"]
