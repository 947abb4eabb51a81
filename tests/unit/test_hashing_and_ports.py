"""Content hashes that key caches, and loopback ports."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from pytest_vmcontainer.errors import TargetError
from pytest_vmcontainer.host import ports
from pytest_vmcontainer.host.ports import ensure_free, free_port
from pytest_vmcontainer.runtime.hashing import content_hash, sha256_file


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path]:
    inputs = tmp_path / "fixtures"
    (inputs / "conf").mkdir(parents=True)
    (inputs / "provision.sh").write_text("apt-get install -y nginx\n")
    (inputs / "conf" / "site.conf").write_text("server {}\n")
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM scratch\n")
    return inputs, dockerfile


def test_hash_is_stable(tree: tuple[Path, Path]) -> None:
    first = content_hash(tree)
    assert first == content_hash(tree)
    assert len(first) == 64


def test_hash_changes_with_bytes(tree: tuple[Path, Path]) -> None:
    inputs, dockerfile = tree
    before = content_hash(tree)
    (inputs / "conf" / "site.conf").write_text("server { listen 80; }\n")
    after_nested = content_hash(tree)
    dockerfile.write_text("FROM debian\n")
    assert len({before, after_nested, content_hash(tree)}) == 3


def test_hash_changes_with_the_exec_bit(tree: tuple[Path, Path]) -> None:
    script = tree[0] / "provision.sh"
    before = content_hash(tree)
    script.chmod(script.stat().st_mode | 0o100)
    executable = content_hash(tree)
    assert executable != before
    script.chmod(script.stat().st_mode & ~0o111)
    assert content_hash(tree) == before
    script.chmod(script.stat().st_mode | 0o040)  # read bits do not count
    assert content_hash(tree) == before


def test_hash_changes_with_names_and_extra(tree: tuple[Path, Path]) -> None:
    inputs, _ = tree
    before = content_hash(tree)
    assert content_hash(tree, extra=["recipe-1"]) not in (before, content_hash(tree, ["recipe-2"]))
    (inputs / "conf" / "site.conf").rename(inputs / "conf" / "other.conf")
    assert content_hash(tree) != before


def test_hash_ignores_files_outside_the_paths_and_pycache(tree: tuple[Path, Path],
                                                          tmp_path: Path) -> None:
    inputs, _ = tree
    before = content_hash(tree)
    (tmp_path / "README").write_text("unrelated\n")
    (inputs / "__pycache__").mkdir()
    (inputs / "__pycache__" / "x.pyc").write_bytes(b"\0")
    assert content_hash(tree) == before
    (inputs / "new.txt").write_text("")  # an empty new file inside does count
    assert content_hash(tree) != before


def test_sha256_file(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    assert sha256_file(path) == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")


def test_free_port_is_bindable_and_below_the_ephemeral_range(tmp_path: Path) -> None:
    port = free_port()
    assert ports.LOWEST_PICKED <= port < ports.ephemeral_low(), port  # no outgoing connection
    # can take it between the pick and the forward's bind
    narrow = tmp_path / "ip_local_port_range"
    narrow.write_text("20500\t60999\n")  # no room below: the kernel picks
    assert free_port(narrow) >= ports.ephemeral_low()  # from the real ephemeral range
    narrow.write_text("garbage")
    assert ports.ephemeral_low(narrow) == 32768
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
    assert ensure_free(port) == port


def test_ensure_free_refuses_a_port_in_use() -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        with pytest.raises(TargetError) as raised:
            ensure_free(port)
    error = raised.value
    assert error.cause == f"port {port} on 127.0.0.1 is already in use"
    assert "choose another port" in error.remedy
    assert str(error) == f"{error.cause}: {error.remedy}"
