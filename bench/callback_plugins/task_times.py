"""Records how long each task took on its (single) host, from the task's start to its
result, and writes {task name: [[seconds, changed], ...]} as JSON to $BENCH_TASK_TIMES."""
import json
import os
import time

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'aggregate'
    CALLBACK_NAME = 'task_times'
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self.started = None
        self.times = {}

    def v2_playbook_on_task_start(self, task, is_conditional):
        self.started = time.perf_counter()

    def v2_runner_on_ok(self, result):
        elapsed = time.perf_counter() - self.started
        self.times.setdefault(result.task_name, []).append([elapsed, result.is_changed()])

    def v2_playbook_on_stats(self, stats):
        with open(os.environ['BENCH_TASK_TIMES'], 'w') as f:
            json.dump(self.times, f)
