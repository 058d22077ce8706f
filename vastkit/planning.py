"""Launch planning: the launch's options (the playbook's `-e` extra vars) in, validated runs out, before any API write.

Every option is typed and ranged here, with a message that says what was wrong and what is allowed; a name that is
no option is an error with a suggestion (`-e gpus=H100_PCIE` would otherwise be ignored and rent the default GPU).
The run's config and its sweep overrides are validated with the training package's own validator, handed in as
`configs` (this package does not import `training`). The launch key and the code the instance will get are
checked too. Nothing here talks to Vast except `check_offer`, which judges an offer the caller looked up.

The playbook's view of the options (`playbook_options`) keeps its convention: an unset optional value is ''.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from run_contract import MAX_RUN_NAME, STAGES, run_name_error
from vastkit import codetree, gitcheck, sshconfig, sshkey
from vastkit.client import DEFAULT_RUNTYPE
from vastkit.query import min_cuda_for_image
from vastkit.records import Offer

CONFIRM_COUNT_ABOVE = 8  # more runs than this in one launch needs -e confirm_count=true
MAX_RUNS = 64
MIN_DISK_GB = 8  # the API's minimum disk (create_instance.yaml x-input-validation)
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_INTEGER = re.compile(r"^[+-]?\d+$")
_IMAGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@-]*$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_GPU = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.+-]*$")
# The launch's `runtype` word -> the API's runtype string (as vastai.api.instances.resolve_runtype builds it).
RUNTYPES = {
    "ssh": DEFAULT_RUNTYPE,  # direct SSH where the host has open ports, else Vast's proxy
    "ssh_proxy": "ssh_proxy",  # always through Vast's SSH proxy
    "jupyter": "jupyter_direc ssh_direc ssh_proxy",  # Jupyter as well, SSH as with ssh
}


class ConfigValidator(Protocol):
    """What the planner needs of `training.config` (which is passed in as is)."""

    def read_yaml(self, path: Path) -> Any: ...

    def check_run_config(self, path: Path, overrides: dict | None = None) -> Any: ...


class OptionError(ValueError):
    """A value an option does not take: says why, and what is allowed."""


@dataclass(frozen=True)
class Option:
    kind: str  # bool | int | float | str | path | dict
    default: Any = None  # None: unset unless given
    doc: str = ""
    low: float | None = None
    high: float | None = None
    low_open: bool = False  # low itself not allowed (> instead of >=)
    choices: tuple = ()
    unit: str = ""

    def allowed(self) -> str:
        if self.kind == "bool":
            return "true or false"
        if self.choices:
            return ", ".join(str(c) for c in self.choices)
        if self.kind in ("int", "float"):
            what = "a whole number" if self.kind == "int" else "a number"
            if self.low is not None and self.high is not None and not self.low_open:
                span = f" from {self.low:g} to {self.high:g}"
            else:
                span = "".join([
                    f" {'>' if self.low_open else '>='} {self.low:g}" if self.low is not None else "",
                    f"{' and' if self.low is not None else ''} <= {self.high:g}" if self.high is not None else ""])
            return f"{what}{span}{' ' + self.unit if self.unit else ''}"
        if self.kind == "dict":
            return "a mapping, e.g. -e '{\"NAME\": {\"KEY\": \"value\"}}'"
        return "text"


# Every launch option: the playbook's extra vars (-e NAME=VALUE) that launch.yml reads. docs/control-plane.md
# lists them with their checks; a test keeps the two in step.
LAUNCH_OPTIONS: dict[str, Option] = {
    "config": Option("str", doc="config name (configs/NAME.yaml) or repo-relative path"),
    "sweep": Option("str", doc="sweep name (configs/sweeps/NAME.yaml) or path: one run per entry"),
    "run_name": Option("str", doc="the run's name = the instance label (fleets and sweeps add -1..N)"),
    "count": Option("int", 1, "runs side by side (<run_name>-1..N)", low=1, high=MAX_RUNS),
    "confirm_count": Option("bool", False, f"allow more than {CONFIRM_COUNT_ABOVE} runs in one launch"),
    "gpu": Option("str", "RTX_4090", "GPU model in Vast's spelling; any: no filter"),
    "num_gpus": Option("int", 1, "GPUs per instance", low=1, high=16),
    "offer_id": Option("int", doc="rent this offer (checked against gpu, num_gpus, max_price, bid, the image's CUDA)",
                       low=1),
    "max_price": Option("float", doc="highest $/h (GPU plus disk)", low=0, high=1000, low_open=True, unit="USD/h"),
    "min_reliability": Option("float", 0.98, "host reliability floor", low=0, high=1),
    "disk": Option("float", 64, "disk in GB", low=MIN_DISK_GB, high=8192, unit="GB"),
    # Vast's automatic tag: the newest CUDA build of vastai/pytorch the host's driver supports (searches then
    # leave out hosts below its oldest build, CUDA 12.6; see vastkit.query.min_cuda_for_image).
    "image": Option("str", "vastai/pytorch:@vastai-automatic-tag", "Docker image (PyTorch in /venv/main)"),
    "runtype": Option("str", "ssh", "how the instance is reached: ssh (direct where the host allows, else the "
                      "proxy), ssh_proxy (always the proxy), jupyter (Jupyter too)", choices=tuple(RUNTYPES)),
    "interruptible": Option("bool", False, "rent interruptible at `bid`"),
    "bid": Option("float", doc="bid in $/h for interruptible (at least the offer's min_bid)", low=0, high=1000,
                  low_open=True, unit="USD/h"),
    "auto_shutdown": Option("bool", True, "the instance destroys itself when training ends"),
    "stage": Option("str", "all", "TRAIN_STAGE", choices=("all", *STAGES)),
    "reset_cache": Option("int", 1, "RESET_CACHE", choices=(0, 1)),
    "max_runtime_hours": Option("float", 24, "budget: stop, sync, destroy after this", low=0, high=720,
                                low_open=True, unit="hours"),
    "max_cost": Option("float", doc="budget in USD", low=0, high=100000, low_open=True, unit="USD"),
    "lease_minutes": Option("float", 30, "the instance destroys itself unless its run is handed over within this",
                            low=0, high=1440, low_open=True, unit="minutes"),
    "code_source": Option("str", "git", "git: the instance checks out HEAD from origin; local: upload the tree",
                          choices=("git", "local")),
    "code_repo": Option("str", doc="URL the instance clones (default: origin)"),
    "code_version": Option("str", doc="commit the instance checks out (default: HEAD)"),
    "allow_dirty": Option("bool", False, "code_source=git with uncommitted changes (they are not trained)"),
    "provision": Option("bool", True, "false: rent and wait only, no roles"),
    "ssh_key_file": Option("path", "~/.ssh/id_ed25519", "launch key (private; .pub next to it)"),
    "known_hosts_dir": Option("path", "~/.ssh/vast_known_hosts", "one known_hosts file per instance id"),
    "ssh_config_dir": Option("path", sshconfig.DEFAULT_DIR, "one SSH config entry per run (ssh <run>)"),
    "ssh_config_file": Option("path", sshconfig.DEFAULT_CONFIG, "the SSH config that includes ssh_config_dir once"),
    "loading_timeout": Option("float", 600, "seconds one attempt may take to answer SSH", low=0, high=86400,
                              low_open=True, unit="seconds"),
    "wait_timeout": Option("float", 1800, "seconds all attempts together may take", low=0, high=86400,
                           low_open=True, unit="seconds"),
    "poll_interval": Option("float", 5, "seconds between status polls", low=0.1, high=300, unit="seconds"),
    "max_attempts": Option("int", 3, "offers tried per run", low=1, high=10),
    "onstart_script": Option("str", doc="replaces the instance agent's onstart (static, no secrets)"),
    "pipeline_env": Option("dict", {}, "extra non-secret env for the pipeline (tests: TRAIN_FAIL_AT_STAGE)"),
    "supervisor_settings": Option("dict", {}, "more keys of the run's policy (instance_agent/policy.py), e.g. "
                                              "ceiling_grace_s, destroy_fallback_s, restart_limit"),
    "restart": Option("bool", False, "restart the run's pipeline on a reused instance"),
    "provision_timings_dir": Option("path", doc="write each run's provisioning phase times here (benchmarks)"),
}


@dataclass
class PlannedRun:
    name: str
    train_config: str  # repo-relative
    overrides: dict = field(default_factory=dict)
    offer_id: int | None = None  # the offer this run starts on (offer_id, first run only)
    group: str = ""  # the fleet's or sweep's base name (W&B group); a lone run is its own group


@dataclass
class Plan:
    options: dict[str, Any]  # typed; None where unset
    given: set[str]
    runs: list[PlannedRun] = field(default_factory=list)
    code_repo: str = ""
    code_version: str = ""
    left_out: list[str] = field(default_factory=list)  # code_source=local: kept back as secrets
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def lease_s(self) -> int:
        return max(1, round(float(self.options["lease_minutes"] or 30) * 60))

    def playbook_options(self) -> dict[str, Any]:
        """The options as the playbook reads them (`opt`): unset optional values are '', plus `lease_s` and
        `runtype_api` (the API's words for `runtype`)."""
        view = {name: ("" if value is None else value) for name, value in self.options.items()}
        view["lease_s"] = self.lease_s
        view["runtype_api"] = RUNTYPES.get(self.options["runtype"] or "ssh", DEFAULT_RUNTYPE)
        return view

    def search_args(self) -> dict[str, Any] | None:
        """vast_offer_info's arguments for the runs that need a search (None: the offer_id covers them all)."""
        o = self.options
        if o["offer_id"] is not None and len(self.runs) <= 1:
            return None
        args = dict(num_gpus=o["num_gpus"], min_reliability=o["min_reliability"], interruptible=o["interruptible"],
                    disk=o["disk"], limit=max(2 * len(self.runs), 5))
        if o["gpu"] and o["gpu"] != "any":
            args["gpu_name"] = o["gpu"]
        if o["max_price"] is not None:
            args["max_dph"] = o["max_price"]
        if o["interruptible"] and o["bid"] is not None:
            args["query"] = f"min_bid<={o['bid']}"  # only offers this bid can rent
        return args


# -- values ------------------------------------------------------------------------------------------------


def _show(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def parse_value(name: str, option: Option, value: Any) -> Any:
    """`value` as `option` takes it; OptionError otherwise. Strings come from `-e name=value`, other types from
    `-e '{json}'` or `-e @file.yml`."""
    if isinstance(value, str) and value.strip() == "" and option.kind != "dict":
        raise OptionError("empty (an unset shell variable?): give a value or leave the option out")
    kind = option.kind
    if kind == "bool":
        if isinstance(value, bool):
            return value
        word = str(value).strip().lower() if isinstance(value, (str, int)) else None
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        raise OptionError("not a boolean")
    if kind == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            parsed = value
        elif isinstance(value, float) and value.is_integer():
            parsed = int(value)
        elif isinstance(value, str) and _INTEGER.match(value.strip()):
            parsed = int(value.strip())
        else:
            raise OptionError("not a whole number")
        return _in_range(option, parsed)
    if kind == "float":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            parsed = float(value)
        elif isinstance(value, str) and _NUMBER.match(value.strip()):
            parsed = float(value.strip())
        else:
            raise OptionError("not a number")
        if not math.isfinite(parsed):
            raise OptionError("not a finite number")
        return _in_range(option, parsed)
    if kind == "dict":
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                raise OptionError("not a mapping") from None
        if not isinstance(value, Mapping):
            raise OptionError("not a mapping")
        return dict(value)
    if isinstance(value, (dict, list, tuple, set)) or value is None or isinstance(value, bool):
        raise OptionError("not text")
    text = str(value)
    if option.choices and text not in option.choices:
        raise OptionError("not one of the choices")
    return str(Path(text).expanduser()) if kind == "path" else text


def _in_range(option: Option, number: float) -> float:
    if option.choices and number not in option.choices:
        raise OptionError("not one of the choices")
    if option.low is not None and (number < option.low or (option.low_open and number == option.low)):
        raise OptionError("too small")
    if option.high is not None and number > option.high:
        raise OptionError("too large")
    return number


def suggest(name: str, known) -> str:
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.6)
    return f"did you mean {' or '.join(close)}?" if close else ""


def parse_options(given: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """(typed values with defaults, errors). Names starting with `ansible_` are Ansible's own and pass."""
    errors = []
    for name in sorted(given):
        if name in LAUNCH_OPTIONS or str(name).startswith("ansible_"):
            continue
        hint = suggest(name, LAUNCH_OPTIONS)
        errors.append(f"unknown option {name}: {hint} (unknown options would be ignored, and the defaults used)"
                      if hint else f"unknown option {name}: no launch option has that name; they are: "
                      f"{', '.join(sorted(LAUNCH_OPTIONS))} (docs/control-plane.md)")
    values: dict[str, Any] = {}
    for name, option in LAUNCH_OPTIONS.items():
        if name not in given:
            values[name] = _default(option)
            continue
        try:
            values[name] = parse_value(name, option, given[name])
        except OptionError as exc:
            errors.append(f"{name}={_show(given[name])}: {exc}; allowed: {option.allowed()}")
            values[name] = None
    return values, errors


def _default(option: Option) -> Any:
    if option.default is None:
        return None
    if option.kind == "path":
        return str(Path(option.default).expanduser())
    return dict(option.default) if isinstance(option.default, dict) else option.default


def cross_checks(o: dict[str, Any], given: set[str]) -> list[str]:
    """Rules between options (each value on its own is valid)."""
    errors = []
    if o["interruptible"] and o["bid"] is None and "bid" not in given:
        errors.append("interruptible=true needs bid=USD/h: your highest price per hour, at least the offer's "
                      "min_bid (-e bid=0.3)")
    if o["bid"] is not None and o["interruptible"] is False:
        errors.append(f"bid={o['bid']:g} rents an interruptible instance: add -e interruptible=true, or drop bid "
                      "for an on-demand instance")
    if "sweep" in given and "count" in given and o["count"] not in (None, 1):
        errors.append("sweep and count cannot be combined: a sweep launches one run per entry")
    if o["loading_timeout"] and o["wait_timeout"] and o["wait_timeout"] < o["loading_timeout"]:
        errors.append(f"wait_timeout={o['wait_timeout']:g} is shorter than loading_timeout="
                      f"{o['loading_timeout']:g}: all attempts together must be allowed at least one attempt's time")
    for name, value in (o["pipeline_env"] or {}).items():
        if not _ENV_NAME.match(str(name)) or not isinstance(value, (str, int, float)) or isinstance(value, bool):
            errors.append(f"pipeline_env.{name}={_show(value)}: needs an environment variable name and a text or "
                          "number value")
    errors += _supervisor_settings_errors(o.get("supervisor_settings") or {})
    if o["image"] and not _IMAGE.match(o["image"]):
        errors.append(f"image={o['image']}: not a Docker image reference (e.g. vastai/pytorch or "
                      "vastai/pytorch:2.5.1-cuda-12.4)")
    if o["gpu"] and not _GPU.match(o["gpu"]):
        errors.append(f"gpu={o['gpu']}: not a GPU name (Vast's spelling, e.g. RTX_4090, H100_PCIE; or any)")
    return errors


def _supervisor_settings_errors(settings: dict[str, Any]) -> list[str]:
    """The instance's own policy validator, on the controller: a bad key fails before anything is rented."""
    from instance_agent.policy import PolicyError, policy_from_dict

    try:
        policy_from_dict({"run_name": "check", "train_config": "configs/check.yaml", **settings})
    except PolicyError as exc:
        return [f"supervisor_settings.{exc}"]
    return []


# -- configs, sweeps, run names -----------------------------------------------------------------------------


def available_configs(root: Path) -> list[str]:
    return sorted(p.stem for p in (root / "configs").glob("*.yaml"))


def config_path(root: Path, name: str) -> tuple[str | None, str | None]:
    """(repo-relative path, error) for `-e config=`: a name means configs/NAME.yaml."""
    if "/" not in name and not name.endswith((".yaml", ".yml")):
        rel = f"configs/{name}.yaml"
        if (root / rel).is_file():
            return rel, None
        names = available_configs(root)
        hint = suggest(name, names)
        return None, (f"Unknown config {name} ({rel} does not exist). {hint + ' ' if hint else ''}"
                      f"Available configs: {', '.join(names) or 'none'}.")
    path = Path(name)
    full = path if path.is_absolute() else root / path
    try:
        rel = full.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return None, (f"config {name} is outside the repository ({root}); the instance has only the "
                      "repository's files: put it under configs/")
    if not (root / rel).is_file():
        return None, f"Unknown config {name} ({rel} does not exist). Available configs: " \
                     f"{', '.join(available_configs(root)) or 'none'}."
    return rel, None


SWEEP_SHAPE = ("expected top-level keys config (base config name) and runs (a non-empty list of mappings with "
               "the keys overrides (dotted config keys to values) and optionally config)")


def read_sweep(root: Path, sweep: str, configs: ConfigValidator) -> tuple[dict | None, str | None]:
    """(the sweep document, error)."""
    if "/" in sweep or sweep.endswith((".yaml", ".yml")):
        path = Path(sweep).expanduser()
        path = path if path.is_absolute() else root / path
    else:
        path = root / "configs" / "sweeps" / f"{sweep}.yaml"
    if not path.is_file():
        names = sorted(p.stem for p in (root / "configs" / "sweeps").glob("*.yaml"))
        return None, (f"Unknown sweep {sweep} ({path} does not exist). Available sweeps: "
                      f"{', '.join(names) or 'none'}.")
    try:
        doc = configs.read_yaml(path)
    except ValueError as exc:
        return None, f"sweep {exc}"
    where = f"sweep {path}"
    if not isinstance(doc, dict):
        return None, f"{where}: {SWEEP_SHAPE}"
    extra = sorted(set(doc) - {"config", "runs"})
    if extra:
        hint = suggest(str(extra[0]), ("config", "runs"))
        return None, f"{where}: unknown key {extra[0]} {('(' + hint + ') ') if hint else ''}— {SWEEP_SHAPE}"
    runs = doc.get("runs")
    if not isinstance(runs, list) or not runs:
        return None, f"{where}: runs is missing or empty — {SWEEP_SHAPE}"
    if "config" in doc and not isinstance(doc["config"], str):
        return None, f"{where}: config must be a config name — {SWEEP_SHAPE}"
    for i, entry in enumerate(runs):
        if not isinstance(entry, dict):
            return None, f"{where}: runs[{i}] is not a mapping — {SWEEP_SHAPE}"
        extra = sorted(set(entry) - {"config", "overrides"})
        if extra:
            hint = suggest(str(extra[0]), ("config", "overrides"))
            return None, f"{where}: runs[{i}]: unknown key {extra[0]} {('(' + hint + ') ') if hint else ''}— {SWEEP_SHAPE}"
        if not isinstance(entry.get("overrides", {}), dict):
            return None, f"{where}: runs[{i}].overrides is not a mapping of dotted keys to values — {SWEEP_SHAPE}"
        if "config" in entry and not isinstance(entry["config"], str):
            return None, f"{where}: runs[{i}].config must be a config name — {SWEEP_SHAPE}"
    return doc, None


def default_run_name(config: str, now: datetime) -> str:
    stem = re.sub(r"[^A-Za-z0-9_.-]", "-", Path(config).name.removesuffix(".yaml").removesuffix(".yml"))
    return f"{stem.lstrip('._-') or 'run'}-{now:%Y%m%d-%H%M}"


def run_names(base: str, count: int, *, numbered: bool) -> tuple[list[str], str | None]:
    """The runs' names (base, or base-1..N) and the first name the run-name rule refuses."""
    names = [f"{base}-{i}" for i in range(1, count + 1)] if numbered else [base]
    for name in names:
        problem = run_name_error(name)
        if problem:
            if numbered and run_name_error(base) is None:
                return names, (f"run_name={base}: too long for {count} runs: their names {base}-1..{base}-{count} "
                               f"must be at most {MAX_RUN_NAME} characters ({problem})")
            return names, f"run_name={base}: {problem}"
    return names, None


# -- the plan -----------------------------------------------------------------------------------------------


def plan_launch(given: Mapping[str, Any], *, repo_root: Path, configs: ConfigValidator,
                now: datetime | None = None,
                check_key: Callable[[Path], sshkey.KeyCheck] = sshkey.check_launch_key,
                git_timeout: float = 30.0) -> Plan:
    """Every check that needs no API. `plan.errors` empty means the runs in `plan.runs` may be rented."""
    now = now or datetime.now(timezone.utc)
    root = Path(repo_root)
    options, errors = parse_options(given)
    plan = Plan(options=options, given=set(given), errors=errors)
    o = options
    plan.errors += cross_checks(o, plan.given)

    sweep_doc = None
    if o["sweep"]:
        sweep_doc, problem = read_sweep(root, o["sweep"], configs)
        if problem:
            plan.errors.append(problem)
    base_config = o["config"] or (sweep_doc or {}).get("config")
    if not base_config and "config" not in given and not (o["sweep"] and sweep_doc is None):
        plan.errors.append(f"Say which config to train: -e config=NAME, one of: "
                           f"{', '.join(available_configs(root))} (files in configs/).")
    base_path = None
    if base_config:
        base_path, problem = config_path(root, base_config)
        if problem:
            plan.errors.append(problem)

    # The runs: one, a fleet of count, or one per sweep entry.
    entries = ([(e.get("config"), e.get("overrides") or {}) for e in sweep_doc["runs"]] if sweep_doc
               else [(None, {})] * (o["count"] or 1))
    if len(entries) > CONFIRM_COUNT_ABOVE and not o["confirm_count"]:
        what = f"the sweep has {len(entries)} runs" if sweep_doc else f"count={len(entries)}"
        plan.errors.append(f"{what}: that rents {len(entries)} paid instances at once; say -e confirm_count=true if "
                           f"you mean it (without it: at most {CONFIRM_COUNT_ABOVE})")
    if len(entries) > MAX_RUNS:
        plan.errors.append(f"the sweep has {len(entries)} runs: at most {MAX_RUNS} in one launch")
    base_name = o["run_name"] or (default_run_name(base_config, now) if base_config else None)
    if base_name is None or ("run_name" in given and o["run_name"] is None):
        return plan
    names, problem = run_names(base_name, len(entries), numbered=len(entries) > 1 or sweep_doc is not None)
    if problem:
        plan.errors.append(problem)

    for name, (entry_config, overrides) in zip(names, entries, strict=True):
        path = base_path
        if entry_config:
            path, problem = config_path(root, entry_config)
            if problem:
                plan.errors.append(f"sweep run {name}: {problem}")
        if path is None:
            continue
        try:
            configs.check_run_config(root / path, dict(overrides))
        except ValueError as exc:  # training.config.ConfigError: names the file and the dotted key
            said = str(exc).replace(f"{root}/", "")
            plan.errors.append(f"{'sweep run ' + name + ': ' if sweep_doc else ''}config {said}")
        plan.runs.append(PlannedRun(name=name, train_config=path, overrides=dict(overrides), group=base_name))
    if plan.runs and o["offer_id"] is not None:
        plan.runs[0].offer_id = o["offer_id"]

    if o["ssh_key_file"]:
        key = check_key(Path(o["ssh_key_file"]))
        if key.problem:
            plan.errors.append(key.problem)
        elif key.via_agent:
            plan.notes.append(f"ssh_key_file: {o['ssh_key_file']} has a passphrase; ssh-agent holds it")
    _check_code(plan, root, git_timeout)
    return plan


def _check_code(plan: Plan, root: Path, git_timeout: float) -> None:
    """What code the instance gets (only checked when it gets any: provision=true)."""
    o = plan.options
    plan.code_version = o["code_version"] or gitcheck.head_commit(root)
    given_repo = o["code_repo"] or gitcheck.origin_url(root)
    plan.code_repo = gitcheck.clone_url(given_repo).url if given_repo else ""
    configs_used = tuple(sorted({run.train_config for run in plan.runs}))
    if not o["provision"] or o["code_source"] is None:
        return
    if o["code_source"] == "git":
        check = gitcheck.check_git_code(root, repo=o["code_repo"], version=o["code_version"],
                                        config_paths=configs_used, allow_dirty=bool(o["allow_dirty"]),
                                        timeout=git_timeout)
        plan.errors += check.problems
        plan.notes += check.notes
        plan.code_repo, plan.code_version = check.repo or plan.code_repo, check.version or plan.code_version
        return
    try:
        listing = codetree.list_tree(root)
    except codetree.TreeError as exc:
        plan.errors.append(f"code_source=local: {exc}")
        return
    plan.left_out = listing.left_out
    shipped = set(listing.files)
    for path in configs_used:
        if path not in shipped:
            plan.errors.append(f"config {path} would not be uploaded by code_source=local (git ignores it, or it "
                               "looks like a secret): move it under configs/")
    if listing.left_out:
        plan.notes.append(f"code_source=local: not uploading {len(listing.left_out)} file(s) that look like secrets: "
                          f"{', '.join(listing.left_out)}")


# -- the offer of offer_id ----------------------------------------------------------------------------------


def same_gpu(a: str, b: str) -> bool:
    """`RTX_4090` and `RTX 4090` name one model (Vast's API uses spaces, its CLI underscores)."""
    def norm(name: str) -> str:
        return " ".join(name.replace("_", " ").split()).lower()
    return norm(a) == norm(b)


def check_offer(offer: Offer | None, plan: Plan) -> list[str]:
    """Judge the offer that `offer_id` names against the other options, and make the failover search for the
    same GPU: gpu and num_gpus not given on the command line are taken from the offer (in `plan.options`)."""
    o, given = plan.options, plan.given
    offer_id = o["offer_id"]
    if offer is None:
        kind = "interruptible" if o["interruptible"] else "on-demand"
        return [f"offer_id={offer_id}: no such {kind} offer is available now (rented, gone, or not offered "
                f"{kind}); find one with playbooks/search.yml, or leave offer_id out to search"]
    errors = []
    gpu = offer.gpu_name.replace(" ", "_")
    if "gpu" in given and o["gpu"] not in (None, "any") and not same_gpu(o["gpu"], offer.gpu_name):
        errors.append(f"offer_id={offer_id} is a {gpu} offer, not gpu={o['gpu']}: name the offer's GPU (or "
                      f"leave gpu out), or pick another offer")
    if "num_gpus" in given and o["num_gpus"] is not None and o["num_gpus"] != offer.num_gpus:
        errors.append(f"offer_id={offer_id} has {offer.num_gpus} GPU(s), not num_gpus={o['num_gpus']}")
    if o["max_price"] is not None and offer.dph_total > o["max_price"]:
        errors.append(f"offer_id={offer_id} costs ${offer.dph_total:.4f}/h with {o['disk']:g} GB disk, above "
                      f"max_price={o['max_price']:g}: raise max_price or pick a cheaper offer")
    if "min_reliability" in given and offer.reliability is not None and o["min_reliability"] is not None \
            and offer.reliability < o["min_reliability"]:
        errors.append(f"offer_id={offer_id} has reliability {offer.reliability:.4f}, below "
                      f"min_reliability={o['min_reliability']:g}")
    if o["interruptible"] and o["bid"] is not None and offer.min_bid is not None and o["bid"] < offer.min_bid:
        errors.append(f"bid={o['bid']:g} is below offer {offer_id}'s min_bid of ${offer.min_bid:.4f}/h: Vast would "
                      f"refuse it (or outbid it at once); bid at least {offer.min_bid:.4f}")
    if offer.disk_space is not None and o["disk"] is not None and offer.disk_space < o["disk"]:
        errors.append(f"offer_id={offer_id} has {offer.disk_space:g} GB free, less than disk={o['disk']:g}")
    need_cuda = min_cuda_for_image(o["image"])
    if need_cuda is not None and offer.cuda_max_good is not None and offer.cuda_max_good < need_cuda:
        # The search leaves such hosts out; a pinned offer must be refused here, before it is paid for.
        errors.append(f"offer_id={offer_id}'s host driver runs CUDA up to {offer.cuda_max_good:g}, but image "
                      f"{o['image']} needs CUDA {need_cuda:g}: Vast would leave the instance at created with "
                      f"\"OCI runtime create failed\" (billing its disk). Pick an offer with "
                      f"cuda_max_good>={need_cuda:g} (playbooks/search.yml) or an image built for an older CUDA")
    if not errors:
        # The failover searches with these: the same GPU as the offer, not the default RTX_4090.
        if "gpu" not in given:
            o["gpu"] = gpu
        if "num_gpus" not in given:
            o["num_gpus"] = offer.num_gpus
    return errors
