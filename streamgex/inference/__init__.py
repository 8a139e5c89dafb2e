"""Inference on new profiles: read them, re-apply the pipeline, predict targets."""
