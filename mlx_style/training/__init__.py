"""Training a style network: config, the compiled step, the loop, data, checkpoints, progress, processes."""
