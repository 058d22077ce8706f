"""The e2e scenarios: each drives real playbooks against the shared local world and records what it saw.

They run side by side (the `scenarios` fixture in conftest.py); the tests in test_launch_e2e.py assert on the records.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time

import yaml
from e2e_support import LONG_CONFIG, TINY_PLAN, Record, wait_for

import run_contract as contract
from tools import chaos, demo
from tools.world import LocalWorld

CODE_DIR = "/workspace/universal_simulator"
# Runs launched side by side would exhaust the emulator's few reliable RTX 4090 offers: any GPU will do.
ANY_GPU = ("-e", "gpu=any", "-e", "max_attempts=8")


def demo_path(world: LocalWorld, rec: Record) -> None:
    """`make demo`'s own path with the tiny dataset: launch, follow to the end, look at the results."""
    lines: list[str] = []
    # As many attempts as the scenarios beside it: a score of runs race for the same cheapest offers.
    plan = dataclasses.replace(TINY_PLAN, launch_args=(*TINY_PLAN.launch_args, "-e", "max_attempts=8"))
    outcome = demo.run(world, plan, "e2e-demo", say=lines.append, stream_ansible=False)
    rec.outputs.append(outcome.launch_output)
    demo.show(outcome, world, say=lines.append)
    rec.facts.update(outcome=outcome, lines=lines)


def crash(world: LocalWorld, rec: Record) -> None:
    """The pipeline crashes mid-stage (TRAIN_FAIL_AT_STAGE): logs still land in the bucket, the instance goes."""
    run = "e2e-crash"
    rec.playbook(world.launch("tiny", run, *ANY_GPU, "-e", '{"pipeline_env": {"TRAIN_FAIL_AT_STAGE": "operator"}}'))
    world.wait_gone(run, timeout=600)  # 0.1 h from creation, then the final sync: slow on a loaded machine
    rec.facts.update(artifacts=world.artifacts(run), heartbeat=world.heartbeat(run),
                     pipeline_log=world.s3.read(f"runs/{run}/logs/pipeline.log").decode())


def budget(world: LocalWorld, rec: Record) -> None:
    """max_runtime_hours=0.01 on a run that would take far longer: stopped, synced, destroyed.

    Launched as a one-entry sweep whose override makes the operator stage endless, which also proves that a
    sweep's dotted overrides reach the pipeline.
    """
    sweep = world.root / "budget-sweep.yaml"
    sweep.write_text(yaml.safe_dump({"config": "tiny", "runs": [{"overrides": {"operator.steps": 100000}}]}))
    # The budget counts from creation (provisioning included): 0.1 h leaves a loaded machine room to start.
    rec.playbook(world.launch("tiny", "e2e-budget", *ANY_GPU, "-e", f"sweep={sweep}", "-e", "max_runtime_hours=0.1",
                              check=False))
    run = "e2e-budget-1"
    world.wait_gone(run, timeout=300)
    rec.facts.update(artifacts=world.artifacts(run), heartbeat=world.heartbeat(run),
                     operator_log=world.s3.read(f"runs/{run}/logs/operator.log").decode())


def relaunch(world: LocalWorld, rec: Record) -> None:
    """auto_shutdown=false; look for secrets on the live instance; relaunch once the run succeeded; tear down."""
    run = "e2e-relaunch"
    args = (*ANY_GPU, "-e", "auto_shutdown=false")
    rec.playbook(world.launch("tiny", run, *args, "-vvv"))  # the whole launch, roles included, at -vvv
    # At once, while the pipeline runs: every process and every file the run made on the instance.
    _, ps, _ = world.ssh(run, "ps -eo pid,args")
    _, onstart, _ = world.ssh(run, "cat /root/onstart.sh")
    # The SSH session does not see the container's environment (as on Vast); PID 1 has it.
    _, session_key, _ = world.ssh(run, "printenv CONTAINER_API_KEY; printenv B2_APP_KEY; true")
    _, container_key, _ = world.ssh(run, "tr '\\0' '\\n' < /proc/1/environ | sed -n 's/^CONTAINER_API_KEY=//p'")
    rec.facts["session_env_secrets"] = session_key.strip()
    rec.facts.update(ps=ps, onstart=onstart, container_key=container_key.strip())
    _, policy, _ = world.ssh(run, f"cat {contract.CODE_DIR}/{contract.POLICY_FILE}")
    rec.facts["pipeline_env"] = json.loads(policy)["pipeline_env"]
    beat = wait_for("the run to succeed", lambda: _succeeded(world, run), timeout=240)
    # /root/.cache is the package cache the emulator shares between instances (nothing of ours is in it).
    # The one file written here on purpose is the grep's positive control: that it is found proves the search.
    secrets = [*world.secrets.values(), rec.facts["container_key"]]
    world.ssh(run, f"echo {world.secrets.b2_app_key} > /tmp/grep-control")
    grep = ("grep -rlF --exclude-dir=.cache " + " ".join(f"-e {s}" for s in secrets)
            + " /workspace /tmp /root; true")
    _, files_with_secrets, _ = world.ssh(run, grep, timeout=120)
    _, files_seen, _ = world.ssh(run, "find /workspace /tmp /root -type f -not -path '*/.cache/*' | wc -l")
    rec.facts.update(heartbeat=beat, files_with_secrets=files_with_secrets.split(), files_seen=int(files_seen))
    second = rec.playbook(world.launch("tiny", run, *args))
    rec.facts.update(second=second, objects={k: world.s3.read(k) for k in world.s3.keys(f"runs/{run}/")})
    rec.facts.update(pruned=_relaunch_after_a_file_was_deleted(world, run, args))
    rec.playbook(world.playbook("teardown.yml", "-e", f"run={run}", "-e", f"ssh_key_file={world.keys.private_key}",
                                "-e", f"known_hosts_dir={world.root / 'known_hosts'}", *world.ssh_config_args()))
    world.wait_gone(run, timeout=60)
    rec.facts["gone"] = True


def resume(world: LocalWorld, rec: Record) -> None:
    """Preempted mid-stage (emulator fault: the instance is stopped) on a machine that does not come back
    (stuck loading): the relaunch under the same name replaces it, and the new instance resumes from the
    checkpoints in the bucket instead of starting over. A further launch while it trains changes nothing;
    teardown syncs before destroying."""
    run = "e2e-resume"
    rec.playbook(world.launch(LONG_CONFIG, run, *ANY_GPU))
    key = f"runs/{run}/checkpoints/operator/last.pt"
    wait_for("an operator checkpoint in the bucket", lambda: key in world.s3.keys(f"runs/{run}/"), timeout=240)
    first_id = world.instance(run)["id"]
    world.emulator.set_faults([{"kind": "preempt", "target": {"instance_id": first_id}},
                               {"kind": "stuck_loading", "target": {"instance_id": first_id}}])
    wait_for("the instance to be stopped", lambda: world.instance(run)["actual_status"] == "stopped", timeout=60)
    rec.facts["preempted"] = world.instance(run)["status_msg"]
    rec.playbook(world.launch(LONG_CONFIG, run, *ANY_GPU, "-e", "loading_timeout=15"))
    rec.facts["replaced"] = [row["id"] for row in world.instances(run)] != [first_id]
    rec.facts["log"] = wait_for("the resumed operator stage", lambda: _resumed_log(world, run), timeout=180)
    rec.facts["third"] = rec.playbook(world.launch(LONG_CONFIG, run, *ANY_GPU))  # while it trains
    rec.playbook(world.playbook("teardown.yml", "-e", f"run={run}", "-e", f"ssh_key_file={world.keys.private_key}",
                                "-e", f"known_hosts_dir={world.root / 'known_hosts'}", *world.ssh_config_args()))
    world.wait_gone(run, timeout=60)
    rec.facts["synced_log"] = world.s3.read(f"runs/{run}/logs/pipeline.log").decode()


def _relaunch_after_a_file_was_deleted(world: LocalWorld, run: str, args: tuple[str, ...]) -> dict[str, bool]:
    """Make the instance's tree look like an upload of a tree that had `training/stale_module.py` (since
    deleted on the controller), relaunch, and report which files exist afterwards."""
    setup = (f"cd {CODE_DIR} && echo 'raise SystemExit' > training/stale_module.py && echo n > notes_kept.txt"
             " && echo o > /workspace/outside.txt && echo a > /workspace/abs.txt"
             " && printf 'training/stale_module.py\\n../outside.txt\\n/workspace/abs.txt\\n' >> .vastkit/tree.files"
             " && echo stale > .vastkit/tree.sha256")
    world.ssh(run, setup)
    world.launch("tiny", run, *args)
    paths = {"stale": f"{CODE_DIR}/training/stale_module.py", "kept": f"{CODE_DIR}/notes_kept.txt",
             "outside": "/workspace/outside.txt", "absolute": "/workspace/abs.txt", "tree": f"{CODE_DIR}/training/__init__.py"}
    _, out, _ = world.ssh(run, "; ".join(f"test -e {path} && echo {name}" for name, path in paths.items()))
    return {name: name in out.split() for name in paths}


def _succeeded(world: LocalWorld, run: str) -> dict | None:
    beat = world.heartbeat(run)
    if beat and beat.get("state") not in (None, "starting", "running") and beat.get("phase") == "done":
        return beat
    return None


def _chaos(name: str):
    """A safety scenario of tools.chaos, recorded like the others (its ChaosResult in facts["chaos"])."""
    what, fn = chaos.SCENARIOS[name]

    def scenario(world: LocalWorld, rec: Record) -> None:
        res = chaos.ChaosResult(scenario=name, what=what)
        rec.facts["chaos"] = res
        try:
            fn(world, res)
        finally:
            rec.outputs.extend(res.outputs)

    scenario.__doc__ = what
    return scenario


def _resumed_log(world: LocalWorld, run: str) -> str | None:
    code, log, _ = world.ssh(run, f"cat {CODE_DIR}/logs/pipeline.log")
    if code == 0 and re.search(r"\[operator\] resuming .* at step \d+", log):
        return log
    time.sleep(1)
    return None


SCENARIOS = {"demo_path": demo_path, "crash": crash, "budget": budget, "relaunch": relaunch, "resume": resume,
             **{f"chaos_{name}": _chaos(name) for name in chaos.SCENARIOS}}
