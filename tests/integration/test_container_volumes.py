"""Docker volumes of a container target: made with it, removed with it and by the sweep.

Container only: nothing here brings up a VM or touches the box.
"""

from __future__ import annotations

import secrets
from typing import Any

import docker.errors
import pytest

from pytest_vmcontainer import lifecycle
from pytest_vmcontainer.harness import Harness, HarnessConfig
from pytest_vmcontainer.runtime.progress import Progress
from pytest_vmcontainer.targets.base import OWNER, OWNER_LABEL, SESSION_LABEL
from pytest_vmcontainer.targets.docker.leftovers import DockerLeftovers
from tests.integration.conftest import ROOT, fixture_labels, leftovers


def test_a_volume_is_mounted_and_goes_with_its_container(docker_client: Any,
                                                         docker_base: None,
                                                         leak_check: None) -> None:
    config = HarnessConfig(vagrantfile=ROOT / "Vagrantfile", dockerfile=ROOT / "Dockerfile",
                           provision_inputs=(ROOT / "fixtures",))
    harness = Harness(config, Progress())
    try:
        harness.start(["container"])
        instance = harness.extra("container", "vol", volumes={"data": "/vmc-volume"})
        instance.up()
        name = instance.volume_name("data")  # type: ignore[attr-defined]
        labels = docker_client.volumes.get(name).attrs["Labels"]
        assert labels[SESSION_LABEL] == harness.session_id and labels[OWNER_LABEL] == OWNER
        # The volume is its own filesystem, not the overlay of the writable layer.
        kinds = instance.run("stat -f -c %T /vmc-volume /var/tmp").stdout.split()
        assert kinds[1] == "overlayfs" and kinds[0] != "overlayfs", kinds
        assert instance.run("echo kept > /vmc-volume/f && cat /vmc-volume/f").stdout == "kept\n"
        harness.discard(instance)
        with pytest.raises(docker.errors.NotFound):
            docker_client.volumes.get(name)
        # One more, left to the teardown.
        harness.extra("container", "vol2", volumes={"data": "/vmc-volume"}).up()
        assert any(v.name.endswith("-vol2-data") for v in docker_client.volumes.list())
    finally:
        harness.teardown()
    assert leftovers(harness.session_id) == []


def test_the_sweep_removes_the_volumes_of_a_dead_session(docker_client: Any,
                                                         leak_check: None) -> None:
    dead = secrets.token_hex(4)
    lifecycle.Session.open(dead).close(remove=False)  # its directory, no lock holder: a crash
    volume = docker_client.volumes.create(name=f"vmc-{dead}-container-storage-data",
                                          labels={OWNER_LABEL: OWNER, SESSION_LABEL: dead,
                                                  **fixture_labels()})
    source = DockerLeftovers()
    assert source.by_session()[dead] == [f"volume {volume.name}"]
    assert lifecycle.sweep([source], only={dead}) == [f"volume {volume.name}",
                                                      f"session dir {dead}"]
    with pytest.raises(docker.errors.NotFound):
        docker_client.volumes.get(volume.name)
