"""Compare two scans: identity noise out, then each difference unexpected or expected (why).

A difference is expected when a user rule, a nature rule (``rules``) or the bases
explain it, in that order. The bases explain it when each side's value is the value
its base had (absent included): the difference was there before any provisioning.
The environment, limits and working directory compared are those of the processes
that serve the given ports, on both sides.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from pytest_vmcontainer.scan import rules as scan_rules
from pytest_vmcontainer.scan.model import CATEGORIES, SIDES, Difference, Scan, ScanResult


@dataclass
class Bases:
    """The scans of the two bases (root filesystems only), or why there are none."""

    vm: Scan | None = None
    container: Scan | None = None
    missing: str = ""  # why not both scans: "bases not scanned: ..."

    def explain(self, category: str, item: str, vm: str | None,
                container: str | None) -> str | None:
        if self.vm is None or self.container is None:
            return None
        if category not in self.vm.categories or category not in self.container.categories:
            return None
        if self.vm.items(category).get(item) == vm and \
                self.container.items(category).get(item) == container:
            return scan_rules.FROM_BASES
        return None


def serving(scan: Scan, ports: Collection[int] | None) -> dict[str, dict[str, str]]:
    """category -> item -> value for the processes serving ``ports`` (None: every server)."""
    facts: dict[str, dict[str, str]] = {"environment": {}, "limit": {}, "process": {}}
    for key, server in scan.servers.items():
        if ports is not None and not set(server.ports) & set(ports):
            continue
        facts["environment"].update({f"{key}: {name}": value
                                     for name, value in server.environment.items()})
        facts["limit"].update({f"{key}: {name}": value for name, value in server.limits.items()})
        facts["process"][f"{key}: working directory"] = server.cwd
    return facts


def _facts(scan: Scan, ports: Collection[int] | None,
           common: set[str]) -> dict[str, dict[str, str]]:
    """Every category's items; server details only for servers found on both sides."""
    facts = {category: dict(scan.items(category)) for category in CATEGORIES}
    for category, items in serving(scan, ports).items():
        facts[category].update({item: value for item, value in items.items()
                                if item.split(": ", 1)[0] in common})
    return facts


def _environment_notes(vm: Scan, container: Scan, common: set[str]) -> list[str]:
    """Say where an environment was not the process's own (see ``Server.environment_from``)."""
    notes = []
    for key in sorted(common):
        sources = {side: scan.servers[key].environment_from
                   for side, scan in zip(SIDES, (vm, container), strict=True)}
        if any(sources.values()):
            notes.append(f"{key}: environment read from " + ", ".join(
                f"{source or 'the process'} ({side})" for side, source in sources.items())
                + "; the process overwrote its own in /proc (its title)")
    return notes


def compare(vm: Scan, container: Scan, user_rules: Sequence[scan_rules.Rule] = (),
            bases: Bases | None = None, ports: Collection[int] | None = None,
            hosts: dict[str, str] | None = None) -> ScanResult:
    bases = bases or Bases(missing="bases not scanned")
    common = set(serving(vm, ports)["process"]) & set(serving(container, ports)["process"])
    common = {item.split(": ", 1)[0] for item in common}
    sides = [_facts(vm, ports, common), _facts(container, ports, common)]
    explained = (*user_rules, *scan_rules.NATURE)
    differences, same, ignored = [], 0, 0
    notes = [bases.missing] if bases.missing else []
    notes += _environment_notes(vm, container, common)
    for category in CATEGORIES:
        if category not in vm.categories or category not in container.categories:
            missing = [side for side, scan in zip(SIDES, (vm, container), strict=True)
                       if category not in scan.categories]
            notes.append(f"{category}: not collected on the {' and '.join(missing)}")
            continue
        a, b = (side[category] for side in sides)
        for item in sorted(set(a) | set(b)):
            va, vb = a.get(item), b.get(item)
            if scan_rules.find(scan_rules.IDENTITY, category, item, va, vb):
                ignored += 1
                continue
            if va == vb:
                same += 1
                continue
            rule = scan_rules.find(explained, category, item, va, vb)
            reason = rule.reason if rule else bases.explain(category, item, va, vb)
            differences.append(Difference(category, item, va, vb, reason))
    return ScanResult(collected_in_s={"vm": vm.seconds, "container": container.seconds},
                      differences=differences, same=same, ignored=ignored,
                      hosts=dict(hosts or {}), notes=notes)
