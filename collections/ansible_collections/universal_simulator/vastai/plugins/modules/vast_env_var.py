#!/usr/bin/python
# SPDX-License-Identifier: MIT
"""Ansible module: Vast.ai account env-vars (the secret store every new instance gets)."""
# ruff: noqa: E402 - Ansible modules put DOCUMENTATION before the imports.

from __future__ import annotations

DOCUMENTATION = r"""
module: vast_env_var
short_description: Manage Vast.ai account environment variables (secrets)
description:
  - Creates, updates or deletes account env-vars, which Vast injects into every instance the account
    launches. This is where C(WANDB_API_KEY), C(B2_APP_KEY) and friends live, so that no secret is ever
    written to an onstart script, a template or a task argument of the instance.
  - Vast masks every value on read (C(********)), so equality cannot be read back. The module keeps, per API
    and key, an HMAC of each value it stored (keyed with the API key) under C(~/.cache/vastkit/env-vars/);
    a value whose HMAC matches is V(unchanged) and not written, one never stored from this controller is
    written and reported V(updated). A change made elsewhere (web console, another machine) is not seen; use
    O(force) to write every value anyway.
  - Values are stored so that they fit Vast's documented value pattern C(^[a-zA-Z0-9_\-\.]+$), so
    C(B2_S3_ENDPOINT=https://host) is stored as the bare host (the instance adds C(https://) back). Another
    value outside the pattern is sent as it is, with a warning naming the variable; the API may refuse it.
  - Either one O(name) with its O(value), or several O(names) whose values the module reads itself, on the
    controller, from O(env_file) or else its own environment. That way the values never become Ansible
    variables, so no verbosity level or callback can print them.
  - Values are never returned. With O(names), every missing value is reported together and nothing is
    written.
version_added: "0.1.0"
author: universal_simulator maintainers (!UNKNOWN)
options:
  name:
    description: Variable name (Vast upper-cases names; use upper case).
    type: str
  value:
    description: Value of O(name). C(no_log).
    type: str
  names:
    description: Several variables at once, values read from O(env_file) or the controller's environment.
    type: list
    elements: str
  env_file:
    description:
      - A C(.env) file (C(NAME=value) lines, C(export) and quotes allowed, C(#) comments) to read O(names) from.
        A name it lacks is taken from the environment.
    type: path
  state:
    description: V(present) to create or update, V(absent) to delete.
    type: str
    choices: [present, absent]
    default: present
  force:
    description: Write every value even when this controller's record says it is already stored.
    type: bool
    default: false
extends_documentation_fragment:
  - universal_simulator.vastai.vast
notes:
  - The record holds HMACs, never values; deleting it only means the next run writes every value once.
"""

EXAMPLES = r"""
- name: Push the W&B and B2 credentials from the environment
  universal_simulator.vastai.vast_env_var:
    names: [WANDB_API_KEY, WANDB_PROJECT, B2_KEY_ID, B2_APP_KEY, B2_S3_ENDPOINT, B2_BUCKET]

- name: The same from a .env file
  universal_simulator.vastai.vast_env_var:
    names: [WANDB_API_KEY, B2_APP_KEY]
    env_file: ~/.config/universal_simulator/.env

- name: One variable
  universal_simulator.vastai.vast_env_var:
    name: WANDB_PROJECT
    value: universal-simulator

- name: Remove a variable
  universal_simulator.vastai.vast_env_var:
    name: OLD_TOKEN
    state: absent
"""

RETURN = r"""
outcomes:
  description: Per name, what happened (C(created), C(updated), C(unchanged), C(deleted), C(absent)); never values.
  returned: always
  type: dict
  sample: {WANDB_API_KEY: created, B2_BUCKET: unchanged}
created:
  description: Names created.
  returned: always
  type: list
  elements: str
updated:
  description: Names whose value changed.
  returned: always
  type: list
  elements: str
unchanged:
  description: Names already holding the value.
  returned: always
  type: list
  elements: str
missing:
  description: Names of O(names) that had no value in O(env_file) or the environment (the module then fails).
  returned: always
  type: list
  elements: str
"""

import os
import re
import shlex

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.universal_simulator.vastai.plugins.module_utils.vast_common import (
    VastAPIError,
    VastModuleContext,
    vast_argument_spec,
)

try:
    from vastkit.envvars import ValueRecord, default_record_dir, stored_value, value_problem
except ImportError:  # VastModuleContext reports the missing package
    ValueRecord = default_record_dir = stored_value = value_problem = None

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def read_env_file(path: str) -> dict:
    """NAME=value lines; `export`, quotes and comments as a shell would read them."""
    values = {}
    with open(path, encoding="utf-8") as handle:
        for number, raw in enumerate(handle, 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("export "):
                line = line[len("export "):].lstrip()
            name, sep, rest = line.partition("=")
            if not sep or not NAME_RE.match(name.strip()):
                raise ValueError(f"{path}:{number}: expected NAME=value")  # the line itself may hold a secret
            try:
                words = shlex.split(rest, comments=True)
            except ValueError:
                raise ValueError(f"{path}:{number}: unbalanced quotes in the value of {name.strip()}") from None
            values[name.strip()] = " ".join(words)
    return values


def is_masked(value: str) -> bool:
    return bool(value) and set(value) == {"*"}


class _NoRecord:
    def matches(self, name, value):
        return False

    def remember(self, name, value):
        pass


def main():
    module = AnsibleModule(
        argument_spec=vast_argument_spec(
            name=dict(type="str"),
            value=dict(type="str", no_log=True),
            names=dict(type="list", elements="str"),
            env_file=dict(type="path"),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            force=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
        required_one_of=[("name", "names")],
        mutually_exclusive=[("name", "names"), ("value", "names"), ("value", "env_file"), ("name", "env_file")],
        required_if=[("state", "present", ("value", "names"), True)],
    )
    p = module.params
    names = [p["name"]] if p["name"] else list(dict.fromkeys(p["names"]))
    bad = [n for n in names if not NAME_RE.match(n)]
    if bad:
        module.fail_json(msg=f"invalid env-var name(s) {', '.join(bad)}: letters, digits and _, not starting with a digit")
    result = dict(changed=False, outcomes={}, created=[], updated=[], unchanged=[], missing=[])

    wanted = {}
    if p["state"] == "present":
        if p["name"]:
            wanted = {p["name"]: p["value"]}
        else:
            try:
                from_file = read_env_file(p["env_file"]) if p["env_file"] else {}
            except (OSError, ValueError) as exc:
                module.fail_json(msg=f"cannot read env_file: {exc}", **result)
            for name in names:
                value = from_file.get(name, os.environ.get(name, ""))
                if value:
                    wanted[name] = value
            # Values read here are secrets too: mask them wherever they could appear in the output.
            module.no_log_values.update(v for v in wanted.values() if len(v) >= 4)
            result["missing"] = [n for n in names if n not in wanted]
            if result["missing"]:
                where = f"{p['env_file']} or the environment" if p["env_file"] else "the environment"
                module.fail_json(msg=f"missing value(s) for {', '.join(result['missing'])} in {where}; nothing "
                                     f"was written", **result)

    ctx = VastModuleContext(module)
    wanted = {name: stored_value(name, value) for name, value in wanted.items()}
    for name, value in wanted.items():
        problem = value_problem(name, value)
        if problem:
            module.warn(problem)
    settings = ctx.api.settings
    record = ValueRecord(default_record_dir(), settings.identity, settings.api_key)
    try:
        stored = ctx.api.env_vars()
        for name in names:
            outcome = decide(name, wanted.get(name), stored, p["state"], _NoRecord() if p["force"] else record)
            result["outcomes"][name] = outcome
            if outcome in ("created", "updated"):
                result[outcome].append(name)
            elif outcome == "unchanged":
                result["unchanged"].append(name)
            if module.check_mode or outcome in ("unchanged", "absent"):
                continue
            if outcome == "created":
                ctx.api.create_env_var(name, wanted[name])
            elif outcome == "updated":
                ctx.api.update_env_var(name, wanted[name])
            elif outcome == "deleted":
                ctx.api.delete_env_var(name)
            record.remember(name, wanted.get(name) if outcome != "deleted" else None)
    except VastAPIError as exc:
        ctx.fail_api(exc, "account env-var change failed", **result)
    result["changed"] = any(o in ("created", "updated", "deleted") for o in result["outcomes"].values())
    module.exit_json(**result)


def decide(name: str, value, stored: dict, state: str, record=None) -> str:
    """What to do for `name`: the API's names (and, where it shows them, values) and our record of values."""
    if state == "absent":
        return "deleted" if name in stored else "absent"
    if name not in stored:
        return "created"
    if is_masked(stored[name]):
        return "unchanged" if record is not None and record.matches(name, value) else "updated"
    return "unchanged" if stored[name] == value else "updated"


if __name__ == "__main__":
    main()
