#!/usr/bin/python
# SPDX-License-Identifier: MIT
"""Ansible module: one Vast.ai instance per label (a run's name), with failover."""
# ruff: noqa: E402 - Ansible modules put DOCUMENTATION before the imports.

from __future__ import annotations

DOCUMENTATION = r"""
module: vast_instance
short_description: Create, start, stop or destroy Vast.ai instances identified by label
description:
  - Makes sure an instance with a given O(label) (the run's name) is in the wanted O(state).
    The label is the identity, so a second run with the same label changes nothing and never creates a
    second instance.
  - A new instance is rented on O(offer_id), or on the best offer the search options find.
  - With O(wait), the module returns only when the instance is C(running) and answers an SSH login with
    O(ssh_key_file) (a real handshake, not a port probe).
  - B(Failover.) When the offer is gone, the instance sits in C(loading) past O(loading_timeout), does not
    answer SSH in time, or lands in C(exited), C(offline) or C(unknown), the module destroys what this
    attempt created, verifies the destroy, excludes that machine and tries the next offer, up to
    O(max_attempts). If a destroy cannot be verified it stops and says so, because a retry could create a
    duplicate paid instance.
  - Any error after a create (an unexpected exception included) destroys that attempt's instance before the
    module fails, and the failure still reports RV(created_ids) and RV(terminated_ids).
  - B(Interrupts.) SIGINT, SIGTERM or SIGHUP (Ctrl-C of C(ansible-playbook) reaches the module process
    through its worker), or the death of the C(ansible-playbook) process, while the module waits; it
    destroys what this call created, verifies it is gone, and fails with C(INTERRUPTED).
  - B(Journal.) Before each create the module writes a local journal entry (C(~/.cache/vastkit/journal),
    or C($VASTKIT_STATE_DIR)) and removes it once the instance is returned or destroyed; every create carries
    the marker C(VASTKIT_OWNER) and a unique create token in its environment. A later call for the same label
    (and M(universal_simulator.vastai.vast_journal)) destroys what a controller killed mid-launch left, and only
    that.
  - After a create that failed with a server error or a timeout (120 s), its create token is looked up for
    O(create_lookup_window) seconds before anything else is rented, because the create may have happened.
    Instances of the label that this call created beyond the one it returns are destroyed at the end.
  - B(One launch per label.) A local lock keeps two calls for one label on this machine apart (the second
    fails at once, naming the first). Across machines the lowest instance id of the label wins, and the
    other call destroys its own instance and fails.
  - An instance that disappears while the module waits for it was torn down by someone, so the module fails
    instead of renting a replacement.
  - B(Progress.) While it rents and waits the module prints a line per event on the controller (see
    O(progress_file)); a task with C(no_log) prints none.
  - A 429 or 5xx answer while waiting is not counted against the instance; the wait goes on.
  - A stopped instance (an outbid interruptible one included, even when it reports C(exited)) and
    O(state=running) (a preempted run relaunched) is started; if it does not come
    back within O(loading_timeout) it is destroyed and a new instance is created in its place.
  - In check mode nothing is written to the API; the result's RV(plan) says what would happen, with the
    chosen offer and its price, and the O(env) names with their values masked.
version_added: "0.1.0"
author: universal_simulator maintainers (!UNKNOWN)
options:
  state:
    description:
      - V(present) an instance with the label exists (created if missing); a stopped one stays stopped.
      - V(running) as V(present), and a stopped one is started.
      - V(stopped) the instance is stopped (GPU billing stops; disk is kept and still billed).
      - V(absent) every instance with the label (or O(instance_id)) is destroyed, which stops all billing.
      - With V(present) or V(running), an instance in C(exited), C(offline) or C(unknown) never recovers and
        is replaced.
    type: str
    choices: [present, running, stopped, absent]
    default: present
  label:
    description:
      - The instance's identity, normally the run name. With O(exact_count), the prefix of the labels
        C(<label>-1) ... C(<label>-N).
    type: str
  instance_id:
    description: Act on this instance instead of looking a label up (V(running), V(stopped), V(absent)).
    type: int
  exact_count:
    description:
      - Keep exactly this many instances labelled C(<label>-1) ... C(<label>-<exact_count>), creating the
        missing ones (in parallel) and destroying those with a higher index.
    type: int
  offer_id:
    description:
      - Rent this offer (from M(universal_simulator.vastai.vast_offer_info)) without searching. Failover then
        needs search options (at least O(gpu_name)); without them a failed first attempt is final.
    type: int
  image:
    description:
      - Docker image of a new instance. The default is Vast's automatic tag, which resolves to the newest CUDA
        build the host's driver supports; the search leaves out hosts whose driver cannot start the image
        (C(cuda_max_good) below the CUDA its tag names, 12.6 for the automatic tag) unless O(min_cuda) is given.
    type: str
    default: "vastai/pytorch:@vastai-automatic-tag"
  env:
    description:
      - Environment of a new instance, possibly secret. Values are C(no_log) and masked in the plan.
      - Prefer Vast account env-vars (M(universal_simulator.vastai.vast_env_var)) for credentials; every
        instance gets those.
    type: dict
    default: {}
  public_env:
    description:
      - Environment of a new instance that is not secret (a run name, an API URL), shown in the plan.
      - Kept apart from O(env) because C(no_log) values are masked wherever they occur in the output.
    type: dict
    default: {}
  onstart:
    description: Script run when the instance starts. Keep it short and static; never put secrets in it.
    type: str
  bid_price:
    description:
      - Bid in USD per hour. Makes the instance interruptible (searches bid offers).
      - Required with O(interruptible=true).
    type: float
  runtype:
    description: Vast launch mode. The default asks for direct SSH where the host allows it, else the proxy.
    type: str
    default: ssh_direc ssh_proxy
  wait:
    description: Wait until the instance is running and answers SSH (or, for O(state=absent), is gone).
    type: bool
    default: true
  wait_timeout:
    description: Seconds all attempts together may take.
    type: float
    default: 1800
  loading_timeout:
    description:
      - Seconds one attempt may take to reach C(running) and answer SSH before it counts as stuck and is
        replaced (new instances, and stopped ones this module started).
    type: float
    default: 600
  poll_interval:
    description: Seconds between status polls.
    type: float
    default: 5
  ssh_key_file:
    description:
      - Private key for the SSH handshake that proves a new instance is usable. Its public key must be
        registered on the account first (M(universal_simulator.vastai.vast_ssh_key)).
      - Without it, O(wait) stops at C(running).
    type: path
  attach_ssh_key:
    description:
      - Attach the public half of O(ssh_key_file) to each instance this creates. For team API keys, which cannot
        register account keys (M(universal_simulator.vastai.vast_ssh_key) returns
        RV(universal_simulator.vastai.vast_ssh_key#module:team_key)); with a personal key the account's
        registered keys decide who gets in.
    type: bool
    default: false
  max_attempts:
    description: Most create attempts (offers tried) per label.
    type: int
    default: 3
  create_lookup_window:
    description:
      - Seconds to look for the instance of a create that answered with a server error or a timeout (it may
        have been created) before trying another offer.
    type: float
    default: 60
  progress_file:
    description:
      - File to append one line per event to while the module rents and waits (the offer tried, the
        instance's state as it changes and every 30 s while it does not, SSH ready, each failover's destroy).
      - The module's action plugin sets it and prints each line on the controller as it is written, because
        a module's own output only arrives when it ends. Set it only to read the lines yourself.
    type: path
extends_documentation_fragment:
  - universal_simulator.vastai.vast
  - universal_simulator.vastai.vast.search
attributes:
  idempotent:
    details: The label is the identity; a repeated call with the same label changes nothing.
seealso:
  - module: universal_simulator.vastai.vast_offer_info
  - module: universal_simulator.vastai.vast_instance_info
  - module: universal_simulator.vastai.vast_ssh_key
"""

EXAMPLES = r"""
- name: One RTX 4090 for run burgers32-a, running and reachable over SSH
  universal_simulator.vastai.vast_instance:
    label: burgers32-a
    state: running
    gpu_name: RTX_4090
    num_gpus: 1
    min_reliability: 0.98
    max_dph: 0.6
    disk: 64
    public_env:
      TRAIN_RUN_NAME: burgers32-a
    ssh_key_file: ~/.ssh/id_ed25519
    loading_timeout: 600
  register: launched

- name: Rent a specific offer, no search (fastest)
  universal_simulator.vastai.vast_instance:
    label: burgers32-b
    offer_id: 10000101
    state: running
    ssh_key_file: ~/.ssh/id_ed25519

- name: Four identical workers, burgers32-sweep-1 .. -4
  universal_simulator.vastai.vast_instance:
    label: burgers32-sweep
    exact_count: 4
    state: running
    gpu_name: RTX_4090

- name: Stop the run's instance, keeping its disk
  universal_simulator.vastai.vast_instance:
    label: burgers32-a
    state: stopped

- name: Destroy it (all billing stops)
  universal_simulator.vastai.vast_instance:
    label: burgers32-a
    state: absent
"""

RETURN = r"""
instance:
  description: The instance, when one label (or instance_id) was managed and it exists.
  returned: when an instance exists after the call
  type: dict
  sample:
    id: 20000001
    label: burgers32-a
    machine_id: 40001
    actual_status: running
    gpu_name: RTX 4090
    num_gpus: 1
    dph_total: 0.3612
    ssh: {host: 203.0.113.11, port: 40022, user: root}
    ssh_command: ssh -p 40022 root@203.0.113.11
instances:
  description: Every instance managed by the call (one per label).
  returned: always
  type: list
  elements: dict
instance_ids:
  description: Ids of the instances that exist after the call.
  returned: always
  type: list
  elements: int
changed_ids:
  description: Ids of instances created, started or stopped by this call.
  returned: always, also on failure
  type: list
  elements: int
created_ids:
  description: Ids of instances created by this call (the ones a later failure of the run may destroy).
  returned: always, also on failure
  type: list
  elements: int
recovered:
  description:
    - What the local journal named for this label (creates a killed launch never handed over) and what
      became of each (C(destroyed), C(already_gone), C(pending), C(destroy_failed)).
  returned: always
  type: list
  elements: dict
terminated_ids:
  description: Ids of instances destroyed by this call (failover cleanup included).
  returned: always, also on failure
  type: list
  elements: int
attempts:
  description:
    - What happened on each try, in order. C(outcome) is one of C(running), C(created), C(offer_gone),
      C(stuck_loading), C(ssh), C(ssh_auth) (the key was refused; no further attempt), C(failed), C(stopped),
      C(gone) (torn down meanwhile; no further attempt), C(api_unavailable), C(api_error), C(lost_tie)
      (another launch of the label won), C(interrupted), C(error); C(destroyed) tells whether the instance of
      that attempt was destroyed.
  returned: always
  type: list
  elements: dict
  sample:
    - {number: 1, action: create, offer_id: 10000101, machine_id: 40001, outcome: offer_gone, destroyed: false}
    - {number: 2, action: create, offer_id: 10000102, instance_id: 20000001, outcome: stuck_loading,
       destroyed: true}
    - {number: 3, action: create, offer_id: 10000103, instance_id: 20000002, outcome: running}
cost_per_hour:
  description: Estimated USD per hour of the instances that exist after the call (or would, in check mode).
  returned: always
  type: float
plan:
  description: In check mode, what the call would do per label (action, offer, price, disk, image, onstart,
    env names with masked values).
  returned: in check mode
  type: list
  elements: dict
"""

import re
import traceback
from concurrent.futures import ThreadPoolExecutor

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.universal_simulator.vastai.plugins.module_utils.vast_common import (
    SEARCH_KEYS,
    QueryError,
    VastAPIError,
    VastModuleContext,
    check_disk,
    describe_search,
    instance_facts,
    offer_summary,
    search_argument_spec,
    search_offers,
    unknown_gpu_message,
    vast_argument_spec,
)
from ansible_collections.universal_simulator.vastai.plugins.module_utils.vast_provisioner import (
    FAILED,
    OWNER_ENV,
    OWNER_VALUE,
    STOPPED,
    Cancel,
    CleanupFailed,
    CreateSpec,
    Interrupted,
    Journal,
    Outcome,
    ProgressFile,
    Provisioner,
    ProvisionError,
    RunBusy,
    RunLock,
    WaitSpec,
    is_gone,
    phase,
    recover,
    signals_trip,
)

MASK = "********"


class InstanceManager:
    """The module's work for one call: dispatch on `state`, per label."""

    def __init__(self, module, ctx: VastModuleContext, cancel: Cancel, progress=None):
        self.module = module
        self.ctx = ctx
        self.params = module.params
        self.check = module.check_mode
        self.cancel = cancel
        self.progress = progress  # one line per event, for the controller to print while we wait
        self.outcomes: list[Outcome] = []  # every label's, as they go: a failure still reports them
        self.recovered: list[dict] = []

    # -- entry points ----------------------------------------------------------------------------------

    def run(self) -> dict:
        if self.params["state"] in ("present", "running"):
            self.validate_search(self.ctx.api)
        if self.params["exact_count"] is not None:
            return self.exact_count()
        if self.params["instance_id"] is not None:
            outcome, plan = self.by_id(self.ctx.api, self.params["instance_id"])
        else:
            outcome, plan = self.ensure(self.ctx.api, self.params["label"])
        return self.report([outcome], [plan] if plan else [])

    def exact_count(self) -> dict:
        prefix, count = self.params["label"], self.params["exact_count"]
        labels = [f"{prefix}-{i}" for i in range(1, count + 1)]
        pattern = re.compile(rf"^{re.escape(prefix)}-(\d+)$")
        extras = [i for i in self.ctx.api.list_instances(label_prefix=f"{prefix}-")
                  if (m := pattern.match(i.label or "")) and int(m.group(1)) > count and not is_gone(i)]
        trimmed = self.new_outcome()
        plans = []
        for extra in extras:
            if self.check:
                plans.append(dict(label=extra.label, action="destroy", instance_id=extra.id))
            else:
                self.destroy(self.ctx.api, extra, trimmed)
        if self.check:
            results = [self.ensure(self.ctx.api, label) for label in labels]
        else:
            # One client per thread: waits run side by side, so N instances take about as long as one.
            with ThreadPoolExecutor(max_workers=min(8, max(1, count))) as pool:
                results = list(pool.map(lambda lb: self.ensure(self.ctx.new_client(), lb), labels))
        plans.extend(plan for _outcome, plan in results if plan)
        outcomes = [outcome for outcome, _plan in results]
        report = self.report(outcomes, plans)  # the trimmed ones are among the terminated_ids
        report["changed"] = report["changed"] or bool(extras)
        return report

    # -- one label ---------------------------------------------------------------------------------------

    def new_outcome(self) -> Outcome:
        outcome = Outcome(instance=None)
        self.outcomes.append(outcome)
        return outcome

    def ensure(self, api, label: str):
        """(Outcome, plan or None) for one label in the wanted state."""
        state = self.params["state"]
        if state in ("present", "running") and not self.check:
            # One launch per label on this machine; the lock also proves a journal of this label is a dead one's.
            with RunLock(label, api.settings.url):
                self.recover(api, label)
                return self._ensure(api, label, state)
        return self._ensure(api, label, state)

    def recover(self, api, label: str) -> None:
        """Destroy what a killed launch of this label left (its journal; we hold the label's lock)."""
        outcome = self.new_outcome()
        found = recover(api, Journal(label, api.settings.url), self.provisioner(api, None, label).destroy_verified)
        for item in found:
            self.recovered.append(item.to_dict())
            if item.outcome == "destroyed":
                outcome.terminated_ids.append(item.instance_id)
        failed = [item for item in found if item.outcome == "destroy_failed"]
        if failed:
            raise CleanupFailed(
                f"instance {failed[0].instance_id}, created by an earlier launch of {label!r} that was killed before "
                f"handing it over, could not be destroyed: {failed[0].detail}", [])

    def _ensure(self, api, label: str, state: str):
        outcome = self.new_outcome()
        existing = [i for i in api.list_instances(label=label) if not is_gone(i)]
        if state == "absent":
            return self.absent(api, existing, outcome, label)
        if len(existing) > 1:
            raise ProvisionError(
                f"{len(existing)} instances are labelled {label!r} (ids {sorted(i.id for i in existing)}); a label "
                f"must identify one run. Destroy the extra ones with state=absent instance_id=<id>", [])
        current = existing[0] if existing else None
        if state == "stopped":
            return self.stopped(api, current, outcome, label)
        return self.present(api, current, outcome, label)

    def by_id(self, api, instance_id: int):
        outcome = self.new_outcome()
        current = api.get_instance(instance_id)
        current = None if is_gone(current) else current
        state = self.params["state"]
        if state == "absent":
            return self.absent(api, [current] if current else [], outcome, f"id {instance_id}")
        if current is None:
            self.module.fail_json(msg=f"instance {instance_id} does not exist; to create one, give a label")
        if state == "stopped":
            return self.stopped(api, current, outcome, current.label)
        if phase(current) == FAILED:
            self.module.fail_json(msg=f"instance {instance_id} is {current.actual_status} and will not recover; "
                                      f"destroy it (state=absent) or manage it by label to have it replaced")
        return self.present(api, current, outcome, current.label)

    def absent(self, api, existing: list, outcome: Outcome, label):
        if self.check:
            plan = dict(label=label, action="destroy" if existing else "none",
                        instance_ids=[i.id for i in existing])
            return outcome, plan
        for instance in existing:
            self.destroy(api, instance, outcome)
        return outcome, None

    def stopped(self, api, current, outcome: Outcome, label):
        if current is None:
            return outcome, (dict(label=label, action="none", reason="no such instance") if self.check else None)
        outcome.instance = current
        if phase(current) in (STOPPED, FAILED):
            return outcome, (dict(label=label, action="none", instance_id=current.id) if self.check else None)
        if self.check:
            return outcome, dict(label=label, action="stop", instance_id=current.id)
        api.stop_instance(current.id)
        outcome.changed_ids.append(current.id)
        outcome.instance = api.get_instance(current.id) or current
        return outcome, None

    def present(self, api, current, outcome: Outcome, label):
        provisioner = self.provisioner(api, current, label)
        # Stopped before failed: an outbid or stopped instance that reports `exited` is started, not replaced.
        state = phase(current) if current is not None else None
        if state == FAILED:
            if self.check:
                return outcome, self.create_plan(api, label, replaces=current)
            self.destroy(api, current, outcome, provisioner)
            current = None
        if current is None:
            if self.check:
                return outcome, self.create_plan(api, label)
            return provisioner.launch(self.create_spec(label), offer_id=self.params["offer_id"], outcome=outcome), None
        if state == STOPPED:
            if self.params["state"] == "present":
                outcome.instance = current
                return outcome, (dict(label=label, action="none", instance_id=current.id) if self.check else None)
            if self.check:
                return outcome, dict(label=label, action="start", instance_id=current.id,
                                     dph_total=current.dph_total)
            back = provisioner.start(current, outcome)
            if back is not None:
                outcome.instance = back
                return outcome, None
            excluded = {current.machine_id} if current.machine_id is not None else set()
            return provisioner.launch(self.create_spec(label), outcome=outcome, excluded_machines=excluded), None
        if self.check:
            outcome.instance = current
            return outcome, dict(label=label, action="none", instance_id=current.id, status=current.actual_status)
        outcome.instance = provisioner.reuse(current, outcome)
        return outcome, None

    # -- helpers -------------------------------------------------------------------------------------------

    def provisioner(self, api, current, label: str | None) -> Provisioner:
        p = self.params
        wait = WaitSpec(wait=p["wait"], loading_timeout=p["loading_timeout"], wait_timeout=p["wait_timeout"],
                        poll=p["poll_interval"], ssh_key_file=p["ssh_key_file"],
                        lookup_window=p["create_lookup_window"])
        fallback = {}
        if not any(p.get(k) not in (None, [], "") for k in SEARCH_KEYS) and current is not None:
            # Replacing a known instance without search options: same GPU model and count.
            fallback = dict(gpu_name=current.gpu_name, num_gpus=current.num_gpus)

        def search(excluded: set):
            if p["offer_id"] is not None and not fallback and not any(
                    p.get(k) not in (None, [], "") for k in SEARCH_KEYS):
                raise ProvisionError(
                    f"offer {p['offer_id']} did not give a usable instance and no search options (gpu_name, ...) "
                    f"were given to fail over with", [])
            offers = search_offers(api, p, exclude_machine_ids=excluded, limit=max(5, p["max_attempts"] + 2),
                                   **fallback)
            if not offers and not excluded:
                raise ProvisionError(no_offer_message(api, dict(p, **fallback)), [])
            return offers

        journal = Journal(label, api.settings.url) if label and not self.check else None
        say = self.progress or (lambda _msg: None)
        who = label or (f"instance {current.id}" if current is not None else "launch")
        return Provisioner(api, wait, search=search, max_attempts=p["max_attempts"], journal=journal,
                           cancel=self.cancel, attach_launch_key=p["attach_ssh_key"] and bool(p["ssh_key_file"]),
                           log=lambda msg: say(f"{who}: {msg}"))

    def create_spec(self, label: str) -> CreateSpec:
        p = self.params
        env = {str(k): str(v) for k, v in {**p["public_env"], **p["env"]}.items()}
        return CreateSpec(label=label, image=p["image"], disk=p["disk"], env=env, onstart=p["onstart"],
                          bid_price=p["bid_price"], runtype=p["runtype"])

    def validate_search(self, api) -> None:
        """Bad search input fails before any create (in the main thread: fail_json exits)."""
        if self.params["offer_id"] is not None:
            return
        problem = unknown_gpu_message(api, self.params["gpu_name"])
        if problem:
            self.module.fail_json(msg=problem)

    def create_plan(self, api, label: str, replaces=None) -> dict:
        p = self.params
        if p["offer_id"] is not None:
            found = api.search_offers({"id": {"eq": int(p["offer_id"])}}, storage_gb=p["disk"], limit=1,
                                      offer_type="bid" if p["interruptible"] else "on-demand")
            offer = offer_summary(found[0]) if found else dict(
                id=p["offer_id"], dph_total=None, note="not available now: a launch would fail over to the search")
            alternatives = []
        else:
            offers = search_offers(api, p, limit=3)
            if not offers:
                self.module.fail_json(msg=no_offer_message(api, p))
            offer, alternatives = offer_summary(offers[0]), [offer_summary(o) for o in offers[1:]]
        plan = dict(
            label=label, action="create", offer=offer, dph_total=offer.get("dph_total"),
            alternatives=[dict(id=o["id"], gpu_name=o["gpu_name"], dph_total=o["dph_total"]) for o in alternatives],
            image=p["image"], disk=p["disk"], runtype=p["runtype"], onstart=p["onstart"],
            interruptible=bool(p["bid_price"]), bid_price=p["bid_price"],
            env={**{k: str(v) for k, v in p["public_env"].items()}, **{k: MASK for k in p["env"]},
                 OWNER_ENV: OWNER_VALUE},
        )
        if replaces is not None:
            plan.update(action="replace", replaces=dict(id=replaces.id, status=replaces.actual_status))
        return plan

    def destroy(self, api, instance, outcome: Outcome, provisioner: Provisioner | None = None) -> None:
        provisioner = provisioner or self.provisioner(api, None, None)
        try:
            if provisioner.destroy_verified(instance.id):
                outcome.terminated_ids.append(instance.id)
        except VastAPIError as exc:
            raise CleanupFailed(f"instance {instance.id} ({instance.label}) could not be destroyed and verified "
                                f"gone: {exc}", outcome.attempts, api_error=exc.as_dict()) from None

    def so_far(self) -> dict:
        """What every label's work has done up to now: reported on success and on any failure alike."""
        outcomes = list(self.outcomes)
        return dict(
            changed_ids=[i for o in outcomes for i in o.changed_ids],
            created_ids=[i for o in outcomes for i in o.created_ids],
            terminated_ids=[i for o in outcomes for i in o.terminated_ids],
            attempts=[a.to_dict() for o in outcomes for a in o.attempts],
            recovered=list(self.recovered),
        )

    def report(self, outcomes: list, plans: list) -> dict:
        instances = [instance_facts(o.instance) for o in outcomes if o.instance is not None]
        done = self.so_far()
        result = dict(
            changed=bool(done["changed_ids"] or done["terminated_ids"]) or any(
                pl.get("action") not in (None, "none") for pl in plans),
            instances=instances,
            instance_ids=[i["id"] for i in instances],
            cost_per_hour=round(sum(i["dph_total"] or 0.0 for i in instances if i["actual_status"] != "stopped"), 4),
            **done,
        )
        if len(outcomes) == 1 and instances and self.params["exact_count"] is None:
            result["instance"] = instances[0]
        if self.check:
            result["plan"] = plans
            result["cost_per_hour"] = round(sum(pl.get("dph_total") or 0.0 for pl in plans
                                                if pl.get("action") in ("create", "replace", "start")), 4)
        return result


def no_offer_message(api, params: dict) -> str:
    msg = f"no offer matches {describe_search(params)}"
    if params.get("max_dph") is not None:
        uncapped = search_offers(api, params, limit=1, max_dph=None)
        msg += (f"; without max_dph the cheapest match costs ${uncapped[0].dph_total:.4f}/h, raise max_dph/max_price"
                if uncapped else "; nothing matches even without max_dph: relax gpu_name/num_gpus/reliability")
    return msg


def main():
    argument_spec = vast_argument_spec(
        state=dict(type="str", choices=["present", "running", "stopped", "absent"], default="present"),
        label=dict(type="str"),
        instance_id=dict(type="int"),
        exact_count=dict(type="int"),
        offer_id=dict(type="int"),
        image=dict(type="str", default="vastai/pytorch:@vastai-automatic-tag"),
        env=dict(type="dict", default={}, no_log=True),
        public_env=dict(type="dict", default={}),
        onstart=dict(type="str"),
        bid_price=dict(type="float"),
        runtype=dict(type="str", default="ssh_direc ssh_proxy"),
        wait=dict(type="bool", default=True),
        wait_timeout=dict(type="float", default=1800),
        loading_timeout=dict(type="float", default=600),
        poll_interval=dict(type="float", default=5),
        ssh_key_file=dict(type="path"),
        attach_ssh_key=dict(type="bool", default=False),
        max_attempts=dict(type="int", default=3),
        create_lookup_window=dict(type="float", default=60),
        progress_file=dict(type="path"),
        **search_argument_spec(),
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        supports_check_mode=True,
        required_one_of=[("label", "instance_id")],
        mutually_exclusive=[("label", "instance_id"), ("instance_id", "exact_count")],
        required_by={"exact_count": "label"},
        required_if=[("interruptible", True, ("bid_price",))],
    )
    p = module.params
    check_disk(module, p["disk"])
    for name in ("max_attempts", "wait_timeout", "loading_timeout", "poll_interval"):
        if p[name] <= 0:
            module.fail_json(msg=f"{name}={p[name]}: must be positive")
    if p["exact_count"] is not None and p["exact_count"] < 0:
        module.fail_json(msg=f"exact_count={p['exact_count']}: must be 0 or more")
    if p["bid_price"] is not None:
        p["interruptible"] = True  # a bid makes the instance interruptible: search bid offers
    overlap = set(p["env"]) & set(p["public_env"])
    if overlap:
        module.fail_json(msg=f"env and public_env both set {', '.join(sorted(overlap))}; give each name once")

    ctx = VastModuleContext(module)
    # A Ctrl-C, SIGTERM or a dead ansible-playbook while we wait: the provisioner destroys what it created.
    cancel = Cancel(watch_controller=not module.check_mode)
    progress = ProgressFile(p["progress_file"]) if p["progress_file"] else None
    manager = InstanceManager(module, ctx, cancel, progress)
    try:
        with signals_trip(cancel):
            result = manager.run()
    except Interrupted as exc:
        cancel.trip(exc.why)  # threads (exact_count) clean up at their next poll; the pool waits for them
        done = manager.so_far()
        left = sorted(set(done["created_ids"]) - set(done["terminated_ids"]))
        module.fail_json(msg=f"INTERRUPTED ({exc.why}) while waiting: destroyed what this launch created "
                             f"({', '.join(map(str, done['terminated_ids'])) or 'nothing yet created'}, verified gone)"
                             + (f"; NOT verified gone: {left}" if left else ""), interrupted=True, **done)
    except RunBusy as exc:
        module.fail_json(msg=str(exc), **manager.so_far())
    except CleanupFailed as exc:
        module.fail_json(msg=f"CLEANUP FAILED, NOT RETRYING: {exc}", api_error=exc.api_error, **manager.so_far())
    except ProvisionError as exc:
        module.fail_json(msg=str(exc), api_error=exc.api_error, **manager.so_far())
    except QueryError as exc:
        ctx.fail_query(exc, **manager.so_far())
    except VastAPIError as exc:
        ctx.fail_api(exc, "Vast API call failed", **manager.so_far())
    except Exception as exc:  # a bug or an odd row: still say what exists (the provisioner destroyed its own)
        module.fail_json(msg=f"unexpected {type(exc).__name__}: {exc}", exception=traceback.format_exc(),
                         **manager.so_far())
    module.exit_json(**result)


if __name__ == "__main__":
    main()
