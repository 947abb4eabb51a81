"""Two runs of different targets, made from the same inputs, merged into one report."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pytest_vmcontainer.comparison import rows as row_rules
from pytest_vmcontainer.comparison.results import ComparisonReport, RowResult
from pytest_vmcontainer.errors import ReportError
from pytest_vmcontainer.parity import KINDS
from pytest_vmcontainer.runreport.model import RunReport, now, redecide


def _label(report: RunReport, index: int) -> str:
    return f"{'+'.join(report.targets)} run" if report.targets else f"run {index + 1}"


def _merge_figures(a: RowResult, b: RowResult, a_targets: Sequence[str]) -> dict[str, Any]:
    """Each target's figures from its run; the host's from both (the host of the VM's run
    first), the larger ``spread`` of the two (a noisy host makes a speed claim unmeasurable)."""
    figures: dict[str, Any] = {}
    for who in KINDS:
        first, second = (a, b) if who in a_targets else (b, a)
        chosen = first.figures.get(who) or second.figures.get(who)
        if chosen:
            figures[who] = dict(chosen)
    hosts = [run.figures.get("host") or {} for run in ((a, b) if "vm" in a_targets else (b, a))]
    if any(hosts):
        host = {**hosts[1], **hosts[0]}
        spreads = [h["spread"] for h in hosts if isinstance(h.get("spread"), int | float)]
        if spreads:
            host["spread"] = max(spreads)
        figures["host"] = host
    return figures


def _merge_comparison(a: RunReport, b: RunReport, labels: Sequence[str]) -> ComparisonReport:
    ca, cb = a.comparison, b.comparison
    by_id: dict[str, tuple[RowResult | None, RowResult | None]] = {}
    for row in ca.rows:
        by_id[row.id] = (row, None)
    for row in cb.rows:
        by_id[row.id] = (by_id.get(row.id, (None, None))[0], row)
    rows = []
    for first, second in by_id.values():
        if first is None or second is None:
            only = first or second
            assert only is not None
            rows.append(only)
            continue
        merged = RowResult(**{**vars(first), "figures": _merge_figures(first, second, a.targets),
                              "verdict": first.verdict})
        if row_rules.BY_ID.get(merged.id) is None and first.figures and second.figures:
            merged.verdict = None  # a rule this version does not have: no verdict on both
        rows.append(merged)
    vm_run = (ca if "vm" in a.targets else cb if "vm" in b.targets
              else ca if ca.vm_mode else cb)
    host = {f"{label}: {key}": value for label, run in zip(labels, (ca, cb), strict=True)
            for key, value in run.host.items()}
    settings: dict[str, Any] = {}
    for key in [*ca.settings, *(k for k in cb.settings if k not in ca.settings)]:
        values = [run.settings.get(key) for run in (ca, cb)]
        settings[key] = (values[0] if values[0] == values[1] else " / ".join(
            f"{value} ({label})" for value, label in zip(values, labels, strict=True)
            if value is not None))
    merged_report = ComparisonReport(
        generated_at=now(), host=host, vm_mode=vm_run.vm_mode or ca.vm_mode or cb.vm_mode,
        vm_mode_reason=vm_run.vm_mode_reason, settings=settings, rows=rows)
    redecide(merged_report)
    return merged_report


def merge(a: RunReport, b: RunReport, names: Sequence[str]) -> RunReport:
    """Two runs of different targets, made from the same inputs, as one report.

    Refuses (ReportError, one line naming what differs) runs without an inputs hash, runs
    with different inputs hashes, and two runs that both ran the same target.
    """
    for run, name in zip((a, b), names, strict=True):
        if run.inputs_hash is None:
            raise ReportError(f"cannot merge {name}: it records no inputs hash (written by an "
                              "older pytest-vmcontainer)",
                              "re-run its tests with --vmc-report and merge the new report")
    if a.inputs_hash != b.inputs_hash:
        raise ReportError(f"cannot merge {names[0]} and {names[1]}: they were made from "
                          f"different inputs (inputs hash {a.inputs_hash} vs {b.inputs_hash})",
                          "merge runs of the same Vagrantfile, Dockerfile, provisioning inputs "
                          "and base recipes (the same commit)")
    both = [kind for kind in a.targets if kind in b.targets]
    if both:
        raise ReportError(f"cannot merge {names[0]} and {names[1]}: both ran the "
                          f"{' and '.join(both)} target{'s' if len(both) > 1 else ''}",
                          "merge one run per target, e.g. a --target=vm run with a "
                          "--target=container run")
    labels = [_label(run, i) for i, run in enumerate((a, b))]
    comparison = _merge_comparison(a, b, labels)
    parity = a.parity.merged(b.parity)
    if not comparison.rows:  # parity-only runs: their VM's mode is the one to show
        comparison.vm_mode = parity.modes.get("vm")
    targets = [kind for kind in KINDS if kind in a.targets or kind in b.targets]
    merged_from = [{"file": str(name), "targets": list(run.targets),
                    "generated_at": run.comparison.generated_at}
                   for run, name in zip((a, b), names, strict=True)]
    # A scan needs both targets in one run: a merge carries the one either run made.
    return RunReport(comparison, parity, targets, a.inputs_hash, merged_from,
                     a.scan if a.scan is not None else b.scan)

