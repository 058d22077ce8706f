"""Project tools: the demo, the local S3 server, the launch benchmarks."""
