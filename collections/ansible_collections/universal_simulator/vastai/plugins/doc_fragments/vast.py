# SPDX-License-Identifier: MIT
"""Documentation shared by the vast_* modules: credentials (every module) and offer search options."""


class ModuleDocFragment:
    # Credentials and the attributes every vast_* module shares:
    # `extends_documentation_fragment: [universal_simulator.vastai.vast]`.
    DOCUMENTATION = r"""
options:
  api_key:
    description:
      - Vast.ai API key.
      - Defaults to the C(VAST_API_KEY) environment variable, the one the C(vastai) CLI reads.
      - Never put it in a playbook or inventory file; it is C(no_log) and kept out of every result.
    type: str
  api_url:
    description:
      - Base URL of the Vast.ai API.
      - Defaults to the C(VAST_URL) environment variable, then U(https://console.vast.ai).
      - Point it at the local emulator in tests, for example C(http://127.0.0.1:8765).
    type: str
requirements:
  - python >= 3.10 on the controller, with the repository's C(vastkit) package (the repo's C(.venv))
attributes:
  check_mode:
    description: Can run in check mode and return the changed status (and, for writes, the plan) without writing.
    support: full
  diff_mode:
    description: Will return details on what has changed when in diff mode.
    support: none
  idempotent:
    description: When run twice in a row with the same arguments, the second run changes nothing.
    support: full
notes:
  - These modules talk to the Vast.ai API from the controller; run them on C(localhost).
  - API failures are reported with the API's HTTP status, error code and message in C(api_error).
"""

    # Offer search options: `extends_documentation_fragment` adds `universal_simulator.vastai.vast.search`.
    SEARCH = r"""
options:
  gpu_name:
    description:
      - GPU model, in Vast's spelling with spaces or underscores, for example C(RTX_4090) or C(H100 PCIE).
      - Checked against the marketplace's list of GPU names; an unknown name fails with suggestions.
    type: str
  num_gpus:
    description: Exact number of GPUs per offer.
    type: int
  min_reliability:
    description: Minimum host reliability score, between 0 and 1, for example C(0.98).
    type: float
  max_dph:
    description: Highest total price in USD per hour (GPU plus the requested disk).
    type: float
    aliases: [max_price]
  min_cuda:
    description: Minimum CUDA version the host driver supports, for example C(12.1).
    type: float
  min_gpu_ram:
    description: Minimum GPU memory per GPU in GB.
    type: float
  geolocation:
    description: Two-letter country codes the host may be in, for example C([US, CA, SE]).
    type: list
    elements: str
  direct_ssh:
    description: Only hosts with open ports, which allow direct SSH (faster than Vast's SSH proxy).
    type: bool
    default: false
  interruptible:
    description:
      - Search interruptible (bid) offers instead of on-demand ones.
      - An interruptible instance can be outbid and stopped; its disk is kept.
    type: bool
    default: false
  query:
    description:
      - Extra conditions in the Vast query language, added to the options above,
        for example C(inet_down>=500 cpu_ram>=32).
      - Unknown field names are errors.
    type: str
  order:
    description:
      - Sort order of offers, in the C(vastai search offers -o) syntax, for example C(dph_total) (cheapest
        first) or C(reliability-,dph_total). The first offer is the one a launch picks.
    type: str
    default: dph_total
  disk:
    description:
      - Disk in GB the instance will get. Offers must have at least this much free, and prices include it.
    type: float
    default: 64
"""
