"""Logic behind a team's own app: declared ports, listeners read from /proc, the union of ports,
the merged Vagrant config, well-known base names, and the VM cache key. No engine is used."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from pytest_vmcontainer.bringup import PortUnion
from pytest_vmcontainer.errors import Cancelled
from pytest_vmcontainer.host import bases
from pytest_vmcontainer.runtime import procnet
from pytest_vmcontainer.targets import vmcache
from pytest_vmcontainer.targets.vagrant import MachineConfig

PROC_NET_TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1
   1: 0100007F:2382 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1
   2: 0F02000A:0016 0202000A:C35A 01 00000000:00000000 00:00000000 00000000     0        0 3 1
  sl  local_address                         remote_address                        st tx_queue
   0: 00000000000000000000000000000000:0050 00000000000000000000000000000000:0000 0A 0:0 00:0
   1: 00000000000000000000000001000000:1F91 00000000000000000000000000000000:0000 0A 0:0 00:0
"""


def test_listeners_are_read_with_their_addresses() -> None:
    found = procnet.listening(PROC_NET_TCP)
    assert found == {8080: {"0.0.0.0"}, 9090: {"127.0.0.1"}, 80: {"::"}, 8081: {"::1"}}
    assert procnet.reachable(found[8080]) and procnet.reachable(found[80])
    assert not procnet.reachable(found[9090]) and not procnet.reachable(found[8081])
    assert procnet.describe(found) == ("80, 8080, 8081 (only on ::1), 9090 (only on "
                                       "127.0.0.1)")
    assert procnet.describe({}) == "no TCP port"


def test_the_union_waits_for_every_kind_and_adds_the_extra_ports() -> None:
    union = PortUnion(["vm", "container"], extra=(9000,))
    results: list[tuple[int, ...]] = []
    waiter = threading.Thread(target=lambda: results.append(union.wait(threading.Event())))
    waiter.start()
    union.declare("container", (80, 8080))
    waiter.join(timeout=0.3)
    assert waiter.is_alive(), "returned before the VM declared its ports"
    union.declare("vm", (8080,))
    waiter.join(timeout=5)
    assert results == [(80, 8080, 9000)]
    assert union.declared == {"container": (80, 8080), "vm": (8080,)}


def test_a_kind_that_failed_does_not_hold_the_others_back() -> None:
    union = PortUnion(["vm", "container"], extra=())
    union.declare("vm", None)
    union.declare("container", (80,))
    assert union.wait(threading.Event()) == (80,)
    assert union.declared == {"container": (80,)}


def test_waiting_for_the_union_stops_at_teardown() -> None:
    cancelled = threading.Event()
    cancelled.set()
    with pytest.raises(Cancelled):
        PortUnion(["vm"], extra=()).wait(cancelled)


def _machine(**changes: object) -> MachineConfig:
    data: dict[str, object] = {
        "name": "web", "box": "pytest-vmcontainer/debian-12", "box_installed": True,
        "project_providers": ["libvirt"], "mgmt_attach": False, "qemu_use_agent": True,
        "forwarded_ports": [
            {"guest": 8080, "host": 18080, "host_ip": "127.0.0.1", "protocol": "tcp",
             "id": "127.0.0.1tcp18080"},
            {"guest": 5353, "host": 5353, "protocol": "udp", "id": "udp5353"},
            {"guest": 9000, "host": 9000, "protocol": "tcp", "id": "tcp9000", "disabled": True},
            {"guest": 22, "host": 2222, "host_ip": "127.0.0.1", "id": "ssh", "protocol": "tcp"}],
        "provisioners": [
            {"type": "file", "source": "provision"}, {"type": "shell", "path": "setup.sh"},
            {"type": "shell", "inline": "true"}, {"type": "shell", "path": "https://x/y.sh"},
            {"type": "file", "source": "missing"}],
    }
    data.update(changes)
    return MachineConfig.from_json(data)


def test_declared_ports_are_the_projects_enabled_tcp_forwards() -> None:
    machine = _machine()
    assert machine.declared_ports == (8080,)
    assert [fp["id"] for fp in machine.user_forwards] == ["127.0.0.1tcp18080"]


def test_provisioner_files_are_the_local_ones_that_exist(tmp_path: Path) -> None:
    (tmp_path / "provision").mkdir()
    (tmp_path / "setup.sh").write_text("true\n")
    assert _machine().provisioner_files(tmp_path) == [tmp_path / "provision",
                                                     tmp_path / "setup.sh"]


def test_from_files_and_from_a_base_the_names_teams_write(tmp_path: Path) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM --platform=linux/amd64 golang:1.22 AS build\nRUN true\n"
                          "FROM build AS test\nfrom debian:bookworm\nCOPY --from=build /a /a\n")
    assert bases.dockerfile_bases(dockerfile) == ["golang:1.22", "debian:bookworm"]
    assert not bases.references(dockerfile, bases.DOCKER_BASE_REPOSITORY)
    dockerfile.write_text("FROM pytest-vmcontainer/debian:bookworm\n")
    assert bases.references(dockerfile, bases.DOCKER_BASE_REPOSITORY)


@pytest.mark.parametrize(("name", "kind", "remedy"), [
    ("debian:bookworm", "image", "use pytest-vmcontainer/debian:bookworm (built by "),
    ("debian/bookworm64", "box", 'config.vm.box = "pytest-vmcontainer/debian-12"'),
    ("generic/debian12", "box", "use pytest-vmcontainer/debian-12"),
    ("ubuntu:22.04", "image", "add it to this machine yourself, or start from "
                              "pytest-vmcontainer/debian:bookworm"),
])
def test_a_base_that_cannot_be_fetched_names_the_local_one(name: str, kind: str,
                                                          remedy: str) -> None:
    cause, how = bases.unavailable_base(name, kind)
    assert name in cause and remedy in how


def test_the_vm_cache_key_follows_every_input(tmp_path: Path) -> None:
    vagrantfile, provision, plumbing = (tmp_path / "Vagrantfile", tmp_path / "provision",
                                        tmp_path / "plumbing")
    vagrantfile.write_text("# v1\n")
    provision.mkdir()
    (provision / "setup.sh").write_text("echo one\n")
    plumbing.write_text("# plumbing\n")
    box = tmp_path / "box"
    box.mkdir()
    (box / "box.img").write_bytes(b"disk")

    def key() -> str:
        return vmcache.key(vagrantfile, [provision], (), "team/box", box, plumbing)

    first = key()
    assert key() == first and len(first) == 24
    changes: list[Callable[[], object]] = [
        lambda: (provision / "setup.sh").write_text("echo two\n"),
        lambda: vagrantfile.write_text("# v2\n"),
        lambda: plumbing.write_text("# plumbing v2\n"),
        lambda: (box / "box.img").write_bytes(b"a rebuilt disk"),
    ]
    seen = {first}
    for change in changes:
        change()
        assert key() not in seen
        seen.add(key())
