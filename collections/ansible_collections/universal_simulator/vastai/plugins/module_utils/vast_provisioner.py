# SPDX-License-Identifier: MIT
"""The failover, for the modules: a thin adapter over `vastkit.failover` (the Vast domain lives there)."""

from __future__ import annotations

try:
    from run_contract import OWNER_ENV, OWNER_VALUE
    from vastkit.failover import (
        FAILED,
        GONE,
        STOPPED,
        CleanupFailed,
        CreateSpec,
        LaunchConflict,
        Outcome,
        Provisioner,
        ProvisionError,
        TornDown,
        WaitSpec,
        is_gone,
        phase,
        recover,
    )
    from vastkit.interrupts import Cancel, Interrupted, signals_trip
    from vastkit.journal import Journal, RunBusy, RunLock, journals, recoverable
    from vastkit.progress import ProgressFile
except ImportError:  # VastModuleContext reports the missing package before any of these is used
    FAILED = GONE = STOPPED = CleanupFailed = CreateSpec = LaunchConflict = Outcome = Provisioner = None
    ProvisionError = TornDown = WaitSpec = is_gone = phase = recover = None
    OWNER_ENV = OWNER_VALUE = Cancel = Interrupted = signals_trip = Journal = RunBusy = RunLock = journals = recoverable = None
    ProgressFile = None

__all__ = [
    "FAILED", "GONE", "OWNER_ENV", "OWNER_VALUE", "STOPPED", "Cancel", "CleanupFailed", "CreateSpec", "Interrupted", "Journal",
    "LaunchConflict", "Outcome", "ProgressFile", "ProvisionError", "Provisioner", "RunBusy", "RunLock", "TornDown", "WaitSpec",
    "is_gone", "journals", "phase", "recover", "recoverable", "signals_trip",
]
