"""What a run keeps on disk and in the bucket: checkpoints, its data files, the latent cache, B2 storage."""
