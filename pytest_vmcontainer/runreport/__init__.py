"""One run's report: the parity matrix, the comparison table, and what the run was made from.

``--vmc-report=DIR`` writes it as ``comparison.json`` (schema
``pytest-vmcontainer/comparison/1``: the comparison's keys, plus ``inputs_hash``,
``targets`` and ``parity``), ``comparison.md`` and ``comparison.html`` (the parity
matrix is a section of each), also for runs that measured no comparison row.
``python -m pytest_vmcontainer report`` shows a saved one again, and ``report
merge`` puts together the runs of different targets made from the same inputs,
e.g. a ``--target=vm`` run on a KVM runner and a ``--target=container`` run on
another machine. Files written before these keys existed still load: they have
an empty matrix and no inputs hash (so they cannot be merged).

The package: ``results`` (what a pytest run has found so far, ``RunResults``; the report
is made of it), ``model`` (the report as data, and a saved one read back), ``pages`` (its
sections of the pages, terminal lines and files) and ``merging`` (two runs as one).
"""

from __future__ import annotations

from pytest_vmcontainer.runreport.merging import merge
from pytest_vmcontainer.runreport.model import (
    JSON_NAME,
    RunReport,
    ensure_directory,
    inputs_hash,
    load,
    now,
    redecide,
    settings_shown,
    targets_of,
)
from pytest_vmcontainer.runreport.pages import (
    DIFFERENCE_HEADER,
    differences,
    parity_table,
    run_line,
    sections,
    terminal_lines,
    value_text,
    valueless,
    write,
)

__all__ = [
    "DIFFERENCE_HEADER",
    "JSON_NAME",
    "RunReport",
    "differences",
    "ensure_directory",
    "inputs_hash",
    "load",
    "merge",
    "now",
    "parity_table",
    "redecide",
    "run_line",
    "sections",
    "settings_shown",
    "targets_of",
    "terminal_lines",
    "value_text",
    "valueless",
    "write",
]
