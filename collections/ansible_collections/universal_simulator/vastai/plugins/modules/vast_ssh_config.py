#!/usr/bin/python
# SPDX-License-Identifier: MIT
"""Ansible module: the OpenSSH config entry that makes `ssh <run>` reach a run's instance."""
# ruff: noqa: E402 - Ansible modules put DOCUMENTATION before the imports.

from __future__ import annotations

DOCUMENTATION = r"""
module: vast_ssh_config
short_description: Write or remove the SSH config entry of a run, so that C(ssh <run>) works
description:
  - Writes one OpenSSH config file per run, C(<config_dir>/<name>), with C(Host <name>), its C(HostName),
    C(Port), C(User root), the launch key as C(IdentityFile) (C(IdentitiesOnly yes)), and the per-instance
    known_hosts file that Ansible uses as C(UserKnownHostsFile) (C(StrictHostKeyChecking accept-new)). Then
    C(ssh <name>), C(ssh <name> -t tmux attach -t training) and C(ssh -L 6006:localhost:6006 <name>) work,
    in batch mode too, with no host-key prompt.
  - With O(state=present) and O(include=true), makes sure O(ssh_config) has one C(Include <config_dir>/*)
    line at its top (OpenSSH scopes an C(Include) inside a C(Host) or C(Match) block to that block). It is
    added once and never duplicated; a symlinked config is edited where it points.
  - O(state=absent) removes the run's file (teardown and the reaper); the C(Include) line stays, harmless
    when the directory is empty. A O(name) that is no run name has no entry, so it is V(absent) already.
  - Makes no API call. The logic is C(vastkit.sshconfig).
version_added: "0.1.0"
author: universal_simulator maintainers (!UNKNOWN)
options:
  name:
    description: The run's name (its instance label), which becomes the SSH host alias.
    type: str
    required: true
  state:
    description: V(present) writes the entry, V(absent) removes it.
    type: str
    choices: [present, absent]
    default: present
  host:
    description: The address the instance answers SSH on (direct, or Vast's proxy). Required with V(present).
    type: str
  port:
    description: Its SSH port. Required with V(present).
    type: int
  identity_file:
    description: The launch key (private half). Required with V(present).
    type: path
  known_hosts_file:
    description: The instance's own known_hosts file (C(<known_hosts_dir>/<instance id>)). Required with V(present).
    type: path
  config_dir:
    description: Directory of the per-run entries (made C(0700)).
    type: path
    default: ~/.ssh/universal_simulator
  ssh_config:
    description:
      - The SSH client config that includes O(config_dir). OpenSSH reads C(~/.ssh/config) from the home
        directory in the password database, not C($HOME); give another file here and use it with C(ssh -F FILE).
    type: path
    default: ~/.ssh/config
  include:
    description: Add the C(Include) line to O(ssh_config) (V(false) when you manage that file yourself).
    type: bool
    default: true
attributes:
  check_mode:
    description: Can run in check mode and return the changed status without writing.
    support: full
  diff_mode:
    description: Returns the entry's text before and after in diff mode.
    support: full
  idempotent:
    description: When run twice in a row with the same arguments, the second run changes nothing.
    support: full
notes:
  - Files are written atomically with mode C(0600); a temporary file starts with a dot, which the C(*) glob skips.
"""

EXAMPLES = r"""
- name: Let `ssh burgers32-20261128-1405` reach the run's instance
  universal_simulator.vastai.vast_ssh_config:
    name: burgers32-20261128-1405
    host: ssh4.vast.ai
    port: 31022
    identity_file: ~/.ssh/id_ed25519
    known_hosts_file: ~/.ssh/vast_known_hosts/20000001

- name: Remove it when the run is torn down
  universal_simulator.vastai.vast_ssh_config:
    name: burgers32-20261128-1405
    state: absent
"""

RETURN = r"""
path:
  description: The run's entry file.
  returned: always
  type: str
  sample: /home/me/.ssh/universal_simulator/burgers32-20261128-1405
entry_changed:
  description: Whether the entry file was (or, in check mode, would be) written or removed.
  returned: always
  type: bool
include_added:
  description: Whether the C(Include) line was (or would be) added to O(ssh_config).
  returned: always
  type: bool
ssh_command:
  description: How to log in (V(present)).
  returned: when state is present
  type: str
  sample: ssh burgers32-20261128-1405
"""

import traceback
from pathlib import Path

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

try:
    from vastkit import sshconfig

    IMPORT_ERROR = None
except ImportError:
    IMPORT_ERROR = traceback.format_exc()


class SshConfigManager:
    """present()/absent() for one run's entry; every write guarded by check mode."""

    def __init__(self, module: AnsibleModule):
        self.module = module
        self.p = module.params
        self.config_dir = self.p["config_dir"]
        self.ssh_config = self.p["ssh_config"]
        self.result = dict(changed=False, entry_changed=False, include_added=False, path="")

    def present(self) -> None:
        p = self.p
        try:
            entry = sshconfig.SshEntry(run=p["name"], host=p["host"], port=p["port"],
                                       identity_file=p["identity_file"], known_hosts_file=p["known_hosts_file"])
        except sshconfig.SshConfigError as exc:
            self.module.fail_json(msg=f"vast_ssh_config: {exc}", **self.result)
        path = sshconfig.entry_path(self.config_dir, entry.run)
        before = sshconfig.read_entry(self.config_dir, entry.run) or ""
        after = entry.render()
        self.result.update(path=str(path), entry_changed=before != after, ssh_command=f"ssh {entry.run}",
                           diff=dict(before=before, after=after, before_header=str(path), after_header=str(path)))
        if p["include"]:
            config = self._config_text()
            self.result["include_added"] = not sshconfig.has_include(config, self.config_dir)
        if not self.module.check_mode:
            try:
                sshconfig.write_entry(entry, self.config_dir)
                if p["include"]:
                    sshconfig.ensure_include(self.ssh_config, self.config_dir)
            except OSError as exc:
                self.module.fail_json(msg=f"vast_ssh_config: cannot write the SSH config of {entry.run}: {exc}",
                                      **self.result)
        self.result["changed"] = self.result["entry_changed"] or self.result["include_added"]

    def absent(self) -> None:
        try:
            path = sshconfig.entry_path(self.config_dir, self.p["name"])
        except sshconfig.SshConfigError:
            return  # no run name, so no entry was ever written for it
        before = sshconfig.read_entry(self.config_dir, self.p["name"])
        self.result.update(path=str(path), entry_changed=before is not None,
                           diff=dict(before=before or "", after="", before_header=str(path), after_header=str(path)))
        if before is not None and not self.module.check_mode:
            try:
                sshconfig.remove_entry(self.config_dir, self.p["name"])
            except OSError as exc:
                self.module.fail_json(msg=f"vast_ssh_config: cannot remove {path}: {exc}", **self.result)
        self.result["changed"] = self.result["entry_changed"]

    def _config_text(self) -> str:
        try:
            return Path(self.ssh_config).resolve().read_text()
        except FileNotFoundError:
            return ""
        except OSError as exc:
            self.module.fail_json(msg=f"vast_ssh_config: cannot read {self.ssh_config}: {exc}", **self.result)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            host=dict(type="str"),
            port=dict(type="int"),
            identity_file=dict(type="path"),
            known_hosts_file=dict(type="path"),
            config_dir=dict(type="path", default="~/.ssh/universal_simulator"),
            ssh_config=dict(type="path", default="~/.ssh/config"),
            include=dict(type="bool", default=True),
        ),
        required_if=[("state", "present", ("host", "port", "identity_file", "known_hosts_file"))],
        supports_check_mode=True,
    )
    if IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib("vastkit", reason="run the repository's .venv/bin/ansible-playbook"),
                         exception=IMPORT_ERROR)
    manager = SshConfigManager(module)
    if module.params["state"] == "present":
        manager.present()
    else:
        manager.absent()
    result = manager.result
    if not module._diff:
        result.pop("diff", None)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
