"""Evaluation: a run as a predictor, its errors on stores, comparisons and the report."""
