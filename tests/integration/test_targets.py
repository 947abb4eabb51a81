"""Both targets from the shipped Vagrantfile and Dockerfile, through the harness API."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_vmcontainer.harness import Harness, HarnessConfig
from pytest_vmcontainer.runtime.progress import Progress
from pytest_vmcontainer.runtime.waiting import http_get
from tests.integration.conftest import ROOT, leftovers

pytestmark = pytest.mark.vm

FILES = ("/etc/nginx/nginx.conf", "/etc/nginx/sites-available/default",
         "/var/www/html/index.html")


def _facts(target: Any) -> dict[str, Any]:
    version = target.run("dpkg-query -W -f='${Version}' nginx")
    sums = target.run("sha256sum " + " ".join(FILES))
    assert version.rc == 0 and sums.rc == 0, (version, sums)
    response = http_get(target.url("/"))
    return {"nginx": version.stdout.strip(), "sha256": sums.stdout.split(),
            "status": response.status, "body": response.body}


def test_both_targets_identical_then_nothing_left(docker_client: Any, shipped_vm: None,
                                                  leak_check: None) -> None:
    config = HarnessConfig(vagrantfile=ROOT / "Vagrantfile", dockerfile=ROOT / "Dockerfile",
                           provision_inputs=(ROOT / "fixtures",))
    harness = Harness(config, Progress())
    try:
        harness.start(["vm", "container"])
        vm, container = harness.get("vm"), harness.get("container")
        assert vm.address(80)[0] == container.address(80)[0] == "127.0.0.1"
        assert vm.mode in ("kvm", "tcg") and container.mode == "container"
        on_vm, on_container = _facts(vm), _facts(container)
    finally:
        harness.teardown()
    assert on_vm["status"] == on_container["status"] == 200
    assert on_vm["nginx"] and on_vm["nginx"] == on_container["nginx"]
    assert on_vm["sha256"] == on_container["sha256"]
    assert on_vm["body"] == on_container["body"]
    assert b"pytest-vmcontainer" in on_vm["body"]
    assert leftovers(harness.session_id) == []
