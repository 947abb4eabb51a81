"""pytest-xdist: both targets of a parity row run on the same worker.

A parity check compares the two targets' values inside the test that runs
second, in one process. Under ``--dist load`` (what ``-n N`` means unless told
otherwise) xdist would hand ``test_x[vm]`` and ``test_x[container]`` to
different workers, and the comparison would silently not happen. So for
``load`` the plugin returns ``RowScheduling``: xdist's own LoadScopeScheduling
whose scope is the parity row (the nodeid without the target parameter). Each
row is one unit of work; tests without a target are units of one.

Other ``--dist`` modes are left as they are: ``loadscope`` and ``loadfile``
keep a row together anyway (its tests share a module); ``each`` runs every test
on every worker; ``loadgroup`` and ``worksteal`` may split a row, and then the
in-test comparison of that row does not happen (the parity matrix, assembled
on the controller, still shows both values and any difference).

Imported only from the ``pytest_xdist_make_scheduler`` hook, i.e. when xdist runs.
"""

from __future__ import annotations

from typing import Any

from xdist.scheduler import LoadScopeScheduling

from pytest_vmcontainer.options import TARGETS

KINDS = TARGETS["both"]


def row_scope(nodeid: str, kinds: tuple[str, ...] = KINDS) -> str:
    """The nodeid without its target: ``m.py::test_x[vm-a]`` -> ``m.py::test_x[a]``.

    The plugin parametrizes the target first, so its id leads the brackets.
    A nodeid without a leading target id is its own scope.
    """
    name_start = nodeid.find("::")
    open_at = nodeid.find("[", name_start if name_start >= 0 else 0)
    if open_at < 0 or not nodeid.endswith("]"):
        return nodeid
    head, params = nodeid[:open_at], nodeid[open_at + 1:-1]
    for kind in kinds:
        if params == kind:
            return head
        if params.startswith(kind + "-"):
            return f"{head}[{params[len(kind) + 1:]}]"
    return nodeid


class RowScheduling(LoadScopeScheduling):  # type: ignore[misc]  # xdist ships no types
    """xdist's LoadScopeScheduling, one parity row per unit of work."""

    def _split_scope(self, nodeid: str) -> str:
        return row_scope(nodeid)


def make_scheduler(config: Any, log: Any) -> RowScheduling | None:
    """A row-keeping scheduler for ``--dist load``; None leaves other modes to xdist."""
    if config.getvalue("dist") != "load":
        return None
    return RowScheduling(config, log)
