"""Stage 0 of the instance agent: the program the onstart hook runs at every container start.

Standard library only (it runs before the project is installed) and inlined into onstart.sh, so it must stay
small (Vast's onstart limit is about 4 KB). It has the container's environment (Vast gives it to onstart and
PID 1 only). When the agent is installed it becomes the agent (exec: same process, same environment).
Until then it holds the provisioning lease from the first second: if nothing hands a run over before the
deadline (the controller was interrupted, crashed or lost its connection), it destroys this instance with
the instance-scoped CONTAINER_API_KEY and reads it back until the API says it is gone; when destroy keeps
failing it also asks for a stop (GPU billing ends, the disk is kept).
"""
import json
import os
import sys
import time
import urllib.request

DIR = os.environ.get("INSTANCE_AGENT_DIR", "/workspace/.instance_agent")  # run_contract.AGENT_DIR
PYTHON = "/venv/main/bin/python"  # run_contract.PYTHON
STATE, READY = DIR + "/state.json", DIR + "/agent.ready"


def log(msg):
    print(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "stage0", msg, flush=True)


def load():
    try:
        with open(STATE) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def save(state):
    with open(STATE + ".tmp", "w") as f:
        json.dump(state, f)
    os.replace(STATE + ".tmp", STATE)


def api(method, body=None):
    env = os.environ
    base = env.get("VAST_URL", "https://console.vast.ai").rstrip("/")
    url = f"{base}/api/v0/instances/{env['CONTAINER_ID']}/"
    req = urllib.request.Request(url + ("?owner=me" if method == "GET" else ""), method=method,
                                 data=None if method == "GET" else json.dumps(body or {}).encode(),
                                 headers={"Authorization": "Bearer " + env["CONTAINER_API_KEY"],
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read() or b"{}")


def end_billing(why):
    """Destroy, read back, retry with backoff; past 10 min of failures, stop as well. Never gives up."""
    log(f"lease expired ({why}): destroying this instance")
    t0, wait = time.time(), 2
    while True:
        try:
            if time.time() - t0 > 600:
                api("PUT", {"state": "stopped"})
            api("DELETE")
            if not api("GET").get("instances"):
                log("destroyed")
                return
        except Exception as e:  # any failure: log it and try again
            log(f"destroy failed: {str(e)[:200]}")
        time.sleep(wait)
        wait = min(wait * 2, 60)


def main():
    os.makedirs(DIR, mode=0o700, exist_ok=True)
    state = load()
    if state is None:
        lease = float(os.environ.get("INSTANCE_AGENT_LEASE_S") or 1800)  # run_contract.LEASE_ENV
        state = {"created_at": time.time(), "lease_deadline": time.time() + lease}
        save(state)
    while True:
        if os.path.exists(READY):
            os.execv(PYTHON, [PYTHON, "-m", "instance_agent", "serve"])
        state = load() or state
        if state.get("lease_deadline") and time.time() >= state["lease_deadline"]:
            end_billing("no run handed over")
            return
        time.sleep(1)


if __name__ == "__main__":
    sys.exit(main())
