"""`make bench-train`: the pipeline once per seed on a generated dataset, and the verdicts on its aims."""
