"""What every test of the project shares."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_parity_scan_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    """The runs that tests start (pytester, subprocesses) do not scan their targets: the scan
    adds a test item and a collection to every run with both targets, which the tests of
    other features do not count. The scan's own tests turn it on with --vmc-scan."""
    monkeypatch.setenv("VMC_SCAN", "off")
