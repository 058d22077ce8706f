# SPDX-License-Identifier: MIT
"""Action plugin of `vast_launch_plan`: hands the module the playbook's extra vars exactly as given.

A module only sees its arguments, and a play's variables mix extra vars with inventory, play and magic ones, so
the names given with `-e` cannot be told apart there. Ansible parses the command line's extra vars once on the
controller (`-e k=v`, `-e '{json}'`, `-e @file.yml`); this plugin passes that mapping on as `options`, which is
what lets the planner report a misspelled option instead of silently using the default.
"""

from __future__ import annotations

from ansible.plugins.action import ActionBase
from ansible.utils.vars import load_extra_vars


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _supports_check_mode = True

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        args = dict(self._task.args)
        if args.get("options") is None:
            args["options"] = self._templar.template(dict(load_extra_vars(self._loader)))
        result.update(self._execute_module(module_name="universal_simulator.vastai.vast_launch_plan",
                                           module_args=args, task_vars=task_vars))
        return result
