"""1D Burgers data: generator, PDEBench-layout HDF5 files, manifest, loader and torch datasets."""

from training.data.errors import ChecksumMismatchError, DataFileError
from training.data.manifest import ManifestEntry, read_manifest, verify_manifest, write_manifest
from training.data.reader import load_burgers, load_split, split_files
from training.data.records import BurgersData
from training.data.torch_datasets import FramePairs, TrajectoryWindows
from training.data.writer import write_burgers_file

__all__ = [
    "BurgersData",
    "ChecksumMismatchError",
    "DataFileError",
    "FramePairs",
    "ManifestEntry",
    "TrajectoryWindows",
    "load_burgers",
    "load_split",
    "read_manifest",
    "split_files",
    "verify_manifest",
    "write_burgers_file",
    "write_manifest",
]
