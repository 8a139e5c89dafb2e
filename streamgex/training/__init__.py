"""Training: a deterministic, checkpointed loop over streams, and run directories."""
