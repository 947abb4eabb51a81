"""The parity scan of a real VM and a real container whose provisioning drifts on purpose.

One provisioning script that takes another branch under systemd (the VM), and a Dockerfile
with an ENV the VM's service never gets: the scan must find each drift, and nothing else
unexpected but the findings the shipped nginx pair has as well (README, "The parity scan").
Run it alone on a busy machine: it boots a VM (under TCG, minutes).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import ROOT, run_process, write_project

pytestmark = pytest.mark.vm

DRIFTING_PROVISION = """
if [ -d /run/systemd/system ]; then
    apt-get install -y -q --no-install-recommends less
    useradd --system --no-create-home --shell /usr/sbin/nologin drifter
    printf 'level=debug\\n' > /etc/app.conf
    printf 'server { listen 8081; }\\n' > /etc/nginx/conf.d/extra.conf
    mkdir -p /etc/systemd/system/nginx.service.d
    printf '[Service]\\nLimitNOFILE=4096\\n' > /etc/systemd/system/nginx.service.d/limits.conf
    systemctl daemon-reload
    systemctl restart nginx
else
    printf 'level=info\\n' > /etc/app.conf
fi
"""
DRIFT = {
    ("package", "less"), ("file", "/etc/alternatives/pager"),
    ("file", "/etc/alternatives/pager.1.gz"),
    ("user", "drifter"), ("group", "drifter"),
    ("file", "/etc/passwd"), ("file", "/etc/group"), ("file", "/etc/gshadow"),  # useradd's
    ("file", "/etc/app.conf"), ("file", "/etc/nginx/conf.d/extra.conf"),
    ("port", "tcp 0.0.0.0:8081"),
    ("file", "/etc/systemd/system/nginx.service.d"),
    ("file", "/etc/systemd/system/nginx.service.d/limits.conf"),
    ("limit", "nginx (root): Max open files"),
    ("environment", "nginx (root): APP_MODE"),
}
# What the shipped nginx pair differs in as well: real VM-against-container findings
# (README, "The parity scan"; tests/unit/test_scan.py has them from recorded scans).
SHIPPED = {
    ("process", "nginx (root)"),
    ("environment", "nginx (root): HOME"), ("environment", "nginx (root): LANG"),
    ("limit", "nginx (root): Max open files"), ("limit", "nginx (root): Max processes"),
    ("limit", "nginx (root): Max pending signals"),
    ("sysctl", "net.unix.max_dgram_qlen"),
}
TEST = """
from pytest_vmcontainer import http_get


def test_page(target):
    assert http_get(target.url("/")).status == 200
"""


def test_the_scan_finds_each_drift_and_nothing_else(tmp_path: Path, bases: None,
                                                    leak_check: None) -> None:
    project = write_project(tmp_path / "drifting", dockerfile=(
        (ROOT / "Dockerfile").read_text().replace("EXPOSE 80", "ENV APP_MODE=debug\nEXPOSE 80")))
    provision = project / "fixtures" / "provision.sh"
    provision.write_text(provision.read_text().replace(
        "apt-get clean\n", DRIFTING_PROVISION + "apt-get clean\n"))
    (project / "test_app.py").write_text(TEST)
    done = run_process([sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                        "--vmc-scan=fail", "--vmc-report=report", "test_app.py"], project, 2400)
    assert done.returncode == 1, done.stdout  # the scan's item fails; the tests pass
    assert re.search(r"\b1 failed, 2 passed\b", done.stdout), done.stdout
    assert "FAILED vmcontainer parity scan" in done.stdout, done.stdout
    saved = json.loads((project / "report" / "scan.json").read_text())
    found = {(d["category"], d["item"]) for d in saved["differences"] if d["expected"] is None}
    assert found >= DRIFT, sorted(DRIFT - found)
    assert found - DRIFT <= SHIPPED, sorted(found - DRIFT - SHIPPED)
    values = {d["item"]: (d["vm"], d["container"]) for d in saved["differences"]}
    assert values["nginx (root): Max open files"][0] == "4096 / 4096"  # the unit's drop-in
    assert values["nginx (root): APP_MODE"] == (None, "debug")  # the Dockerfile's ENV
    assert saved["collected_in_s"]["vm"] < 10 and saved["collected_in_s"]["container"] < 10
    assert not [note for note in saved["notes"] if "bases not scanned" in note], saved["notes"]
