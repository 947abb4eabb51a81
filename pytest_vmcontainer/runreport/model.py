"""The run's report as data: what it holds, what it was made from, and a saved one read back
(its verdicts decided again by this version's rules)."""

from __future__ import annotations

import datetime
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_vmcontainer.comparison import report as rendering
from pytest_vmcontainer.comparison import rows as row_rules
from pytest_vmcontainer.comparison.results import ComparisonReport
from pytest_vmcontainer.errors import ReportError, SettingError
from pytest_vmcontainer.parity import KINDS, ParityStore
from pytest_vmcontainer.scan.model import ScanResult

JSON_NAME = "comparison.json"


def inputs_hash(vagrantfile: Path, dockerfile: Path, provision_inputs: Sequence[Path]) -> str:
    """What both targets are provisioned from (see ``host.bases.inputs_hash``)."""
    from pytest_vmcontainer.host import bases

    return bases.inputs_hash(vagrantfile, dockerfile, provision_inputs)


@dataclass
class RunReport:
    comparison: ComparisonReport
    parity: ParityStore
    targets: list[str]  # the kinds that ran tests or were measured, in column order
    inputs_hash: str | None  # None: written before reports carried it
    merged_from: list[dict[str, Any]] = field(default_factory=list)
    scan: ScanResult | None = None  # the parity scan of both targets, when the run made one

    def columns(self) -> tuple[str, ...]:
        return tuple(self.targets) or KINDS

    def extra_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"inputs_hash": self.inputs_hash, "targets": list(self.targets),
                                "parity": self.parity.to_json()}
        if self.merged_from:
            data["merged_from"] = self.merged_from
        if self.scan is not None:
            data["scan"] = self.scan.to_json()
        return data


def targets_of(comparison: ComparisonReport, parity: ParityStore) -> list[str]:
    """Kinds with a parity outcome or comparison figures."""
    measured = {who for row in comparison.rows for who, figures in row.figures.items()
                if who in KINDS and figures}
    seen = set(parity.kinds_seen()) | measured
    return [kind for kind in KINDS if kind in seen]


def now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def ensure_directory(directory: Path, where: str) -> None:
    """Fail before the tests run, not after, when the report could not be written."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise SettingError(f"{where}: cannot create {directory} ({error.strerror})",
                           "give a writable directory") from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise SettingError(f"{where}: {directory} is not writable", "give a writable directory")


def redecide(comparison: ComparisonReport, keep_unknown: bool = True) -> None:
    """Verdicts by this version's rules; a row this version does not know (one added through
    ``pytest_vmcontainer_comparison_rows``) keeps its saved verdict, or none."""
    for row in comparison.rows:
        rule = row_rules.BY_ID.get(row.id)
        if rule is not None:
            row.verdict = row_rules.decide(rule, row.figures, comparison.vm_mode)
        elif not keep_unknown:
            row.verdict = None


def load(path: Path) -> RunReport:
    """A saved comparison.json; ReportError (one line) when it cannot be read."""
    try:
        data = rendering.load_report(Path(path))
        comparison = rendering.report_from_json(data)
        parity = ParityStore.from_json(data.get("parity") or {})
        scan = ScanResult.from_json(data["scan"]) if data.get("scan") else None
    except (OSError, ValueError, TypeError) as error:
        raise ReportError(f"cannot read {path} ({error})",
                          f"pass a {JSON_NAME} written by --vmc-report") from None
    targets = data.get("targets")
    if not isinstance(targets, list):  # an older file: from what it measured
        targets = targets_of(comparison, parity)
    redecide(comparison)
    found = data.get("inputs_hash")
    return RunReport(comparison, parity, [str(kind) for kind in targets],
                     str(found) if found else None, list(data.get("merged_from") or []), scan)


def settings_shown(settings: Mapping[str, Any]) -> dict[str, str]:
    """The settings a report lists (those that change what is measured)."""
    names = ("vmc_target", "vmc_rounds", "vmc_warmup", "vmc_boot_rounds", "vmc_density_vms",
             "vmc_density_containers", "vmc_http_requests", "vmc_http_seconds")
    return {name: str(settings[name]) for name in names if name in settings}
