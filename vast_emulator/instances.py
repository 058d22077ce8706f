"""Instance lifecycle: create -> loading -> running, stop/start/reboot/destroy, timed faults, restart recovery.

Timed faults (status, preempt, restart, sshd_dies, disk_full) are flags on the record until the instance
is running; then a timer acts on it. A host restart and a won-back bid start the container again as
``start`` does: every process dies, the disk stays, onstart runs again.

Every state change happens under the store lock and is saved at once; process work (namespaces, sshd) happens
outside it, serialised per instance. A per-instance generation number cancels boot threads and timers that
belong to an earlier start.
"""

from __future__ import annotations

import secrets as pysecrets
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import disk, images, runtime
from .create_request import MAX_LABEL, no_such_ask, validated_create_body
from .environment import container_env_entries, instance_environment, network_environment
from .errors import ApiError, invalid_args, no_such_instance
from .faults import PENDING_FAULT_KEYS, TIMED_KINDS, Fault, FaultBook, instance_fault_state
from .gateway import BANNER_EOF, DIRECT_HOST, FORWARD, PROXY_HOST, Gateway
from .instance_view import PENDING, public_row, with_null_fields
from .offers import Catalogue
from .store import InstanceRecord, StateStore

SSH_READY_TIMEOUT_S = 10.0
HALT_MESSAGES = {
    "exited": "Container exited unexpectedly",
    "offline": "Host is offline (lost connection)",
    "preempted": "Instance preempted: outbid on an interruptible instance",
}


@dataclass(frozen=True)
class Created:
    """What a create did: the instance, and the error its answer carries anyway (bid too low, slow create)."""

    instance_id: int
    api_key: str
    error: ApiError | None = None
    answer_after_s: float = 0.0  # a slow create: the answer comes this late


@dataclass(frozen=True)
class RuntimeSettings:
    state_dir: Path
    loading_delay_s: float
    base_venv: Path
    uv_cache: Path | None
    api_url: Callable[[], str]


class InstanceManager:
    def __init__(
        self,
        store: StateStore,
        catalogue: Catalogue,
        faults: FaultBook,
        settings: RuntimeSettings,
        base_ready: threading.Event,
    ) -> None:
        self.store = store
        self.catalogue = catalogue
        self.faults = faults
        self.settings = settings
        self.base_ready = base_ready
        self._procs: dict[int, subprocess.Popen] = {}
        self._generation: dict[int, int] = {}
        self._op_locks: dict[int, threading.Lock] = {}
        self._closing = threading.Event()
        self._timers: list[threading.Timer] = []
        self.gateway = Gateway()

    # ----- helpers -------------------------------------------------------------------------------------------
    def instance_dir(self, instance_id: int) -> Path:
        return self.settings.state_dir / "instances" / str(instance_id)

    def _record(self, instance_id: int) -> InstanceRecord:
        rec = self.store.data.instances.get(instance_id)
        if rec is None:
            raise no_such_instance(instance_id)
        return rec

    def _op_lock(self, instance_id: int) -> threading.Lock:
        with self.store.lock:
            return self._op_locks.setdefault(instance_id, threading.Lock())

    def _bump(self, instance_id: int) -> int:
        with self.store.lock:
            self._generation[instance_id] = self._generation.get(instance_id, 0) + 1
            return self._generation[instance_id]

    def _current(self, instance_id: int, generation: int) -> bool:
        return (
            not self._closing.is_set()
            and self._generation.get(instance_id) == generation
            and instance_id in self.store.data.instances
        )

    def _daemon_log(self, instance_id: int, text: str) -> None:
        logs = self.instance_dir(instance_id) / "logs"
        if logs.is_dir():
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            with open(logs / "daemon.log", "a") as handle:
                handle.write(f"{stamp} {text}\n")

    def _set_status(self, rec: InstanceRecord, actual: str | None, msg: str) -> None:
        rec.actual_status = actual
        rec.status_msg = msg
        self._daemon_log(rec.id, f"status {actual}: {msg}")

    def _unused_port(self) -> int:
        with self.store.lock:
            taken = {p for r in self.store.data.instances.values() for p in (r.ssh_port, r.proxy_port, r.direct_port)}
            while True:
                port = runtime.free_port()
                if port not in taken:
                    return port

    def offers_in_use(self) -> set[int]:
        with self.store.lock:
            now = time.time()
            gone = {oid for oid, until in self.store.data.gone_offers.items() if until > now}
            return {rec.offer_id for rec in self.store.data.instances.values()} | gone

    # ----- create --------------------------------------------------------------------------------------------
    def create(self, offer_id: int, body: dict[str, Any]) -> Created:
        fields = validated_create_body(body)
        cancel_unavail = bool(body.get("cancel_unavail"))
        with self.store.lock:
            offer = self.catalogue.offers.get(offer_id)
            queued = self.faults.take_create()
            if queued is not None and queued.kind == "offer_gone" and offer is not None:
                self.store.data.gone_offers[offer_id] = time.time() + float(queued.params["gone_for_s"])
                self.store.save()
                raise no_such_ask(offer_id, queued.params.get("status") == 410 or cancel_unavail)
            if offer is None or offer_id in self.offers_in_use():
                raise no_such_ask(offer_id, cancel_unavail)
            if fields["disk"] > float(offer.get("disk_space") or 1e9):
                raise invalid_args(
                    f"error 400/3467: Invalid args: disk {fields['disk']:g} GB exceeds the offer's {offer['disk_space']:g} GB"
                )
            data = self.store.data
            instance_id = data.next_instance_id
            data.next_instance_id += 1
            rec = InstanceRecord(
                id=instance_id,
                offer_id=offer_id,
                api_key=pysecrets.token_hex(32),
                start_date=round(time.time(), 3),
                ssh_port=self._unused_port(),
                authorized_keys=[k["key"] for k in data.ssh_keys],
                **fields,
            )
            # The host pulls the tag its driver supports (@vastai-automatic-tag), or cannot start the image.
            rec.requested_image = rec.image
            rec.image, rec.start_error = images.resolve(rec.image, offer.get("cuda_max_good"))
            created = Created(instance_id, rec.api_key)
            for fault in ([queued] if queued is not None else []) + self.faults.take_label(rec.label):
                if fault.kind == "slow_create":
                    created = self._slow_answer(rec, fault)
                else:
                    rec.faults.update(instance_fault_state(fault))
            low_bid = rec.price is not None and offer.get("min_bid") is not None and rec.price < float(offer["min_bid"])
            if low_bid:
                # dstack (api_client, 01becced9): Vast creates the spot instance stopped and answers an error
                # that carries its new_contract; whoever asked must destroy it.
                rec.intended_status = "stopped"
                rec.actual_status = "stopped"
                rec.status_msg = f"Bid ${rec.price:g}/h is below the minimum bid ${float(offer['min_bid']):g}/h"
                created = Created(instance_id, rec.api_key, ApiError(
                    200, "insufficient_bid",
                    f"Your bid of ${rec.price:g}/h is below this machine's minimum bid of "
                    f"${float(offer['min_bid']):g}/h; instance {instance_id} was created stopped",
                    new_contract=instance_id))
            data.instances[instance_id] = rec
            self._open_proxy(rec)
            self.store.save()
            runtime.prepare_dirs(self.instance_dir(instance_id), rec.disk)
            self._daemon_log(instance_id, f"created on offer {offer_id} (machine {offer['machine_id']})")
            generation = self._bump(instance_id)
        if not low_bid:
            self._start_boot(instance_id, generation)
        return created

    def _slow_answer(self, rec: InstanceRecord, fault: Fault) -> Created:
        """A create that happened, answered late with a 5xx, and listed only ``list_after_s`` after that answer."""
        hang = float(fault.params["hang_s"])
        rec.hidden_until = time.time() + hang + float(fault.params["list_after_s"])
        status = int(fault.params["status"])
        error = ApiError(status, "server_error", f"<html><body><h1>{status} Gateway Time-out</h1></body></html>")
        self._daemon_log(rec.id, f"fault slow_create: answered {status} after {hang:g}s, listed from "
                                 f"{time.strftime('%H:%M:%S', time.gmtime(rec.hidden_until))}Z")
        return Created(rec.id, rec.api_key, error, hang)

    # ----- SSH addresses -------------------------------------------------------------------------------------
    def _open_proxy(self, rec: InstanceRecord) -> None:
        """Vast's SSH proxy for this instance: PROXY_HOST:proxy_port forwarded to its sshd (any state)."""
        instance_id = rec.id
        rec.proxy_port = self.gateway.listen(
            PROXY_HOST, rec.proxy_port or 0, target=lambda: self._sshd_port(instance_id),
            mode=lambda: self._ssh_mode(instance_id))

    def _sshd_port(self, instance_id: int) -> int | None:
        with self.store.lock:
            rec = self.store.data.instances.get(instance_id)
            return rec.ssh_port if rec is not None and rec.actual_status == "running" else None

    def _ssh_mode(self, instance_id: int) -> str:
        with self.store.lock:
            rec = self.store.data.instances.get(instance_id)
            until = rec.faults.get("ssh_eof_until") if rec is not None else None
        return BANNER_EOF if until is not None and time.time() < until else FORWARD

    def _route_direct(self, rec: InstanceRecord) -> None:
        """At a start: the direct port is sshd's own, or (faults) a blocked port or a banner-then-EOF listener."""
        self.gateway.close(rec.direct_port)
        rec.direct_port = None
        if rec.faults.get("direct_blocked"):
            rec.direct_port = self.gateway.dead_port(DIRECT_HOST)
        elif rec.faults.get("ssh_eof_s") is not None or rec.faults.get("ssh_eof_until") is not None:
            instance_id = rec.id
            rec.direct_port = self.gateway.listen(DIRECT_HOST, 0, target=lambda: self._sshd_port(instance_id),
                                                  mode=lambda: self._ssh_mode(instance_id))

    # ----- boot ----------------------------------------------------------------------------------------------
    def _start_boot(self, instance_id: int, generation: int) -> None:
        threading.Thread(
            target=self._boot, args=(instance_id, generation), name=f"boot-{instance_id}", daemon=True
        ).start()

    def _boot(self, instance_id: int, generation: int) -> None:
        with self.store.lock:
            if not self._current(instance_id, generation):
                return
            rec = self._record(instance_id)
            if rec.start_error:  # the driver cannot run this image: the container is never created
                self._set_status(rec, "created", rec.start_error)
                self.store.save()
                return
            if rec.actual_status != "loading":  # keep why a (re)start is loading: "Host restarted: ..."
                self._set_status(rec, "loading", f"Loading image {rec.image}")
                self.store.save()
        # The loading delay stands for the image pull; the base venv build (first run only) is part of it.
        deadline = time.monotonic() + self.settings.loading_delay_s
        while not self._closing.is_set() and time.monotonic() < deadline:
            self._closing.wait(min(0.1, max(deadline - time.monotonic(), 0)))
        while not self.base_ready.wait(0.5):
            if not self._current(instance_id, generation):
                return
        with self._op_lock(instance_id):
            with self.store.lock:
                if not self._current(instance_id, generation):
                    return
                rec = self._record(instance_id)
                if rec.faults.get("stuck_loading"):
                    self._daemon_log(instance_id, "fault stuck_loading: the instance never leaves loading")
                    return
                self._route_direct(rec)
                spec = self._launch_spec(rec)
            ok = False
            for _attempt in range(2):
                popen = runtime.launch(spec)
                with self.store.lock:
                    self._procs[instance_id] = popen
                    rec.runtime_pid = popen.pid
                    self.store.save()
                if spec.ssh_delay_s > 0:
                    ok = popen.poll() is None  # the fault: sshd comes up later; the port refuses until then
                else:
                    ok = runtime.wait_for_sshd(rec.ssh_port, popen, SSH_READY_TIMEOUT_S)
                if ok:
                    break
                runtime.terminate(popen.pid, popen)
                with self.store.lock:  # most likely the port was taken meanwhile: pick another one
                    rec.ssh_port = self._unused_port()
                    spec = self._launch_spec(rec)
            with self.store.lock:
                if not self._current(instance_id, generation):
                    return
                if not ok:
                    self._set_status(rec, "exited", "Error: sshd did not start (see logs/sshd.log)")
                    self.store.save()
                    return
                status = rec.faults.get("status")
                dies_at_once = status["status"] if status and not float(status.get("after_s") or 0) else None
                if dies_at_once is None:
                    rec.running_since = time.time()
                    rec.faults.pop("halted", None)
                    eof_s = rec.faults.pop("ssh_eof_s", None)
                    if eof_s is not None:  # once: this start's first seconds
                        rec.faults["ssh_eof_until"] = time.time() + float(eof_s)
                    self._set_status(rec, "running", f"success, running {rec.image}/ssh")
                    self.store.save()
                    self._schedule_after_running(rec, generation)
                    return
            # A `status` fault with after_s 0: the container dies as it starts; the API never shows it running.
            self._kill(instance_id)
            with self.store.lock:
                if instance_id not in self.store.data.instances:
                    return
                rec.faults.pop("status", None)
                rec.faults["halted"] = dies_at_once
                rec.running_since = None
                self._set_status(rec, dies_at_once, HALT_MESSAGES[dies_at_once])
                self.store.save()

    def _launch_spec(self, rec: InstanceRecord) -> runtime.LaunchSpec:
        offer = self.catalogue.offers[rec.offer_id]
        env = instance_environment(
            instance_id=rec.id,
            instance_api_key=rec.api_key,
            ssh_port=rec.direct_port or rec.ssh_port or 0,
            ssh_public_key=rec.authorized_keys[0].strip() if rec.authorized_keys else "",
            gpu_count=int(offer["num_gpus"]),
            account_env=dict(self.store.data.secrets),
            create_env=container_env_entries(rec.env),
            api_url=self.settings.api_url(),
        )
        directory = self.instance_dir(rec.id)
        runtime.prepare_dirs(directory, rec.disk)
        runtime.write_config(directory, rec.id, rec.ssh_port or 0, network_environment(), rec.onstart)
        runtime.write_authorized_keys(directory, rec.authorized_keys + [k["key"] for k in rec.attached_keys])
        return runtime.LaunchSpec(
            instance_id=rec.id,
            instance_dir=directory,
            base_venv=self.settings.base_venv,
            env=env,
            ssh_delay_s=float(rec.faults.pop("ssh_refused_s", 0.0) or 0.0),  # once: the start it was meant for
            uv_cache=self.settings.uv_cache,
        )

    # ----- timed faults --------------------------------------------------------------------------------------
    def _schedule_after_running(self, rec: InstanceRecord, generation: int) -> None:
        """Start the timers of the faults bound to an instance that has just become (or already is) running."""
        faults = rec.faults
        if faults.get("status"):
            self._later(float(faults["status"]["after_s"]), self._halt, rec.id, generation, faults["status"]["status"])
        if faults.get("preempt"):
            preempt = faults["preempt"]
            delay = float(preempt["at"]) - time.time() if preempt.get("at") is not None else float(preempt["after_s"])
            self._later(max(delay, 0.0), self._halt, rec.id, generation, "preempted")
        if faults.get("restart"):
            self._later(float(faults["restart"]["after_s"]), self._restart, rec.id, generation)
        if faults.get("sshd_dies"):
            self._later(float(faults["sshd_dies"]["after_s"]), self._sshd_dies, rec.id, generation)
        if faults.get("disk_free"):
            self._later(0.0, self._free_disk, rec.id)
        if faults.get("disk_full"):
            self._later(float(faults["disk_full"]["after_s"]), self._fill_disk, rec.id, generation)

    def _later(self, delay: float, fn: Callable[..., None], *args: Any) -> None:
        timer = threading.Timer(delay, fn, args)
        timer.daemon = True
        with self.store.lock:
            self._timers = [t for t in self._timers if t.is_alive()] + [timer]
        timer.start()

    def _halt(self, instance_id: int, generation: int, how: str) -> None:
        """The host went away (exited/offline) or the bid lost (preempted): processes die, the disk stays."""
        with self._op_lock(instance_id):
            with self.store.lock:
                rec = self.store.data.instances.get(instance_id)
                flag = "preempt" if how == "preempted" else "status"
                if rec is None or not self._current(instance_id, generation) or not rec.faults.get(flag):
                    return  # an earlier start's timer, or the fault was reset meanwhile
                generation = self._bump(instance_id)
            self._kill(instance_id)
            with self.store.lock:
                rec = self.store.data.instances.get(instance_id)
                if rec is None:
                    return
                rec.running_since = None
                rec.faults.pop("status", None)
                preempt = rec.faults.pop("preempt", None) or {}
                rec.faults["halted"] = how
                if how == "preempted":
                    # Vast's outbid signal: cur_state == intended_status == next_state == "stopped".
                    rec.intended_status = "stopped"
                    resume = preempt.get("resume_after_s")
                    if resume is not None:
                        rec.faults["resume_at"] = time.time() + float(resume)
                        self._later(float(resume), self._resume, instance_id, generation)
                self._set_status(rec, "stopped" if how == "preempted" else how, HALT_MESSAGES[how])
                self.store.save()

    def _resume(self, instance_id: int, generation: int) -> None:
        """The bid wins again: the preempted container starts by itself (onstart again, disk kept)."""
        with self.store.lock:
            rec = self.store.data.instances.get(instance_id)
            if rec is None or not self._current(instance_id, generation) or not rec.faults.pop("resume_at", None):
                return
            self._daemon_log(instance_id, "bid won again: resuming the preempted instance")
        self._start_again(instance_id, generation, "Bid won again: starting instance")

    def _restart(self, instance_id: int, generation: int) -> None:
        """The host or its container restarted: every process dies, the container starts again by itself."""
        with self.store.lock:
            rec = self.store.data.instances.get(instance_id)
            if rec is None or not self._current(instance_id, generation) or not rec.faults.pop("restart", None):
                return
            self._daemon_log(instance_id, "fault restart: the host restarts the container")
        self._start_again(instance_id, generation, "Host restarted: starting container")

    def _start_again(self, instance_id: int, generation: int, msg: str) -> None:
        """Kill whatever runs, then boot as ``start`` does, without the user asking (intended_status running)."""
        with self._op_lock(instance_id):
            with self.store.lock:
                if not self._current(instance_id, generation):
                    return
                generation = self._bump(instance_id)
            self._kill(instance_id)
            with self.store.lock:
                rec = self.store.data.instances.get(instance_id)
                if rec is None:
                    return
                rec.intended_status = "running"
                rec.running_since = None
                rec.faults.pop("halted", None)
                self._set_status(rec, "loading", msg)
                self.store.save()
        self._start_boot(instance_id, generation)

    def _sshd_dies(self, instance_id: int, generation: int) -> None:
        """Only sshd dies: the API still says running, other processes go on, connections are refused."""
        with self._op_lock(instance_id):
            with self.store.lock:
                rec = self.store.data.instances.get(instance_id)
                if rec is None or not self._current(instance_id, generation) or not rec.faults.pop("sshd_dies", None):
                    return
                init = self._init_pid(instance_id)
                self.store.save()
            killed = runtime.kill_sshd(init) if init else []
            self._daemon_log(instance_id, f"fault sshd_dies: killed sshd (pids {killed}); the instance stays running")

    def _fill_disk(self, instance_id: int, generation: int) -> None:
        """Fill /workspace until ``free_bytes`` are left: writes inside the instance get ENOSPC."""
        with self._op_lock(instance_id):
            with self.store.lock:
                rec = self.store.data.instances.get(instance_id)
                if rec is None or not self._current(instance_id, generation):
                    return
                spec = rec.faults.pop("disk_full", None)
                init = self._init_pid(instance_id)
                sized = (self.instance_dir(instance_id) / disk.IMAGE_NAME).exists()
                if spec and init and sized:
                    rec.faults["disk_filled"] = True
                self.store.save()
            if not spec or not init:
                return
            if not sized:  # a pre-image instance: its /workspace is a host directory; filling it fills the host
                self._daemon_log(instance_id, "fault disk_full ignored: this instance's disk has no size")
                return
            try:
                left = disk.fill(init, int(spec["free_bytes"]))
            except OSError as exc:  # the instance died meanwhile
                self._daemon_log(instance_id, f"fault disk_full failed: {exc}")
                return
            self._daemon_log(instance_id, f"fault disk_full: /workspace filled, {left} bytes free")
        if spec.get("for_s") is not None:
            self._later(float(spec["for_s"]), self._free_disk, instance_id)

    def _free_disk(self, instance_id: int) -> None:
        """Remove the fill of disk_full now, or at the next start if the instance is not running."""
        with self._op_lock(instance_id):
            with self.store.lock:
                rec = self.store.data.instances.get(instance_id)
                if rec is None:
                    return
                init = self._init_pid(instance_id) if rec.actual_status == "running" else None
            freed = False
            if init:
                try:
                    disk.unfill(init)
                    freed = True
                except OSError as exc:  # the instance died meanwhile: its next start removes the fill
                    self._daemon_log(instance_id, f"disk_free failed: {exc}")
            with self.store.lock:
                if freed:
                    rec.faults.pop("disk_free", None)
                    rec.faults.pop("disk_filled", None)
                    self._daemon_log(instance_id, "disk_full cleared: the fill is removed")
                else:
                    rec.faults["disk_free"] = True
                self.store.save()

    def _init_pid(self, instance_id: int) -> int | None:
        """The instance's PID 1 (host pid) while its processes run; call with the store lock held."""
        popen = self._procs.get(instance_id)
        return runtime.init_pid(popen.pid) if popen is not None and popen.poll() is None else None

    def apply_fault(self, fault: Fault) -> list[int]:
        """Bind an instance-targeted fault; returns the ids of the existing instances it hit."""
        if fault.target == "next_create":
            self.faults.queue_for_create(fault)
            return []
        with self.store.lock:
            if "instance_id" in fault.target:
                hit = [self._record(fault.target["instance_id"])]
            else:
                label = fault.target["label"]
                hit = [r for r in self.store.data.instances.values() if r.label == label]
                if not hit:
                    self.faults.hold_for_label(label, fault)
                    return []
            for rec in hit:
                rec.faults.update(instance_fault_state(fault))
                if rec.actual_status == "running" and fault.kind in TIMED_KINDS:
                    self._schedule_after_running(rec, self._generation.get(rec.id, 0))
                if rec.actual_status == "running" and fault.kind in ("ssh_eof", "direct_blocked"):
                    if fault.kind == "ssh_eof":  # now, not at the next start
                        rec.faults["ssh_eof_until"] = time.time() + float(rec.faults.pop("ssh_eof_s"))
                    self._route_direct(rec)
            self.store.save()
            return [r.id for r in hit]

    def clear_instance_faults(self) -> None:
        """Drop pending instance faults, cancel pending resumes and give filled disks their space back."""
        with self.store.lock:
            for rec in self.store.data.instances.values():
                for key in (*PENDING_FAULT_KEYS, "resume_at"):
                    rec.faults.pop(key, None)
            self.store.data.gone_offers.clear()
            for rec in self.store.data.instances.values():
                if rec.direct_port is not None:  # a blocked or faulty direct port: sshd's own again, now
                    self.gateway.close(rec.direct_port)
                    rec.direct_port = None
            self.store.save()
            filled = [r.id for r in self.store.data.instances.values() if r.faults.get("disk_filled")]
        for instance_id in filled:
            self._free_disk(instance_id)

    # ----- processes -----------------------------------------------------------------------------------------
    def _kill(self, instance_id: int) -> None:
        with self.store.lock:
            popen = self._procs.pop(instance_id, None)
            rec = self.store.data.instances.get(instance_id)
            pid = rec.runtime_pid if rec else None
        if popen is not None:
            runtime.terminate(popen.pid, popen)
        elif pid and runtime.belongs_to(pid, self.instance_dir(instance_id)):
            runtime.terminate(pid)
        with self.store.lock:
            if rec is not None:
                rec.runtime_pid = None

    # ----- operations ----------------------------------------------------------------------------------------
    def destroy(self, instance_id: int) -> None:
        with self._op_lock(instance_id):
            with self.store.lock:
                self._record(instance_id)
                self._bump(instance_id)
            self._kill(instance_id)
            with self.store.lock:
                rec = self.store.data.instances.pop(instance_id, None)
                self.store.save()
            if rec is not None:
                self.gateway.close(rec.proxy_port)
                self.gateway.close(rec.direct_port)
            shutil.rmtree(self.instance_dir(instance_id), ignore_errors=True)

    def stop(self, instance_id: int) -> None:
        with self._op_lock(instance_id):
            with self.store.lock:
                rec = self._record(instance_id)
                rec.intended_status = "stopped"
                self._bump(instance_id)
            self._kill(instance_id)
            with self.store.lock:
                rec.running_since = None
                rec.faults.pop("halted", None)
                rec.faults.pop("resume_at", None)  # the user decides now, not the bid
                self._set_status(rec, "stopped", "Instance stopped")
                self.store.save()

    def start(self, instance_id: int) -> None:
        with self._op_lock(instance_id):
            with self.store.lock:
                rec = self._record(instance_id)
                if rec.actual_status in ("running", *PENDING) and rec.intended_status == "running":
                    return
                rec.intended_status = "running"
                rec.faults.pop("halted", None)
                rec.faults.pop("resume_at", None)
                generation = self._bump(instance_id)
            self._kill(instance_id)
            with self.store.lock:
                self._set_status(rec, "loading", "Starting instance")
                self.store.save()
        self._start_boot(instance_id, generation)

    def reboot(self, instance_id: int) -> None:
        with self._op_lock(instance_id):
            with self.store.lock:
                rec = self._record(instance_id)
                rec.intended_status = "running"
                rec.faults.pop("halted", None)
                rec.faults.pop("resume_at", None)
                generation = self._bump(instance_id)
                self._set_status(rec, "rebooting", "Rebooting instance")
                self.store.save()
            self._kill(instance_id)
        self._start_boot(instance_id, generation)

    def set_label(self, instance_id: int, label: str | None) -> None:
        if label is not None and len(str(label)) > MAX_LABEL:
            raise ApiError(400, "label_too_long", f"Label is longer than {MAX_LABEL} characters")
        with self.store.lock:
            self._record(instance_id).label = None if label is None else str(label)
            self.store.save()

    def attach_key(self, instance_id: int, key: str) -> dict[str, Any]:
        with self.store.lock:
            rec = self._record(instance_id)
            entry = {"id": self.store.data.next_ssh_key_id, "key": key.strip(), "created_at": _iso_now()}
            self.store.data.next_ssh_key_id += 1
            rec.attached_keys.append(entry)
            self.store.save()
            self._refresh_keys(rec)
            return entry

    def detach_key(self, instance_id: int, key_id: int) -> None:
        with self.store.lock:
            rec = self._record(instance_id)
            before = len(rec.attached_keys)
            rec.attached_keys = [k for k in rec.attached_keys if k["id"] != key_id]
            if len(rec.attached_keys) == before:
                raise ApiError(404, "no_such_key", f"SSH key {key_id} is not attached to instance {instance_id}")
            self.store.save()
            self._refresh_keys(rec)

    def _refresh_keys(self, rec: InstanceRecord) -> None:
        directory = self.instance_dir(rec.id)
        if (directory / "home/.ssh").is_dir():
            runtime.write_authorized_keys(directory, rec.authorized_keys + [k["key"] for k in rec.attached_keys])

    def log_text(self, instance_id: int, tail: Any, grep: Any, daemon_logs: bool) -> str:
        with self.store.lock:
            self._record(instance_id)
        logs = self.instance_dir(instance_id) / "logs"
        names = ["daemon.log"] if daemon_logs else ["onstart.log"]
        lines: list[str] = []
        for name in names:
            path = logs / name
            if path.exists():
                lines += path.read_text(errors="replace").splitlines()
        if grep:
            lines = [line for line in lines if str(grep) in line]
        try:
            count = int(tail) if tail not in (None, "") else 1000
        except (TypeError, ValueError) as exc:
            raise invalid_args(f"tail must be a number of lines, got {tail!r}") from exc
        return "\n".join(lines[-count:] if count > 0 else []) + "\n"

    # ----- views ---------------------------------------------------------------------------------------------
    def _row_of(self, rec: InstanceRecord) -> dict[str, Any]:
        return with_null_fields(public_row(rec, self.catalogue.offers[rec.offer_id]), rec)

    @staticmethod
    def _listed(rec: InstanceRecord) -> bool:
        return rec.hidden_until is None or time.time() >= rec.hidden_until

    def rows(self) -> list[dict[str, Any]]:
        with self.store.lock:
            return [self._row_of(r) for r in self.store.data.instances.values() if self._listed(r)]

    def row(self, instance_id: int) -> dict[str, Any] | None:
        with self.store.lock:
            rec = self.store.data.instances.get(instance_id)
            return self._row_of(rec) if rec and self._listed(rec) else None

    def debug_view(self) -> list[dict[str, Any]]:
        """For /_emulator/state: the public row plus where its files and processes are (no keys)."""
        with self.store.lock:
            out = []
            for rec in self.store.data.instances.values():
                popen = self._procs.get(rec.id)
                out.append(
                    {
                        **self._row_of(rec),
                        "_emulator": {
                            "offer_id": rec.offer_id,
                            "dir": str(self.instance_dir(rec.id)),
                            "runtime_pid": rec.runtime_pid,
                            "processes_alive": bool(popen and popen.poll() is None),
                            "faults": dict(rec.faults),
                            "attached_key_ids": [k["id"] for k in rec.attached_keys],
                            "sshd_port": rec.ssh_port,
                            "requested_image": rec.requested_image,
                            "hidden_until": rec.hidden_until,
                        },
                    }
                )
            return out

    # ----- emulator lifecycle --------------------------------------------------------------------------------
    def restore(self) -> None:
        """After an emulator restart: end leftover processes, then bring back instances meant to be running."""
        with self.store.lock:
            records = list(self.store.data.instances.values())
        for rec in records:
            if rec.runtime_pid and runtime.belongs_to(rec.runtime_pid, self.instance_dir(rec.id)):
                runtime.terminate(rec.runtime_pid)
            with self.store.lock:
                self._open_proxy(rec)  # the same port when it is still free
                rec.direct_port = None  # routed again at the next start
                rec.runtime_pid = None
                rec.running_since = None
                generation = self._bump(rec.id)
                boot = rec.intended_status == "running" and not rec.faults.get("halted")
                if boot:
                    self._set_status(rec, "loading", "Emulator restarted: starting instance")
                elif rec.intended_status == "stopped":
                    self._set_status(rec, "stopped", rec.status_msg)
                resume_at = rec.faults.get("resume_at")
                self.store.save()
            if boot:
                self._start_boot(rec.id, generation)
            elif resume_at is not None:  # preempted with resume_after_s: the bid still wins back on time
                self._later(max(float(resume_at) - time.time(), 0.0), self._resume, rec.id, generation)

    def shutdown(self) -> None:
        """End every instance's processes; their records stay as they are, so a restart brings them back."""
        self._closing.set()
        with self.store.lock:
            timers = list(self._timers)
            ids = set(self._procs) | set(self.store.data.instances)
        for timer in timers:
            timer.cancel()
        for instance_id in ids:
            # A boot in flight holds this lock; once it is ours, that boot has launched (we kill it) or seen
            # the closing flag (it launches nothing).
            with self._op_lock(instance_id):
                self._kill(instance_id)
        self.gateway.shutdown()
        with self.store.lock:
            self.store.save()


def _iso_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
