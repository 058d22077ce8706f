# SPDX-License-Identifier: MIT
"""Ansible inventory plugin: the Vast.ai account's instances, through the shared `vastkit` client."""
# ruff: noqa: E402 - Ansible plugins put DOCUMENTATION before the imports.

from __future__ import annotations

DOCUMENTATION = r"""
name: vast
short_description: Vast.ai instances as Ansible hosts
description:
  - Lists the account's instances with the same client the modules use (C(vastkit.VastAPI.from_env)),
    so the API key comes from C(VAST_API_KEY) in the environment and never from the inventory file.
  - Each instance becomes a host named after its label (the run name), or C(<label>-<id>) when labels
    repeat, or C(vast-<id>) without a label. C(ansible_host)/C(ansible_port) come from the SSH address
    the API gives (direct when the machine has an open port, else Vast's SSH proxy), C(ansible_user) is root,
    and every API field is a host var prefixed C(vast_).
  - Groups C(vast) (all), C(vast_<status>) (for example C(vast_running)), C(vast_gpu_<model>) and
    C(vast_label_<label>); more with O(keyed_groups), O(groups) and O(compose).
  - Each host gets its own known_hosts file (O(known_hosts_dir)/<id>), because a rented machine's host key
    is new each time while its proxy address may be reused.
  - The file must be named C(vast.yml) or C(vast.yaml) or end with one of those.
  - When the API cannot be reached, or refuses the key, or there is no key, parsing fails with one line that
    says what to check (C(VAST_URL), C(VAST_API_KEY) or C(vastai set api-key)); the repository's C(ansible.cfg)
    makes a source that fails to parse fail the command (C(any_unparsed_is_failed)).
extends_documentation_fragment:
  - constructed
  - inventory_cache
options:
  plugin:
    description: The name of this plugin.
    required: true
    type: str
    choices: [universal_simulator.vastai.vast]
  api_url:
    description: Base URL of the Vast.ai API; default C(VAST_URL) from the environment, then the public console.
    type: str
    env:
      - name: VAST_URL
  label_prefix:
    description: Only instances whose label starts with this.
    type: str
    default: ""
  statuses:
    description: Only instances whose C(actual_status) is one of these (all when empty).
    type: list
    elements: str
    default: []
  prefer_direct:
    description: Use the direct SSH address when the instance has one (else always the proxy).
    type: bool
    default: true
  known_hosts_dir:
    description: Directory of the per-instance known_hosts files.
    type: path
    default: ~/.ssh/vast_known_hosts
  private_key_file:
    description: Private key to log in with (C(ansible_ssh_private_key_file)); default ssh's own choice.
    type: path
    env:
      - name: VAST_SSH_KEY_FILE
"""

EXAMPLES = r"""
# inventory/vast.yml
plugin: universal_simulator.vastai.vast
label_prefix: burgers32-
statuses: [running, loading]
keyed_groups:
  - key: vast_geolocation | default('') | regex_replace('.*, ', '')
    prefix: country
compose:
  cost_per_hour: vast_dph_total
"""

import os

from ansible.errors import AnsibleParserError
from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable, Constructable
from ansible.utils.unsafe_proxy import wrap_var as make_unsafe

try:
    from vastkit.client import VastAPI
    from vastkit.errors import VastAPIError, VastConfigError
    from vastkit.retry import RetryPolicy
    from vastkit.settings import DEFAULT_URL

    IMPORT_ERROR = None
except ImportError as exc:  # reported when the plugin is used
    IMPORT_ERROR = exc


# An inventory is asked interactively: a down API fails in seconds, not after the modules' long backoff.
INVENTORY_RETRY = dict(attempts=3, base_delay=0.5, max_delay=2.0, max_retry_after=10.0)
INVENTORY_TIMEOUT_S = 15.0


def failure_line(exc: Exception, url: str) -> str:
    """One line saying what went wrong and what to check (never the key; the URL carries none)."""
    if isinstance(exc, VastConfigError):
        return f"vast inventory: {exc}"
    if exc.status is None:  # no HTTP answer at all: DNS, refused, timeout, TLS
        return (f"vast inventory: cannot reach the Vast API at {url} ({exc.error}: {exc.msg}); check VAST_URL "
                f"and the network")
    if exc.status in (401, 403):
        return (f"vast inventory: the Vast API at {url} refused the API key (HTTP {exc.status}); check "
                f"VAST_API_KEY, or run vastai set api-key KEY")
    return f"vast inventory: listing instances at {url} failed (HTTP {exc.status}): {exc.msg}"


class InventoryModule(BaseInventoryPlugin, Constructable, Cacheable):
    NAME = "universal_simulator.vastai.vast"

    def verify_file(self, path):
        return super().verify_file(path) and path.endswith(("vast.yml", "vast.yaml"))

    def parse(self, inventory, loader, path, cache=True):
        super().parse(inventory, loader, path, cache)
        self._read_config_data(path)
        if IMPORT_ERROR is not None:
            raise AnsibleParserError(f"the vast inventory plugin needs the repository's vastkit package (run "
                                     f".venv/bin/ansible-inventory): {IMPORT_ERROR}")
        cache_key = self.get_cache_key(path)
        use_cache = self.get_option("cache") and cache
        records = None
        if use_cache:
            try:
                records = self._cache[cache_key]
            except KeyError:
                records = None
        if records is None:
            records = self._fetch()
            if self.get_option("cache"):
                self._cache[cache_key] = records
        self._populate(records)

    # -- steps --------------------------------------------------------------------------------------------

    def _fetch(self) -> list:
        """Instance records as plain dicts (what the cache stores; no env, onstart or keys)."""
        url = self.get_option("api_url") or os.environ.get("VAST_URL") or DEFAULT_URL
        try:
            api = VastAPI.from_env(url=self.get_option("api_url"), retry=RetryPolicy(**INVENTORY_RETRY),
                                   timeout=INVENTORY_TIMEOUT_S)
            url = api.settings.url
            found = api.list_instances(label_prefix=self.get_option("label_prefix") or None,
                                       statuses=self.get_option("statuses") or None)
        except (VastAPIError, VastConfigError) as exc:
            raise AnsibleParserError(failure_line(exc, url)) from None
        wanted = set(self.get_option("statuses") or ())
        records = []
        for instance in sorted(found, key=lambda i: i.id):
            if wanted and instance.actual_status not in wanted:
                continue
            record = instance.to_dict()
            address = instance.ssh_address(prefer_direct=self.get_option("prefer_direct"))
            record["ssh"] = {"host": address[0], "port": address[1], "user": "root"} if address else None
            records.append(record)
        return records

    def _populate(self, records: list) -> None:
        strict = self.get_option("strict")
        self.inventory.add_group("vast")
        labels = [r.get("label") for r in records]
        known_hosts_dir = os.path.expanduser(self.get_option("known_hosts_dir"))
        key_file = self.get_option("private_key_file")
        for record in records:
            host = self._host_name(record, labels)
            self.inventory.add_host(host, group="vast")
            for name, value in record.items():
                self.inventory.set_variable(host, f"vast_{name}", make_unsafe(value))
            ssh = record.get("ssh")
            if ssh:
                self.inventory.set_variable(host, "ansible_host", make_unsafe(ssh["host"]))
                self.inventory.set_variable(host, "ansible_port", ssh["port"])
                self.inventory.set_variable(host, "ansible_user", "root")
                self.inventory.set_variable(host, "ansible_ssh_common_args",
                                            f"-o UserKnownHostsFile={known_hosts_dir}/{int(record['id'])}")
                if key_file:
                    self.inventory.set_variable(host, "ansible_ssh_private_key_file", key_file)
            for group in self._default_groups(record):
                self.inventory.add_group(group)
                self.inventory.add_child(group, host)
            hostvars = self.inventory.get_host(host).get_vars()
            self._set_composite_vars(self.get_option("compose"), hostvars, host, strict=strict)
            self._add_host_to_composed_groups(self.get_option("groups"), hostvars, host, strict=strict)
            self._add_host_to_keyed_groups(self.get_option("keyed_groups"), hostvars, host, strict=strict)

    def _host_name(self, record: dict, labels: list) -> str:
        label = record.get("label")
        if not label:
            return f"vast-{record['id']}"
        return label if labels.count(label) == 1 else f"{label}-{record['id']}"

    def _default_groups(self, record: dict) -> list:
        groups = []
        if record.get("actual_status"):
            groups.append(self._sanitize_group_name(f"vast_{record['actual_status']}"))
        if record.get("gpu_name"):
            groups.append(self._sanitize_group_name(f"vast_gpu_{record['gpu_name']}"))
        if record.get("label"):
            groups.append(self._sanitize_group_name(f"vast_label_{record['label']}"))
        return groups
