# SPDX-License-Identifier: MIT
"""Action plugin of `vast_instance`: prints the module's progress on the controller while it rents and waits.

A module answers once, when it ends, and renting can take half an hour of creates, loading and failovers
inside one call. So, when the module runs on this controller, the plugin gives it a `progress_file`, runs it
in a thread and prints each line the module appends as it appears (`vastkit.progress`). Interrupts work as
without the plugin: Ctrl-C reaches the worker's main thread, whose handler signals the module's process
group, and the module destroys what it created.
"""

from __future__ import annotations

import contextvars
import os
import tempfile
import threading

from ansible import constants as C
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

display = Display()

MODULE = "universal_simulator.vastai.vast_instance"
TAIL_EVERY_S = 0.5
LOCAL_CONNECTIONS = ("local", "ansible.builtin.local")


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _supports_check_mode = True

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        args = dict(self._task.args)
        if not self._prints_progress(args):
            result.update(self._execute_module(module_name=MODULE, module_args=args, task_vars=task_vars))
            return result
        fd, path = tempfile.mkstemp(prefix="vast-progress-", dir=C.DEFAULT_LOCAL_TMP)
        os.close(fd)
        try:
            result.update(self._run_printing(dict(args, progress_file=path), task_vars, path))
        finally:
            os.unlink(path)
        return result

    def _prints_progress(self, args: dict) -> bool:
        # The module must write where this process reads: on this machine, through the local connection.
        connection = getattr(self._connection, "_load_name", "")
        return (not self._task.no_log and args.get("progress_file") is None and connection in LOCAL_CONNECTIONS)

    def _run_printing(self, args: dict, task_vars, path: str) -> dict:
        from vastkit.progress import read_new_lines  # the collection's requirement, like the module's

        answer: dict = {}
        raised: list = []

        def execute():
            try:
                answer.update(self._execute_module(module_name=MODULE, module_args=args, task_vars=task_vars))
            except BaseException as exc:  # pylint: disable=broad-exception-caught  # re-raised below
                raised.append(exc)

        # Ansible keeps the task's context in context variables, which a new thread does not inherit.
        worker = threading.Thread(target=contextvars.copy_context().run, args=(execute,), daemon=True)
        worker.start()
        offset = 0
        while worker.is_alive():
            worker.join(TAIL_EVERY_S)
            lines, offset = read_new_lines(path, offset)
            for line in lines:
                display.display(f"  {line}")
        if raised:
            raise raised[0]
        return answer
