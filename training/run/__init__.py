"""Running a pipeline: stage order, the run dir and its lock, device and DDP, SIGTERM, logs and W&B."""
