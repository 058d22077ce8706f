#!/usr/bin/python
# SPDX-License-Identifier: MIT
"""Ansible module: destroy what a launch killed on this machine left rented (the local journal of creates)."""
# ruff: noqa: E402 - Ansible modules put DOCUMENTATION before the imports.

from __future__ import annotations

DOCUMENTATION = r"""
module: vast_journal
short_description: Clean up the creates a killed launch on this machine never handed over
description:
  - M(universal_simulator.vastai.vast_instance) writes a local journal entry before every create and removes it
    once the instance is returned (handed over) or destroyed. A launch that was killed hard (SIGKILL, a laptop switched off)
    leaves its entries behind. This module destroys exactly the instances those entries name (by the create
    token each create carries in its environment), verifies they are gone, and removes the entries.
  - It only touches journals whose launch is dead (the run's lock is free), of the API this call talks to.
    A launch still running on this machine is skipped.
  - An entry whose create was cut off before the API answered, and whose instance is not listed (yet), is
    kept for a later call; after 10 minutes it is dropped.
  - The journal lives in C($VASTKIT_STATE_DIR/journal), else C(~/.cache/vastkit/journal).
  - In check mode it says what it would destroy and changes nothing.
version_added: "0.1.0"
author: universal_simulator maintainers (!UNKNOWN)
options:
  label:
    description: Only this run's journal (default every run's).
    type: str
extends_documentation_fragment:
  - universal_simulator.vastai.vast
attributes:
  idempotent:
    details: A second call finds nothing left to clean up.
seealso:
  - module: universal_simulator.vastai.vast_instance
"""

EXAMPLES = r"""
- name: Destroy what a killed launch left
  universal_simulator.vastai.vast_journal:
  register: journal

- name: Say what was cleaned up
  ansible.builtin.debug:
    msg: "{{ journal.recovered }}"
  when: journal.recovered | length > 0
"""

RETURN = r"""
recovered:
  description:
    - One entry per journalled create, with C(label), C(token), C(instance_id) and C(outcome), one of
      C(destroyed), C(would_destroy) (check mode), C(already_gone), C(never_listed), C(pending) (kept for a
      later look), C(destroy_failed).
  returned: always
  type: list
  elements: dict
terminated_ids:
  description: Ids of the instances destroyed.
  returned: always
  type: list
  elements: int
busy:
  description: Runs skipped because their launch is still running on this machine.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.universal_simulator.vastai.plugins.module_utils.vast_common import (
    VastAPIError,
    VastModuleContext,
    vast_argument_spec,
)
from ansible_collections.universal_simulator.vastai.plugins.module_utils.vast_provisioner import (
    Journal,
    Provisioner,
    WaitSpec,
    journals,
    recover,
    recoverable,
)


def main():
    module = AnsibleModule(argument_spec=vast_argument_spec(label=dict(type="str")), supports_check_mode=True)
    ctx = VastModuleContext(module)
    api = ctx.api
    url = api.settings.url
    label = module.params["label"]
    found = [Journal(label, url)] if label else journals(url)
    found = [j for j in found if j.entries()]
    recovered, terminated, busy = [], [], []
    if found:
        nothing = WaitSpec(wait=False, loading_timeout=1, wait_timeout=1, poll=1.0, ssh_key_file=None)
        destroyer = Provisioner(api, nothing, search=lambda _excluded: [], max_attempts=0)
        try:
            for journal in found:
                with recoverable(journal) as free:
                    if not free:
                        busy.append(journal.label)
                        continue
                    for item in recover(api, journal, None if module.check_mode else destroyer.destroy_verified):
                        recovered.append(item.to_dict())
                        if item.outcome == "destroyed":
                            terminated.append(item.instance_id)
        except VastAPIError as exc:
            ctx.fail_api(exc, "cleaning up the journal failed", recovered=recovered, terminated_ids=terminated)
    failed = [r for r in recovered if r["outcome"] == "destroy_failed"]
    result = dict(changed=bool(terminated) or any(r["outcome"] == "would_destroy" for r in recovered),
                  recovered=recovered, terminated_ids=terminated, busy=busy)
    if failed:
        module.fail_json(msg=f"could not destroy instance {failed[0]['instance_id']} that a killed launch of "
                             f"{failed[0]['label']!r} left: {failed[0]['detail']}", **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
