#!/usr/bin/python
# SPDX-License-Identifier: MIT
"""Ansible module: search Vast.ai GPU offers (read-only)."""
# ruff: noqa: E402 - Ansible modules put DOCUMENTATION before the imports.

from __future__ import annotations

DOCUMENTATION = r"""
module: vast_offer_info
short_description: Search Vast.ai GPU offers
description:
  - Searches the Vast.ai marketplace with structured options, the Vast query language, or both, and returns
    the offers best first.
  - Read-only; safe in check mode.
version_added: "0.1.0"
author: universal_simulator maintainers (!UNKNOWN)
options:
  limit:
    description: Most offers to return.
    type: int
    default: 10
  image:
    description:
      - The image the offer is for. Without O(min_cuda), only hosts whose driver can start it match
        (C(cuda_max_good) of at least the CUDA its tag names; 12.6 for C(vastai/pytorch:@vastai-automatic-tag),
        the oldest build that tag resolves to). On a host below, the instance stays C(created) with
        "OCI runtime create failed".
    type: str
extends_documentation_fragment:
  - universal_simulator.vastai.vast
  - universal_simulator.vastai.vast.search
"""

EXAMPLES = r"""
- name: Find the five cheapest reliable RTX 4090s
  universal_simulator.vastai.vast_offer_info:
    gpu_name: RTX_4090
    num_gpus: 1
    min_reliability: 0.98
    limit: 5
  register: found

- name: Offers whose driver can run the automatic-tag PyTorch image (cuda_max_good >= 12.6)
  universal_simulator.vastai.vast_offer_info:
    gpu_name: RTX_4090
    image: "vastai/pytorch:@vastai-automatic-tag"

- name: Same with the Vast query language, most reliable first
  universal_simulator.vastai.vast_offer_info:
    query: "reliability>0.98 num_gpus=1 gpu_name=RTX_4090 inet_down>=500"
    order: "reliability-,dph_total"
"""

RETURN = r"""
offers:
  description:
    - Matching offers, best first. C(id) is what the C(offer_id) option of C(vast_instance) takes.
    - C(dph_total) is the price per hour of the GPUs plus RV(disk) GB of storage; C(min_bid) is the lowest bid
      the host takes for an interruptible instance.
  returned: always
  type: list
  elements: dict
  sample:
    - id: 10000101
      machine_id: 40001
      gpu_name: RTX 4090
      num_gpus: 1
      dph_total: 0.3612
      reliability: 0.9965
      disk_space: 2000.0
      gpu_ram: 24564.0
      cuda_max_good: 12.4
      geolocation: Florida, US
      direct_port_count: 100
      inet_down: 1762.6
      min_bid: 0.1764
      verified: true
cheapest_without_max_dph:
  description:
    - When nothing matched and O(max_dph) was set, the cheapest price that matches everything else,
      so a caller can say how far off the cap is. C(null) when nothing matches even without the cap.
  returned: when no offer matched and max_dph was set
  type: float
query:
  description: The search as one line of the options that were set.
  returned: always
  type: str
disk:
  description: The storage in GB that each offer's C(dph_total) includes (O(disk)).
  returned: always
  type: float
  sample: 64.0
interruptible:
  description: Whether these are interruptible (bid) offers, whose C(min_bid) is what a bid must reach.
  returned: always
  type: bool
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.universal_simulator.vastai.plugins.module_utils.vast_common import (
    QueryError,
    VastAPIError,
    VastModuleContext,
    check_disk,
    describe_search,
    offer_summary,
    search_argument_spec,
    search_offers,
    unknown_gpu_message,
    vast_argument_spec,
)


def main():
    module = AnsibleModule(
        argument_spec=vast_argument_spec(limit=dict(type="int", default=10), image=dict(type="str"),
                                         **search_argument_spec()),
        supports_check_mode=True,
    )
    ctx = VastModuleContext(module)
    params = module.params
    check_disk(module, params["disk"])
    if params["limit"] < 1:
        module.fail_json(msg=f"limit={params['limit']}: must be at least 1")
    result = dict(changed=False, query=describe_search(params) + (f" image={params['image']}" if params["image"] else ""),
                  disk=params["disk"], interruptible=params["interruptible"])
    try:
        problem = unknown_gpu_message(ctx.api, params["gpu_name"])
        if problem:
            module.fail_json(msg=problem, **result)
        offers = search_offers(ctx.api, params, limit=params["limit"])
        result["offers"] = [offer_summary(o) for o in offers]
        if not offers and params["max_dph"] is not None:
            uncapped = search_offers(ctx.api, params, limit=1, max_dph=None)
            result["cheapest_without_max_dph"] = round(uncapped[0].dph_total, 4) if uncapped else None
    except QueryError as exc:
        ctx.fail_query(exc, **result)
    except VastAPIError as exc:
        ctx.fail_api(exc, "offer search failed", **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
