"""Where each target runs, from DOCKER_HOST and VMC_LIBVIRT_URI alone: one machine or two,
and libvirt over TLS refused in one line before anything starts."""

from __future__ import annotations

import pytest

from pytest_vmcontainer.errors import HostSetupError
from pytest_vmcontainer.host import libvirt, setup, sites
from pytest_vmcontainer.runtime.progress import Progress


@pytest.fixture(autouse=True)
def _no_engines_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.delenv(libvirt.LIBVIRT_URI_ENV, raising=False)


def test_both_on_this_host_by_default() -> None:
    assert sites.vm_place() == sites.Place("", "this host")
    assert sites.container_place().here
    assert sites.split(["vm", "container"]) is None


@pytest.mark.parametrize("docker_host", ["unix:///var/run/docker.sock",
                                         "unix:///run/user/1000/docker.sock",
                                         "tcp://127.0.0.1:2375"])
def test_a_local_engine_is_this_host(monkeypatch: pytest.MonkeyPatch, docker_host: str) -> None:
    monkeypatch.setenv("DOCKER_HOST", docker_host)
    assert sites.container_place().here


def test_an_engine_over_ssh_is_its_host_and_port_whoever_logs_in(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "ssh://ci:secret@Engines.example")
    place = sites.container_place()
    assert place.machine == "engines.example:22"
    assert place.shown == "the Docker engine at ssh://ci@Engines.example"  # no password
    monkeypatch.setenv("DOCKER_HOST", "ssh://root@engines.example:22")
    assert sites.container_place().machine == place.machine


def test_two_machines_are_named_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "ssh://root@127.0.0.1:2222")
    assert sites.split(["vm", "container"]) == (
        "the vm on this host, the container on the Docker engine at ssh://root@127.0.0.1:2222")
    assert sites.split(["container"]) is None  # one target is always on one machine


def test_a_vm_and_a_container_on_one_remote_machine_are_not_split(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "ssh://ci@kvm1.example")
    monkeypatch.setenv(libvirt.LIBVIRT_URI_ENV, "qemu+ssh://root@kvm1.example/system")
    assert sites.vm_place().machine == "kvm1.example:22"
    assert sites.split(["vm", "container"]) is None


def test_libvirt_over_tls_is_refused_before_setup(monkeypatch: pytest.MonkeyPatch) -> None:
    """Over SSH the VM runs there (``tests/unit/test_libvirthost.py``); over TLS its ports
    would have no SSH to come back by: one line, before anything is reached."""
    uri = "qemu+tls://kvm1.example/system"
    monkeypatch.setenv(libvirt.LIBVIRT_URI_ENV, uri)
    assert not libvirt.on_this_host()
    with pytest.raises(HostSetupError) as raised:
        setup.ensure_host(Progress(lambda line: None), needs={"libvirt"})
    line = raised.value.one_line()
    assert line.startswith(f"{libvirt.LIBVIRT_URI_ENV}={uri} reaches libvirt on another "
                           "machine over tls")
    assert "use qemu+ssh://USER@HOST/system" in line and "\n" not in line


@pytest.mark.parametrize(("variable", "value"), [("DOCKER_HOST", "ssh://host:notaport"),
                                                 ("VMC_DOCKER_SSH", "@:22"),
                                                 ("VMC_LIBVIRT_URI", "qemu+ssh://h:port/system")])
def test_a_url_that_does_not_parse_decides_nothing_here(
        monkeypatch: pytest.MonkeyPatch, variable: str, value: str) -> None:
    """Collection asks; the target's own start names the bad URL in one line."""
    monkeypatch.setenv("DOCKER_HOST", "tcp://h:2376")
    monkeypatch.setenv(variable, value)
    assert sites.split(["vm", "container"]) is None


def test_a_session_uri_is_this_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(libvirt.LIBVIRT_URI_ENV, "qemu:///session")
    assert libvirt.on_this_host() and sites.vm_place().here
