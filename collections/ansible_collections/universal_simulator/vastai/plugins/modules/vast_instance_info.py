#!/usr/bin/python
# SPDX-License-Identifier: MIT
"""Ansible module: list or show Vast.ai instances (read-only)."""
# ruff: noqa: E402 - Ansible modules put DOCUMENTATION before the imports.

from __future__ import annotations

DOCUMENTATION = r"""
module: vast_instance_info
short_description: List or show Vast.ai instances
description:
  - Shows one instance by id, or lists the account's instances filtered by run, label, label prefix, owner,
    status and age.
  - An empty O(run), O(label), O(label_prefix) or O(older_than) is an error (before any API call), because an
    unset shell variable must never select everything. Unlabelled instances never match a run, label or prefix.
  - With O(probes), each instance also gets the reaper's verdict (RV(instances[].reaper)), which reaps when its
    heartbeat is older than O(stale_after), when it has had no supervisor heartbeat or no SSH answer for
    O(stale_after) since it was created, or when it has not been running for that long. Age alone never reaps.
  - Read-only; safe in check mode.
version_added: "0.1.0"
author: universal_simulator maintainers (!UNKNOWN)
options:
  instance_id:
    description: Show only this instance.
    type: int
  run:
    description:
      - Only the run's instance and its fleet's, that is labels C(<run>) and C(<run>-<N>).
    type: str
  label:
    description: Only instances with exactly this label (a run name).
    type: str
  label_prefix:
    description: Only instances whose label starts with this, for example the project's run prefix.
    type: str
  status:
    description: Only instances whose C(actual_status) is one of these, for example C([running, loading]).
    type: list
    elements: str
  log_tail:
    description:
      - Also fetch the last this many lines of each matching instance's container log (its onstart output)
        through Vast's logs endpoint, into C(logs). For when SSH is down; at most 10 instances.
    type: int
  older_than:
    description:
      - Only instances created longer ago than this, as a number and a unit C(s), C(m), C(h) or C(d),
        for example C(6h). It only narrows; on its own it says nothing about a run's health.
    type: str
  owned_only:
    description:
      - Only instances this project created, recognised by the C(VASTKIT_OWNER) marker every create of
        M(universal_simulator.vastai.vast_instance) sets (the API returns it in the instance's C(extra_env)),
        never by label.
    type: bool
    default: false
  probes:
    description:
      - What reading each running instance over SSH found, by instance id (as a string)
        C({reached, heartbeat, error}), where C(heartbeat) is the text of its C(heartbeat.json) or null. Turns
        on the reaper's verdict. An instance missing here was not probed and is left alone.
    type: dict
  stale_after:
    description: For the verdict, how old a heartbeat (or an instance without one) may be, for example C(15m).
    type: str
    default: 15m
extends_documentation_fragment:
  - universal_simulator.vastai.vast
"""

EXAMPLES = r"""
- name: The run's instance
  universal_simulator.vastai.vast_instance_info:
    label: burgers32-20261128-1405
  register: run

- name: Every running instance of the project older than six hours
  universal_simulator.vastai.vast_instance_info:
    label_prefix: burgers32-
    status: [running]
    older_than: 6h
"""

RETURN = r"""
instances:
  description: Matching instances, by id.
  returned: always
  type: list
  elements: dict
  sample:
    - id: 20000001
      label: burgers32-20261128-1405
      actual_status: running
      gpu_name: RTX 4090
      num_gpus: 1
      dph_total: 0.3612
      gpu_util: 87.0
      age_hours: 1.5
      cost_estimate: 0.54
      ssh: {host: 203.0.113.11, port: 40022, user: root}
      ssh_command: ssh -p 40022 root@203.0.113.11
      tags: {VASTKIT_OWNER: universal_simulator}
      reaper: {reap: false, reason: "healthy: heartbeat 12 s ago"}
  contains:
    reaper:
      description: The reaper's verdict, V(reap) and the V(reason) it gives.
      returned: when probes was given
      type: dict
reap_ids:
  description: With O(probes), the ids the reaper's verdict takes.
  returned: when probes was given
  type: list
  elements: int
instance:
  description: The instance, when O(instance_id) was given and it exists.
  returned: when instance_id was given and found
  type: dict
logs:
  description: Per instance id, the tail of its container log (with O(log_tail)); an error text when unavailable.
  returned: when log_tail was given
  type: dict
cost_per_hour:
  description: Total USD per hour of the matching instances that are not stopped.
  returned: always
  type: float
"""

import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.universal_simulator.vastai.plugins.module_utils.vast_common import (
    VastAPIError,
    VastModuleContext,
    instance_facts,
    vast_argument_spec,
)

try:
    from vastkit.failover import is_owned
    from vastkit.selection import Probe, empty_selector_error, of_run, parse_age, reaper_verdict
except ImportError:  # VastModuleContext reports the missing package
    is_owned = Probe = empty_selector_error = of_run = parse_age = reaper_verdict = None


def container_log(api, instance_id: int, tail: int) -> str:
    try:
        text = api.request_logs(instance_id, tail=max(1, tail))
    except (VastAPIError, TimeoutError) as exc:
        return f"(no container log: {exc})"
    return text if isinstance(text, str) else f"(no container log: {text.get('msg', text)})"


def main():
    module = AnsibleModule(
        argument_spec=vast_argument_spec(
            instance_id=dict(type="int"),
            run=dict(type="str"),
            label=dict(type="str"),
            label_prefix=dict(type="str"),
            status=dict(type="list", elements="str"),
            older_than=dict(type="str"),
            log_tail=dict(type="int"),
            owned_only=dict(type="bool", default=False),
            probes=dict(type="dict"),
            stale_after=dict(type="str", default="15m"),
        ),
        supports_check_mode=True,
        mutually_exclusive=[("instance_id", "label"), ("instance_id", "label_prefix"), ("instance_id", "run"),
                            ("run", "label")],
    )
    p = module.params
    ctx = VastModuleContext(module)  # before the checks: they use vastkit; it makes no API call itself
    for name in ("run", "label", "label_prefix", "older_than", "stale_after"):
        problem = empty_selector_error(name, p[name])
        if problem:
            module.fail_json(msg=f"{problem}. Nothing was selected.")
    try:
        min_age = parse_age(p["older_than"]) if p["older_than"] else None
        stale_after = parse_age(p["stale_after"], "stale_after")
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    result = dict(changed=False)
    now = time.time()
    try:
        if p["instance_id"] is not None:
            found = ctx.api.get_instance(p["instance_id"])
            rows = [found] if found is not None else []
        else:
            rows = ctx.api.list_instances(label=p["label"], label_prefix=p["label_prefix"] or p["run"],
                                          statuses=p["status"])
    except VastAPIError as exc:
        ctx.fail_api(exc, "listing instances failed")
    if p["run"] is not None:
        rows = [i for i in rows if of_run(i, p["run"])]
    if p["label_prefix"] is not None:
        rows = [i for i in rows if i.label]  # an unlabelled instance matches no prefix
    if p["owned_only"]:
        rows = [i for i in rows if is_owned(i)]
    if p["status"]:
        rows = [i for i in rows if i.actual_status in p["status"]]
    if min_age is not None:
        rows = [i for i in rows if i.start_date and now - i.start_date >= min_age]
    rows = sorted(rows, key=lambda i: i.id)
    instances = [instance_facts(i, now) for i in rows]
    if p["probes"] is not None:
        probes = {str(k): v for k, v in p["probes"].items()}
        for inst, facts in zip(rows, instances, strict=True):
            probe = Probe.from_dict(probes.get(str(inst.id)))
            facts["reaper"] = reaper_verdict(inst, probe, now=now, stale_after=stale_after).to_dict()
        result["reap_ids"] = [f["id"] for f in instances if f["reaper"]["reap"]]
    result["instances"] = instances
    result["cost_per_hour"] = round(sum(i["dph_total"] or 0.0 for i in instances
                                        if i["actual_status"] not in ("stopped", "exited")), 4)
    if p["instance_id"] is not None and instances:
        result["instance"] = instances[0]
    if p["log_tail"] is not None:
        if len(instances) > 10:
            module.fail_json(msg=f"log_tail: {len(instances)} instances match; narrow it to at most 10", **result)
        result["logs"] = {str(i["id"]): container_log(ctx.api, i["id"], p["log_tail"]) for i in instances}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
