"""The parity scan: what differs between two running hosts, with no test written.

``collect`` runs one POSIX sh collector per host and parses it; ``rules`` holds the
noise and the expected-by-nature differences as data; ``compare`` puts two scans
side by side; ``bases`` scans the bases the targets start from; ``render`` shows
the result. ``scan_hosts`` is what the plugin and ``python -m pytest_vmcontainer
scan`` call.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from pytest_vmcontainer.scan import collect, compare
from pytest_vmcontainer.scan.model import SIDES, ScanResult
from pytest_vmcontainer.scan.rules import Rule


def runner(host: Any) -> collect.Runner:
    """A testinfra Host as a collector runner (the host's own sudo, if it has one)."""
    def run(command: str) -> tuple[int, bytes]:
        result = host.run(command)
        return int(result.rc), bytes(result.stdout_bytes)

    return run


def scan_hosts(hosts: Mapping[str, Any], labels: Mapping[str, str], paths: Sequence[str] = (),
               user_rules: Sequence[Rule] = (), bases: compare.Bases | None = None,
               ports: Collection[int] | None = None) -> ScanResult:
    """Scan the "vm" and "container" sides' testinfra Hosts at once, and compare them."""
    scans = collect.collect_both({side: runner(hosts[side]) for side in SIDES}, labels, paths,
                                 ports)
    return compare.compare(scans["vm"], scans["container"], user_rules, bases, ports,
                           hosts=dict(labels))
