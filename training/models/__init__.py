"""Neural networks of the pipeline, named after the papers they come from."""
