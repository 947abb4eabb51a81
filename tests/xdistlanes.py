"""The project's own lanes on pytest-xdist workers: the quick lanes as one unit of work, in
order, and each VM test as a unit of its own (``tests/conftest.py``'s ``xdist_group``).

xdist's LoadScopeScheduling hands the units out: the largest (the quick lanes) to the first
worker, the VM tests in their order to the other, a few ahead, and to the first worker too once
its lanes are nearly done. The ``exclusive`` tests, each a unit of its own, go out last.

``--dist loadgroup`` would do this from ``xdist_group`` marks, but pytest-xdist 3.8 keys the
group on ``item._nodeid``, which pytest 9.2 no longer reads (``Node.nodeid`` is ``_id``): every
test became a group of its own and both lanes ran on both workers. So the workers write each
test's group to a file the controller names (``workerinput``), and this scheduler, xdist's own
LoadScopeScheduling, reads its scopes from there. Imported only when xdist runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from xdist.scheduler import LoadScopeScheduling

WORKERINPUT_KEY = "vmc_tests_lanes"  # the file each worker writes its tests' groups to


def publish(path: Path, groups: dict[str, str]) -> None:
    """In a worker, after collection: each test's group (all workers write the same)."""
    partial = path.with_name(f"{path.name}.{id(groups)}.partial")
    partial.write_text(json.dumps(groups))
    partial.replace(path)


class LaneScheduling(LoadScopeScheduling):  # type: ignore[misc]  # xdist ships no types
    """LoadScopeScheduling with its scopes read from the workers' file (see the module doc).
    Its queue puts the largest scope first, the others in collection order (a stable sort)."""

    def __init__(self, config: Any, log: Any, groups_file: Path, last: str) -> None:
        super().__init__(config, log)
        self._last = last  # the units whose scope starts so go out after all others
        self._groups_file = groups_file
        self._groups: dict[str, str] | None = None
        self._last_moved = False

    def _assign_work_unit(self, node: Any) -> None:
        """Before the first unit goes out (the queue is whole by then), the ``last`` units
        (the exclusive tests) move to the end: each makes the other worker wait for it, so
        they run one after another once the rest is done, instead of stopping both workers
        again and again."""
        if not self._last_moved:
            for scope in [scope for scope in self.workqueue if scope.startswith(self._last)]:
                self.workqueue.move_to_end(scope)
            self._last_moved = True
        super()._assign_work_unit(node)

    def _split_scope(self, nodeid: str) -> str:
        if self._groups is None:  # read once every worker has collected (schedule's first call)
            self._groups = json.loads(self._groups_file.read_text())
        return self._groups.get(nodeid, nodeid)
