"""pytest-vmcontainer: the same checks and measurements on a Vagrant VM and a Docker container.

The package, as a reader meets it:

- ``plugin`` (pytest hooks), ``fixtures``, ``runstate`` (one run's state), ``runend``
  (its end: report, summary, teardown), ``runreport`` (the run's report), ``options``,
  ``parity`` (the matrix), ``hookspecs`` (extension points), ``cli``;
- ``harness`` (a session's targets) and ``lifecycle`` (sessions, the sweep);
- ``targets/``: the ``Target`` interface and one module per backend;
- ``comparison/``: the VM-vs-container table as rows, probes, measurement, reports;
- ``host/``: packages and daemons, offline bases, the accelerator, paths, ports;
- ``runtime/``: tracked processes, background jobs, waits, progress, timing.

Imports run one way, from the top of this list to the bottom.
"""

from pytest_vmcontainer.runtime.waiting import http_get

__version__ = "0.1.0"
__all__ = ["__version__", "http_get"]
