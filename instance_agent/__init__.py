"""The on-instance side of a run: the supervisor that runs the pipeline, and the tools the roles call on the instance.

Everything here runs on the rented machine (or an emulator instance), inside `/venv/main`, from the code dir:
- `run`: run `python -m training run` under a budget, write `heartbeat.json`, sync artifacts to the bucket at
  the end, then destroy the instance with its own `CONTAINER_API_KEY`;
- `sync`: the same artifact sync on demand (teardown.yml calls it before destroying);
- `fetch-data`: the config's data files from the bucket, checksummed, skipping files already valid;
- `write-config`: the run's config with a sweep entry's dotted overrides, validated;
- `wait-started`: block until the pipeline printed `PIPELINE STARTED` (the train role's readiness check);
- `install-requirements`: the project's runtime requirements into /venv/main, torch left as the image has it;
- `rclone`: rclone with the bucket configured from `B2_*` in the environment, never from a file or argv.
"""
