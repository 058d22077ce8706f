#!/usr/bin/python
# SPDX-License-Identifier: MIT
"""Ansible module: check a launch request and plan its runs (no API write)."""
# ruff: noqa: E402 - Ansible modules put DOCUMENTATION before the imports.

from __future__ import annotations

DOCUMENTATION = r"""
module: vast_launch_plan
short_description: Check a launch request and plan its runs before anything is rented
description:
  - Takes the launch options (by default exactly the playbook's extra vars, C(-e NAME=VALUE)) and returns the
    validated runs, or fails with every problem found, each saying what was wrong and what is allowed.
  - Checks, in this order and all before any API write; C(--check) runs the same checks.
    Option names (a name that is no launch option fails, with a suggestion such as C(gpus) -> C(gpu)).
    Option values (typed and ranged; booleans are strict, C(ture) is an error, not false).
    The config and each sweep entry's dotted overrides, with the training package's own validator.
    The run names (one rule with the instance side, fleets and sweeps included), and C(count) above 8
    only with C(confirm_count=true).
    The launch key, with OpenSSH (passphrase only if ssh-agent holds the key; permissions; the C(.pub)).
    With C(provision=true), the code the instance gets. For C(code_source=git), the commit is on a remote
    readable without credentials, the URL has no token in it (SSH URLs become https), and the tree has no
    uncommitted changes unless C(allow_dirty=true). For C(code_source=local), files that look like secrets
    are left out, and the module warns which.
  - With C(offer_id), looks that offer up (a read-only search) and checks it against C(gpu), C(num_gpus),
    C(max_price), C(min_reliability), C(disk), C(bid) (the offer's C(min_bid)) and C(image) (the host's
    C(cuda_max_good) must reach the CUDA the image needs, else Vast leaves the instance at C(created) with
    C(OCI runtime create failed)). C(gpu) and C(num_gpus) not
    given are taken from the offer, so the failover searches for the same GPU. Only then is the API called.
  - The launch options, their defaults and checks are listed in C(docs/control-plane.md).
version_added: "0.1.0"
author: universal_simulator maintainers (!UNKNOWN)
options:
  options:
    description:
      - The launch options by name, as strings (C(-e count=4)) or typed values (JSON or YAML extra vars).
      - Left out, the action plugin of the same name fills in the playbook's extra vars exactly as given on the
        command line (C(-e), C(-e @file.yml)), so a misspelled name is reported instead of ignored. Names that
        start with C(ansible_) are Ansible's own and are not checked.
    type: dict
  repo_root:
    description: The checkout being launched (its C(configs/), its git state).
    type: path
    required: true
  git_timeout:
    description: Seconds C(git ls-remote) may take to answer (C(code_source=git)).
    type: float
    default: 30
extends_documentation_fragment:
  - universal_simulator.vastai.vast
notes:
  - Runs on the controller. Makes no API write at all; without C(offer_id) it makes no API call.
"""

EXAMPLES = r"""
- name: Plan the runs from the playbook's -e options
  universal_simulator.vastai.vast_launch_plan:
    repo_root: "{{ playbook_dir | dirname }}"
  register: plan

- name: Plan a given request (for example from another tool)
  universal_simulator.vastai.vast_launch_plan:
    repo_root: /src/universal_simulator
    options:
      config: burgers32
      gpu: H100_PCIE
      count: 2
      code_source: local
"""

RETURN = r"""
runs:
  description: The planned runs, in order.
  returned: success
  type: list
  elements: dict
  contains:
    name:
      description: The run's name, which is its instance label.
      type: str
    train_config:
      description: Repo-relative config path.
      type: str
    overrides:
      description: Dotted config keys to values (a sweep entry's), validated against the config.
      type: dict
    offer_id:
      description: The offer this run starts on (C(offer_id), first run only), else null.
      type: int
    group:
      description: The fleet's or sweep's base name, the W&B group its runs share (a lone run is its own group).
      type: str
    options:
      description: The options, as in RV(options).
      type: dict
  sample:
    - name: burgers32-20261128-1405
      train_config: configs/burgers32.yaml
      overrides: {}
      offer_id: null
      group: burgers32-20261128-1405
      options: {gpu: RTX_4090, num_gpus: 1, lease_s: 1800}
options:
  description:
    - Every launch option with its value or default, typed. An optional option that is not set is C('').
    - C(lease_s) is C(lease_minutes) in whole seconds.
    - C(runtype_api) is C(runtype) (V(ssh), V(ssh_proxy), V(jupyter)) in the API's words, for example
      C(ssh_direc ssh_proxy).
    - C(ssh_config_dir) and C(ssh_config_file) are where launch writes the run's C(ssh <run>) entry
      (vast_ssh_config).
  returned: success
  type: dict
search:
  description: The vast_offer_info arguments for the runs without an offer, or null when C(offer_id) covers them.
  returned: success
  type: dict
  sample: {gpu_name: RTX_4090, num_gpus: 1, min_reliability: 0.98, interruptible: false, disk: 64.0, limit: 5}
code:
  description: What the instance gets.
  returned: success
  type: dict
  contains:
    source:
      description: C(git) or C(local).
      type: str
    repo:
      description: URL the instance clones, without credentials (C('') when there is none).
      type: str
    version:
      description: Commit the instance checks out.
      type: str
    left_out:
      description: C(code_source=local) with provisioning, files not uploaded because they look like secrets.
      type: list
      elements: str
account_env:
  description: Account env-var names the runs need (with provisioning), else empty.
  returned: success
  type: list
  elements: str
offer:
  description: The offer of C(offer_id), as vast_offer_info returns offers.
  returned: when offer_id is set
  type: dict
notes:
  description: What the launch should say (also given as warnings), for example the files left out.
  returned: always
  type: list
  elements: str
"""

import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.universal_simulator.vastai.plugins.module_utils.vast_common import (
    VastAPIError,
    VastModuleContext,
    offer_summary,
    vast_argument_spec,
)

try:
    import training.config as training_config
    from run_contract import B2_REQUIRED_ENV
    from vastkit import planning

    IMPORT_ERROR = None
except ImportError:
    IMPORT_ERROR = traceback.format_exc()


def fail_with(module, problems: list[str], notes: list[str]) -> None:
    """One message with every problem, numbered (the list itself is not repeated: it is all in msg)."""
    for note in notes:
        module.warn(note)
    lines = "\n".join(f"  {i}. {p}" for i, p in enumerate(problems, 1))
    module.fail_json(msg=f"The launch request has {len(problems)} problem(s); nothing was rented:\n{lines}")


def look_up_offer(module, plan):
    """The offer of offer_id (read-only search), or None when it is not available."""
    o = plan.options
    ctx = VastModuleContext(module)
    try:
        found = ctx.api.search_offers({"id": {"eq": int(o["offer_id"])}}, storage_gb=float(o["disk"]), limit=1,
                                      offer_type="bid" if o["interruptible"] else "on-demand")
    except VastAPIError as exc:
        ctx.fail_api(exc, f"looking up offer_id={o['offer_id']} failed")
    return found[0] if found else None


def main():
    module = AnsibleModule(
        argument_spec=vast_argument_spec(
            options=dict(type="dict"),
            repo_root=dict(type="path", required=True),
            git_timeout=dict(type="float", default=30),
        ),
        supports_check_mode=True,
    )
    if IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib("vastkit, run_contract and training", reason="the launch plan runs "
                         "with the repository's .venv python; run .venv/bin/ansible-playbook"), exception=IMPORT_ERROR)
    plan = planning.plan_launch(module.params["options"] or {}, repo_root=module.params["repo_root"],
                                configs=training_config, git_timeout=module.params["git_timeout"])
    if plan.errors:
        fail_with(module, plan.errors, plan.notes)
    result = dict(changed=False)
    if plan.options["offer_id"] is not None:
        offer = look_up_offer(module, plan)
        problems = planning.check_offer(offer, plan)
        if problems:
            fail_with(module, problems, plan.notes)
        result["offer"] = offer_summary(offer)
    for note in plan.notes:
        module.warn(note)
    options = plan.playbook_options()
    result.update(
        runs=[dict(name=r.name, train_config=r.train_config, overrides=r.overrides, offer_id=r.offer_id,
                   group=r.group, options=options) for r in plan.runs],
        options=options,
        search=plan.search_args(),
        code=dict(source=options["code_source"], repo=plan.code_repo, version=plan.code_version,
                  left_out=plan.left_out),
        account_env=list(B2_REQUIRED_ENV) if options["provision"] else [],
        notes=plan.notes,
    )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
