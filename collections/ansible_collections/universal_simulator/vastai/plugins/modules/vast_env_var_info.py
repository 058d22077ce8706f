#!/usr/bin/python
# SPDX-License-Identifier: MIT
"""Ansible module: which Vast.ai account env-vars exist (names only, never values)."""
# ruff: noqa: E402 - Ansible modules put DOCUMENTATION before the imports.

from __future__ import annotations

DOCUMENTATION = r"""
module: vast_env_var_info
short_description: Names of the Vast.ai account environment variables
description:
  - Returns the names of the account's env-vars and, given O(required), which of those are missing.
  - Never returns a value.
  - Read-only; safe in check mode.
version_added: "0.1.0"
author: universal_simulator maintainers (!UNKNOWN)
options:
  required:
    description: Names that must exist; the missing ones are returned in RV(missing) (the module does not fail).
    type: list
    elements: str
    default: []
extends_documentation_fragment:
  - universal_simulator.vastai.vast
"""

EXAMPLES = r"""
- name: Are the training credentials on the account?
  universal_simulator.vastai.vast_env_var_info:
    required: [WANDB_API_KEY, B2_KEY_ID, B2_APP_KEY, B2_S3_ENDPOINT, B2_BUCKET]
  register: account_env

- name: Fail before renting anything
  ansible.builtin.assert:
    that: account_env.missing | length == 0
    fail_msg: "Missing account env-vars {{ account_env.missing | join(', ') }}; run playbooks/setup_env.yml"
"""

RETURN = r"""
names:
  description: Names of the account's env-vars, sorted.
  returned: always
  type: list
  elements: str
missing:
  description: Names of O(required) that the account lacks.
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


def main():
    module = AnsibleModule(
        argument_spec=vast_argument_spec(required=dict(type="list", elements="str", default=[])),
        supports_check_mode=True,
    )
    ctx = VastModuleContext(module)
    try:
        names = sorted(ctx.api.env_vars())
    except VastAPIError as exc:
        ctx.fail_api(exc, "reading account env-vars failed")
    missing = [n for n in module.params["required"] if n not in names]
    module.exit_json(changed=False, names=names, missing=missing)


if __name__ == "__main__":
    main()
