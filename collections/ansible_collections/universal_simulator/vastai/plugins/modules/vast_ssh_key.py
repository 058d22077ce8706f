#!/usr/bin/python
# SPDX-License-Identifier: MIT
"""Ansible module: the controller's SSH public key on the Vast.ai account and on an instance."""
# ruff: noqa: E402 - Ansible modules put DOCUMENTATION before the imports.

from __future__ import annotations

DOCUMENTATION = r"""
module: vast_ssh_key
short_description: Register an SSH public key on the Vast.ai account, and attach it to an instance
description:
  - Makes sure the public key is registered on the account (Vast copies account keys into B(new) instances),
    or removes it with O(state=absent).
  - With O(instance_id), also attaches the key to that existing instance, which account registration does not
    reach. If O(private_key_file) is given the module first tries an SSH login with it and attaches only when
    the login is refused, so a repeated run changes nothing; without it the key is attached every time.
  - Keys are compared by type and key material; the comment does not matter.
  - A team API key cannot register account keys (Vast answers C(team_ssh_keys_not_supported)); the module then
    registers nothing, warns, returns RV(team_key) true and still attaches to O(instance_id); with a team key
    the launch key reaches an instance only by attaching it to that instance.
version_added: "0.1.0"
author: universal_simulator maintainers (!UNKNOWN)
options:
  public_key:
    description: The public key, for example C(ssh-ed25519 AAAA... me@laptop).
    type: str
  public_key_file:
    description: File holding the public key, for example C(~/.ssh/id_ed25519.pub).
    type: path
  state:
    description: V(present) to register (and attach), V(absent) to remove the key from the account.
    type: str
    choices: [present, absent]
    default: present
  instance_id:
    description: Also attach the key to this instance (O(state=present) only).
    type: int
  private_key_file:
    description: Private half of the key, used only to test whether the instance already accepts it.
    type: path
extends_documentation_fragment:
  - universal_simulator.vastai.vast
attributes:
  idempotent:
    details: Attaching is idempotent only with O(private_key_file).
"""

EXAMPLES = r"""
- name: Register the launch key before creating instances
  universal_simulator.vastai.vast_ssh_key:
    public_key_file: ~/.ssh/id_ed25519.pub

- name: Make sure a reused instance accepts the key
  universal_simulator.vastai.vast_ssh_key:
    public_key_file: ~/.ssh/id_ed25519.pub
    private_key_file: ~/.ssh/id_ed25519
    instance_id: 20000001
"""

RETURN = r"""
key_id:
  description: Account id of the key (C(null) after O(state=absent) or in check mode before it exists).
  returned: always
  type: int
registered:
  description: Whether this call registered the key on the account.
  returned: always
  type: bool
attached:
  description: Whether this call attached the key to O(instance_id).
  returned: always
  type: bool
fingerprint:
  description: The key's type and the last 12 characters of its material, to tell keys apart in logs.
  returned: always
  type: str
team_key:
  description: Whether the API key is a team key, which cannot register account SSH keys.
  returned: always
  type: bool
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.universal_simulator.vastai.plugins.module_utils.vast_common import (
    VastAPIError,
    VastModuleContext,
    vast_argument_spec,
)

try:
    import paramiko

    from vastkit.waiting import SSH_NOT_READY, first_reachable
except ImportError:  # VastModuleContext reports a missing vastkit
    paramiko = None


def key_material(public_key: str) -> str:
    """'ssh-ed25519 AAAA... comment' -> 'ssh-ed25519 AAAA...' (what identifies the key)."""
    parts = public_key.split()
    return " ".join(parts[:2])


def read_public_key(module) -> str:
    p = module.params
    if p["public_key"]:
        text = p["public_key"]
    else:
        try:
            with open(p["public_key_file"], encoding="utf-8") as handle:
                text = handle.read()
        except OSError as exc:
            module.fail_json(msg=f"cannot read public_key_file {p['public_key_file']}: {exc.strerror}; create a key "
                                 f"with: ssh-keygen -t ed25519 -N '' -f {p['public_key_file'].removesuffix('.pub')}")
    text = text.strip()
    if "PRIVATE KEY" in text:
        module.fail_json(msg="that is a private key; give the public one (the .pub file)")
    if not text.startswith(("ssh-", "ecdsa-", "sk-")) or len(text.split()) < 2:
        module.fail_json(msg="not an OpenSSH public key: expected 'ssh-ed25519 AAAA... comment' (or ssh-rsa, ecdsa-...)")
    return text


def accepts_key(api, instance_id: int, private_key_file: str):
    """True / False when a login proves it either way; None when the instance cannot be asked (not running)."""
    instance = api.get_instance(instance_id)
    if instance is None:
        return None
    if not instance.is_running or not instance.ssh_addresses():
        return None
    try:
        first_reachable(instance, private_key_file, timeout=10)  # direct, then Vast's proxy
        return True
    except paramiko.AuthenticationException:
        return False
    except SSH_NOT_READY:
        return None


def main():
    module = AnsibleModule(
        argument_spec=vast_argument_spec(
            public_key=dict(type="str"),
            public_key_file=dict(type="path"),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            instance_id=dict(type="int"),
            private_key_file=dict(type="path"),
        ),
        supports_check_mode=True,
        required_one_of=[("public_key", "public_key_file")],
        mutually_exclusive=[("public_key", "public_key_file")],
    )
    p = module.params
    public_key = read_public_key(module)
    material = key_material(public_key)
    result = dict(changed=False, key_id=None, registered=False, attached=False, team_key=False,
                  fingerprint=f"{material.split()[0]} ...{material.split()[1][-12:]}")
    ctx = VastModuleContext(module)
    try:
        registered = [k for k in ctx.api.ssh_keys() if key_material(k.public_key) == material]
        if p["state"] == "absent":
            result["changed"] = bool(registered)
            if not module.check_mode:
                for key in registered:
                    ctx.api.delete_ssh_key(key.id)
            module.exit_json(**result)
        if registered:
            result["key_id"] = registered[0].id
        else:
            result.update(changed=True, registered=True)
            if not module.check_mode:
                try:
                    result["key_id"] = ctx.api.create_ssh_key(public_key).id
                except VastAPIError as exc:
                    if exc.error != "team_ssh_keys_not_supported":
                        raise
                    result.update(changed=False, registered=False, team_key=True)
                    module.warn("the API key is a team key, which cannot register account SSH keys "
                                "(team_ssh_keys_not_supported); the launch key must be attached to each instance")
        if p["instance_id"] is not None:
            accepted = accepts_key(ctx.api, p["instance_id"], p["private_key_file"]) if p["private_key_file"] else None
            if accepted is not True:
                result.update(changed=True, attached=True)
                if not module.check_mode:
                    ctx.api.attach_ssh_key(p["instance_id"], public_key)
    except VastAPIError as exc:
        ctx.fail_api(exc, "SSH key change failed", **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
