"""The onstart script: static, free of secrets, under Vast's onstart limit, the same for every launch.

Vast runs it at every container start with the container's environment. It only writes stage 0 of the agent
(instance_agent/stage0.py, inlined) beside the agent's state and starts it in the background; stage 0 holds
the lease and becomes the agent once bootstrap installed it. `python -m instance_agent onstart` prints it;
instance_agent/onstart.sh is that output, committed (a test keeps the two equal) so launch reads a file.
"""

from __future__ import annotations

import ast
from importlib import resources
from pathlib import Path

import run_contract as contract

ONSTART_LIMIT = 4000  # bytes; Vast documents about 4 KB for the onstart field
SCRIPT = Path(__file__).with_name("onstart.sh")
TEMPLATE = """\
#!/bin/bash
# universal_simulator onstart (static, no secrets): start the instance agent with this container's env.
touch /root/.no_auto_tmux
mkdir -p -m 700 {agent_dir}
cat > {agent_dir}/stage0.py <<'STAGE0'
{code}
STAGE0
py={python}; [ -x "$py" ] || py=python3
nohup "$py" {agent_dir}/stage0.py >> {agent_dir}/agent.log 2>&1 < /dev/null &
"""


def stage0_source() -> str:
    """stage0.py without its module docstring (the onstart field is small; the file keeps the explanation)."""
    source = resources.files("instance_agent").joinpath("stage0.py").read_text()
    tree = ast.parse(source)
    first = tree.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        lines = source.splitlines()
        source = "\n".join(lines[first.end_lineno:]).lstrip("\n")
    return source.rstrip("\n")


def onstart_script() -> str:
    script = TEMPLATE.format(agent_dir=contract.AGENT_DIR, python=contract.PYTHON, code=stage0_source())
    if len(script.encode()) > ONSTART_LIMIT:
        raise ValueError(f"onstart script is {len(script.encode())} bytes; Vast allows about {ONSTART_LIMIT}")
    return script
