"""Destroy the instance we run on, with its own instance-scoped key: destroy, not stop (a stopped one bills disk)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from vastkit.client import VastAPI
from vastkit.errors import VastAPIError, VastConfigError
from vastkit.retry import Deadline

log = logging.getLogger(__name__)


class SelfDestroyError(RuntimeError):
    """The instance could not destroy itself; it is still billing. Says how to do it by hand."""


def instance_id_from_env(environ: Mapping[str, str]) -> int:
    """`CONTAINER_ID`, else the id in `VAST_CONTAINERLABEL` (`C.<id>`)."""
    for raw in (environ.get("CONTAINER_ID"), (environ.get("VAST_CONTAINERLABEL") or "").removeprefix("C.")):
        if raw and raw.strip().isdigit():
            return int(raw)
    raise SelfDestroyError("no CONTAINER_ID (or VAST_CONTAINERLABEL=C.<id>) in the environment: "
                           "not running inside a Vast instance?")


def destroy_self(
    environ: Mapping[str, str], *, timeout: float = 300.0, poll: float = 10.0,
    api_factory: Callable[[], VastAPI] = VastAPI.for_instance,
) -> bool:
    """Destroy this instance; True if this call did it, False if it was already gone.

    Keeps trying until `timeout`: a run that cannot end its own billing must say so loudly, not give up quietly.
    """
    instance_id = instance_id_from_env(environ)
    deadline = Deadline(timeout)
    last = "not tried"
    while True:
        try:
            return api_factory().destroy_instance(instance_id)
        except VastConfigError as exc:
            raise SelfDestroyError(f"cannot destroy instance {instance_id}: {exc}") from None
        except VastAPIError as exc:
            last = str(exc)
            log.warning("destroying instance %s failed: %s", instance_id, last)
        if deadline.expired:
            raise SelfDestroyError(
                f"instance {instance_id} could not destroy itself within {timeout:.0f}s ({last}); it is still "
                f"billing: run ansible-playbook playbooks/teardown.yml -e run_name=<name>")
        deadline.sleep(poll)
