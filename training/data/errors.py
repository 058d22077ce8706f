"""Errors raised by the Burgers data layer; every message names the file involved."""

from __future__ import annotations


class DataFileError(ValueError):
    """A data file is missing, unreadable, or does not have the expected layout."""


class ChecksumMismatchError(DataFileError):
    """A file's size or sha256 differs from what the manifest next to it records."""
